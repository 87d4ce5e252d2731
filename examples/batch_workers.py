"""500 durable tasks, two worker processes, one killed with SIGKILL halfway: nothing is lost.

The script starts two workers (`python -m taskloom worker batch_app`, the app in
examples/batch_app.py) on one SQLite file, submits the batch from a client
(`taskloom.open(url, concurrency=0)` only stores tasks), and when half the tasks have
completed it kills the first worker with SIGKILL, mid-task. The tasks that worker held
stay `working` until their leases end (`--lease`, 2 s here instead of the default 30 s);
then the surviving worker takes them over, replays their journals and finishes them. At
the end the script reads the store and prints what happened: tasks completed, tasks taken
over, who performed what, and how long it took.

    .venv/bin/python examples/batch_workers.py                     # 500 tasks, scripted model
    .venv/bin/python examples/batch_workers.py --tasks 40          # a quick run
    .venv/bin/python examples/batch_workers.py --model real        # 20 tasks on a real model
    .venv/bin/python examples/batch_workers.py --store postgresql://postgres@127.0.0.1/test

By default the agent's model is a `FunctionModel` (Python rules with 50-150 ms of made-up
latency per call; see batch_app.py), because this example is about the runtime: 500 tasks
take a few seconds on two cores. `--model real` uses `taskloom.models.default_model()`
(SmolLM2-135M offline, or the endpoint `OPENAI_BASE_URL`/`OPENAI_API_KEY` name), 20 tasks
unless `--tasks` says otherwise, two at a time per worker: SmolLM2 takes about 1 s a call
on two cores and each task makes two calls, so the 20 take about 35 s. The store, the workers' logs and the tasks are kept in a fresh
folder (printed), for `taskloom ls --store ...` afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import taskloom

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # batch_app, also when this file is imported from elsewhere


async def start_worker(
    args: argparse.Namespace, url: str, log: Path
) -> tuple[asyncio.subprocess.Process, str]:
    """Start `python -m taskloom worker batch_app`; return the process and its worker id."""
    command = [sys.executable, "-m", "taskloom", "worker", "batch_app", "--store", url]
    command += ["--lease", str(args.lease), "--concurrency", str(args.concurrency)]
    with log.open("w") as stderr:  # the child keeps its own copy of the file
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=HERE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "BATCH_MODEL": args.model},
        )
    assert process.stdout is not None
    line = (await process.stdout.readline()).decode()  # "worker ID ready"
    if not line.startswith("worker "):
        raise SystemExit(f"the worker did not start; see {log}")
    return process, line.split()[1]


async def batch(rt: taskloom.Runtime, since: datetime) -> list[taskloom.Task]:
    """Every `triage` task submitted since `since`, read from the store page by page."""
    tasks: list[taskloom.Task] = []
    cursor = None
    while True:
        page = await rt.list(name="triage", since=since, limit=1000, cursor=cursor)
        tasks += page.tasks
        cursor = page.next_cursor
        if cursor is None:
            return tasks


async def run(args: argparse.Namespace, url: str, folder: Path) -> int:
    """Start the workers, submit the batch, kill a worker halfway, wait for the end."""
    os.environ["BATCH_MODEL"] = args.model  # before batch_app is imported: the workers' agent
    import batch_app

    count = args.tasks
    since = datetime.now(UTC)
    workers: list[tuple[asyncio.subprocess.Process, str]] = []
    try:
        for i in (1, 2):
            workers.append(await start_worker(args, url, folder / f"worker-{i}.log"))
        victim, victim_id = workers[0]
        async with taskloom.open(url, concurrency=0) as rt:
            print(f"workers {workers[0][1]} and {workers[1][1]} ready on {url}")
            started = time.monotonic()
            await asyncio.gather(
                *(batch_app.triage.submit(**batch_app.ticket(n), runtime=rt) for n in range(count))
            )
            print(f"submitted {count} tasks in {time.monotonic() - started:.2f}s")
            killed, shown = False, -1.0
            while True:
                tasks = await batch(rt, since)
                states = Counter(t.state.value for t in tasks)
                elapsed = time.monotonic() - started
                held = [t for t in tasks if t.state.value == "working" and t.worker == victim_id]
                kill = not killed and states["completed"] >= count // 2 and bool(held)
                done = sum(t.state.terminal for t in tasks) == count
                if elapsed - shown >= 1.0 or kill or done:
                    shown = elapsed
                    print(f"{elapsed:6.2f}s  " + ", ".join(f"{s} {n}" for s, n in states.items()))
                if kill:
                    victim.send_signal(signal.SIGKILL)
                    killed = True
                    print(f"{elapsed:6.2f}s  SIGKILL {victim_id} with {len(held)} tasks in flight")
                if done:
                    break
                await asyncio.sleep(0.02)
            took = time.monotonic() - started
            if not killed:
                print(f"{victim_id} held no task when half were done, so it was not killed")
            return summarise(await batch(rt, since), count, took, victim_id if killed else "")
    finally:
        for process, _ in workers:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            await process.wait()


def summarise(tasks: list[taskloom.Task], count: int, took: float, victim: str) -> int:
    """Print what the store says happened; return the exit code (0: all completed)."""
    states = Counter(t.state.value for t in tasks)
    taken_over = [t for t in tasks if t.recoveries > 0]
    by_worker = Counter(t.worker for t in tasks if t.state.value == "completed")
    print(f"\n{count} tasks in {took:.1f}s ({count / took:.1f} tasks/s)")
    print("  " + " · ".join(f"{state} {n}" for state, n in sorted(states.items())))
    print(f"  taken over after their worker was killed: {len(taken_over)}")
    for worker, n in sorted(by_worker.items(), key=lambda item: str(item[0])):
        print(f"  completed by {worker}{' (killed)' if worker == victim else ''}: {n}")
    model_calls = sum(t.usage.requests for t in tasks)
    print(f"  model calls: {model_calls} · tool calls: {sum(t.usage.tool_calls for t in tasks)}")
    return 0 if states["completed"] == count else 1


def main() -> None:
    """Read the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=None, help="default 500 (real model: 20)")
    parser.add_argument("--model", choices=("scripted", "real"), default="scripted")
    parser.add_argument("--store", default=None, help="default: a new SQLite file")
    parser.add_argument("--lease", type=float, default=2.0, help="the workers' lease seconds")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="tasks per worker (default 16; real: 2)"
    )
    args = parser.parse_args()
    scripted = args.model == "scripted"
    args.tasks = args.tasks or (500 if scripted else 20)
    # SmolLM2 answers one call at a time per process: more tasks at once only interleave them
    args.concurrency = args.concurrency or (16 if scripted else 2)
    folder = Path(tempfile.mkdtemp(prefix="taskloom-batch-"))
    url = args.store or f"sqlite:///{folder / 'tasks.db'}"
    print(f"store and worker logs in {folder}")
    sys.exit(asyncio.run(run(args, url, folder)))


if __name__ == "__main__":
    main()
