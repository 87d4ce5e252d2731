"""The `Store` interface: where tasks and their events live.

One contract test suite (`tests/stores/test_store_contract.py`) runs on every store. The
methods speak in domain terms; each backend turns them into its own I/O and translates its
driver's errors into `StoreError`s, so no `sqlite3` or `asyncpg` error leaves `stores/`.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from types import TracebackType
from typing import Self

from .._record import Change, NewEvent, TaskQuery, TaskRecord
from ..events import Event
from ..states import TaskState

__all__ = ("Store",)


class Store(abc.ABC):
    """Where tasks, their events and (later) journals, leases and cache entries live."""

    url: str
    """The URL the store was opened with, with any password removed."""

    @abc.abstractmethod
    async def create(
        self, record: TaskRecord, events: Sequence[NewEvent]
    ) -> tuple[TaskRecord, bool]:
        """Insert `record` with `events` (numbered from 1) in one transaction.

        Returns:
            The stored record and `True`, or, when a task with that id already exists, the
            existing record and `False` (nothing is written).
        """

    @abc.abstractmethod
    async def apply(self, change: Change) -> int | None:
        """Append the change's event and apply it to the record, in one transaction.

        The write happens only while the record's state is one of `change.from_states`.

        Returns:
            The event's `seq`, or `None` when the task is missing or in another state.
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
