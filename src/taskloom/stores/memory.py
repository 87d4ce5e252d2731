"""`MemoryStore`: everything in this process's memory, for tests and throwaway runs.

It keeps the same contract as the durable stores (conditional writes, contiguous `seq`,
retention) so that code tested on it behaves the same on SQLite and PostgreSQL. Several
runtimes on one event loop may share one `MemoryStore`; each learns of the others' writes
within its `poll_interval`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

from .._record import Change, NewEvent, TaskQuery, TaskRecord
from ..events import Event, event_from_row
from ..states import ACTIVE_STATES, TERMINAL_STATES, TaskState
from ._base import Store

__all__ = ("MemoryStore",)

_WORKING = TaskState.WORKING


class MemoryStore(Store):
    """A store in memory. Nothing survives the process."""

    def __init__(self) -> None:
        self.url = "memory://"
        self._tasks: dict[str, TaskRecord] = {}
        self._events: dict[str, list[tuple[int, int, str, str]]] = {}

    async def create(
        self, record: TaskRecord, events: Sequence[NewEvent]
    ) -> tuple[TaskRecord, bool]:
        existing = self._tasks.get(record.id)
        if existing is not None:
            return existing.copy(), False
        stored = record.copy()
        stored.last_seq = len(events)
        self._tasks[record.id] = stored
        self._events[record.id] = [
            (seq, e.at_ms, e.kind, e.data) for seq, e in enumerate(events, start=1)
        ]
        return stored.copy(), True

    async def apply(self, change: Change) -> int | None:
        rec = self._tasks.get(change.task_id)
        # a terminal record is never changed, whatever `from_states` says: terminal is absorbing
        if rec is None or rec.state not in change.from_states or rec.state in TERMINAL_STATES:
            return None
        event = change.event
        at = event.at_ms
        target = change.to_state
        if target is not None:
            rec.state = target
            if target is _WORKING and rec.started_ms is None:
                rec.started_ms = at
            elif target in TERMINAL_STATES:
                rec.ended_ms = at
                rec.purge_ms = at + rec.retention_ms
        if change.reason is not None:
            rec.reason = change.reason
        if change.result is not None:
            rec.result = change.result
        if change.error is not None:
            rec.error = change.error
        if change.usage is not None:
            rec.usage = change.usage
        if change.progress is not None:
            rec.progress.update(change.progress)
            rec.last_progress_ms = at
        rec.updated_ms = at
        rec.last_seq += 1
        self._events[rec.id].append((rec.last_seq, at, event.kind, event.data))
        return rec.last_seq

    async def get(self, task_id: str) -> TaskRecord | None:
        rec = self._tasks.get(task_id)
        return None if rec is None else rec.copy()

    async def list(self, query: TaskQuery) -> list[TaskRecord]:
        found = [r for r in self._tasks.values() if _matches(r, query)]
        found.sort(key=lambda r: (r.created_ms, r.id), reverse=True)
        return [r.copy() for r in found[: query.limit]]

    async def read_events(self, task_id: str, *, after: int = 0, limit: int = 1000) -> list[Event]:
        rows = self._events.get(task_id, [])
        # seq n sits at index n - 1: the log is contiguous from 1
        return [event_from_row(task_id, *row) for row in rows[after : after + limit]]

    async def heads(self, task_ids: Collection[str]) -> dict[str, tuple[TaskState, int]]:
        heads: dict[str, tuple[TaskState, int]] = {}
        for task_id in task_ids:
            rec = self._tasks.get(task_id)
            if rec is not None:
                heads[task_id] = (rec.state, rec.last_seq)
        return heads

    async def wait_for_change(self, max_wait: float) -> None:
        # every writer shares this process: a runtime hears its own writes at once, and
        # another runtime sharing this store polls (waking on each write cost more than it saved)
        await asyncio.sleep(max_wait)

    async def overdue(self, now_ms: int, *, limit: int = 500) -> list[str]:
        return [
            r.id
            for r in self._tasks.values()
            if r.state in ACTIVE_STATES and r.expires_ms is not None and r.expires_ms <= now_ms
        ][:limit]

    async def purge(self, now_ms: int, *, limit: int = 500) -> int:
        doomed = [
            r.id for r in self._tasks.values() if r.purge_ms is not None and r.purge_ms <= now_ms
        ][:limit]
        for task_id in doomed:
            del self._tasks[task_id]
            del self._events[task_id]
        return len(doomed)

    async def close(self) -> None:
        return None  # nothing to release


def _matches(rec: TaskRecord, q: TaskQuery) -> bool:
    return (
        (not q.states or rec.state in q.states)
        and (q.owner is None or rec.owner == q.owner)
        and (q.name is None or rec.name == q.name)
        and (q.parent_id is None or rec.parent_id == q.parent_id)
        and (q.created_after_ms is None or rec.created_ms > q.created_after_ms)
        and (q.before is None or (rec.created_ms, rec.id) < q.before)
    )
