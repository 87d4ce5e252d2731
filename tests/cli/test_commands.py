"""Each `taskloom` command through its entry point (`taskloom.cli.app`), in this process.

Stores are SQLite files in the test's folder. Tasks that need a worker while a command
runs (`respond`, `watch` of a live task) get one on its own event loop in a thread.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli._proc import APP, UNREACHABLE, cli, json_lines, run_json, stored, submit

_ID = re.compile(r"^[0-9a-f]{32}$")


# -- run ---------------------------------------------------------------------------------------


def test_run_shows_the_events_and_prints_the_typed_result(url: str) -> None:
    result = cli("run", f"{APP}:add", "a=2", "b=3", "--store", url)
    assert result.exit_code == 0, result.output
    first, *_ = result.stdout.splitlines()
    task_id = first.split()[1]
    assert first == f"task {task_id} (add) in {url}"
    for line in ("submitted", "started on ", "turn 1: test:adder answers", "completed"):
        assert line in result.stdout
    assert f"add {task_id}: completed · model calls 1 · tool calls 0" in result.stdout
    assert "tokens 1200 in, 300 out · cost $0.000360" in result.stdout
    assert result.stdout.rstrip().endswith('result: {\n  "total": 5\n}')
    task = stored(url, task_id)
    assert task.state.value == "completed" and task.output == {"total": 5}


def test_run_json_prints_only_the_final_record(url: str) -> None:
    record = run_json(url, f"{APP}:survey", "steps=2", "pause=0")
    assert record["state"] == "completed"
    assert record["result"] == {"readings": ["station 1: 21.5 C", "station 2: 21.5 C"]}
    assert record["usage"]["requests"] == 3 and record["usage"]["tool_calls"] == 2
    assert record["usage"]["cost_usd"] == pytest.approx(3 * 0.00036)


def test_run_of_a_failing_task_exits_1_with_the_error(url: str) -> None:
    result = cli("run", f"{APP}:broken", "why=on purpose", "--store", url)
    assert result.exit_code == 1, result.output
    assert ": failed (error)" in result.stdout
    assert "error: the model is broken: on purpose" in result.stderr


def test_run_takes_inputs_from_a_json_file_and_pairs_override_it(url: str, tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text('{"a": 5, "b": 6}')
    record = run_json(url, f"{APP}:add", "--input", str(tmp_path / "in.json"), "b=1")
    assert record["result"] == {"total": 6}
    assert record["payload"]["inputs"] == {"a": 5, "b": 1}


def test_run_of_an_agent_takes_the_rest_as_the_prompt(url: str) -> None:
    record = run_json(url, f"{APP}:parrot", "hello", "there")
    assert record["state"] == "completed"
    assert record["result"] == "you said: hello there"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a=1"], "add needs b=<int>: give it as key=value or in --input FILE.json"),
        ([], "add needs a=<int> b=<int>"),
        (
            ["a=x", "b=2"],
            'invalid input for add: a: Input should be a valid integer, unable to parse string as an integer (got "x"; a takes int)',
        ),
        (["a=1", "b=2", "c=3"], "add has no input 'c'; its inputs are a, b"),
        (["a1", "b=2"], "arguments are key=value pairs; got 'a1'"),
        (["a=1", "b=2", "b=3"], "the input 'b' is given twice"),
    ],
)
def test_bad_task_inputs_are_usage_errors_that_say_what_to_do(
    url: str, tmp_path: Path, args: list[str], message: str
) -> None:
    for command in ("run", "submit"):
        result = cli(command, f"{APP}:add", *args, "--store", url)
        assert result.exit_code == 2, result.output
        assert f"error: {message}" in result.stderr
    assert not (tmp_path / "tasks.db").exists()  # refused before the store was opened


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([f"{APP}:nothing"], "the app module 'tests.cli.app' has no 'nothing'; it defines add,"),
        ([f"{APP}:not_a_task"], "'tests.cli.app:not_a_task' is int 42, not an @agent.task"),
        (["no_such_app:add"], "cannot import the app 'no_such_app'"),
        ([APP], "give the task as APP:TASK"),
        ([f"{APP}:parrot"], "say what 'parrot' should do"),
        ([f"{APP}:parrot", "--input", "x.json"], "an agent takes a prompt, not --input"),
        ([f"{APP}:add", "--input", "missing.json"], "cannot read the inputs from 'missing.json'"),
    ],
)
def test_a_target_that_cannot_run_is_a_usage_error(url: str, args: list[str], message: str) -> None:
    result = cli("run", *args, "--store", url)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_an_input_file_that_is_not_an_object_is_a_usage_error(url: str, tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1, 2]")
    result = cli("run", f"{APP}:add", "--input", str(tmp_path / "list.json"), "--store", url)
    assert result.exit_code == 2
    assert "must hold a JSON object of inputs, not list" in result.stderr


# -- submit --------------------------------------------------------------------------------------


def test_submit_prints_the_id_and_stores_the_task_for_a_worker(url: str) -> None:
    task_id = submit(url, f"{APP}:add", "a=1", "b=2")
    assert _ID.match(task_id)
    task = stored(url, task_id)
    assert task.state.value == "submitted" and task.name == "add"
    assert task.payload == {"inputs": {"a": 1, "b": 2}, "session": None}


def test_submit_honours_priority_and_the_idempotency_key(url: str) -> None:
    args = (f"{APP}:add", "a=1", "b=2", "--priority", "7", "--idempotency-key", "nightly")
    first = submit(url, *args)
    assert submit(url, *args) == first
    task = stored(url, first)
    assert task.priority == 7 and task.idempotency_key == "nightly"
    listed = json.loads(cli("ls", "--store", url, "--json").stdout)
    assert [t["id"] for t in listed] == [first]


def test_submit_delay_and_at_schedule_the_start(url: str) -> None:
    before = datetime.now(UTC)
    delayed = stored(url, submit(url, f"{APP}:add", "a=1", "b=2", "--delay", "3600"))
    assert delayed.scheduled_at is not None
    assert delayed.scheduled_at >= before + timedelta(seconds=3590)
    zoned = stored(url, submit(url, f"{APP}:add", "a=1", "b=2", "--at", "2030-01-01T08:00+02:00"))
    assert zoned.scheduled_at == datetime(2030, 1, 1, 6, tzinfo=UTC)
    local = stored(url, submit(url, f"{APP}:add", "a=1", "b=2", "--at", "2030-01-01T08:00"))
    assert local.scheduled_at == datetime(2030, 1, 1, 8).astimezone()


def test_submit_json_prints_the_record(url: str) -> None:
    result = cli("submit", f"{APP}:parrot", "hi", "--store", url, "--json", "--priority", "2")
    record = json.loads(result.stdout)
    assert record["state"] == "submitted" and record["priority"] == 2
    assert record["name"] == "parrot"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "tomorrow"], "--at takes an ISO 8601 date/time such as 2026-12-01T08:00"),
        (["--at", "2030-01-01", "--delay", "5"], "give --at or --delay, not both"),
    ],
)
def test_a_bad_schedule_is_a_usage_error(url: str, args: list[str], message: str) -> None:
    result = cli("submit", f"{APP}:add", "a=1", "b=2", *args, "--store", url)
    assert result.exit_code == 2
    assert message in result.stderr


# -- ls ------------------------------------------------------------------------------------------


def test_ls_lists_and_filters_tasks(url: str) -> None:
    done = run_json(url, f"{APP}:add", "a=1", "b=1")["id"]
    failed = run_json(url, f"{APP}:broken", "why=x")["id"]
    waiting = submit(url, f"{APP}:add", "a=1", "b=2", "--delay", "3600")

    table = cli("ls", "--store", url)
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["id", "name", "state", "reason", "created", "ended", "cost"]
    assert [r.split()[0] for r in rows] == [waiting, failed, done]  # newest first
    assert rows[2].split()[1:3] == ["add", "completed"] and rows[2].endswith("$0.000360")
    assert rows[1].split()[1:4] == ["broken", "failed", "error"]

    only = cli("ls", "--store", url, "--state", "failed", "--state", "completed")
    assert [r.split()[0] for r in only.stdout.splitlines()[1:]] == [failed, done]
    assert len(cli("ls", "--store", url, "--limit", "1").stdout.splitlines()) == 2
    assert cli("ls", "--store", url, "--owner", "nobody").stdout.strip() == "no tasks"
    assert len(cli("ls", "--store", url, "--since", "1h").stdout.splitlines()) == 4
    assert cli("ls", "--store", url, "--since", "2099-01-01").stdout.strip() == "no tasks"

    listed = json.loads(cli("ls", "--store", url, "--json", "--state", "submitted").stdout)
    assert [(t["id"], t["state"]) for t in listed] == [(waiting, "submitted")]


def test_ls_owner_shows_only_that_owners_tasks(url: str) -> None:
    import asyncio

    import taskloom
    from tests.cli import app

    async def submit_owned() -> str:
        async with taskloom.open(url, concurrency=0) as rt:
            await rt.submit(app.parrot, "not hers", delay=3600)
            return (await rt.submit(app.parrot, "hers", owner="ada", delay=3600)).id

    hers = asyncio.run(submit_owned())
    listed = json.loads(cli("ls", "--store", url, "--owner", "ada", "--json").stdout)
    assert [t["id"] for t in listed] == [hers]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--state", "bogus"], "unknown state in ['bogus']; states are submitted, working"),
        (["--since", "yesterday"], "--since takes 30m, 2h, 7d or an ISO date/time"),
    ],
)
def test_ls_bad_filters_are_usage_errors(url: str, args: list[str], message: str) -> None:
    submit(url, f"{APP}:add", "a=1", "b=2", "--delay", "60")
    result = cli("ls", "--store", url, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_ls_of_a_store_that_is_not_there_creates_nothing(tmp_path: Path) -> None:
    result = cli("ls", "--store", f"sqlite:///{tmp_path / 'typo.db'}")
    assert result.exit_code == 0
    assert result.stdout.strip() == "no tasks"
    assert "there is no store at" in result.stderr
    assert not (tmp_path / "typo.db").exists()


# -- show and logs --------------------------------------------------------------------------------


def test_show_prints_the_record_usage_cost_and_timeline(url: str) -> None:
    task_id = run_json(url, f"{APP}:survey", "steps=1", "pause=0")["id"]
    result = cli("show", task_id, "--store", url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    fields = {line[:12].strip(): line[13:] for line in lines[: lines.index("")]}
    assert fields["task"] == f"survey {task_id}"
    assert fields["state"] == "completed"
    assert fields["inputs"] == '{"steps": 1, "pause": 0.0}'
    assert fields["model calls"] == "2" and fields["tool calls"] == "1"
    assert fields["tokens"] == "2400 in, 600 out"
    assert fields["cost"] == "$0.000720"
    assert fields["result"] == '{"readings": ["station 1: 21.5 C"]}'
    timeline = [line.split(None, 3)[3] for line in lines[lines.index("") + 1 :]]
    assert timeline[0] == "submitted" and timeline[-1] == "completed"
    assert 'tool measure({"station": 1, "pause": 0.0}) -> station 1: 21.5 C' in timeline


def test_show_json_includes_the_events(url: str) -> None:
    task_id = run_json(url, f"{APP}:add", "a=1", "b=2")["id"]
    record = json.loads(cli("show", task_id, "--store", url, "--json").stdout)
    assert record["id"] == task_id and record["result"] == {"total": 3}
    assert record["usage"]["input_tokens"] == 1200
    kinds = [e["kind"] for e in record["events"]]
    assert kinds == ["submitted", "started", "model_called", "completed"]
    assert [e["seq"] for e in record["events"]] == [1, 2, 3, 4]


def test_logs_prints_the_raw_events_as_json_lines(url: str) -> None:
    task_id = run_json(url, f"{APP}:add", "a=1", "b=2")["id"]
    events = json_lines(cli("logs", task_id, "--store", url).stdout)
    assert [e["kind"] for e in events] == ["submitted", "started", "model_called", "completed"]
    assert events[2]["cost_usd"] == pytest.approx(0.00036)
    assert events[3]["result"] == {"total": 3}
    later = json_lines(cli("logs", task_id, "--store", url, "--after", "2").stdout)
    assert [e["seq"] for e in later] == [3, 4]


# -- cancel and retry ----------------------------------------------------------------------------


def test_cancel_ends_a_task_with_the_reason_and_again_says_it_had_ended(url: str) -> None:
    task_id = submit(url, f"{APP}:add", "a=1", "b=2", "--delay", "3600")
    result = cli("cancel", task_id, "--reason", "not needed", "--store", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{task_id} cancelled (not needed)"
    task = stored(url, task_id)
    assert task.state.value == "cancelled" and task.reason == "not needed"

    again = cli("cancel", task_id, "--store", url)
    assert again.exit_code == 0
    assert again.stdout.strip() == f"{task_id} had already ended cancelled; nothing to cancel"
    assert stored(url, task_id).reason == "not needed"
    record = json.loads(cli("cancel", task_id, "--store", url, "--json").stdout)
    assert record["state"] == "cancelled"


def test_retry_submits_a_new_attempt_linked_to_the_old_one(url: str) -> None:
    old = run_json(url, f"{APP}:broken", "why=flaky")["id"]
    result = cli("retry", old, "--store", url)
    assert result.exit_code == 0, result.output
    new = result.stdout.strip()
    assert _ID.match(new) and new != old
    record = json.loads(cli("show", new, "--store", url, "--json").stdout)
    assert record["retry_of"] == old and record["state"] == "submitted"
    assert record["payload"]["inputs"] == {"why": "flaky"}
    assert f"retry of     {old}" in cli("show", new, "--store", url).stdout


def test_retry_of_a_task_that_has_not_ended_is_a_usage_error(url: str) -> None:
    task_id = submit(url, f"{APP}:add", "a=1", "b=2", "--delay", "3600")
    result = cli("retry", task_id, "--store", url)
    assert result.exit_code == 2
    assert "only an ended task can be retried" in result.stderr


# -- every command: unknown ids, unreachable stores, help -------------------------------------------

_BY_ID = [
    ["show"],
    ["logs"],
    ["watch"],
    ["cancel"],
    ["respond", "ID", "yes"],
    ["retry"],
]


def _with_id(command: list[str], task_id: str) -> list[str]:
    return [command[0], task_id, *command[2:]]


@pytest.mark.parametrize("command", _BY_ID, ids=lambda c: c[0])
def test_an_unknown_task_id_is_a_usage_error(url: str, command: list[str]) -> None:
    submit(url, f"{APP}:add", "a=1", "b=2", "--delay", "60")  # the store exists
    result = cli(*_with_id(command, "feedfacefeedface"), "--store", url)
    assert result.exit_code == 2, result.output
    assert "no task 'feedfacefeedface' in sqlite:///" in result.stderr


@pytest.mark.parametrize(
    "command",
    [["ls"], ["run", f"{APP}:add", "a=1", "b=2"], ["submit", f"{APP}:add", "a=1", "b=2"], *_BY_ID],
    ids=lambda c: c[0],
)
def test_an_unreachable_store_exits_6(command: list[str]) -> None:
    args = _with_id(command, "feedface") if command in _BY_ID else command
    result = cli(*args, "--store", UNREACHABLE)
    assert result.exit_code == 6, result.output
    assert "error: cannot reach PostgreSQL at postgresql://nobody@127.0.0.1:1/x" in result.stderr


@pytest.mark.parametrize("command", _BY_ID, ids=lambda c: c[0])
def test_a_store_file_that_is_not_there_exits_6_and_is_not_created(
    tmp_path: Path, command: list[str]
) -> None:
    result = cli(*_with_id(command, "feedface"), "--store", f"sqlite:///{tmp_path / 'typo.db'}")
    assert result.exit_code == 6, result.output
    assert "there is no store at" in result.stderr and "Check --store" in result.stderr
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.parametrize(
    "command",
    [
        "run",
        "submit",
        "watch",
        "demo",
        "ls",
        "show",
        "logs",
        "cancel",
        "respond",
        "retry",
        "worker",
    ],
)
def test_the_help_of_each_command_shows_an_example(command: str) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and f"taskloom {command} " in result.stdout
    assert "--store" in result.stdout or command == "demo"


def test_the_top_level_help_lists_the_commands_and_exit_codes() -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for word in ("run", "submit", "watch", "ls", "show", "logs", "cancel", "respond", "retry"):
        assert re.search(rf"^\s+{word}\s", result.stdout, re.MULTILINE), word
    assert "Exit codes: 0 completed" in result.stdout
