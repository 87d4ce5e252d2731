"""Microseconds per task for a bare lifecycle on memory:// and on SQLite.

One lifecycle is:

```python
async with rt.task("bench") as t:
    for i in range(3):
        await t.progress({"i": i})
    await t.complete({"ok": True})
```

that is six events in five writes (submitted + started together, three progress updates,
the completion): five commits per task on SQLite, each acknowledged only once committed. Each store runs it sequentially (one task
after another) and 1,000 at once (`asyncio.gather`). The raw `write + fsync` cost of the
disk under the temp directory is printed first: with `synchronous=FULL` every acknowledged
commit waits for one such sync, so a sequential SQLite lifecycle cannot be faster than
about five of them. Concurrent tasks share syncs through the store's group commit.

Each figure is the median of `--repeat` runs (the best run is printed too).

Run: `.venv/bin/python benchmarks/bench_lifecycle.py [--n N] [--concurrent C] [--repeat R]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import taskloom

_TARGETS = {
    # (store label, mode) -> target as printed; from the issue
    ("memory", "sequential"): ("us", 20.0),
    ("memory", "concurrent"): ("us", 20.0),
    ("sqlite FULL", "sequential"): ("us", 300.0),
    ("sqlite FULL", "concurrent"): ("s", 0.3),
}


_COMMITS_PER_LIFECYCLE = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    store: str
    mode: str
    tasks: int
    runs: list[float]
    """Seconds per run."""

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs)

    @property
    def us_per_task(self) -> float:
        return self.seconds / self.tasks * 1e6

    @property
    def best_us_per_task(self) -> float:
        return min(self.runs) / self.tasks * 1e6


async def lifecycle(rt: taskloom.Runtime) -> None:
    async with rt.task("bench") as t:
        await t.progress({"step": 1})
        await t.progress({"step": 2})
        await t.progress({"step": 3})
        await t.complete({"ok": True})


async def sequential(rt: taskloom.Runtime, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await lifecycle(rt)
    return time.perf_counter() - start


async def concurrent(rt: taskloom.Runtime, n: int) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(lifecycle(rt) for _ in range(n)))
    return time.perf_counter() - start


async def bench_store(label: str, url: str, args: argparse.Namespace) -> list[Row]:
    async with taskloom.open(url) as rt:
        await sequential(rt, args.warmup)
        await concurrent(rt, min(args.concurrent, 200))
        seq = [await sequential(rt, args.n) for _ in range(args.repeat)]
        con = [await concurrent(rt, args.concurrent) for _ in range(args.repeat)]
    return [
        Row(store=label, mode="sequential", tasks=args.n, runs=seq),
        Row(store=label, mode="concurrent", tasks=args.concurrent, runs=con),
    ]


def fsync_cost(directory: str, rounds: int) -> float:
    """Microseconds per `os.write` of 4 KiB followed by `os.fsync`, in `directory`."""
    path = Path(directory) / "fsync.probe"
    block = b"\0" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(10):
            os.write(fd, block)
            os.fsync(fd)
        start = time.perf_counter()
        for _ in range(rounds):
            os.write(fd, block)
            os.fsync(fd)
        return (time.perf_counter() - start) / rounds * 1e6
    finally:
        os.close(fd)
        path.unlink()


def target_text(row: Row) -> str:
    target = _TARGETS.get((row.store, row.mode))
    if target is None:
        return "-"
    unit, limit = target
    if unit == "s":
        verdict = "ok" if row.seconds <= limit else "MISSED"
        return f"<= {limit:g} s total  {verdict}"
    verdict = "ok" if row.us_per_task <= limit else "MISSED"
    return f"<= {limit:g} us/task  {verdict}"


def print_table(rows: list[Row], say: Callable[[str], None]) -> None:
    header = (
        f"{'store':<14} {'mode':<11} {'tasks':>6} {'total s':>9} {'us/task':>9}"
        f" {'best us/task':>13}   target (issue)"
    )
    say(header)
    say("-" * (len(header) + 14))
    for row in rows:
        say(
            f"{row.store:<14} {row.mode:<11} {row.tasks:>6} {row.seconds:>9.3f}"
            f" {row.us_per_task:>9.1f} {row.best_us_per_task:>13.1f}   {target_text(row)}"
        )


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Microseconds per task for a bare lifecycle.")
    parser.add_argument("--n", type=int, default=1000, help="sequential lifecycles per run")
    parser.add_argument("--concurrent", type=int, default=1000, help="lifecycles gathered at once")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median shown)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed lifecycles first")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as tmp:
        fsync_us = fsync_cost(tmp, 300)
        floor = _COMMITS_PER_LIFECYCLE * fsync_us
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s), temp dir {tmp}")
        print(f"disk floor: os.write(4 KiB) + os.fsync = {fsync_us:.1f} us per sync")
        print(
            f"  a lifecycle is {_COMMITS_PER_LIFECYCLE} commits: sequential on FULL >="
            f" ~{floor:.0f} us/task from syncing alone"
        )
        print(
            f"median of {args.repeat} runs; sequential n={args.n},"
            f" concurrent = asyncio.gather of {args.concurrent}"
        )
        print()
        stores = [
            ("memory", "memory://"),
            ("sqlite FULL", f"sqlite:///{tmp}/full.db"),
            ("sqlite NORMAL", f"sqlite:///{tmp}/normal.db?synchronous=normal"),
        ]
        rows: list[Row] = []
        for label, url in stores:
            rows += await bench_store(label, url, args)
        print_table(rows, print)


if __name__ == "__main__":
    asyncio.run(main())
