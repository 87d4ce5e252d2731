"""Worker processes for the durable tests and benchmarks: start, kill, stop; submit, wait, audit.

A `Workers` pool starts `python -m taskloom worker tests.durable.app --store URL ...` from
the project's root, each with its stdout and stderr in files (nothing can fill a pipe and
stall a worker), and reads `worker ID ready` from the stdout file. Leaving the pool
terminates every process it started (SIGTERM, then SIGKILL), so a failing test leaves no
worker behind. Every wait has a time limit and fails with what the workers wrote to
stderr, so a broken build fails instead of hanging.

Nothing here imports pytest: the benchmarks use it too.
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
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import taskloom
from taskloom import Event, ModelCalled, TaskRecovered, ToolCalled, ToolStarted
from taskloom.states import TERMINAL_STATES, TaskState

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.durable.app"
_READY = re.compile(r"^worker (\S+) ready$", re.MULTILINE)
_T = TypeVar("_T")


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

    def by_id(self, worker_id: str) -> Worker:
        for worker in self.started:
            if worker.ready and worker.id == worker_id:
                return worker
        raise HarnessError(f"no worker of this pool has id {worker_id!r}")

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


async def wait_for_ledger(
    path: Path, match: Callable[[Line], bool], *, within: float = 30, what: str = "a ledger line"
) -> Line:
    """The first ledger line that `match`es, once there is one."""
    deadline = time.monotonic() + within
    while True:
        for line in read_ledger(path):
            if match(line):
                return line
        if time.monotonic() > deadline:
            raise HarnessError(f"no {what} within {within} s")
        await asyncio.sleep(0.02)


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


async def wait_terminal(
    rt: taskloom.Runtime,
    ids: Collection[str],
    *,
    within: float,
    workers: Workers | None = None,
    every: float = 0.1,
) -> dict[str, TaskState]:
    """Wait until every task in `ids` has ended; return their states."""
    deadline = time.monotonic() + within
    while True:
        found = await states(rt, ids)
        if len(found) == len(ids) and all(s in TERMINAL_STATES for s in found.values()):
            return found
        if time.monotonic() > deadline:
            left = Counter(s.value for s in found.values() if s not in TERMINAL_STATES)
            missing = len(ids) - len(found)
            stuck = [t for t, s in found.items() if s not in TERMINAL_STATES][:3]
            detail = [f"{t}: {await describe_task(rt, t)}" for t in stuck]
            raise HarnessError(
                f"not every task ended within {within} s: {dict(left)} still active, {missing}"
                f" missing; e.g.\n"
                + "\n".join(detail)
                + ("\n" + workers.report() if workers else "")
            )
        await asyncio.sleep(every)


async def wait_state(
    rt: taskloom.Runtime,
    task_id: str,
    state: TaskState,
    *,
    within: float = 30,
    workers: Workers | None = None,
) -> None:
    """Wait until the task is in `state`."""
    deadline = time.monotonic() + within
    while (await states(rt, [task_id])).get(task_id) is not state:
        if time.monotonic() > deadline:
            raise HarnessError(
                f"not {state.value} within {within} s: {await describe_task(rt, task_id)}"
                + ("\n" + workers.report() if workers else "")
            )
        await asyncio.sleep(0.02)


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


async def wait_for_event(
    rt: taskloom.Runtime,
    task_id: str,
    kind: type[_T],
    *,
    within: float = 30,
    workers: Workers | None = None,
) -> _T:
    """The first event of type `kind` in the task's log, once there is one."""
    deadline = time.monotonic() + within
    while True:
        for event in await events_of(rt, task_id):
            if isinstance(event, kind):
                return event
        if time.monotonic() > deadline:
            raise HarnessError(
                f"no {kind.__name__} event within {within} s: {await describe_task(rt, task_id)}"
                + ("\n" + workers.report() if workers else "")
            )
        await asyncio.sleep(0.02)


async def wait_journaled(
    rt: taskloom.Runtime,
    task_id: str,
    step: str,
    *,
    within: float = 30,
    workers: Workers | None = None,
) -> ModelCalled | ToolCalled:
    """The journal event (`model_called` or `tool_called`) of `step`, once it is written."""
    deadline = time.monotonic() + within
    while True:
        for event in await events_of(rt, task_id):
            if isinstance(event, ModelCalled | ToolCalled) and event.step == step:
                return event
        if time.monotonic() > deadline:
            raise HarnessError(
                f"step {step} not journaled within {within} s: {await describe_task(rt, task_id)}"
                + ("\n" + workers.report() if workers else "")
            )
        await asyncio.sleep(0.02)


