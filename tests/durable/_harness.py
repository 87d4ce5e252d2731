"""Worker processes for the durable tests and benchmarks: start, kill, stop; submit and wait.

A `Workers` pool starts `python -m taskloom worker tests.durable.app --store URL ...` from
the project's root, each with its stdout and stderr in files (nothing can fill a pipe and
stall a worker), and reads `worker ID ready` from the stdout file. Leaving the pool
terminates every process it started (SIGTERM, then SIGKILL), so a failing test leaves no
worker behind. Every wait has a time limit and fails with what the workers wrote to
stderr, so a broken build fails instead of hanging.

Nothing here imports pytest: the benchmarks use it too. The audit is in `_audit.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import taskloom
from taskloom import Event
from taskloom.states import TERMINAL_STATES, TaskState

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.durable.app"
_READY = re.compile(r"^worker (\S+) ready$", re.MULTILINE)
_T = TypeVar("_T")
_E = TypeVar("_E", bound=Event)


class HarnessError(AssertionError):
    """A wait ran out of time, or a worker died where it should not have."""


# -- worker processes ------------------------------------------------------------------------


@dataclass(eq=False)
class Worker:
    """One worker process."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    variant: str
    id: str = ""
    """The worker's id, `{hostname}:{pid}:{hex}`, once it said it is ready."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def ready(self) -> bool:
        """Whether it has said `ready` (reads its stdout file)."""
        if not self.id:
            found = _READY.search(self.out.read_text(errors="replace"))
            if found:
                self.id = found.group(1)
        return bool(self.id)

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stderr_tail(self, lines: int = 30) -> str:
        text = self.err.read_text(errors="replace") if self.err.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> str:
        code = self.proc.poll()
        state = "running" if code is None else f"exited {code}"
        return f"worker pid {self.pid} ({self.id or 'not ready'}, {state}); stderr:\n{self.stderr_tail()}"


class Workers:
    """Worker processes on one store, sharing one ledger file.

    Args:
        url: The store's URL.
        tmp: A directory for the ledger and the workers' output files.
        concurrency: Tasks each worker runs at once.
        lease: Lease seconds.
        grace: Seconds a worker lets running tasks finish after SIGTERM.
        sleep: `TASKLOOM_APP_SLEEP` (`LOW,HIGH` seconds per step).
        ledger: Whether the app writes the ledger.
    """

    def __init__(
        self,
        url: str,
        tmp: Path,
        *,
        concurrency: int = 4,
        lease: float = 1.0,
        grace: float = 2.0,
        sleep: str = "0.005,0.06",
        ledger: bool = True,
    ) -> None:
        self.url = url
        self.tmp = tmp
        self.concurrency = concurrency
        self.lease = lease
        self.grace = grace
        self.sleep = sleep
        self.ledger = tmp / "ledger.jsonl"
        self._write_ledger = ledger
        self.started: list[Worker] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _env(self, variant: str) -> dict[str, str]:
        env = dict(os.environ)
        env["TASKLOOM_LEDGER"] = str(self.ledger) if self._write_ledger else ""
        env["TASKLOOM_APP_VARIANT"] = variant
        env["TASKLOOM_APP_SLEEP"] = self.sleep
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def start(
        self,
        *,
        variant: str = "v1",
        concurrency: int | None = None,
        lease: float | None = None,
        grace: float | None = None,
        wait: bool = True,
    ) -> Worker:
        """Start a worker; with `wait`, return once it says it is claiming."""
        n = len(self.started)
        out, err = self.tmp / f"worker{n}.out", self.tmp / f"worker{n}.err"
        args = [
            sys.executable,
            "-m",
            "taskloom",
            "worker",
            APP,
            "--store",
            self.url,
            "--concurrency",
            str(concurrency or self.concurrency),
            "--lease",
            str(lease or self.lease),
            "--grace",
            str(self.grace if grace is None else grace),
        ]
        proc = _spawn(args, self._env(variant), out, err)
        worker = Worker(proc=proc, out=out, err=err, variant=variant)
        self.started.append(worker)
        if wait:
            await self.wait_ready(worker)
        return worker

    async def wait_ready(self, worker: Worker, within: float = 60) -> str:
        """Wait until `worker` printed `worker ID ready`; return its id."""
        deadline = time.monotonic() + within
        while not worker.ready:
            if not worker.alive:
                raise HarnessError(f"a worker exited before it was ready: {worker.describe()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"a worker was not ready within {within} s: {worker.describe()}")
            await asyncio.sleep(0.02)
        return worker.id

    @property
    def alive(self) -> list[Worker]:
        return [w for w in self.started if w.alive]

    def by_pid(self, pid: int) -> Worker:
        for worker in self.started:
            if worker.pid == pid:
                return worker
        raise HarnessError(f"no worker of this pool has pid {pid}")

    async def kill(self, worker: Worker) -> None:
        """SIGKILL, and reap it."""
        worker.signal(signal.SIGKILL)
        await self.wait_exit(worker, within=30)

    async def terminate(self, worker: Worker, within: float = 60) -> int:
        """SIGTERM (drain), wait for it to exit and return its exit code."""
        worker.signal(signal.SIGTERM)
        return await self.wait_exit(worker, within=within)

    async def wait_exit(self, worker: Worker, within: float) -> int:
        deadline = time.monotonic() + within
        while (code := worker.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise HarnessError(f"a worker did not exit within {within} s: {worker.describe()}")
            await asyncio.sleep(0.02)
        return code

    async def close(self) -> dict[int, int]:
        """Stop every worker still running (SIGTERM, then SIGKILL); return exit codes by pid."""
        for worker in self.alive:
            worker.signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace + 20
        while self.alive:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        for worker in self.alive:
            worker.signal(signal.SIGKILL)
        for worker in self.started:
            worker.proc.wait()
        return {w.pid: w.proc.returncode for w in self.started}

    def report(self) -> str:
        return "\n\n".join(w.describe() for w in self.started)


def _spawn(args: list[str], env: dict[str, str], out: Path, err: Path) -> subprocess.Popen[bytes]:
    """Start a process from the project's root with its output in two files (fork and exec
    only: it does not wait for the process)."""
    with out.open("wb") as stdout, err.open("wb") as stderr:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)


def say(text: str) -> None:
    """Print a figure for the closing note (run pytest with `-s` to see it)."""
    print(text, flush=True)  # noqa: T201 -- the figures are the point


def owner_pid(lease_owner: str) -> int:
    """The pid in a worker id `{hostname}:{pid}:{hex}`."""
    return int(lease_owner.rsplit(":", 2)[1])


# -- the ledger ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One line of the side-effect ledger (see `tests/durable/app.py`)."""

    task: str
    step: str
    what: str
    phase: str
    epoch: int
    pid: int
    key: str
    t: float


