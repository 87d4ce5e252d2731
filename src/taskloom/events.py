"""The numbered events of a task.

Every event has `task_id`, `seq` (contiguous from 1 per task), `at` (a UTC datetime) and a
`kind`; the rest of its fields are its payload. The event log is the source of truth: a
task's record is the fold of its events, and both are written in one transaction.

Stores keep an event as `(task_id, seq, at_ms, kind, data)` where `data` is the JSON of the
payload fields; `event_from_row` turns a row back into the typed event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = (
    "Event",
    "GuardrailChecked",
    "ModelCalled",
    "ModelRetried",
    "OutputRejected",
    "TaskCancelled",
    "TaskCompleted",
    "TaskExpired",
    "TaskFailed",
    "TaskInputRequired",
    "TaskProgressed",
    "TaskRecovered",
    "TaskRejected",
    "TaskResumed",
    "TaskStarted",
    "TaskSubmitted",
    "ToolCalled",
    "ToolStarted",
    "event_data",
    "event_from_row",
)

JSONValue = Any
"""Any value `json.loads` may return."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _EventBase:
    task_id: str
    """The task the event belongs to."""
    seq: int
    """Its number in the task's log, contiguous from 1."""
    at: datetime
    """When it was written (UTC)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSubmitted(_EventBase):
    """The task was created, in state `submitted`."""

    kind: Literal["submitted"] = "submitted"
    name: str
    """The task's name (its spec's name)."""
    owner: str | None = None
    """Who the task belongs to."""
    payload: JSONValue = None
    """The task's input."""
    parent_id: str | None = None
    """The task that created this one, if any."""
    expires_at: datetime | None = None
    """When the task expires if it has not ended."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(_EventBase):
    """The task began to work (`working`)."""

    kind: Literal["started"] = "started"
    worker: str = ""
    """The worker that claimed it, when a worker runs it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskProgressed(_EventBase):
    """Progress was reported; `progress` is the update merged into the record's progress."""

    kind: Literal["progressed"] = "progressed"
    progress: dict[str, JSONValue] = field(default_factory=dict[str, Any])
    """The keys that changed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInputRequired(_EventBase):
    """The task waits for an answer (`input_required`)."""

    kind: Literal["input_required"] = "input_required"
    request: JSONValue = None
    """What is asked, as the request's JSON."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskResumed(_EventBase):
    """The task got its answer and works again (`working`)."""

    kind: Literal["resumed"] = "resumed"
    answer: JSONValue = None
    """The validated answer."""
    withdrawn: bool = False
    """The question was taken back unanswered (the asker gave up waiting)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCompleted(_EventBase):
    """The task ended `completed` with `result`."""

    kind: Literal["completed"] = "completed"
    result: JSONValue = None
    """The result, as JSON."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed(_EventBase):
    """The task ended `failed`."""

    kind: Literal["failed"] = "failed"
    reason: str = "error"
    """A `FailureReason`."""
    error_type: str | None = None
    """The exception's type name, when an exception caused it."""
    message: str = ""
    """What went wrong."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCancelled(_EventBase):
    """The task ended `cancelled`."""

    kind: Literal["cancelled"] = "cancelled"
    reason: str = ""
    """The reason the canceller gave."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskExpired(_EventBase):
    """The task ended `expired`."""

    kind: Literal["expired"] = "expired"
    reason: str = "ttl"
    """An `ExpiryReason`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRejected(_EventBase):
    """The task ended `rejected`: it was declined."""

    kind: Literal["rejected"] = "rejected"
    reason: str = ""
    """Why it was declined."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCalled(_EventBase):
    """The model answered one turn; the answer is kept, so the log is the transcript."""

    kind: Literal["model_called"] = "model_called"
    turn: int = 0
    model: str = ""
    text: str = ""
    """The answer's text (or structured output as JSON text)."""
    tool_calls: list[dict[str, str]] = field(default_factory=list[dict[str, str]])
    """`{"id", "name", "arguments"}` of each tool call asked for."""
    finish_reason: str = "stop"
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    """`None` when the model could not be priced."""
    duration_ms: int = 0
    step: str = ""
    """The journal key of this call (`m1`, `m2`, ...): a resumed run replays it from here."""
    fp: str = ""
    """A fingerprint of the request; a resumed run whose request differs fails."""
    model_name: str = ""
    """The model that answered, as the provider named it."""
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRetried(_EventBase):
    """A model call failed and will be tried again after `delay_s`."""

    kind: Literal["model_retried"] = "model_retried"
    turn: int = 0
    attempt: int = 1
    error: str = ""
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCalled(_EventBase):
    """A tool call ended: its result, or the error the model was shown."""

    kind: Literal["tool_called"] = "tool_called"
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    """The arguments as the model wrote them."""
    result: str | None = None
    """The result as shown to the model, when it succeeded."""
    error: str | None = None
    """What went wrong (invalid arguments, an exception, a timeout, a refusal)."""
    duration_ms: int = 0
    effect: str = "idempotent"
    step: str = ""
    """The journal key of this call (`t1.0` is turn 1's first call)."""
    fp: str = ""
    """A fingerprint of the call (tool name and arguments)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolStarted(_EventBase):
    """An `at_most_once` tool call is about to run; written before it runs.

    A resumed run that finds this without its `tool_called` does not know whether the call
    took effect, and will not run it again unasked.
    """

    kind: Literal["tool_started"] = "tool_started"
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    effect: str = "at_most_once"
    step: str = ""
    fp: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRecovered(_EventBase):
    """A worker took over a task whose previous worker's lease ended or was released."""

    kind: Literal["recovered"] = "recovered"
    worker: str = ""
    """The worker that took it over."""
    epoch: int = 0
    """The lease epoch of the new worker; writes of earlier epochs are refused."""
    recoveries: int = 0
    """How many times the task has been taken over after a lease expired."""
    released: bool = False
    """The previous worker gave it up cleanly (shutdown), rather than losing its lease."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardrailChecked(_EventBase):
    """A guardrail gave its verdict on the input, the output or a tool call."""

    kind: Literal["guardrail_checked"] = "guardrail_checked"
    name: str = ""
    stage: str = "output"
    """`input`, `output` or `tool`."""
    verdict: str = "pass"
    """`pass`, `retry` or `block`."""
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputRejected(_EventBase):
    """The model's answer did not fit the output type and was sent back to it."""

    kind: Literal["output_rejected"] = "output_rejected"
    attempt: int = 1
    error: str = ""


