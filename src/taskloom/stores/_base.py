"""The `Store` interface: where tasks and their events live.

One contract test suite (`tests/stores/test_store_contract.py`) runs on every store. The
methods speak in domain terms; each backend turns them into its own I/O and translates its
driver's errors into `StoreError`s, so no `sqlite3` or `asyncpg` error leaves `stores/`.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Self

from .._record import Change, NewEvent, TaskQuery, TaskRecord
from ..events import Event
from ..states import TaskState

__all__ = ("Store",)


class Store(abc.ABC):
    """Where tasks, their events (which are also the journal of their steps) and leases live."""

    url: str
    """The URL the store was opened with, with any password removed."""

    notifies: bool = False
    """Whether `wait_for_change` returns as soon as another process writes (PostgreSQL's
    NOTIFY), rather than only after its wait (polling)."""

    @abc.abstractmethod
    async def create(
        self, record: TaskRecord, events: Sequence[NewEvent]
    ) -> tuple[TaskRecord, bool]:
        """Insert `record` with `events` (numbered from 1) in one transaction.

        Returns:
            The stored record and `True`, or, when a task with that id (or with the
            record's non-NULL `idempotency_key`) already exists, the existing record and
            `False` (nothing is written).
        """

    @abc.abstractmethod
    async def apply(self, change: Change) -> int | None:
        """Append the change's event and apply it to the record, in one transaction.

        The write happens only while the record's state is one of `change.from_states`
        and, when `change.epoch` is set, the record's `epoch` equals it (fencing).

        Returns:
            The event's `seq`, or `None` when the task is missing or in another state.
        """

    @abc.abstractmethod
    async def claim(
        self, worker: str, names: Collection[str], *, limit: int, lease_seconds: float
    ) -> list[TaskRecord]:
        """Take up to `limit` tasks for `worker` to perform, under a lease, in one transaction.

        Only tasks whose `name` is in `names` and whose `job` is set are candidates. Time is
        the store's clock (the database server's, for PostgreSQL). In this order:

        1. Taken over: `working` or `input_required` tasks whose lease ended (`lease_ms`
           before now) or was released (`lease_owner` NULL); oldest lease first. Each keeps
           its state, gets `recoveries + 1` (unless it was released) and a `recovered`
           event (`worker`, `epoch`, `recoveries`, `released`).
        2. Due: `submitted` tasks with `fire_ms` NULL or not after now, by `priority`
           (highest first), then fire time (`fire_ms`, else `created_ms`), then submission
           order. A task whose `serial_key` is shared by an active claimed task, or by a
           due task before it, waits. Each becomes `working` (`started_ms` now) with a
           `started` event (`worker`).

        Every claimed task gets `epoch + 1`, `lease_owner = worker` and
        `lease_ms = now + lease_seconds`.

        Returns:
            The claimed records, as stored after the claim.
        """

    @abc.abstractmethod
    async def heartbeat(
        self, worker: str, leases: Mapping[str, int], *, lease_seconds: float
    ) -> set[str]:
        """Extend this worker's leases: `leases` maps task ids to the epochs it claimed.

        Returns:
            The ids whose lease was extended (still active, same epoch, same owner); the
            worker has lost the others.
        """

    @abc.abstractmethod
    async def release(self, task_id: str, epoch: int) -> bool:
        """Give a lease up without ending the task, so that another worker takes it at once.

        Only while the task is active and its `epoch` equals `epoch`.

        Returns:
            Whether the lease was released.
        """

    @abc.abstractmethod
    async def get(self, task_id: str) -> TaskRecord | None:
        """The record of one task, or `None`."""

    @abc.abstractmethod
    async def list(self, query: TaskQuery) -> list[TaskRecord]:
        """Records matching `query`, newest first (by creation time, then id)."""

    @abc.abstractmethod
    async def read_events(self, task_id: str, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events of one task with `seq > after`, in order."""

    @abc.abstractmethod
    async def heads(self, task_ids: Collection[str]) -> dict[str, tuple[TaskState, int]]:
        """The state and last `seq` of each existing task among `task_ids`."""

    @abc.abstractmethod
    async def wait_for_change(self, max_wait: float) -> None:
        """Return when another writer may have changed something, or after `max_wait` seconds.

        Writes made through this store object need not wake it: the runtime already knows.
        """

    @abc.abstractmethod
    async def overdue(self, now_ms: int, *, limit: int = 500) -> list[str]:
        """Ids of unfinished tasks whose time to live ended at or before `now_ms`."""

    @abc.abstractmethod
    async def purge(self, now_ms: int, *, limit: int = 500) -> int:
        """Delete ended tasks (and their events) whose retention ended; return how many."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
