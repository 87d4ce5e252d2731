"""`Runtime`: the object a program opens once.

```python
rt = await taskloom.open("sqlite:///tasks.db")   # or: async with taskloom.open(...) as rt:
```

It owns the store, the in-process wake-ups (`Bus`), the watcher that learns of other
processes' writes, and the sweeper that expires overdue tasks and purges ended ones past
their retention. Its background work lives in one `asyncio.TaskGroup`, started by `open`
and cancelled by `close`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from .._json import encode
from .._record import Change, NewEvent, TaskQuery, TaskRecord, now_ms, submitted_event
from ..errors import ConflictError, NotFoundError, UserError
from ..events import Event
from ..spec import TaskSpec, check_seconds
from ..states import ACTIVE_STATES, TERMINAL_STATES, TaskState
from ..stores import MemoryStore, Store
from ..task import Task
from . import _agents
from ._agents import AgentTasks
from ._jobs import Registry
from ._pages import SweepReport, TaskPage, encode_cursor, list_query
from ._watch import Bus, follow, watch
from ._worker import Worker

__all__ = ("Runtime", "SweepReport", "TaskPage")

_log = logging.getLogger("taskloom")
_DEFAULT_RETENTION = timedelta(days=7)
_ACTIVE = tuple(sorted(s.value for s in ACTIVE_STATES))
_CANCELLED = TaskState.CANCELLED
_BLANK = TaskRecord(id="", name="")


def _new_id() -> str:
    """A random (version 4) UUID as 32 hex digits, like `uuid.uuid4().hex` at half the cost."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


