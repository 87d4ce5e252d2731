"""How fast the `taskloom` command starts: `import taskloom`, `--help`, `ls` and `show ID`.

Each figure is the wall time of a fresh process (what a person waits for), as the median and
the 90th percentile of `--runs` runs. The commands take turns, one run of each per round, so
that a machine busy with something else slows them all alike. Every run's exit code and
output are checked: a command that fails fast must not pass for one that starts fast.

- `python -c pass` is the interpreter's own start, the floor under every other figure.
- `import taskloom` loads nothing but the package (its names load on first use);
  `+ Runtime` is what a command that opens a store loads, `+ Agent` is everything.
- `taskloom ...` runs as `python -m taskloom` and as the console script next to `python`.
- `ls` lists an empty SQLite store and one of 1,000 tasks (the 50 newest, the default
  `--limit`); `show ID` prints a task with a short timeline, from a store holding only it
  and from the 1,000-task store.

The issue's target: `taskloom --help` and `taskloom ls` answer in under 0.3 s.

    .venv/bin/python benchmarks/bench_cli.py [--runs 15] [--against OTHER/src] [--importtime]

`--against` times every command a second time with another source tree first on the path
(e.g. `git archive HEAD~3 src | tar -x -C /tmp/before`, then `--against /tmp/before/src`),
taking turns with this one, so that both see the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import taskloom

_TARGET_S = 0.3
_TASKS = 1_000


@dataclasses.dataclass(kw_only=True)
class Case:
    label: str
    argv: list[str]
    check: Callable[[str], bool] = lambda out: True
    """Whether the output is what the command should print."""
    target: bool = False
    """Whether the issue's 0.3 s target applies."""
    tree: str = ""
    """The source tree first on the path (`--against`); "" for this one."""
    seconds: list[float] = dataclasses.field(default_factory=list[float])

    def run(self, env: dict[str, str]) -> None:
        if self.tree:
            env = {**env, "PYTHONPATH": self.tree}
        start = time.perf_counter()
        done = subprocess.run(self.argv, capture_output=True, text=True, env=env, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0 or not self.check(done.stdout):
            raise SystemExit(
                f"{self.label} {self.tree} failed (exit code {done.returncode}): {' '.join(self.argv)}\n"
                f"stdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-2000:]}"
            )
        self.seconds.append(elapsed)

    def row(self) -> str:
        ms = sorted(s * 1000 for s in self.seconds)
        p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
        median = statistics.median(ms)
        verdict = ""
        if self.target:
            verdict = "ok" if median < _TARGET_S * 1000 else f"OVER {_TARGET_S} s"
        label = f"{self.label}{'  [against]' if self.tree else ''}"
        return f"{label:<54} {median:8.0f} {p90:8.0f} {ms[0]:8.0f}  {verdict}"


async def make_stores(folder: Path) -> tuple[str, str, str, str, str]:
    """An empty store, one holding a single task, one of 1,000 tasks; and a task id in each."""
    empty, single, full = (f"sqlite:///{folder / name}.db" for name in ("empty", "one", "full"))
    async with taskloom.open(empty, concurrency=0):
        pass
    async with taskloom.open(single, concurrency=0) as rt:
        single_id = await _one_task(rt, 3)
    async with taskloom.open(full, concurrency=0) as rt:
        ids = [await _one_task(rt, i) for i in range(_TASKS)]
    return empty, single, single_id, full, ids[_TASKS // 2 + 3]  # a completed one


async def _one_task(rt: taskloom.Runtime, i: int) -> str:
    """A task in one of the states a store holds: submitted, working, failed, completed (i % 4)."""
    owner = ("ada", "grace", "linus")[i % 3]
    if i % 4 == 0:
        return (await rt.create("report", owner=owner, payload={"n": i})).id
    async with rt.task("summarise", owner=owner, payload={"path": f"notes/{i}.txt"}) as task:
        await task.progress({"step": "read", "bytes": 1000 + i})
        await task.progress({"step": "summarise"})
        if i % 4 == 2:
            await task.fail(f"the model gave up on notes/{i}.txt")
        elif i % 4 == 3:
            await task.complete({"summary": "A short summary. " * 5, "words": 15})
        return task.id


def cases(empty: str, single: str, single_id: str, full: str, full_id: str) -> list[Case]:
    py = sys.executable
    script = Path(sys.executable).with_name("taskloom")
    commands: list[tuple[str, list[str]]] = [("python -m taskloom", [py, "-m", "taskloom"])]
    if script.exists():
        commands.append(("taskloom", [str(script)]))

    def table_with_rows(out: str) -> bool:
        return out.startswith("id") and len(out.splitlines()) > 10

    found: list[Case] = [
        Case(label="python -c pass", argv=[py, "-c", "pass"]),
        Case(label="import taskloom", argv=[py, "-c", "import taskloom"]),
        Case(
            label="import taskloom + Runtime", argv=[py, "-c", "import taskloom; taskloom.Runtime"]
        ),
        Case(label="import taskloom + Agent", argv=[py, "-c", "import taskloom; taskloom.Agent"]),
    ]
    for name, argv in commands:
        found += [
            Case(
                label=f"{name} --help",
                argv=[*argv, "--help"],
                check=lambda out: "Commands" in out,
                target=True,
            ),
            Case(
                label=f"{name} ls (empty store)",
                argv=[*argv, "ls", "--store", empty],
                check=lambda out: "no tasks" in out,
                target=True,
            ),
            Case(
                label=f"{name} ls ({_TASKS:,} tasks)",
                argv=[*argv, "ls", "--store", full],
                check=table_with_rows,
                target=True,
            ),
            Case(
                label=f"{name} show ID (1 task)",
                argv=[*argv, "show", single_id, "--store", single],
                check=lambda out: "completed" in out,
            ),
            Case(
                label=f"{name} show ID ({_TASKS:,} tasks)",
                argv=[*argv, "show", full_id, "--store", full],
                check=lambda out: "completed" in out,
            ),
        ]
    return found


def importtime(argv: list[str], env: dict[str, str], top: int = 15) -> str:
    """The modules that took longest to import (cumulative), from `python -X importtime`."""
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, env=env
    )
    rows: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.removeprefix("import time:").split("|")
            if cumulative.strip().isdigit():
                rows.append((int(cumulative), name.rstrip()))
    rows.sort(reverse=True)
    return "\n".join(f"  {us / 1000:7.1f} ms {name}" for us, name in rows[:top])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="How fast the taskloom command starts.")
    parser.add_argument("--runs", type=int, default=15, help="runs of each command")
    parser.add_argument(
        "--against", metavar="SRC", help="also time another source tree, taking turns"
    )
    parser.add_argument(
        "--importtime", action="store_true", help="also show what `taskloom ls` imports"
    )
    args = parser.parse_args(argv)
    against = str(Path(args.against).resolve()) if args.against else ""
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        folder = Path(tmp)
        stores = asyncio.run(make_stores(folder))
        env = {**os.environ, "XDG_DATA_HOME": str(folder / "data"), "COLUMNS": "120"}
        env.pop("TASKLOOM_STORE", None)
        todo = cases(*stores)
        if against:
            todo = [
                c
                for case in todo
                for c in (case, dataclasses.replace(case, tree=against, seconds=[]))
            ]
        for case in todo:  # a first run of each warms the disk cache and the .pyc files
            case.run(env)
            case.seconds.clear()
        for _ in range(args.runs):
            for case in todo:
                case.run(env)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s), load {load:.2f};"
            f" taskloom from {Path(taskloom.__file__).parent}"
        )
        print(f"wall time of a fresh process, ms, {args.runs} runs each (target: < {_TARGET_S} s)")
        if against:
            print(f"[against]: {against} first on the path")
        print(f"{'':<54} {'median':>8} {'p90':>8} {'best':>8}")
        for case in todo:
            print(case.row())
        if args.importtime:
            print(f"\nslowest imports of `taskloom ls` ({_TASKS:,} tasks), cumulative:")
            print(importtime([sys.executable, "-m", "taskloom", "ls", "--store", stores[3]], env))


if __name__ == "__main__":
    main()
