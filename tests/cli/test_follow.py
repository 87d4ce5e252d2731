"""`taskloom watch` and `respond` through the entry point, in this process.

Tasks that must be performed while a command runs get a worker on its own event loop in a
thread (`worker_thread`); the stores are SQLite files in the test's folder.
"""

from __future__ import annotations

import pytest

from tests.cli._proc import APP, cli, json_lines, run_json, stored, submit, worker_thread

# -- watch -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "code"), [("add a=1 b=2", 0), ("broken why=x", 1)])
def test_watch_of_an_ended_task_replays_it_and_exits_as_it_ended(
    url: str, target: str, code: int
) -> None:
    name, *args = target.split()
    task_id = run_json(url, f"{APP}:{name}", *args)["id"]
    result = cli("watch", task_id, "--store", url)
    assert result.exit_code == code, result.output
    assert "submitted" in result.stdout.splitlines()[0]
    assert f"{name} {task_id}: {'completed' if code == 0 else 'failed'}" in result.stdout

    later = cli("watch", task_id, "--store", url, "--after", "2")
    assert "submitted" not in later.stdout and "started" not in later.stdout


def test_watch_of_a_cancelled_task_exits_3(url: str) -> None:
    task_id = submit(url, f"{APP}:add", "a=1", "b=2", "--delay", "3600")
    cli("cancel", task_id, "--store", url)
    result = cli("watch", task_id, "--store", url)
    assert result.exit_code == 3
    assert f"add {task_id}: cancelled (cancelled from the command line)" in result.stdout


def test_watch_json_prints_the_events_then_the_record(url: str) -> None:
    task_id = run_json(url, f"{APP}:add", "a=1", "b=2")["id"]
    result = cli("watch", task_id, "--store", url, "--json")
    assert result.exit_code == 0
    *events, record = json_lines(result.stdout)
    assert [e["kind"] for e in events] == ["submitted", "started", "model_called", "completed"]
    assert record["id"] == task_id and record["result"] == {"total": 3}


# -- respond (a worker in a thread performs the tasks) ---------------------------------------------


def test_respond_checks_the_answer_against_the_questions_type(url: str) -> None:
    task_id = submit(url, f"{APP}:count", "item=book")
    with worker_thread(url):
        asked = cli("watch", task_id, "--store", url, "--until-input")
        assert asked.exit_code == 7, asked.output
        assert "input required: How many copies of book?" in asked.stdout
        assert f"answer it with: taskloom respond {task_id} ANSWER" in asked.stderr

        for wrong, why in [("many", "must be integer, not str"), ("3.5", "not float")]:
            result = cli("respond", task_id, wrong, "--store", url)
            assert result.exit_code == 2, result.output
            assert "the answer to 'How many copies of book?' does not fit" in result.stderr
            assert why in result.stderr and "Answer with a whole number" in result.stderr
        assert stored(url, task_id).state.value == "input_required"

        result = cli("respond", task_id, "7", "--store", url)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"{task_id} answered")
        done = cli("watch", task_id, "--store", url)
    assert done.exit_code == 0, done.output
    assert "resumed with an answer" in done.stdout
    assert stored(url, task_id).output == {"item": "book", "copies": 7}


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ("yes", "published 'Hello'"),
        ("no", "a human did not approve this call; do not try it again"),
        ('{"approved": false, "reason": "not yet"}', "a human did not approve this call: not"),
    ],
)
def test_respond_answers_an_approval_with_yes_or_no(url: str, answer: str, outcome: str) -> None:
    task_id = submit(url, f"{APP}:publish", "title=Hello")
    with worker_thread(url):
        assert cli("watch", task_id, "--store", url, "--until-input").exit_code == 7
        wrong = cli("respond", task_id, "maybe", "--store", url)
        assert wrong.exit_code == 2
        assert 'Answer with yes or no (or JSON: {"approved": false' in wrong.stderr
        assert cli("respond", task_id, answer, "--store", url).exit_code == 0
        done = cli("watch", task_id, "--store", url, "--json")
    assert done.exit_code == 0, done.output
    result = json_lines(done.stdout)[-1]["result"]
    assert result["outcome"].startswith(outcome)


def test_respond_takes_text_as_text_and_watch_until_input_stops_at_the_open_question(
    url: str,
) -> None:
    task_id = submit(url, f"{APP}:label", "item=jam")
    with worker_thread(url):
        assert cli("watch", task_id, "--store", url, "--until-input").exit_code == 7
        assert cli("respond", task_id, "42", "--store", url).exit_code == 0  # the text "42"

        second = cli("watch", task_id, "--store", url, "--until-input")  # not the first one
        assert second.exit_code == 7, second.output
        assert "input required: How many '42' labels?" in second.stdout
        assert (
            cli("watch", task_id, "--store", url, "--until-input", "--after", "99").exit_code == 7
        )
        assert cli("respond", task_id, '"3"', "--store", url).exit_code == 2
        assert cli("respond", task_id, "3", "--store", url).exit_code == 0
        done = cli("watch", task_id, "--store", url, "--json")
    assert done.exit_code == 0, done.output
    assert json_lines(done.stdout)[-1]["result"] == {"item": "jam", "label": "42", "copies": 3}


def test_respond_to_a_task_that_does_not_wait_is_a_usage_error(url: str) -> None:
    task_id = run_json(url, f"{APP}:add", "a=1", "b=2")["id"]
    result = cli("respond", task_id, "yes", "--store", url)
    assert result.exit_code == 2
    assert f"task {task_id!r} is completed, not waiting for input" in result.stderr
