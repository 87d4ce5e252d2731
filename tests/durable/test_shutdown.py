"""SIGTERM drains a worker: it stops claiming, lets running tasks finish within the grace
period, releases the leases of the rest, and exits 0.

The worker runs four tasks (concurrency 4): two whose first tool takes 1 s (they finish
within the 3 s grace) and two whose first tool takes 20 s at epoch 1 (they cannot). Two
more tasks wait in the queue. The lease is 30 s, so only a release lets another worker
resume a task before the test's time limit. Proved: exit code 0; the short tasks
completed; the long ones are `working` with no lease owner (released: none is left
`working` under the drained worker's live lease); the queued ones were not claimed; a
second worker then completes all six, taking the released ones over with
`recovered(released=True)` and no recovery counted.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import taskloom
from taskloom import TaskRecovered, TaskStarted
from tests.durable import app
from tests.durable._harness import Workers, events_of, read_ledger, wait_for_ledger, wait_terminal

pytestmark = pytest.mark.slow

_GRACE = 3.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


async def test_sigterm_finishes_or_releases_running_tasks(url: str, tmp_path: Path) -> None:
    async with (
        taskloom.open(url, concurrency=0, poll_interval=0.02) as rt,
        Workers(url, tmp_path, concurrency=4, lease=30.0, grace=_GRACE) as pool,
    ):
        first = await pool.start()
        short = [
            (await app.order.submit(n, pause_step="t1.0", pause_s=1.0, runtime=rt)).id
            for n in (1, 2)
        ]
        long = [
            (
                await app.order.submit(
                    n, pause_step="t1.0", pause_s=20.0, pause_epoch=1, runtime=rt
                )
            ).id
            for n in (3, 4)
        ]
        for task_id in short + long:
            await wait_for_ledger(
                pool.ledger,
                lambda line, t=task_id: line.task == t and line.step == "t1.0",
                what=f"start of {task_id}'s first tool",
            )
        queued = [(await app.order.submit(n, runtime=rt)).id for n in (5, 6)]

        code = await pool.terminate(first, within=_GRACE + 30)
        assert code == 0, first.describe()
        now = time.time_ns() // 1_000_000
        for task_id in short + long + queued:
            rec = await rt.store.get(task_id)
            assert rec is not None
            held = rec.lease_owner == first.id and (rec.lease_ms or 0) > now
            assert not (rec.state is taskloom.TaskState.WORKING and held), rec
        for task_id in short:
            rec = await rt.store.get(task_id)
            assert rec is not None and rec.state is taskloom.TaskState.COMPLETED, rec
        for task_id in long:
            rec = await rt.store.get(task_id)
            assert rec is not None and rec.state is taskloom.TaskState.WORKING, rec
            assert rec.lease_owner is None, rec
        for task_id in queued:
            rec = await rt.store.get(task_id)
            assert rec is not None and rec.state is taskloom.TaskState.SUBMITTED, rec

        second = await pool.start()
        await wait_terminal(rt, short + long + queued, within=25, workers=pool)
        codes = await pool.close()

        for n, task_id in enumerate(short + long + queued, start=1):
            task = await rt.get(task_id)
            assert task.state is taskloom.TaskState.COMPLETED, task
            assert task.output == app.expected_receipt(task_id, n)
        for task_id in long:
            rec = await rt.store.get(task_id)
            assert rec is not None and rec.recoveries == 0, rec
            taken = [e for e in await events_of(rt, task_id) if isinstance(e, TaskRecovered)]
            assert [(e.worker, e.released) for e in taken] == [(second.id, True)]
        for task_id in queued:
            starts = [e for e in await events_of(rt, task_id) if isinstance(e, TaskStarted)]
            assert [e.worker for e in starts] == [second.id]
    ran_on_first = {line.task for line in read_ledger(pool.ledger) if line.pid == first.pid}
    assert ran_on_first == set(short + long)
    assert set(codes.values()) == {0}, codes
