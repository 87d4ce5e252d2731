"""`rt.cancel` in this process stops a task a worker process is performing.

The task's model call (`m2`) or tool call (`t1.0`) takes 60 s. Once it is running, the
test cancels the task from its own client runtime. Proved: the task ends `cancelled` with
the reason given; the worker's in-flight step was cancelled through asyncio (the ledger
shows `cancelled` and no `end` for it, long before its 60 s were up); no later step
started; and the worker goes on serving (it completes another task, then drains and
exits 0). The time from the cancel to the step's cancellation is printed, not asserted.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import taskloom
from taskloom import ModelCalled, ToolCalled
from tests.durable import app
from tests.durable._harness import (
    Workers,
    events_of,
    read_ledger,
    say,
    wait_for_ledger,
    wait_terminal,
)

pytestmark = pytest.mark.slow

_LATER = {"t1.0": ["m2", "t2.0", "m3"], "m2": ["t2.0", "m3"]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.mark.parametrize("step", ["t1.0", "m2"])
async def test_cancel_reaches_the_worker_and_stops_the_step_in_flight(
    url: str, tmp_path: Path, step: str
) -> None:
    async with (
        taskloom.open(url, concurrency=0, poll_interval=0.02) as rt,
        Workers(url, tmp_path, concurrency=2, lease=1.0) as pool,
    ):
        worker = await pool.start()
        task = await app.order.submit(12, pause_step=step, pause_s=60, runtime=rt)
        await wait_for_ledger(
            pool.ledger,
            lambda x: x.task == task.id and x.step == step and x.phase == "start",
            what=f"start of {step}",
        )
        asked = time.time()
        await rt.cancel(task.id, reason="operator said stop")
        stopped = await wait_for_ledger(
            pool.ledger,
            lambda x: x.task == task.id and x.step == step and x.phase != "start",
            within=20,
            what=f"the cancellation of {step} in the worker",
        )
        done = await rt.get(task.id)
        events = await events_of(rt, task.id)
        assert worker.alive, worker.describe()
        other = await app.echo.submit(1, runtime=rt)
        await wait_terminal(rt, [other.id], within=30, workers=pool)
        assert (await rt.get(other.id)).state is taskloom.TaskState.COMPLETED
        codes = await pool.close()

    say(
        f"\n[cancel {step}] the worker cancelled the step {stopped.t - asked:.3f} s after rt.cancel"
    )
    assert done.state is taskloom.TaskState.CANCELLED, done
    assert done.reason == "operator said stop"
    assert stopped.phase == "cancelled", stopped
    ledger = [x for x in read_ledger(pool.ledger) if x.task == task.id]
    assert not [x for x in ledger if x.step == step and x.phase == "end"]
    assert not [x for x in ledger if x.step in _LATER[step]], ledger
    assert events[-1].kind == "cancelled", [e.kind for e in events]
    assert not [e for e in events if isinstance(e, ModelCalled | ToolCalled) and e.step == step]
    assert set(codes.values()) == {0}, codes
