"""Child processes for the crash and cross-process tests.

Run as `python tests/_children.py ROLE URL [ARGS...]`. Each role prints one line per fact the
parent waits for, flushed at once, so the parent can act on it (kill, cancel, follow):

- `write-loop URL WORKERS PROGRESS`: `WORKERS` concurrent loops, each running tasks of
  `PROGRESS` progress calls forever; prints `ack TASK_ID SEQ` after every acknowledged write.
- `run-until-cancelled URL TASK_ID POLL_INTERVAL`: runs task `TASK_ID` with a progress call
  every 50 ms; prints `started`, then `cancelled REASON` when the block raises
  `TaskCancelledError` (exit 0), or `finished` if nobody cancelled it within 30 s (exit 3).
- `cancel URL TASK_ID REASON`: cancels the task; prints `state STATE`.
- `run-on-go URL TASK_ID PROGRESS`: enters task `TASK_ID`, prints `started`, waits for a
  line on stdin, then reports `PROGRESS` progress calls 20 ms apart and completes it;
  prints `done LAST_SEQ`.
"""

from __future__ import annotations

import asyncio
import sys

import taskloom


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def write_loop(url: str, workers: int, progress: int) -> None:
    async with taskloom.open(url, poll_interval=0.02) as rt:

        async def loop() -> None:
            while True:
                async with rt.task("crash") as task:
                    say(f"ack {task.id} {task.last_seq}")
                    for i in range(progress):
                        await task.progress({"i": i, "pad": "x" * 200})
                        say(f"ack {task.id} {task.last_seq}")
                    await task.complete({"n": progress})
                    say(f"ack {task.id} {task.last_seq}")

        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(loop())


async def run_until_cancelled(url: str, task_id: str, poll_interval: float) -> int:
    async with taskloom.open(url, poll_interval=poll_interval) as rt:
        try:
            async with rt.task("xproc", task_id=task_id) as task:
                say("started")
                for i in range(600):
                    await task.progress({"i": i})
                    await asyncio.sleep(0.05)
        except taskloom.TaskCancelledError as exc:
            say(f"cancelled {exc.reason}")
            return 0
        say("finished")
        return 3


async def cancel(url: str, task_id: str, reason: str) -> None:
    async with taskloom.open(url, poll_interval=0.02) as rt:
        task = await rt.cancel(task_id, reason=reason)
        say(f"state {task.state.value}")


async def run_on_go(url: str, task_id: str, progress: int) -> None:
    async with taskloom.open(url, poll_interval=0.02) as rt:
        async with rt.task("xproc", task_id=task_id) as task:
            say("started")
            await asyncio.to_thread(sys.stdin.readline)
            for i in range(progress):
                await task.progress({"i": i})
                await asyncio.sleep(0.02)
            await task.complete({"n": progress})
        say(f"done {task.last_seq}")


def main(argv: list[str]) -> int:
    role, url, *args = argv
    if role == "write-loop":
        asyncio.run(write_loop(url, int(args[0]), int(args[1])))
    elif role == "run-until-cancelled":
        return asyncio.run(run_until_cancelled(url, args[0], float(args[1])))
    elif role == "cancel":
        asyncio.run(cancel(url, args[0], args[1]))
    elif role == "run-on-go":
        asyncio.run(run_on_go(url, args[0], int(args[1])))
    else:
        raise SystemExit(f"unknown role {role!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