def read_ledger(path: Path) -> list[Line]:
    """Every whole line of the ledger (one cut by a kill, if any, is left out)."""
    if not path.exists():
        return []
    lines: list[Line] = []
    for raw in path.read_bytes().splitlines(keepends=True):
        if raw.endswith(b"\n"):
            lines.append(Line(**json.loads(raw)))
    return lines


# -- tasks -----------------------------------------------------------------------------------


async def submit_many(
    submit: Callable[[int], Awaitable[taskloom.Task]], count: int, *, batch: int = 50
) -> list[str]:
    """Submit `count` tasks (`submit(i)` for each i), `batch` at a time; return their ids."""
    ids: list[str] = []
    for start in range(0, count, batch):
        made = await asyncio.gather(*(submit(i) for i in range(start, min(count, start + batch))))
        ids.extend(t.id for t in made)
    return ids


async def states(rt: taskloom.Runtime, ids: Collection[str]) -> dict[str, TaskState]:
    """The state of each existing task among `ids`."""
    found: dict[str, TaskState] = {}
    chunk = list(ids)
    for start in range(0, len(chunk), 500):
        heads = await rt.store.heads(chunk[start : start + 500])
        found.update({task_id: state for task_id, (state, _) in heads.items()})
    return found


# -- waiting -------------------------------------------------------------------------------


