"""kill -9 worker processes at random moments while they perform hundreds of durable tasks.

Three workers (`taskloom worker tests.durable.app`) share one store. The tasks are
`order`s: turn 1 calls `lookup` (pure) and `charge` (idempotent), turn 2 `send`
(at_most_once), turn 3 answers; each step sleeps 5-60 ms so that kills land mid-step, and
writes a side-effect ledger line when it starts and when it ends. A killer sends SIGKILL
to a random worker every 0.2-0.8 s and starts a replacement, until most tasks have ended;
then the workers quiesce. The claims, checked against the journal (the events) and the
ledger (what really ran):

- 0 tasks lost: every submitted task exists;
- every task terminal: `completed`, or `failed` with `outcome_unknown` (a `send` in flight
  at a kill: policy "fail") or `recovery_exhausted` (killed too often);
- 0 journaled steps executed again: no ledger `start` of a step at an epoch later than
  the claim that journaled it (model calls included: none is paid twice);
- 0 duplicate `at_most_once` effects: at most one `send` start per task, exactly one for
  each completed task.

The seed is printed; `TASKLOOM_CRASH_SEED=N` replays the killer's choices.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

import taskloom
from tests.conftest import require_postgres
from tests.durable import app
from tests.durable._audit import audit, check
from tests.durable._harness import Workers, say, states, submit_many, wait_terminal

pytestmark = pytest.mark.slow

_ALLOWED = {"completed", "failed/outcome_unknown", "failed/recovery_exhausted"}


async def _killer(
    pool: Workers,
    rt: taskloom.Runtime,
    ids: list[str],
    rng: random.Random,
    *,
    until: float,
    seconds: float,
) -> tuple[int, int]:
    """Kill a random worker every 0.2-0.8 s and start another, until `until` of the tasks ended.

    Returns:
        How many workers were killed, and how many of them had said they were claiming.
    """
    kills = kills_ready = 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        await asyncio.sleep(rng.uniform(0.2, 0.8))
        found = await states(rt, ids)
        ended = sum(s.terminal for s in found.values())
        if ended >= until * len(ids):
            break
        victim = rng.choice(pool.alive)
        kills_ready += victim.ready
        await pool.kill(victim)
        kills += 1
        await pool.start(wait=False)
    return kills, kills_ready


async def _crash_run(url: str, tmp: Path, *, tasks: int, label: str) -> None:
    seed = int(os.environ.get("TASKLOOM_CRASH_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    started = time.monotonic()
    async with (
        taskloom.open(url, concurrency=0, poll_interval=0.05) as rt,
        Workers(url, tmp, concurrency=4, lease=1.0, grace=1.0) as pool,
    ):
        ids = await submit_many(lambda i: app.order.submit(i, runtime=rt), tasks)
        for _ in range(3):
            await pool.start(wait=False)
        kills, kills_ready = await _killer(pool, rt, ids, rng, until=0.9, seconds=60)
        killing = time.monotonic() - started
        await wait_terminal(rt, ids, within=90, workers=pool)
        elapsed = time.monotonic() - started
        codes = await pool.close()
        found = await audit(rt, ids, pool.ledger)
        wrong: list[str] = []
        for task_id in ids:
            task = await rt.get(task_id)
            if task.state is taskloom.TaskState.COMPLETED:
                n = int(task.payload["inputs"]["n"])
                if task.output != app.expected_receipt(task_id, n):
                    wrong.append(task_id)
    say(
        f"\n[crash {label}] seed {seed}: {tasks} tasks, 3 workers x 4, lease 1 s;"
        f" {kills} kills ({kills_ready} of claiming workers) in {killing:.1f} s, all ended"
        f" after {elapsed:.1f} s; {len(pool.started)} worker processes in all\n"
        f"[crash {label}] {found.summary()}"
    )
    assert found.tasks == tasks
    check(found, allowed=_ALLOWED)
    assert not wrong, f"completed with a wrong result: {wrong[:5]}"
    assert found.outcomes["completed"] > 0
    assert kills > 0
    # the survivors drained and exited cleanly; the killed ones died of SIGKILL
    assert set(codes.values()) <= {0, -9}, codes


async def test_kill_9_workers_during_300_tasks_on_sqlite(tmp_path: Path) -> None:
    await _crash_run(f"sqlite:///{tmp_path / 'tasks.db'}", tmp_path, tasks=300, label="sqlite")


@pytest.mark.postgres
async def test_kill_9_workers_during_300_tasks_on_postgres(
    postgres_url: str, tmp_path: Path
) -> None:
    require_postgres()
    await _crash_run(postgres_url, tmp_path, tasks=300, label="postgres")


@pytest.mark.timeout(300)
async def test_kill_9_workers_during_1000_tasks_on_sqlite(tmp_path: Path) -> None:
    await _crash_run(
        f"sqlite:///{tmp_path / 'tasks.db'}", tmp_path, tasks=1000, label="sqlite-1000"
    )