class Runtime(AgentTasks):
    """The store, the event bus, the watcher and the sweeper of one program.

    Args:
        store: An open store.
        retention: How long an ended task's record lives; per task, `retention_seconds=`.
        max_payload_bytes: The largest payload, result or error, as JSON.
        max_progress_bytes: The largest single progress update, as JSON.
        poll_interval: How often to look for other processes' writes while something is
            watched (seconds). PostgreSQL is woken sooner by NOTIFY.
        sweep_interval: How often to expire overdue tasks and purge old ones (seconds).
        concurrency: How many submitted agent tasks this runtime's worker performs at once;
            0 makes a client that only submits (workers elsewhere perform the tasks).
        lease_seconds: How long a worker's claim on a task holds without a heartbeat; after
            that (the worker died or stalled) another worker takes the task over.
        max_recovery_attempts: How many takeovers a task survives before it ends `failed`
            with reason `recovery_exhausted`.
        claim_interval: How often the worker looks for due tasks and ended leases when
            nothing wakes it (seconds).
        worker_id: The worker's name in the store; `host:pid:xxxx` by default.
    """

    def __init__(
        self,
        store: Store,
        *,
        retention: timedelta = _DEFAULT_RETENTION,
        max_payload_bytes: int = 1 << 20,
        max_progress_bytes: int = 64 << 10,
        poll_interval: float = 0.05,
        sweep_interval: float = 30.0,
        concurrency: int = 16,
        lease_seconds: float = 30.0,
        max_recovery_attempts: int = 3,
        claim_interval: float = 0.25,
        worker_id: str | None = None,
    ) -> None:
        check_seconds("retention", retention.total_seconds())
        check_seconds("poll_interval", poll_interval)
        check_seconds("sweep_interval", sweep_interval)
        check_seconds("lease_seconds", lease_seconds)
        check_seconds("claim_interval", claim_interval)
        for option, value in (
            ("concurrency", concurrency),
            ("max_recovery_attempts", max_recovery_attempts),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may pass anything
                raise UserError(f"{option} must be a whole number of at least 0, not {value!r}")
        self.store = store
        self.retention = retention
        self.max_payload_bytes = max_payload_bytes
        self.max_progress_bytes = max_progress_bytes
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        self._bus = Bus()
        self._listeners = _agents.Listeners()
        self.registry = Registry()
        """The task names this runtime's worker performs (see `register`)."""
        self.worker: Worker | None = None
        """The in-process worker, unless `concurrency=0`."""
        if concurrency:
            self.worker = Worker(
                self,
                self.registry,
                concurrency=concurrency,
                lease_seconds=lease_seconds,
                max_recovery_attempts=max_recovery_attempts,
                claim_interval=claim_interval,
                worker_id=worker_id,
            )
            if store.notifies:  # NOTIFY tells of new submissions at once: claim then
                self._bus.on_change = self.worker.notify
        self._group: asyncio.TaskGroup | None = None
        self._service: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        """Start the watcher and the sweeper. `open` does this for you."""
        if self._service is None:
            started = asyncio.Event()
            self._service = asyncio.create_task(self._serve(started), name="taskloom-runtime")
            await started.wait()
        return self

    async def _serve(self, started: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(
                watch(self.store, self._bus, poll_interval=self.poll_interval, on_error=_log_error)
            )
            group.create_task(self._sweep_forever())
            if self.worker is not None:
                group.create_task(self.worker.run())
            started.set()

    async def close(self, *, grace: float = 0.0) -> None:
        """Stop background work and close the store. Idempotent.

        The worker stops claiming and gives running tasks `grace` seconds to finish. Then
        it releases them, so that another worker (in this process when it opens the store
        again, or elsewhere) resumes them at once, journal and all; on a `MemoryStore`,
        which nothing else can read, they are cancelled instead.
        """
        if self._closed:
            return
        self._closed = True
        if self.worker is not None and self._service is not None:
            if grace:
                check_seconds("grace", grace)
            await self.worker.stop(grace, release=not isinstance(self.store, MemoryStore))
        if self._service is not None:
            self._service.cancel()
            await asyncio.wait([self._service])
        await self.store.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- making tasks ----------------------------------------------------------------------

    def task(
        self,
        spec: str | TaskSpec,
        *,
        owner: str | None = None,
        payload: Any = None,
        task_id: str | None = None,
        ttl_seconds: float | None = None,
        retention_seconds: float | None = None,
        parent: Task | str | None = None,
    ) -> Task:
        """A new task handle; `async with` it to start it.

        The id exists now; nothing is stored until the block is entered. Passing the
        `task_id` of an existing task enters that task instead of making a duplicate.

        Args:
            spec: A name or a `TaskSpec`.
            owner: Who the task belongs to (listed and filtered on).
            payload: The task's input; JSON-serialisable.
            task_id: The id to use; a fresh one by default.
            ttl_seconds: How long it may live before it ends `expired`.
            retention_seconds: How long its record lives after it ends.
            parent: The task that spawned it; the child's time to live is at most what
                the parent has left.
        """
        if type(spec) is str and spec:  # the common case, without building a TaskSpec
            name, spec_ttl, spec_retention = spec, None, None
        else:
            if isinstance(spec, str):
                spec = TaskSpec(name=spec)
            name, spec_ttl, spec_retention = spec.name, spec.ttl_seconds, spec.retention_seconds
        if ttl_seconds is not None:
            check_seconds("ttl_seconds", ttl_seconds)
        if retention_seconds is not None:
            check_seconds("retention_seconds", retention_seconds)
        if task_id is not None and (not isinstance(task_id, str) or not task_id):  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may pass anything
            raise UserError(f"task_id must be a non-empty string, not {task_id!r}")
        tid = task_id or _new_id()
        ttl = ttl_seconds if ttl_seconds is not None else spec_ttl
        retention = retention_seconds or spec_retention or self.retention.total_seconds()
        at = now_ms()
        expires = None if ttl is None else at + int(ttl * 1000)
        parent_id = None
        if parent is not None:
            parent_id = parent if isinstance(parent, str) else parent.id
            if isinstance(parent, Task) and parent.expires_at is not None:
                limit = parent._rec.expires_ms  # pyright: ignore[reportPrivateUsage] -- same package
                expires = limit if expires is None or limit is None else min(expires, limit)
        if payload is None:
            text = "null"
        else:
            text = encode(payload, what="payload", task_id=tid, limit=self.max_payload_bytes)
        record = _BLANK.copy()  # cheaper than the dataclass's keyword constructor
        record.id, record.name, record.owner, record.payload = tid, name, owner, text
        record.parent_id, record.created_ms, record.updated_ms = parent_id, at, at
        record.expires_ms, record.retention_ms = expires, int(retention * 1000)
        return Task(self, record, stored=False)

    async def create(
        self,
        spec: str | TaskSpec,
        *,
        owner: str | None = None,
        payload: Any = None,
        task_id: str | None = None,
        ttl_seconds: float | None = None,
        retention_seconds: float | None = None,
        parent: Task | str | None = None,
    ) -> Task:
        """Store a new task in state `submitted` and return its handle (see `task`).

        The same `task_id` again returns the existing task, never a duplicate.
        """
        task = self.task(
            spec,
            owner=owner,
            payload=payload,
            task_id=task_id,
            ttl_seconds=ttl_seconds,
            retention_seconds=retention_seconds,
            parent=parent,
        )
        return await self._store_submitted(task)

    async def _cap_by_parent(self, record: TaskRecord, events: list[NewEvent]) -> list[NewEvent]:
        """A child lives no longer than its parent: cap its expiry by the parent's."""
        parent = await self.store.get(record.parent_id or "")
        if parent is None or parent.expires_ms is None:
            return events
        if record.expires_ms is not None and record.expires_ms <= parent.expires_ms:
            return events
        record.expires_ms = parent.expires_ms
        return [submitted_event(record, e.at_ms) if e.kind == "submitted" else e for e in events]

    async def _store_submitted(self, task: Task) -> Task:
        """Store a new handle's record as `submitted` (or find the task with its id)."""
        rec = task._rec  # pyright: ignore[reportPrivateUsage] -- same package
        stored, _ = await self._create(rec, [submitted_event(rec, rec.created_ms)])
        return Task(self, stored, stored=True)

    # -- reading and controlling -----------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        """The task with `task_id`.

        Raises:
            NotFoundError: there is none (never created, or purged by retention).
        """
        return Task(self, await self._reload(task_id), stored=True)

    async def list(
        self,
        *,
        state: TaskState | str | list[TaskState | str] | None = None,
        owner: str | None = None,
        name: str | None = None,
        parent_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> TaskPage:
        """Tasks, newest first, one page at a time.

        Args:
            state: One state or several.
            owner: Only this owner's tasks.
            name: Only tasks of this name.
            parent_id: Only children of this task.
            since: Only tasks created after this time.
            limit: At most this many (1 to 1000).
            cursor: The `next_cursor` of the previous page.
        """
        query = list_query(
            state=state,
            owner=owner,
            name=name,
            parent_id=parent_id,
            since=since,
            limit=limit,
            cursor=cursor,
        )
        records = await self.store.list(query)
        more = len(records) > limit
        records = records[:limit]
        next_cursor = encode_cursor(records[-1]) if more else None
        return TaskPage(
            tasks=[Task(self, r, stored=True) for r in records], next_cursor=next_cursor
        )

    async def cancel(self, task_id: str, *, reason: str = "") -> Task:
        """Cancel a task from anywhere; a running handle (in any process) is interrupted.

        Cancelling an ended task changes nothing and returns it as it is.

        Raises:
            NotFoundError: there is no such task.
        """
        task = await self.get(task_id)
        await task.cancel(reason)
        return task

    def events(self, task_id: str, *, after: int = 0) -> AsyncIterator[Event]:
        """Every stored event of the task after `after`, then live ones until it ends.

        Works across processes: a task run elsewhere is followed through the store. Resume a
        broken subscription by passing the last `seq` you saw as `after`.
        """
        return follow(
            self.store,
            self._bus,
            task_id,
            after=after,
            reload=self._reload,
            patience=max(1.0, self.poll_interval * 20),
        )

    async def history(self, task_id: str, *, after: int = 0) -> list[Event]:
        """The task's stored events after `after`, in order, read now (no waiting)."""
        events: list[Event] = []
        while True:
            page = await self.store.read_events(task_id, after=after, limit=1000)
            events.extend(page)
            if len(page) < 1000:
                return events
            after = page[-1].seq

    async def sweep(self) -> SweepReport:
        """Expire unfinished tasks past their time to live; purge ended ones past retention."""
        expired = 0
        for task_id in await self.store.overdue(now_ms()):
            try:
                task = await self.get(task_id)
                if await task.expire("ttl"):
                    expired += 1
            except NotFoundError:
                continue
        purged = await self.store.purge(now_ms())
        return SweepReport(expired=expired, purged=purged)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception as exc:  # the sweeper must outlive a store hiccup
                _log_error(exc)

    # -- the host side of Task (see task.TaskHost) -------------------------------------------

    async def _create(self, record: TaskRecord, events: list[NewEvent]) -> tuple[TaskRecord, bool]:
        if record.parent_id is not None:
            events = await self._cap_by_parent(record, events)
        stored, created = await self.store.create(record, events)
        if created and self._listeners.wants(record.id):
            for seq, event in enumerate(events, start=1):
                await self._listeners.deliver(record.id, seq, event)
        if not created and stored.name != record.name:
            raise ConflictError(
                f"task id {record.id!r} is taken by a task named {stored.name!r}, not"
                f" {record.name!r}; choose another id"
            )
        return stored, created

    async def _apply(self, change: Change) -> int | None:
        seq = await self.store.apply(change)
        if seq is not None:
            task_id = change.task_id
            self._bus.notify(task_id, seq)
            if self._listeners.wants(task_id):
                await self._listeners.deliver(task_id, seq, change.event)
            target = change.to_state
            if target in TERMINAL_STATES:
                others = self._other_handles(task_id)
                if others:
                    await self._interrupt(task_id, others)
                if target is _CANCELLED:
                    await self._cancel_children(task_id)
        return seq

    async def _claimed(self, record: TaskRecord) -> None:
        """The worker claimed a task: wake its subscribers and tell its listeners."""
        task_id, seq = record.id, record.last_seq
        self._bus.notify(task_id, seq)
        if self._listeners.wants(task_id):
            try:
                for event in await self.store.read_events(task_id, after=seq - 1, limit=1):
                    await self._listeners.deliver_event(event)
            except Exception as exc:  # an observer's news must not stop the worker
                _log_error(exc)

    async def _cancel_children(self, parent_id: str) -> None:
        """Cancelling a parent cancels its unfinished children (and theirs, in turn)."""
        query = TaskQuery(parent_id=parent_id, states=_ACTIVE, limit=1000)
        for child in await self.store.list(query):
            await Task(self, child, stored=True).cancel(f"parent task {parent_id!r} was cancelled")

    def _other_handles(self, task_id: str) -> list[Task]:
        """This process's live handles of the task, but for the one whose body is running."""
        live = self._bus.live.get(task_id)
        # a handle whose body is ending the task itself ignores the news: leave it out
        others = [h for h in live or () if not h._ending_in_body]  # pyright: ignore[reportPrivateUsage] -- same package
        if not others:
            return others
        me = asyncio.current_task()
        return [h for h in others if h._body is not me]  # pyright: ignore[reportPrivateUsage] -- same package

    async def _interrupt(self, task_id: str, handles: list[Task]) -> None:
        """Tell these live handles of the task that it has ended."""
        record = await self._reload(task_id)
        for handle in handles:
            handle._ended_externally(record)  # pyright: ignore[reportPrivateUsage] -- same package

    async def _reload(self, task_id: str) -> TaskRecord:
        record = await self.store.get(task_id)
        if record is None:
            raise NotFoundError(
                f"no task {task_id!r} in {self.store.url}; it was never created here or"
                " retention has purged it"
            )
        return record

    def _attach(self, task: Task) -> None:
        self._bus.attach(task)

    def _detach(self, task: Task) -> None:
        self._bus.detach(task)

    def _expire_later(self, task: Task) -> None:
        if self._group is not None and not self._closed:
            self._group.create_task(_expire(task))


async def _expire(task: Task) -> None:
    try:
        await task.expire("ttl")
    except Exception as exc:  # one task's failed expiry must not stop the runtime
        _log_error(exc)


def _log_error(exc: Exception) -> None:
    _log.warning("taskloom background work failed: %s", exc, exc_info=exc)


async def _open_default() -> Runtime:
    """The private in-memory runtime `Agent.run` uses when it is given none."""
    from ..stores import MemoryStore

    return await Runtime(MemoryStore()).start()


def register_default_runtime() -> None:
    """Register `_open_default` with the agent layer, for agents run with no runtime.

    The agent layer loads when agents are used, not with the runtime (so that `taskloom ls`
    starts fast), so this runs once both are loaded: below if the agents came first, else
    from `taskloom`'s loader of its agent names (`taskloom.Agent`, `from taskloom import`).
    """
    from ..agent import register_default_host

    register_default_host(_open_default)


if "taskloom.agent" in sys.modules:
    register_default_runtime()
