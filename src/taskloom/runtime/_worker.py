"""The worker: claims submitted agent tasks under a lease, performs them, heartbeats.

One worker runs inside each `Runtime` with `concurrency > 0` (the default), and
`taskloom worker APP` runs one on its own. Every claim increments the task's epoch, and
every write the worker makes for the task carries that epoch (see `Task._write`): once
another worker takes the task over, nothing this one writes is accepted.

- A claim is one store transaction (`Store.claim`): due `submitted` tasks by priority, fire
  time and submission order, and tasks whose lease ended (their worker died or stalled).
- A task taken over is performed again from the start with its journal (its event log):
  steps already journaled are replayed, not executed. A task taken over more than
  `max_recovery_attempts` times ends `failed` with `recovery_exhausted`: no crash loops.
- Heartbeats extend the leases every `lease_seconds / 3`; a lease found lost stops its run
  at once, writing nothing.
- `stop(grace)` stops claiming, lets running tasks finish for `grace` seconds, then gives
  the rest up and releases their leases, so another worker resumes them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._record import TaskQuery, TaskRecord
from ..errors import LeaseLostError, StoreUnavailableError, TaskEndedError, UserError
from ..states import ACTIVE_STATES, TaskState
from ..task import Task
from ._jobs import Job, Registry

if TYPE_CHECKING:
    from ..agent import Agent  # loaded when agents are used, not with the runtime (_agents.py)
    from ._runtime import Runtime

__all__ = ("LocalRun", "Worker", "new_worker_id")

_log = logging.getLogger("taskloom.worker")
_ACTIVE = tuple(sorted(s.value for s in ACTIVE_STATES))


def new_worker_id() -> str:
    """`host:pid:xxxx`: who holds a lease, readable by an operator."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"


@dataclass(slots=True, kw_only=True)
class LocalRun:
    """What the submitting process knows of a task beyond its job: Python objects."""

    agent: Agent
    output_type: Any
    on_event: Any = None
    on_token: Callable[[str], None] | None = None
    stop_listening: Callable[[], None] | None = None


@dataclass(slots=True)
class _Running:
    handle: Task
    runner: asyncio.Task[None]
    epoch: int
    released: bool = field(default=False)

    def abandon(self) -> None:
        """Stop the run here and write nothing more for it (another worker has it, or will)."""
        self.handle._give_up()  # pyright: ignore[reportPrivateUsage] -- the worker's own handle
        if not self.runner.done():
            self.runner.cancel("taskloom: the lease on this task ended here")


