"""`MemoryStore`: everything in this process's memory, for tests and throwaway runs.

It keeps the same contract as the durable stores (conditional writes, contiguous `seq`,
retention, claims and leases) so that code tested on it behaves the same on SQLite and
PostgreSQL. Several
runtimes on one event loop may share one `MemoryStore`; each learns of the others' writes
within its `poll_interval`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Collection, Mapping, Sequence

from .._json import dumps
from .._record import Change, NewEvent, TaskQuery, TaskRecord, now_ms
from ..events import Event, event_from_row
from ..states import ACTIVE_STATES, TERMINAL_STATES, TaskState
from ._base import Store

__all__ = ("MemoryStore",)

_WORKING = TaskState.WORKING
_SUBMITTED = TaskState.SUBMITTED
_LEASED = frozenset({TaskState.WORKING, TaskState.INPUT_REQUIRED})


class MemoryStore(Store):
    """A store in memory. Nothing survives the process."""

    def __init__(self) -> None:
        self.url = "memory://"
        self._tasks: dict[str, TaskRecord] = {}
        self._events: dict[str, list[tuple[int, int, str, str]]] = {}
        self._keys: dict[str, str] = {}
        """Idempotency key -> task id."""
        self._jobs: dict[str, int] = {}
        """Unfinished tasks with a `job` (the ones a claim may take) -> submission order."""
        self._order = itertools.count()

    async def create(
        self, record: TaskRecord, events: Sequence[NewEvent]
    ) -> tuple[TaskRecord, bool]:
        existing = self._tasks.get(record.id)
        key = record.idempotency_key
        if existing is None and key is not None and key in self._keys:
            existing = self._tasks[self._keys[key]]
        if existing is not None:
            return existing.copy(), False
        stored = record.copy()
        stored.last_seq = len(events)
        self._tasks[record.id] = stored
        if key is not None:
            self._keys[key] = record.id
        if stored.job is not None and stored.state not in TERMINAL_STATES:
            self._jobs[record.id] = next(self._order)
        self._events[record.id] = [
            (seq, e.at_ms, e.kind, e.data) for seq, e in enumerate(events, start=1)
        ]
        return stored.copy(), True

    async def apply(self, change: Change) -> int | None:
        rec = self._tasks.get(change.task_id)
        # a terminal record is never changed, whatever `from_states` says: terminal is absorbing
        if rec is None or rec.state not in change.from_states or rec.state in TERMINAL_STATES:
            return None
        if change.epoch is not None and rec.epoch != change.epoch:
            return None  # fenced off: another worker has claimed it since
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
                self._jobs.pop(rec.id, None)
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

    async def claim(
        self, worker: str, names: Collection[str], *, limit: int, lease_seconds: float
    ) -> list[TaskRecord]:
        if not names or limit <= 0:
            return []
        now = now_ms()
        lease = now + round(lease_seconds * 1000)
        taken, due = self._candidates(names, now)
        claimed: list[TaskRecord] = []
        for rec in taken[:limit]:
            released = rec.lease_owner is None
            if not released:
                rec.recoveries += 1
            rec.epoch += 1
            data = (
                f'{{"worker":{dumps(worker)},"epoch":{rec.epoch},"recoveries":{rec.recoveries},'
                f'"released":{"true" if released else "false"}}}'
            )
            claimed.append(self._lease(rec, worker, lease, now, "recovered", data))
        started = f'{{"worker":{dumps(worker)}}}'
        for rec in due[: limit - len(claimed)]:
            rec.state = _WORKING
            if rec.started_ms is None:
                rec.started_ms = now
            rec.epoch += 1
            claimed.append(self._lease(rec, worker, lease, now, "started", started))
        return claimed

    def _candidates(
        self, names: Collection[str], now: int
    ) -> tuple[list[TaskRecord], list[TaskRecord]]:
        """The tasks a claim may take over, oldest lease first, and the due ones, in order."""
        names = frozenset(names)
        taken: list[TaskRecord] = []
        due: list[TaskRecord] = []
        busy: set[str] = set()  # serial keys of active tasks
        for task_id in self._jobs:
            rec = self._tasks[task_id]
            if rec.state is _SUBMITTED:
                if rec.fire_ms is None or rec.fire_ms <= now:
                    due.append(rec)
            elif rec.state in _LEASED:
                if rec.serial_key is not None:
                    busy.add(rec.serial_key)
                if rec.name in names and (
                    rec.lease_owner is None or rec.lease_ms is None or rec.lease_ms < now
                ):
                    taken.append(rec)
        taken.sort(key=lambda r: -1 if r.lease_owner is None else r.lease_ms or 0)
        order = self._jobs
        due.sort(
            key=lambda r: (
                -r.priority,
                r.created_ms if r.fire_ms is None else r.fire_ms,
                order[r.id],
            )
        )
        runnable: list[TaskRecord] = []
        for rec in due:  # the first due task of each serial key may run, if none is active
            key = rec.serial_key
            if key is not None:
                if key in busy:
                    continue
                busy.add(key)
            if rec.name in names:
                runnable.append(rec)
        return taken, runnable

    def _lease(
        self, rec: TaskRecord, worker: str, lease: int, now: int, kind: str, data: str
    ) -> TaskRecord:
        rec.lease_owner, rec.lease_ms, rec.updated_ms = worker, lease, now
        rec.last_seq += 1
        self._events[rec.id].append((rec.last_seq, now, kind, data))
        return rec.copy()

    async def heartbeat(
        self, worker: str, leases: Mapping[str, int], *, lease_seconds: float
    ) -> set[str]:
        if not leases:
            return set()
        lease = now_ms() + round(lease_seconds * 1000)
        kept: set[str] = set()
        for task_id, epoch in leases.items():
            rec = self._tasks.get(task_id)
            if (
                rec is not None
                and rec.state in _LEASED
                and rec.epoch == epoch
                and rec.lease_owner == worker
            ):
                rec.lease_ms = lease
                kept.add(task_id)
        return kept

    async def release(self, task_id: str, epoch: int) -> bool:
        rec = self._tasks.get(task_id)
        if rec is None or rec.state not in _LEASED or rec.epoch != epoch:
            return False
        rec.lease_owner = rec.lease_ms = None
        return True

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
            key = self._tasks.pop(task_id).idempotency_key
            del self._events[task_id]
            self._jobs.pop(task_id, None)
            if key is not None:
                del self._keys[key]
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
