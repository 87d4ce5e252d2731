"""A worker frozen with SIGSTOP until its lease ends, then thawed with SIGCONT, commits nothing.

Two workers, lease 1 s. The task's first tool (`lookup`, step `t1.0`) takes 0.6 s more at
epoch 1 only. Once it is running, the worker holding the lease (its pid is in
`lease_owner`) is frozen; the other worker takes the task over (a `recovered` event, epoch
2) and finishes it. The frozen worker is then thawed. Its `lookup` ran out its time while
the process was frozen, so at once it both heartbeats (and learns that its lease is gone)
and goes on with the step: it writes the ledger `end` and sends the step's result to the
store, which refuses it because the task's epoch moved on (fencing). (When the heartbeat
wins the race, the step is cancelled instead; the claims below hold either way.)

Proved: the task completed; every journal step (`model_called`, `tool_called`) appears
exactly once; every journal event after the takeover has a ledger `end` of the same step
at epoch 2 by the other worker; and the thawed worker ran its step at epoch 1 only.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

import taskloom
from taskloom import ModelCalled, TaskRecovered, ToolCalled
from tests.durable import app
from tests.durable._harness import (
    HarnessError,
    Workers,
    events_of,
    owner_pid,
    read_ledger,
    say,
    wait_for_event,
    wait_for_ledger,
    wait_terminal,
)

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


async def test_a_worker_stopped_past_its_lease_commits_nothing(url: str, tmp_path: Path) -> None:
    async with (
        taskloom.open(url, concurrency=0, poll_interval=0.02) as rt,
        Workers(url, tmp_path, concurrency=2, lease=1.0, grace=1.0) as pool,
    ):
        await pool.start()
        await pool.start()
        for attempt in range(1, 4):
            task = await app.order.submit(
                7, pause_step="t1.0", pause_s=0.6, pause_epoch=1, runtime=rt
            )
            slow = await wait_for_ledger(
                pool.ledger,
                lambda line, t=task.id: (
                    line.task == t and line.step == "t1.0" and line.phase == "start"
                ),
                what="start of the slow lookup",
            )
            rec = await rt.store.get(task.id)
            assert rec is not None and rec.lease_owner is not None
            assert owner_pid(rec.lease_owner) == slow.pid
            frozen = pool.by_pid(slow.pid)
            (other,) = [w for w in pool.started if w is not frozen]
            frozen.signal(signal.SIGSTOP)
            try:
                taken = await wait_for_event(rt, task.id, TaskRecovered, workers=pool, within=8)
                break
            except HarnessError:
                # SQLite only: the freeze landed inside the frozen worker's write transaction
                # (a heartbeat), whose lock holds up every other writer of the file until it
                # is thawed; then it goes on as the rightful holder. Try again with a new task.
                if not url.startswith("sqlite") or attempt == 3:
                    raise
                say(f"\n[sigstop] attempt {attempt}: frozen inside a write; trying again")
            finally:
                frozen.signal(signal.SIGCONT)
            await wait_terminal(rt, [task.id], within=30, workers=pool)
        else:  # pragma: no cover -- the loop breaks or raises
            raise AssertionError("unreachable")
        assert taken.worker == other.id
        assert (taken.epoch, taken.released) == (2, False)

        await wait_terminal(rt, [task.id], within=30, workers=pool)
        # the thawed worker's lookup ended or was cancelled: it has had its chance to write
        await wait_for_ledger(
            pool.ledger,
            lambda line: (
                line.task == task.id
                and line.pid == frozen.pid
                and line.step == "t1.0"
                and line.phase != "start"
            ),
            what="end of the thawed worker's lookup",
        )
        codes = await pool.close()  # and now it certainly wrote whatever it was going to
        done = await rt.get(task.id)
        events = await events_of(rt, task.id)

    assert done.state is taskloom.TaskState.COMPLETED, done.state
    assert done.output == app.expected_receipt(task.id, 7)
    steps = Counter(e.step for e in events if isinstance(e, ModelCalled | ToolCalled))
    assert steps == dict.fromkeys(["m1", "t1.0", "t1.1", "m2", "t2.0", "m3"], 1), steps

    ledger = [line for line in read_ledger(pool.ledger) if line.task == task.id]
    assert {line.epoch for line in ledger if line.pid == frozen.pid} == {1}
    assert {line.epoch for line in ledger if line.pid == other.pid} == {2}
    ended_at_2 = {line.step for line in ledger if line.pid == other.pid and line.phase == "end"}
    after = [e for e in events if e.seq > taken.seq and isinstance(e, ModelCalled | ToolCalled)]
    assert after, "the other worker journaled nothing after it took over"
    assert {e.step for e in after} <= ended_at_2, (sorted(e.step for e in after), ended_at_2)
    say(
        f"\n[sigstop] taken over at seq {taken.seq}; steps journaled after it:"
        f" {[e.step for e in after]}; the thawed worker's ledger:"
        f" {[(line.step, line.phase) for line in ledger if line.pid == frozen.pid]};"
        f" its log:\n{frozen.stderr_tail(6)}"
    )
    assert set(codes.values()) == {0}, codes
