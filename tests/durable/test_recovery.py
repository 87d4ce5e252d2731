"""One kill -9 at a chosen step, then another worker resumes the task from its journal.

Each test waits until the task is exactly where it wants it (a journal event, a ledger
line), kills the worker holding it and starts another (lease 1 s), then reads the outcome,
the journal and the ledger:

- the same agent resumes: journaled steps are replayed, only the one in flight runs again;
- a changed agent (tools in another order, `TASKLOOM_APP_VARIANT=v2`) fails the task with
  `nondeterminism`, naming the step, and calls nothing;
- an `at_most_once` tool in flight is never run again: `failed/outcome_unknown` (policy
  "fail"), or a question to a human (policy "ask") whose answer decides;
- killed at every claim, a task ends `failed/recovery_exhausted` after the default 3
  recoveries: no crash loop.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import ModelCalled, TaskInputRequired, TaskRecovered, ToolCalled, ToolStarted
from tests.durable import app
from tests.durable._audit import audit, check
from tests.durable._harness import (
    Line,
    Workers,
    events_of,
    read_ledger,
    say,
    wait_for_event,
    wait_for_ledger,
    wait_state,
    wait_terminal,
)

pytestmark = pytest.mark.slow

_S = taskloom.TaskState


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def _starts(ledger: list[Line], task_id: str, step: str) -> list[int]:
    return [x.epoch for x in ledger if x.task == task_id and x.step == step and x.phase == "start"]


@pytest.mark.parametrize("variant", ["v1", "v2"])
async def test_resume_replays_the_journal_or_fails_on_a_changed_agent(
    url: str, tmp_path: Path, variant: str
) -> None:
    async with (
        taskloom.open(url, concurrency=0, poll_interval=0.02) as rt,
        Workers(url, tmp_path, concurrency=2, lease=1.0) as pool,
    ):
        first = await pool.start()
        task = await app.order.submit(8, pause_step="t1.0", pause_s=30, pause_epoch=1, runtime=rt)
        # m1 and the quick charge (t1.1) are journaled; the lookup (t1.0) is in flight
        await wait_for_event(rt, task.id, ToolCalled, step="t1.1", workers=pool)
        await wait_for_ledger(
            pool.ledger, lambda x: x.task == task.id and x.step == "t1.0", what="the lookup"
        )
        await pool.kill(first)
        second = await pool.start(variant=variant)
        await wait_terminal(rt, [task.id], within=30, workers=pool)
        done = await rt.get(task.id)
        events = await events_of(rt, task.id)
        found = await audit(rt, [task.id], pool.ledger)
        codes = await pool.close()

    ledger = read_ledger(pool.ledger)
    taken = [e for e in events if isinstance(e, TaskRecovered)]
    assert [(e.worker, e.epoch, e.released) for e in taken] == [(second.id, 2, False)]
    if variant == "v1":
        assert done.state is _S.COMPLETED, done
        assert done.output == app.expected_receipt(task.id, 8)
        check(found, allowed={"completed"})
        assert _starts(ledger, task.id, "m1") == [1]  # replayed, not paid again
        assert _starts(ledger, task.id, "t1.1") == [1]
        assert _starts(ledger, task.id, "t1.0") == [1, 2]  # in flight at the kill: pure, re-run
        for step in ("m2", "t2.0", "m3"):
            assert _starts(ledger, task.id, step) == [2]
    else:
        assert done.state is _S.FAILED, done
        assert done.reason == "nondeterminism"
        assert done.error is not None and "m1" in done.error.message, done.error
        say(f"\n[nondeterminism] {done.error.message}")
        assert [x for x in ledger if x.pid == second.pid] == []  # it called nothing
        after = [e for e in events if e.seq > taken[0].seq]
        assert not [e for e in after if isinstance(e, ModelCalled | ToolCalled)], after
    assert set(codes.values()) <= {0, -9}, codes


async def _kill_during_send(rt: taskloom.Runtime, pool: Workers, task_id: str) -> None:
    started = await wait_for_event(rt, task_id, ToolStarted, workers=pool)
    assert (started.step, started.name) == ("t2.0", "send")
    line = await wait_for_ledger(
        pool.ledger, lambda x: x.task == task_id and x.what == "send", what="the send"
    )
    await pool.kill(pool.by_pid(line.pid))
    await pool.start()


async def test_an_at_most_once_tool_in_flight_fails_the_task_with_outcome_unknown(
    url: str, tmp_path: Path
) -> None:
    async with (
        taskloom.open(url, concurrency=0, poll_interval=0.02) as rt,
        Workers(url, tmp_path, concurrency=2, lease=1.0) as pool,
    ):
        await pool.start()
        task = await app.order.submit(9, pause_step="t2.0", pause_s=30, pause_epoch=1, runtime=rt)
        await _kill_during_send(rt, pool, task.id)
        await wait_terminal(rt, [task.id], within=30, workers=pool)
        done = await rt.get(task.id)
        await pool.close()
    assert done.state is _S.FAILED, done
    assert done.reason == "outcome_unknown"
    assert _starts(read_ledger(pool.ledger), task.id, "t2.0") == [1]


@pytest.mark.parametrize("happened", [True, False])
async def test_an_at_most_once_tool_in_flight_asks_a_human(
    url: str, tmp_path: Path, happened: bool
) -> None:
    async with (
        taskloom.open(url, concurrency=0, poll_interval=0.02) as rt,
        Workers(url, tmp_path, concurrency=2, lease=1.0) as pool,
    ):
        await pool.start()
        task = await app.order_ask.submit(
            10, pause_step="t2.0", pause_s=30, pause_epoch=1, runtime=rt
        )
        await _kill_during_send(rt, pool, task.id)
        await wait_state(rt, task.id, _S.INPUT_REQUIRED, workers=pool)
        asked = [e for e in await events_of(rt, task.id) if isinstance(e, TaskInputRequired)]
        assert len(asked) == 1
        request: Any = asked[0].request
        assert request["kind"] == "question", request
        answer = {"happened": happened, "result": "sent by hand" if happened else ""}
        await rt.respond(task.id, answer)
        await wait_terminal(rt, [task.id], within=30, workers=pool)
        done = await rt.get(task.id)
        await pool.close()
    assert done.state is _S.COMPLETED, done
    sends = _starts(read_ledger(pool.ledger), task.id, "t2.0")
    if happened:  # the human's word is the result: never run again
        assert sends == [1]
        assert done.output == app.expected_receipt(task.id, 10, sent="sent by hand")
    else:  # it did not happen: it runs now, once
        assert sends == [1, 2]
        assert done.output == app.expected_receipt(task.id, 10)


async def test_a_task_killed_at_every_claim_ends_recovery_exhausted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    async with (
        taskloom.open(url, concurrency=0, poll_interval=0.02) as rt,
        Workers(url, tmp_path, concurrency=2, lease=1.0) as pool,
    ):
        task = await app.order.submit(11, pause_step="t1.0", pause_s=30, runtime=rt)
        for epoch in range(1, 5):
            worker = await pool.start()
            await wait_for_ledger(
                pool.ledger,
                lambda x, e=epoch: x.task == task.id and x.step == "t1.0" and x.epoch == e,
                what=f"the lookup at epoch {epoch}",
            )
            await pool.kill(worker)
        await pool.start()
        await wait_terminal(rt, [task.id], within=30, workers=pool)
        done = await rt.get(task.id)
        rec = await rt.store.get(task.id)
        events = await events_of(rt, task.id)
        await pool.close()
    assert done.state is _S.FAILED, done
    assert done.reason == "recovery_exhausted"
    assert rec is not None and rec.recoveries == 4, rec
    ledger = read_ledger(pool.ledger)
    assert _starts(ledger, task.id, "m1") == [1]
    assert _starts(ledger, task.id, "t1.0") == [1, 2, 3, 4]
    assert max(x.epoch for x in ledger) == 4  # the fifth claim ran nothing
    taken = Counter(isinstance(e, TaskRecovered) for e in events)
    assert taken[True] == 4