Event = (
    TaskSubmitted
    | TaskStarted
    | TaskProgressed
    | TaskInputRequired
    | TaskResumed
    | TaskCompleted
    | TaskFailed
    | TaskCancelled
    | TaskExpired
    | TaskRejected
    | ModelCalled
    | ModelRetried
    | ToolCalled
    | ToolStarted
    | TaskRecovered
    | GuardrailChecked
    | OutputRejected
)
"""Any task event; match on `kind` (or the class) and end with `assert_never`."""

_CLASSES: dict[str, type[Any]] = {
    str(next(f.default for f in fields(cls) if f.name == "kind")): cls
    for cls in (
        TaskSubmitted,
        TaskStarted,
        TaskProgressed,
        TaskInputRequired,
        TaskResumed,
        TaskCompleted,
        TaskFailed,
        TaskCancelled,
        TaskExpired,
        TaskRejected,
        ModelCalled,
        ModelRetried,
        ToolCalled,
        ToolStarted,
        TaskRecovered,
        GuardrailChecked,
        OutputRejected,
    )
}
_BASE_FIELDS = frozenset({"task_id", "seq", "at", "kind"})
_PAYLOAD_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(f.name for f in fields(cls) if f.name not in _BASE_FIELDS)
    for kind, cls in _CLASSES.items()
}


def event_data(event: Event) -> dict[str, JSONValue]:
    """The payload fields of `event`, as stored in the log (datetimes as epoch milliseconds)."""
    data: dict[str, JSONValue] = {}
    for name in _PAYLOAD_FIELDS[event.kind]:
        value = getattr(event, name)
        data[name] = int(value.timestamp() * 1000) if isinstance(value, datetime) else value
    return data


def event_from_row(task_id: str, seq: int, at_ms: int, kind: str, data: str) -> Event:
    """Rebuild a typed event from its stored row."""
    cls = _CLASSES[kind]
    payload: dict[str, Any] = json.loads(data) if data else {}
    expires = payload.get("expires_at")
    if expires is not None:
        payload["expires_at"] = from_ms(expires)
    return cls(task_id=task_id, seq=seq, at=from_ms(at_ms), **payload)


def from_ms(ms: int) -> datetime:
    """A UTC datetime from epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC)
