"""Four worker processes share one PostgreSQL: 2,000 tasks, each claimed and completed once.

The workers are started first and the tasks submitted while they claim, so they compete
for every task (`FOR UPDATE SKIP LOCKED`). Each task is one model call (`echo`) that
writes a ledger line when it runs. Proved: every task `completed` with its own result,
exactly one `started` event and no `recovered` one (epoch 1: one claim), and exactly one
model execution in the ledger. The throughput and the split across workers are printed,
not asserted.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

import taskloom
from taskloom import TaskStarted
from tests.conftest import require_postgres
from tests.durable import app
from tests.durable._harness import Workers, events_of, read_ledger, say, submit_many, wait_terminal

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

_TASKS = 2000
_WORKERS = 4


@pytest.mark.timeout(300)
async def test_four_workers_complete_2000_tasks_each_exactly_once(
    postgres_url: str, tmp_path: Path
) -> None:
    require_postgres()
    async with (
        taskloom.open(postgres_url, concurrency=0, poll_interval=0.05) as rt,
        Workers(postgres_url, tmp_path, concurrency=8, lease=5.0, sleep="0,0") as pool,
    ):
        workers = [await pool.start() for _ in range(_WORKERS)]
        started = time.monotonic()
        ids = await submit_many(lambda i: app.echo.submit(i, runtime=rt), _TASKS)
        submitted = time.monotonic() - started
        await wait_terminal(rt, ids, within=240, workers=pool)
        elapsed = time.monotonic() - started
        codes = await pool.close()

        by_worker: Counter[str] = Counter()
        problems: list[str] = []
        first_start, last_end = float("inf"), 0.0
        for i, task_id in enumerate(ids):
            rec = await rt.store.get(task_id)
            assert rec is not None
            events = await events_of(rt, task_id)
            kinds = Counter(e.kind for e in events)
            if (
                rec.state is not taskloom.TaskState.COMPLETED
                or rec.epoch != 1
                or kinds["started"] != 1
                or kinds["recovered"] != 0
                or kinds["completed"] != 1
            ):
                problems.append(
                    f"{task_id}: {rec.state.value} ({rec.reason}, {rec.error}) epoch {rec.epoch}"
                    f" {dict(kinds)}"
                )
                continue
            assert (await rt.get(task_id)).output == {"n": i}
            start = next(e for e in events if isinstance(e, TaskStarted))
            by_worker[start.worker] += 1
            first_start = min(first_start, start.at.timestamp())
            last_end = max(last_end, events[-1].at.timestamp())

    runs = Counter(line.task for line in read_ledger(pool.ledger) if line.phase == "start")
    ran_twice = [t for t, c in runs.items() if c != 1]
    never_ran = [t for t in ids if t not in runs]
    split = ", ".join(f"{w.id}: {by_worker[w.id]}" for w in workers)
    say(
        f"\n[scale postgres] {_TASKS} tasks, {_WORKERS} workers x 8: submitted in"
        f" {submitted:.1f} s, all completed {elapsed:.1f} s after the first submit"
        f" ({_TASKS / elapsed:.0f} tasks/s); first start to last end by the store's clock"
        f" {last_end - first_start:.1f} s ({_TASKS / (last_end - first_start):.0f} tasks/s)\n"
        f"[scale postgres] tasks per worker: {split}"
    )
    assert not problems, f"{len(problems)} tasks not claimed and completed once: {problems[:5]}"
    assert not ran_twice and not never_ran, (ran_twice[:5], never_ran[:5])
    assert sum(by_worker.values()) == _TASKS
    assert set(by_worker) <= {w.id for w in workers}
    assert set(codes.values()) == {0}, codes