async def _poll(
    probe: Callable[[], Awaitable[_T | None]],
    explain: Callable[[], Awaitable[str]],
    *,
    within: float,
    every: float = 0.02,
) -> _T:
    """What `probe` finds, once it finds something; past `within` s, fail with `explain`."""
    deadline = time.monotonic() + within
    while (found := await probe()) is None:
        if time.monotonic() > deadline:
            raise HarnessError(await explain())
        await asyncio.sleep(every)
    return found


def _report(workers: Workers | None) -> str:
    return "" if workers is None else "\n" + workers.report()


async def wait_for_ledger(
    path: Path, match: Callable[[Line], bool], *, within: float = 30, what: str = "a ledger line"
) -> Line:
    """The first ledger line that `match`es, once there is one."""

    async def probe() -> Line | None:
        return next((line for line in read_ledger(path) if match(line)), None)

    async def explain() -> str:
        return f"no {what} within {within} s"

    return await _poll(probe, explain, within=within)


async def wait_terminal(
    rt: taskloom.Runtime,
    ids: Collection[str],
    *,
    within: float,
    workers: Workers | None = None,
    every: float = 0.1,
) -> dict[str, TaskState]:
    """Wait until every task in `ids` has ended; return their states."""

    async def probe() -> dict[str, TaskState] | None:
        found = await states(rt, ids)
        ended = len(found) == len(ids) and all(s in TERMINAL_STATES for s in found.values())
        return found if ended else None

    async def explain() -> str:
        found = await states(rt, ids)
        left = Counter(s.value for s in found.values() if s not in TERMINAL_STATES)
        stuck = [t for t, s in found.items() if s not in TERMINAL_STATES][:3]
        detail = "\n".join([f"{t}: {await describe_task(rt, t)}" for t in stuck])
        return (
            f"not every task ended within {within} s: {dict(left)} still active,"
            f" {len(ids) - len(found)} missing; e.g.\n{detail}{_report(workers)}"
        )

    return await _poll(probe, explain, within=within, every=every)


async def wait_state(
    rt: taskloom.Runtime,
    task_id: str,
    state: TaskState,
    *,
    within: float = 30,
    workers: Workers | None = None,
) -> None:
    """Wait until the task is in `state`."""

    async def probe() -> bool | None:
        return True if (await states(rt, [task_id])).get(task_id) is state else None

    async def explain() -> str:
        return f"not {state.value} within {within} s: {await describe_task(rt, task_id)}{_report(workers)}"

    await _poll(probe, explain, within=within)


async def wait_for_event(
    rt: taskloom.Runtime,
    task_id: str,
    kind: type[_E],
    *,
    step: str | None = None,
    within: float = 30,
    workers: Workers | None = None,
) -> _E:
    """The first event of type `kind` (of journal step `step`) in the task's log, once there is one."""

    async def probe() -> _E | None:
        for event in await events_of(rt, task_id):
            if isinstance(event, kind) and (step is None or getattr(event, "step", None) == step):
                return event
        return None

    async def explain() -> str:
        of = f" of step {step}" if step else ""
        return (
            f"no {kind.__name__} event{of} within {within} s:"
            f" {await describe_task(rt, task_id)}{_report(workers)}"
        )

    return await _poll(probe, explain, within=within)


async def events_of(rt: taskloom.Runtime, task_id: str) -> list[Event]:
    return await rt.store.read_events(task_id, after=0, limit=10000)


async def describe_task(rt: taskloom.Runtime, task_id: str) -> str:
    rec = await rt.store.get(task_id)
    if rec is None:
        return "missing"
    kinds = [e.kind for e in await events_of(rt, task_id)]
    return (
        f"{rec.state.value} reason={rec.reason} epoch={rec.epoch} owner={rec.lease_owner}"
        f" lease_ms={rec.lease_ms} recoveries={rec.recoveries} events={kinds}"
    )