# -- the audit -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Audit:
    """What the journal and the ledger say about a set of tasks (see `audit`)."""

    tasks: int = 0
    outcomes: Counter[str] = field(default_factory=Counter[str])
    """`completed`, `failed/outcome_unknown`, ... per task."""
    recoveries: int = 0
    """`recovered` events after a lost lease."""
    releases: int = 0
    """`recovered` events after a clean release."""
    journaled: Counter[str] = field(default_factory=Counter[str])
    """Journaled steps, by kind (`model`, `tool`)."""
    executions: Counter[str] = field(default_factory=Counter[str])
    """Ledger `start` lines, by kind (`model`, `tool`)."""
    rerun_in_flight: int = 0
    """Executions of a step at an epoch before the one that journaled it: in flight at a crash
    (or by a worker whose lease ended), then run again: allowed for model calls and for pure
    and idempotent tools."""
    reexecuted: list[tuple[str, str, int, int]] = field(
        default_factory=list[tuple[str, str, int, int]]
    )
    """`(task, step, journaled at epoch, executed at epoch)`: a journaled step run again."""
    twice_in_one_epoch: list[tuple[str, str, int]] = field(
        default_factory=list[tuple[str, str, int]]
    )
    """`(task, step, epoch)`: one claim ran a step twice."""
    journaled_twice: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    """`(task, step)`: a step whose result was written to the journal twice."""
    duplicate_sends: list[str] = field(default_factory=list[str])
    """Tasks whose `at_most_once` tool started more than once."""
    completed_without_one_send: list[str] = field(default_factory=list[str])
    """Completed order tasks whose `send` did not start exactly once."""
    bad_epochs: list[tuple[str, int, int]] = field(default_factory=list[tuple[str, int, int]])
    """`(task, recovered.epoch, expected)`: a claim's epoch that is not one more than before."""

    def summary(self) -> str:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return (
            f"tasks {self.tasks}: {outcomes}; recoveries {self.recoveries}, releases"
            f" {self.releases}; journaled steps {dict(self.journaled)}; executions"
            f" {dict(self.executions)}; re-run after being in flight {self.rerun_in_flight};"
            f" journaled steps executed again {len(self.reexecuted)}; duplicate at_most_once"
            f" effects {len(self.duplicate_sends)}"
        )


def _journal(events: Iterable[Event], audit: Audit, task_id: str) -> dict[str, int]:
    """Each journaled step's epoch: that of the claim in force when it was written."""
    epoch, claims = 1, 1
    journal: dict[str, int] = {}
    for event in events:
        if isinstance(event, TaskRecovered):
            claims += 1
            if event.epoch != claims:
                audit.bad_epochs.append((task_id, event.epoch, claims))
            epoch = event.epoch
            if event.released:
                audit.releases += 1
            else:
                audit.recoveries += 1
        elif isinstance(event, ModelCalled | ToolCalled):
            if event.step in journal:
                audit.journaled_twice.append((task_id, event.step))
            journal.setdefault(event.step, epoch)
            audit.journaled["model" if isinstance(event, ModelCalled) else "tool"] += 1
        elif isinstance(event, ToolStarted):
            pass  # not a result: an at_most_once call about to run
    return journal


def _ledger_starts(ledger: Path, audit: Audit) -> dict[str, dict[str, list[int]]]:
    """The epochs at which each task's steps started, from the ledger (`send` counted apart)."""
    starts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list[int]))
    for line in read_ledger(ledger):
        if line.phase == "start":
            starts[line.task][line.step].append(line.epoch)
            audit.executions["model" if line.what == "model" else "tool"] += 1
            if line.what == "send":
                starts[line.task]["send"].append(line.epoch)
    return starts


def _compare(
    audit: Audit, task_id: str, journal: dict[str, int], ran: dict[str, list[int]]
) -> None:
    """Compare one task's journal with what the ledger says ran."""
    for step, epoch in journal.items():
        for ran_at in ran.get(step, []):
            if ran_at > epoch:
                audit.reexecuted.append((task_id, step, epoch, ran_at))
            elif ran_at < epoch:
                audit.rerun_in_flight += 1
    for step, epochs in ran.items():
        if step != "send":
            twice = [e for e, c in Counter(epochs).items() if c > 1]
            audit.twice_in_one_epoch.extend((task_id, step, e) for e in twice)
    if len(ran.get("send", [])) > 1:
        audit.duplicate_sends.append(task_id)


async def audit(rt: taskloom.Runtime, ids: Collection[str], ledger: Path) -> Audit:
    """Check every task's journal (its events) against the ledger of what actually ran.

    A step is journaled at the epoch of the claim in force when its event was written: the
    epoch of the last `recovered` event before it, else 1 (the first claim). An execution
    of that step (a ledger `start`) at a later epoch is a journaled step executed again.
    """
    result = Audit(tasks=len(ids))
    starts = _ledger_starts(ledger, result)
    for task_id in ids:
        rec = await rt.store.get(task_id)
        if rec is None:
            result.outcomes["lost"] += 1
            continue
        state = rec.state.value
        result.outcomes[state if state != "failed" else f"failed/{rec.reason}"] += 1
        journal = _journal(await events_of(rt, task_id), result, task_id)
        ran = starts.get(task_id, {})
        _compare(result, task_id, journal, ran)
        sends = len(ran.get("send", []))
        if state == "completed" and sends != 1 and rec.name.startswith("order"):
            result.completed_without_one_send.append(task_id)
    return result


def check(audit: Audit, *, allowed: Collection[str]) -> None:
    """Assert the crash test's claims; every list must be empty."""
    assert audit.outcomes["lost"] == 0, f"{audit.outcomes['lost']} tasks lost"
    unexpected = {k: v for k, v in audit.outcomes.items() if k not in allowed}
    assert not unexpected, f"tasks ended otherwise than {sorted(allowed)}: {unexpected}"
    assert not audit.reexecuted, f"journaled steps executed again: {audit.reexecuted[:10]}"
    assert not audit.duplicate_sends, f"at_most_once ran twice: {audit.duplicate_sends[:10]}"
    assert not audit.journaled_twice, f"steps journaled twice: {audit.journaled_twice[:10]}"
    assert not audit.twice_in_one_epoch, f"run twice by one claim: {audit.twice_in_one_epoch[:10]}"
    assert not audit.completed_without_one_send, (
        f"completed without exactly one send: {audit.completed_without_one_send[:10]}"
    )
    assert not audit.bad_epochs, f"claims whose epoch did not go up by one: {audit.bad_epochs[:10]}"


def result_of(record_result: str | None) -> Any:
    return None if record_result is None else json.loads(record_result)
