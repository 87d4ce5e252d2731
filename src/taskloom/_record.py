"""The stored shape of a task, and the one kind of write every store performs.

A `TaskRecord` is what a store keeps for a task; a `Change` is one event plus the change it
makes to the record, applied by the store in one transaction and only if the record is in
one of `from_states` (the conditional write that makes terminal states absorbing).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any

from .states import TaskState

__all__ = (
    "Change",
    "NewEvent",
    "TaskQuery",
    "TaskRecord",
    "now_ms",
    "started_event",
    "submitted_event",
)


def now_ms() -> int:
    """The current time in epoch milliseconds (UTC)."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True, kw_only=True)
class TaskRecord:
    """What a store keeps for one task. JSON columns hold compact JSON text."""

    id: str
    name: str
    owner: str | None = None
    state: TaskState = TaskState.SUBMITTED
    reason: str | None = None
    payload: str = "null"
    """The input, as JSON text."""
    progress: dict[str, Any] = field(default_factory=dict[str, Any])
    result: str | None = None
    """The result, as JSON text, once completed."""
    error: str | None = None
    """`{"type": ..., "message": ...}` as JSON text, once failed."""
    parent_id: str | None = None
    created_ms: int = 0
    updated_ms: int = 0
    started_ms: int | None = None
    ended_ms: int | None = None
    last_progress_ms: int | None = None
    expires_ms: int | None = None
    retention_ms: int = 0
    """How long the record lives after it ends."""
    purge_ms: int | None = None
    """When retention deletes it (set when it ends)."""
    last_seq: int = 0
    epoch: int = 0
    """Incremented by each claim; a worker's writes carry the epoch it claimed (fencing)."""
    usage: str | None = None
    """What an agent task has used (tokens, calls, cost), as JSON text."""
    priority: int = 0
    """Higher runs first among tasks that are due."""
    fire_ms: int | None = None
    """When a worker may start it (`submit(at=/delay=)`); `None` means at once."""
    idempotency_key: str | None = None
    """Unique among stored tasks: submitting the same key again returns this task."""
    serial_key: str | None = None
    """Tasks with the same key run one at a time, in submission order."""
    job: str | None = None
    """What a worker needs to perform it (prompt, output type, limits), as JSON text.
    `None` for tasks that only a handle's `async with` block runs."""
    lease_owner: str | None = None
    """The worker holding the lease; `None` when nobody does (or it was released)."""
    lease_ms: int | None = None
    """When the lease ends, by the store's clock."""
    recoveries: int = 0
    """How many times a worker took it over after another's lease expired."""

    def copy(self) -> TaskRecord:
        """A copy that shares nothing mutable with this record (its own `progress` dict).

        Written out field by field because it runs on every store read and write of the
        memory store: it is about three times faster than `dataclasses.replace`. Keep it
        in step with the fields above (`tests/test_record.py` checks that it is).
        """
        new = object.__new__(TaskRecord)
        new.id, new.name, new.owner, new.state = self.id, self.name, self.owner, self.state
        new.reason, new.payload, new.progress = self.reason, self.payload, dict(self.progress)
        new.result, new.error, new.parent_id = self.result, self.error, self.parent_id
        new.created_ms, new.updated_ms = self.created_ms, self.updated_ms
        new.started_ms, new.ended_ms = self.started_ms, self.ended_ms
        new.last_progress_ms, new.expires_ms = self.last_progress_ms, self.expires_ms
        new.retention_ms, new.purge_ms = self.retention_ms, self.purge_ms
        new.last_seq, new.epoch, new.usage = self.last_seq, self.epoch, self.usage
        new.priority, new.fire_ms = self.priority, self.fire_ms
        new.idempotency_key, new.serial_key = self.idempotency_key, self.serial_key
        new.job, new.lease_owner, new.lease_ms = self.job, self.lease_owner, self.lease_ms
        new.recoveries = self.recoveries
        return new


@dataclass(slots=True, kw_only=True)
class NewEvent:
    """An event to append; the store gives it the next `seq`."""

    kind: str
    data: str
    """The payload fields as JSON text."""
    at_ms: int


@dataclass(slots=True, kw_only=True)
class Change:
    """One event and what it changes, applied atomically and only from `from_states`."""

    task_id: str
    event: NewEvent
    from_states: tuple[str, ...]
    to_state: TaskState | None = None
    """The new state, or `None` when only progress changes."""
    reason: str | None = None
    result: str | None = None
    error: str | None = None
    progress: dict[str, Any] | None = None
    """Keys to merge into the record's progress (a shallow merge: each key replaces)."""
    progress_json: str | None = None
    """`progress` as JSON text."""
    usage: str | None = None
    """The task's usage so far, as JSON text, replacing the stored one."""
    epoch: int | None = None
    """When set, the write also requires the record's `epoch` to equal it (fencing): a
    worker whose lease was taken over cannot write."""

    @property
    def terminal(self) -> bool:
        return self.to_state is not None and self.to_state.terminal


@dataclass(slots=True, kw_only=True)
class TaskQuery:
    """A filter for listing tasks, newest first."""

    states: tuple[str, ...] = ()
    owner: str | None = None
    name: str | None = None
    parent_id: str | None = None
    created_after_ms: int | None = None
    before: tuple[int, str] | None = None
    """Keyset cursor: list tasks strictly older than this `(created_ms, id)`."""
    limit: int = 100


def submitted_event(rec: TaskRecord, at: int) -> NewEvent:
    """The `submitted` event of a new record."""
    data = (
        f'{{"name":{_js(rec.name)},"owner":{_js(rec.owner)},'
        f'"payload":{rec.payload},"parent_id":{_js(rec.parent_id)},'
        f'"expires_at":{_js(rec.expires_ms)}}}'
    )
    return NewEvent(kind="submitted", data=data, at_ms=at)


def _js(value: object) -> str:
    """`json.dumps(value)`, with its cheap common cases taken directly."""
    if value is None:
        return "null"
    if type(value) is str:
        return encode_basestring_ascii(value)  # what `json.dumps` does for a str
    return json.dumps(value)


def started_event(at: int) -> NewEvent:
    """The `started` event."""
    return NewEvent(kind="started", data="{}", at_ms=at)
