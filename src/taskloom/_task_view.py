"""`TaskView`: the record side of a `Task`, read-only attributes over its stored record."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

from ._record import Change, NewEvent, TaskRecord
from .errors import (
    TaskCancelledError,
    TaskEndedError,
    TaskExpiredError,
    TaskFailedError,
    TaskRejectedError,
)
from .events import Event, from_ms
from .states import TaskState
from .usage import Usage

__all__ = ("TaskError", "TaskHost", "TaskView")


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskError:
    """What a failed task recorded about its failure."""

    type: str | None
    """The exception's type name, when an exception caused the failure."""
    message: str
    """What went wrong."""


class TaskHost(Protocol):
    """What a `Task` needs from the runtime that made it (implemented by `Runtime`)."""

    max_payload_bytes: int
    max_progress_bytes: int

    async def _create(
        self, record: TaskRecord, events: list[NewEvent]
    ) -> tuple[TaskRecord, bool]: ...

    async def _apply(self, change: Change) -> int | None: ...

    async def _reload(self, task_id: str) -> TaskRecord: ...

    async def history(self, task_id: str) -> list[Event]:
        """The task's whole event log, in order (a resumed run's journal)."""
        ...

    def _attach(self, task: Any) -> None: ...

    def _detach(self, task: Any) -> None: ...

    def _expire_later(self, task: Any) -> None: ...

    def events(self, task_id: str, *, after: int = 0) -> AsyncIterator[Event]: ...


class TaskView:
    """What a task's record says: a snapshot, refreshed by `Task.refresh()`."""

    __slots__ = ()
    _rec: TaskRecord

    @property
    def id(self) -> str:
        """The task's id, known from creation on."""
        return self._rec.id

    @property
    def name(self) -> str:
        return self._rec.name

    @property
    def owner(self) -> str | None:
        return self._rec.owner

    @property
    def state(self) -> TaskState:
        return self._rec.state

    @property
    def reason(self) -> str | None:
        """Why the task ended as it did (a failure, cancel or expiry reason)."""
        return self._rec.reason

    @property
    def parent_id(self) -> str | None:
        return self._rec.parent_id

    @property
    def payload(self) -> Any:
        """The task's input (JSON)."""
        return json.loads(self._rec.payload)

    @property
    def current_progress(self) -> Mapping[str, Any]:
        """The progress reported so far, merged (read-only); `progress()` adds to it."""
        return MappingProxyType(self._rec.progress)

    @property
    def output(self) -> Any:
        """The stored result (JSON) of a completed task, else `None`. See also `result()`."""
        return None if self._rec.result is None else json.loads(self._rec.result)

    @property
    def error(self) -> TaskError | None:
        """What a failed task recorded, else `None`."""
        if self._rec.error is None:
            return None
        data = json.loads(self._rec.error)
        return TaskError(type=data.get("type"), message=data.get("message", ""))

    @property
    def usage(self) -> Usage:
        """Model calls, tool calls, tokens and USD cost so far (zero for tasks without an agent)."""
        raw = self._rec.usage
        return Usage() if raw is None else Usage.from_json(json.loads(raw))

    @property
    def last_seq(self) -> int:
        """The `seq` of the newest event this snapshot has seen."""
        return self._rec.last_seq

    @property
    def epoch(self) -> int:
        """How many times a worker has claimed it; a worker's writes carry its claim's epoch."""
        return self._rec.epoch

    @property
    def priority(self) -> int:
        """Higher runs first among due tasks."""
        return self._rec.priority

    @property
    def idempotency_key(self) -> str | None:
        return self._rec.idempotency_key

    @property
    def worker(self) -> str | None:
        """The worker holding its lease, if any."""
        return self._rec.lease_owner

    @property
    def recoveries(self) -> int:
        """How many times a worker took it over after another worker's lease ended."""
        return self._rec.recoveries

    @property
    def retry_of(self) -> str | None:
        """The task this one is a new attempt of (`Runtime.retry`), if any."""
        job = self._rec.job
        return None if job is None or '"retry_of"' not in job else json.loads(job).get("retry_of")

    @property
    def scheduled_at(self) -> datetime | None:
        """When a worker may start it, if it was submitted for later."""
        return _dt(self._rec.fire_ms)

    @property
    def created_at(self) -> datetime:
        return from_ms(self._rec.created_ms)

    @property
    def updated_at(self) -> datetime:
        return from_ms(self._rec.updated_ms)

    @property
    def started_at(self) -> datetime | None:
        return _dt(self._rec.started_ms)

    @property
    def ended_at(self) -> datetime | None:
        return _dt(self._rec.ended_ms)

    @property
    def last_progress_at(self) -> datetime | None:
        return _dt(self._rec.last_progress_ms)

    @property
    def expires_at(self) -> datetime | None:
        return _dt(self._rec.expires_ms)

    @property
    def purge_at(self) -> datetime | None:
        """When retention deletes the ended task."""
        return _dt(self._rec.purge_ms)

    def _ended_error(self) -> TaskEndedError:
        rec = self._rec
        state, reason = rec.state, rec.reason
        because = f": {reason}" if reason else ""
        if state is TaskState.FAILED:
            err = self.error
            return TaskFailedError(
                f"task {rec.id!r} failed{because}" + (f" ({err.message})" if err else ""),
                task_id=rec.id,
                reason=reason,
                error_type=err.type if err else None,
                error_message=err.message if err else None,
            )
        cls = _ENDED_ERRORS.get(state, TaskEndedError)
        return cls(
            f"task {rec.id!r} {state.value}{because}", task_id=rec.id, state=state, reason=reason
        )


_ENDED_ERRORS: dict[TaskState, type[TaskEndedError]] = {
    TaskState.CANCELLED: TaskCancelledError,
    TaskState.EXPIRED: TaskExpiredError,
    TaskState.REJECTED: TaskRejectedError,
}


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else from_ms(ms)
