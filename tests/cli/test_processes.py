"""`taskloom` as real processes: `python -m taskloom ...`, several at once on one store.

`run` end to end; `submit`, `worker` and two `watch`ers (text and `--json`) in four
processes, on SQLite and PostgreSQL; `cancel` and `respond` from another process while
`run` is in flight; Ctrl-C (SIGINT) to `run` without a terminal.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli._proc import APP, Children, json_lines, stored

pytestmark = pytest.mark.slow


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    pool = Children(tmp_path)
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store on SQLite, then on PostgreSQL (skipped locally when no server answers)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tasks.db'}"
    return request.getfixturevalue("postgres_url")


def _task_id(child_out: str) -> str:
    found = re.match(r"task ([0-9a-f]{32}) ", child_out)
    assert found, child_out
    return found.group(1)


def test_run_end_to_end(children: Children, url: str) -> None:
    code, out, err = children.run(
        "run", f"{APP}:survey", "steps=2", "pause=0", "--store", url, name="run"
    )
    assert code == 0, out + err
    task_id = _task_id(out)
    assert "tool measure(" in out and "completed" in out
    assert out.rstrip().endswith('"station 2: 21.5 C"\n  ]\n}')
    assert stored(url, task_id).state.value == "completed"


def test_submit_worker_and_watchers_across_processes(children: Children, shared_url: str) -> None:
    url = shared_url
    code, out, err = children.run(
        "submit", f"{APP}:survey", "steps=2", "pause=0.2", "--store", url, name="submit"
    )
    assert code == 0, err
    task_id = out.strip()
    watcher = children.start("watch", task_id, "--store", url, name="watch")
    json_watcher = children.start("watch", task_id, "--store", url, "--json", name="json")
    watcher.wait_for("submitted")  # both follow the task before any worker has it
    json_watcher.wait_for('"kind": "submitted"')
    assert "started" not in watcher.out

    worker = children.start("worker", APP, "--store", url, "--grace", "1", name="worker")
    worker.wait_for(" ready")
    worker_id = worker.out.split()[1]
    assert watcher.wait(30) == 0, children.report()
    assert json_watcher.wait(30) == 0, children.report()

    assert f"started on {worker_id}" in watcher.out
    assert watcher.out.count("tool measure(") == 2
    assert f"survey {task_id}: completed · model calls 3 · tool calls 2" in watcher.out
    *events, record = json_lines(json_watcher.out)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[1] == events[1] | {"kind": "started", "worker": worker_id}
    assert events[-1]["kind"] == "completed"
    assert record["id"] == task_id and record["state"] == "completed"
    assert record["result"] == {"readings": ["station 1: 21.5 C", "station 2: 21.5 C"]}

    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.describe()


def test_cancel_from_another_process_ends_a_run_in_flight(children: Children, url: str) -> None:
    run = children.start("run", f"{APP}:survey", "steps=3", "pause=30", "--store", url, name="run")
    run.wait_for("asks for measure(")  # the first tool call is under way
    task_id = _task_id(run.out)
    code, out, err = children.run(
        "cancel", task_id, "--reason", "changed my mind", "--store", url, name="cancel"
    )
    assert (code, out.strip()) == (0, f"{task_id} cancelled (changed my mind)"), err
    assert run.wait(30) == 3, run.describe()
    assert "cancelled: changed my mind" in run.out
    assert f"survey {task_id}: cancelled (changed my mind)" in run.out
    task = stored(url, task_id)
    assert (task.state.value, task.reason) == ("cancelled", "changed my mind")


def test_respond_from_another_process_lets_the_run_complete(
    children: Children, shared_url: str
) -> None:
    url = shared_url
    run = children.start("run", f"{APP}:publish", "title=Hello", "--store", url, name="run")
    run.wait_for("input required: May the agent call release(")
    task_id = _task_id(run.out)
    assert f"answer it with: taskloom respond {task_id} ANSWER" in run.err
    watcher = children.start("watch", task_id, "--store", url, "--json", name="watch")
    watcher.wait_for('"kind": "input_required"')

    code, _, err = children.run("respond", task_id, "nope", "--store", url, name="wrong")
    assert code == 2 and "Answer with yes or no" in err
    code, _, err = children.run("respond", task_id, "yes", "--store", url, name="respond")
    assert code == 0, err
    assert run.wait(30) == 0, run.describe()
    assert watcher.wait(30) == 0, watcher.describe()
    assert "resumed with an answer" in run.out
    assert "published 'Hello'" in run.out
    record = json_lines(watcher.out)[-1]
    assert record["result"] == {"title": "Hello", "outcome": "published 'Hello'"}


def test_sigint_to_run_without_a_terminal_cancels_the_task(children: Children, url: str) -> None:
    run = children.start("run", f"{APP}:survey", "steps=3", "pause=30", "--store", url, name="run")
    run.wait_for("asks for measure(")
    run.proc.send_signal(signal.SIGINT)
    assert run.wait(30) == 3, run.describe()
    assert "Ctrl-C: cancelling the task..." in run.err
    task_id = _task_id(run.out)
    assert f"survey {task_id}: cancelled (cancelled from the terminal (Ctrl-C))" in run.out
    assert stored(url, task_id).state.value == "cancelled"
    assert (
        json.loads(children.run("show", task_id, "--store", url, "--json", name="show")[1])[
            "events"
        ][-1]["kind"]
        == "cancelled"
    )


def test_sigint_to_watch_stops_watching_and_the_task_goes_on(children: Children, url: str) -> None:
    code, out, err = children.run(
        "submit", f"{APP}:add", "a=1", "b=2", "--delay", "3600", "--store", url, name="submit"
    )
    assert code == 0, err
    task_id = out.strip()
    watcher = children.start("watch", task_id, "--store", url, name="watch")
    watcher.wait_for("submitted")
    watcher.proc.send_signal(signal.SIGINT)
    assert watcher.wait(30) == 0, watcher.describe()
    assert (
        f"stopped watching after event 1; the task goes on (taskloom watch {task_id} --after 1"
        in watcher.err
    )
    assert stored(url, task_id).state.value == "submitted"
