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
import base64
import binascii
import logging
import uuid
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from .._json import encode
from .._record import Change, NewEvent, TaskQuery, TaskRecord, now_ms
from ..errors import ConflictError, NotFoundError, UserError
from ..events import Event
from ..spec import TaskSpec, check_seconds
from ..states import ACTIVE_STATES, TERMINAL_STATES, TaskState
from ..stores import Store, open_store
from ..task import Task, submitted_event
from ._watch import Bus, watch

__all__ = ("Runtime", "SweepReport", "TaskPage", "open")

_log = logging.getLogger("taskloom")
_DEFAULT_RETENTION = timedelta(days=7)
_ACTIVE = tuple(sorted(s.value for s in ACTIVE_STATES))


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPage:
    """One page of `Runtime.list`."""

    tasks: list[Task]
    """The tasks, newest first."""
    next_cursor: str | None
    """Pass as `cursor=` for the next page; `None` on the last page."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepReport:
    """What one sweep did."""

    expired: int
    """Unfinished tasks past their time to live, now `expired`."""
    purged: int
    """Ended tasks past their retention, now deleted with their events."""


class Runtime:
    """The store, the event bus, the watcher and the sweeper of one program.

    Args:
        store: An open store.
        retention: How long an ended task's record lives; per task, `retention_seconds=`.
        max_payload_bytes: The largest payload, result or error, as JSON.
        max_progress_bytes: The largest single progress update, as JSON.
        poll_interval: How often to look for other processes' writes while something is
            watched (seconds). PostgreSQL is woken sooner by NOTIFY.
        sweep_interval: How often to expire overdue tasks and purge old ones (seconds).
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
    ) -> None:
        check_seconds("retention", retention.total_seconds())
        check_seconds("poll_interval", poll_interval)
        check_seconds("sweep_interval", sweep_interval)
        self.store = store
        self.retention = retention
        self.max_payload_bytes = max_payload_bytes
        self.max_progress_bytes = max_progress_bytes
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        self._bus = Bus()
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
            started.set()

    async def close(self) -> None:
        """Stop background work and close the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
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
        if isinstance(spec, str):
            spec = TaskSpec(name=spec)
        check_seconds("ttl_seconds", ttl_seconds)
        check_seconds("retention_seconds", retention_seconds)
        if task_id is not None and (not isinstance(task_id, str) or not task_id):  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may pass anything
            raise UserError(f"task_id must be a non-empty string, not {task_id!r}")
        tid = task_id or uuid.uuid4().hex
        ttl = ttl_seconds if ttl_seconds is not None else spec.ttl_seconds
        retention = retention_seconds or spec.retention_seconds or self.retention.total_seconds()
        at = now_ms()
        expires = None if ttl is None else at + int(ttl * 1000)
        parent_id = None
        if parent is not None:
            parent_id = parent if isinstance(parent, str) else parent.id
            if isinstance(parent, Task) and parent.expires_at is not None:
                limit = parent._rec.expires_ms  # pyright: ignore[reportPrivateUsage] -- same package
                expires = limit if expires is None or limit is None else min(expires, limit)
        record = TaskRecord(
            id=tid,
            name=spec.name,
            owner=owner,
            payload=encode(payload, what="payload", task_id=tid, limit=self.max_payload_bytes),
            parent_id=parent_id,
            created_ms=at,
            updated_ms=at,
            expires_ms=expires,
            retention_ms=int(retention * 1000),
        )
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
        if not 1 <= limit <= 1000:
            raise UserError(f"limit must be between 1 and 1000, not {limit!r}")
        states = [state] if isinstance(state, str) else list(state or [])
        try:
            parsed = tuple(TaskState(s).value for s in states)
        except ValueError:
            raise UserError(
                f"unknown state in {state!r}; states are {', '.join(s.value for s in TaskState)}"
            ) from None
        query = TaskQuery(
            states=parsed,
            owner=owner,
            name=name,
            parent_id=parent_id,
            created_after_ms=None if since is None else int(since.timestamp() * 1000),
            before=_decode_cursor(cursor),
            limit=limit + 1,
        )
        records = await self.store.list(query)
        more = len(records) > limit
        records = records[:limit]
        next_cursor = _encode_cursor(records[-1]) if more else None
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
        return self._follow(task_id, after)

    async def _follow(self, task_id: str, after: int) -> AsyncIterator[Event]:
        record = await self._reload(task_id)
        with self._bus.subscribe(task_id) as waiter:
            while True:
                if record.state in TERMINAL_STATES and record.last_seq <= after:
                    return  # it ended and its last event is behind `after`: nothing will come
                waiter.clear()
                batch = await self.store.read_events(task_id, after=after, limit=500)
                for event in batch:
                    yield event
                    after = event.seq
                    if event.kind in TERMINAL_STATES:
                        return
                if batch:
                    continue
                try:
                    async with asyncio.timeout(max(1.0, self.poll_interval * 20)):
                        await waiter.wait()
                except TimeoutError:
                    record = await self._reload(task_id)  # a purged task ends the subscription

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
        stored, created = await self.store.create(record, events)
        if not created and stored.name != record.name:
            raise ConflictError(
                f"task id {record.id!r} is taken by a task named {stored.name!r}, not"
                f" {record.name!r}; choose another id"
            )
        return stored, created

    async def _apply(self, change: Change) -> int | None:
        seq = await self.store.apply(change)
        if seq is not None:
            self._bus.notify(change.task_id, seq)
            if change.terminal:
                await self._interrupt_others(change.task_id)
            if change.to_state is TaskState.CANCELLED:
                await self._cancel_children(change.task_id)
        return seq

    async def _cancel_children(self, parent_id: str) -> None:
        """Cancelling a parent cancels its unfinished children (and theirs, in turn)."""
        query = TaskQuery(parent_id=parent_id, states=_ACTIVE, limit=1000)
        for child in await self.store.list(query):
            await Task(self, child, stored=True).cancel(f"parent task {parent_id!r} was cancelled")

    async def _interrupt_others(self, task_id: str) -> None:
        """Tell this process's other live handles of the task that it has ended."""
        me = asyncio.current_task()
        others = [h for h in self._bus.live.get(task_id, ()) if h._body is not me]  # pyright: ignore[reportPrivateUsage] -- same package
        if others:
            record = await self._reload(task_id)
            for handle in others:
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