class Worker:
    """Claims and performs the agent tasks whose names `registry` knows.

    Args:
        rt: The runtime whose store and event bus it uses.
        registry: The names it may perform.
        concurrency: At most this many tasks at once.
        lease_seconds: How long a claim holds without a heartbeat.
        max_recovery_attempts: How many takeovers a task survives before it fails.
        claim_interval: How often to look for due tasks and ended leases when nothing
            wakes it (a local submit, a NOTIFY on PostgreSQL, a finished task).
        worker_id: Its name in the store's `lease_owner`; `host:pid:xxxx` by default.
    """

    def __init__(
        self,
        rt: Runtime,
        registry: Registry,
        *,
        concurrency: int,
        lease_seconds: float,
        max_recovery_attempts: int,
        claim_interval: float,
        worker_id: str | None = None,
    ) -> None:
        self.rt = rt
        self.registry = registry
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.max_recovery_attempts = max_recovery_attempts
        self.claim_interval = claim_interval
        self.id = worker_id or new_worker_id()
        self.local: dict[str, LocalRun] = {}
        self._running: dict[str, _Running] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.claimed = 0
        """How many claims this worker has made (a status line shows it)."""
        self.finished = 0

    @property
    def running(self) -> int:
        """How many tasks it is performing now."""
        return len(self._running)

    def notify(self) -> None:
        """Something may be claimable: look now rather than at the next interval."""
        self._wake.set()

    # -- the loops ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and heartbeat until `stop` (run in the runtime's task group)."""
        heartbeats = asyncio.create_task(self._heartbeats(), name="taskloom-heartbeats")
        try:
            async with asyncio.TaskGroup() as group:  # the runs live here
                await self._claims(group)
        finally:
            heartbeats.cancel()
            await asyncio.wait([heartbeats])

    async def _claims(self, group: asyncio.TaskGroup) -> None:
        store = self.rt.store
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._running)
            names = self.registry.names()
            claimed: list[TaskRecord] = []
            if free > 0 and names:
                try:
                    claimed = await store.claim(
                        self.id, names, limit=min(free, 64), lease_seconds=self.lease_seconds
                    )
                except Exception as exc:  # the worker must outlive a store hiccup
                    _log.warning("claiming failed: %s", exc, exc_info=exc)
                    await asyncio.sleep(self.claim_interval)
                    continue
            for record in claimed:
                await self.rt._claimed(record)  # pyright: ignore[reportPrivateUsage] -- the runtime's own worker
                self._start(group, record)
            if claimed and len(claimed) == min(free, 64):
                continue  # there may be more
            try:
                async with asyncio.timeout(self.claim_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _heartbeats(self) -> None:
        store = self.rt.store
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            leases = {tid: r.epoch for tid, r in self._running.items() if not r.released}
            if not leases:
                continue
            try:
                held = await store.heartbeat(self.id, leases, lease_seconds=self.lease_seconds)
            except Exception as exc:
                _log.warning("heartbeat failed: %s", exc, exc_info=exc)
                continue
            for task_id in leases.keys() - held:
                running = self._running.get(task_id)
                if running is not None and running.epoch == leases[task_id]:
                    _log.warning("lost the lease on task %s; stopping it here", task_id)
                    running.abandon()

    # -- one task ----------------------------------------------------------------------------

    def _start(self, group: asyncio.TaskGroup, record: TaskRecord) -> None:
        self.claimed += 1
        handle = Task(self.rt, record, stored=True)
        handle._fence = record.epoch  # pyright: ignore[reportPrivateUsage] -- the worker's handle
        runner = group.create_task(self._perform(handle, record), name=f"taskloom:{record.id}")
        self._running[record.id] = _Running(handle, runner, record.epoch)
        self._idle.clear()
        runner.add_done_callback(lambda _: self._done(record.id, runner))

    def _done(self, task_id: str, runner: asyncio.Task[None]) -> None:
        running = self._running.get(task_id)
        if running is not None and running.runner is runner:
            del self._running[task_id]
        self.finished += 1
        if not self._running:
            self._idle.set()
        self._wake.set()  # a slot is free

    async def _perform(self, handle: Task, record: TaskRecord) -> None:
        local = self.local.pop(record.id, None)
        try:
            await self._perform_or_fail(handle, record, local)
        except TaskEndedError:
            pass  # recorded on the task
        except LeaseLostError:
            _log.warning("task %s was taken over by another worker; stopped it here", record.id)
        except StoreUnavailableError as exc:
            # like a crash of this worker: the task stays as the journal has it, and is
            # taken over once its lease ends (or at once, if the store takes the release)
            _log.warning("task %s stopped here, the store is unavailable: %s", record.id, exc)
            with contextlib.suppress(Exception):
                await self.rt.store.release(record.id, record.epoch)
        except asyncio.CancelledError:
            if not handle._lost:  # pyright: ignore[reportPrivateUsage] -- the worker's handle
                raise
        except Exception as exc:
            _log.info("task %s failed: %s", record.id, exc)
        finally:
            if local is not None and local.stop_listening is not None:
                local.stop_listening()

    async def _perform_or_fail(
        self, handle: Task, record: TaskRecord, local: LocalRun | None
    ) -> None:
        taken_over = record.epoch > 1
        if record.recoveries > self.max_recovery_attempts:
            await handle.fail(
                f"its worker stopped {record.recoveries} times while performing it, more than"
                f" max_recovery_attempts={self.max_recovery_attempts}",
                reason="recovery_exhausted",
            )
            return
        runnable = self.registry.get(record.name)
        try:
            if record.job is None or (runnable is None and local is None):
                raise UserError(f"this worker has no agent registered for {record.name!r}")
            job = Job.from_json(record.job)
            if local is not None:
                agent, output_type = local.agent, local.output_type
            else:
                assert runnable is not None
                agent, output_type = runnable.agent, runnable.output_type
                if output_type is None:
                    output_type = job.output_type()
        except UserError as exc:
            await handle.fail(exc)
            return
        if taken_over:
            # children it ran inline died with the worker that ran them: end them honestly
            await self._cancel_orphans(record.id)
        await agent.perform(
            handle,
            job.prompt,
            output_type=output_type,
            host=self.rt,
            limits=job.limits_or(agent.limits),
            on_event=None if local is None else local.on_event,
            on_token=None if local is None else local.on_token,
            listening=True,
            resumed=taken_over,
        )

    async def _cancel_orphans(self, task_id: str) -> None:
        query = TaskQuery(parent_id=task_id, states=_ACTIVE, limit=1000)
        for child in await self.rt.store.list(query):
            if child.job is None:  # a child a worker claims on its own is not an orphan
                await Task(self.rt, child, stored=True).cancel(
                    "the worker performing its parent task stopped; the parent resumes elsewhere"
                )

    # -- stopping ----------------------------------------------------------------------------

    async def stop(self, grace: float, *, release: bool) -> None:
        """Stop claiming; after `grace` seconds give up what still runs.

        With `release`, each lease given up is released in the store so that another
        worker resumes the task at once; without, the tasks are cancelled (a store that
        does not outlive this process cannot hand them over).
        """
        self._stopping = True
        self._wake.set()
        if release:
            # a task waiting for a human may wait for hours: hand it over now, not after grace
            waiting = [
                (task_id, item)
                for task_id, item in self._running.items()
                if item.handle.state is TaskState.INPUT_REQUIRED
            ]
            for _, item in waiting:
                item.released = True
                item.abandon()
            if waiting:
                await asyncio.wait([item.runner for _, item in waiting])
                await self._release(waiting)
        if self._running and grace > 0:
            try:
                async with asyncio.timeout(grace):
                    await self._idle.wait()
            except TimeoutError:
                pass
        running = list(self._running.items())
        for _, item in running:
            if release:
                item.released = True
                item.abandon()
            else:
                item.runner.cancel("taskloom: the runtime is closing")
        if running:
            await asyncio.wait([item.runner for _, item in running])
        if release:
            await self._release(running)

    async def _release(self, given_up: list[tuple[str, _Running]]) -> None:
        for task_id, item in given_up:
            try:
                await self.rt.store.release(task_id, item.epoch)
            except Exception as exc:
                _log.warning("could not release task %s: %s", task_id, exc, exc_info=exc)
