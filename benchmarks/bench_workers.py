"""Benchmark the durable workers: W1 throughput with 1, 2 and 4 processes, and failover time.

W1 is `bench_agent.py`'s task, performed durably by `taskloom worker` processes
(`tests.durable.app:weather`): turn 1 calls `lookup`, turn 2 answers a typed `Weather`; the
`FunctionModel` answers at once. The tasks are submitted from this process (a client
runtime, `concurrency=0`) once the workers are claiming; tasks per second are counted from
the instant they all become due (they are submitted with one `at=` a little ahead, so the
queue is full and every worker is claiming) to the last `completed` event, and from the
first `started` event to the last `completed` one, by the store's clock.

Failover: two workers, lease L; a task whose first tool runs for a while at epoch 1; once it
runs, the worker holding it gets SIGKILL. Measured from the kill to the `recovered` event
(another worker took it over) and to the `completed` one. A lease ends between 2/3 L and L
after the kill (heartbeats come every L/3), plus the time for a worker to look.

    .venv/bin/python benchmarks/bench_workers.py [--quick] [--tasks 500] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # to import tests.durable

from tests.durable import app
from tests.durable._harness import (
    Workers,
    events_of,
    submit_many,
    wait_for_event,
    wait_for_ledger,
    wait_terminal,
)

import taskloom
from taskloom import TaskCompleted, TaskRecovered, TaskStarted

_PG = os.environ.get("TASKLOOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def throughput(url: str, tmp: Path, workers: int, tasks: int) -> tuple[float, float]:
    """W1 tasks per second, with every task due at one instant and every worker claiming.

    Returns:
        Tasks per second from the instant they were due to the last completion, and from
        the first `started` event to the last `completed` one (both by the store's clock).
    """
    async with (
        taskloom.open(url, concurrency=0, poll_interval=0.02) as rt,
        Workers(url, tmp, concurrency=16, lease=5.0, sleep="0,0", ledger=False) as pool,
    ):
        for _ in range(workers):
            await pool.start(wait=False)
        for worker in pool.started:
            await pool.wait_ready(worker)
        due = datetime.now(UTC) + timedelta(seconds=2 + tasks / 150)
        ids = await submit_many(
            lambda i: app.weather.submit(f"city-{i}", runtime=rt, at=due), tasks
        )
        if datetime.now(UTC) > due:
            print(f"  (submitting took longer than planned: {datetime.now(UTC) - due} late)")
        await wait_terminal(rt, ids, within=900, workers=pool, every=0.02)
        first, last = float("inf"), 0.0
        for task_id in ids:
            events = await events_of(rt, task_id)
            end = events[-1]
            if not isinstance(end, TaskCompleted):
                raise SystemExit(f"task {task_id} ended {end.kind}")
            start = next(e for e in events if isinstance(e, TaskStarted))
            first, last = min(first, start.at.timestamp()), max(last, end.at.timestamp())
        await pool.close()
    return tasks / (last - due.timestamp()), tasks / (last - first)


async def failover(url: str, tmp: Path, lease: float, repeat: int) -> list[tuple[float, float]]:
    """(kill to `recovered`, kill to `completed`) in seconds, `repeat` times."""
    found: list[tuple[float, float]] = []
    async with (
        taskloom.open(url, concurrency=0, poll_interval=0.01) as rt,
        Workers(url, tmp, concurrency=4, lease=lease, sleep="0,0") as pool,
    ):
        await pool.start()
        await pool.start()
        for n in range(repeat):
            task = await app.order.submit(
                n, pause_step="t1.0", pause_s=60, pause_epoch=1, runtime=rt
            )
            line = await wait_for_ledger(
                pool.ledger, lambda x, t=task.id: x.task == t and x.step == "t1.0", what="lookup"
            )
            holder = pool.by_pid(line.pid)
            killed = time.time()
            await pool.kill(holder)
            taken = await wait_for_event(rt, task.id, TaskRecovered, within=lease * 3 + 30)
            await wait_terminal(rt, [task.id], within=lease * 3 + 30, every=0.01)
            end = (await events_of(rt, task.id))[-1]
            if not isinstance(end, TaskCompleted):
                raise SystemExit(f"task {task.id} ended {end.kind}")
            found.append((taken.at.timestamp() - killed, end.at.timestamp() - killed))
            await pool.start()  # two workers again
        await pool.close()
    return found


async def postgres_schema() -> str | None:
    """A fresh schema's URL, or `None` when PostgreSQL does not answer."""
    try:
        import asyncpg

        conn = await asyncpg.connect(_PG, timeout=5)
    except (ImportError, OSError, TimeoutError) as exc:
        print(f"PostgreSQL skipped: {exc}")
        return None
    await conn.close()
    sep = "&" if "?" in _PG else "?"
    return f"{_PG}{sep}schema=bench_{uuid.uuid4().hex[:10]}"


async def drop_schema(url: str) -> None:
    import asyncpg

    schema = url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(_PG)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def store_url(kind: str, tmp: Path, label: str) -> str | None:
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'{label}.db'}"
    return await postgres_schema()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="100 tasks, one failover each")
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    tasks = 100 if args.quick else args.tasks
    repeat = 1 if args.quick else 3
    kinds = ["sqlite"] if args.no_postgres else ["sqlite", "postgres"]
    print(f"{os.cpu_count()} cores; W1 durable, {tasks} tasks, workers of concurrency 16")
    print(
        f"{'store':<9} {'workers':>7} {'tasks/s (due->done)':>20} {'tasks/s (first start->done)':>28}"
    )
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for kind in kinds:
            for workers in (1, 2, 4):
                label = f"{kind}-w{workers}"
                url = await store_url(kind, tmp, label)
                if url is None:
                    break
                run = tmp / label
                run.mkdir()
                try:
                    from_due, from_start = await throughput(url, run, workers, tasks)
                finally:
                    if kind == "postgres":
                        await drop_schema(url)
                print(f"{kind:<9} {workers:>7} {from_due:>20.0f} {from_start:>28.0f}")
        print(f"\nfailover: kill -9 the worker holding a task; {repeat} run(s) each")
        print(
            f"{'store':<9} {'lease s':>7} {'to recovered s (min/med/max)':>30} {'to completed s (med)':>21}"
        )
        for kind in kinds:
            for lease in (1.0, 5.0):
                label = f"{kind}-failover-{lease:g}"
                url = await store_url(kind, tmp, label)
                if url is None:
                    break
                run = tmp / label
                run.mkdir()
                try:
                    found = await failover(url, run, lease, repeat)
                finally:
                    if kind == "postgres":
                        await drop_schema(url)
                taken = sorted(t for t, _ in found)
                done = statistics.median(d for _, d in found)
                spread = f"{taken[0]:.2f} / {statistics.median(taken):.2f} / {taken[-1]:.2f}"
                print(f"{kind:<9} {lease:>7g} {spread:>30} {done:>21.2f}")


if __name__ == "__main__":
    asyncio.run(main())