def _encode_cursor(record: TaskRecord) -> str:
    raw = f"{record.created_ms}:{record.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, task_id = raw.partition(":")
        return int(created), task_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise UserError(
            f"cursor {cursor!r} is not one this runtime gave out; pass a page's `next_cursor`"
        ) from None


class _Opening:
    """What `open` returns: await it, or use it with `async with`."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._runtime: Runtime | None = None

    async def _open(self) -> Runtime:
        store_options = {k: self._options.pop(k) for k in ("synchronous",) if k in self._options}
        store = await open_store(self._url, **store_options)
        try:
            return await Runtime(store, **self._options).start()
        except BaseException:
            await store.close()
            raise

    def __await__(self) -> Generator[Any, None, Runtime]:
        return self._open().__await__()

    async def __aenter__(self) -> Runtime:
        self._runtime = await self._open()
        return self._runtime

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runtime is not None:
            await self._runtime.close()


def open(url: str = "sqlite:///taskloom.db", **options: Any) -> _Opening:
    """Open a runtime on the store at `url`.

    ```python
    rt = await taskloom.open("sqlite:///tasks.db")
    async with taskloom.open("postgresql://user@host/db") as rt: ...
    ```

    Args:
        url: `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, `memory://`, or
            `postgresql://user:password@host:port/database` (`?schema=` picks the schema,
            default `taskloom`). SQLite takes `?synchronous=normal` to trade the last
            moments of durability for speed.
        **options: `Runtime` options (`retention`, `max_payload_bytes`, `max_progress_bytes`,
            `poll_interval`, `sweep_interval`).

    Raises:
        UserError: an unknown scheme or option.
        StoreUnavailableError: the store cannot be reached or opened.
        StoreFormatError: the file or database is not a taskloom store.
        MigrationError: its schema is newer than this taskloom.
    """
    known = {
        "retention",
        "max_payload_bytes",
        "max_progress_bytes",
        "poll_interval",
        "sweep_interval",
        "synchronous",
    }
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return _Opening(url, dict(options))
