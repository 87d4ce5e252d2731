"""Task states and the one transition table.

```
submitted ──> working ──> completed
    │           │  ▲  └──> failed
    │           ▼  │
    │     input_required    cancelled
    └─────────────────────> expired
                            rejected
```

Terminal states are absorbing. `check_transition` is the only place in Python that decides
whether a change is allowed; each store enforces the same table in its conditional write
(`UPDATE ... WHERE state IN sources(target)`), so no caller, process or machine can move a
task out of a terminal state.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from .errors import InvalidTransitionError

__all__ = (
    "ACTIVE_STATES",
    "ExpiryReason",
    "FailureReason",
    "TERMINAL_STATES",
    "TaskState",
    "check_transition",
    "sources",
)


class TaskState(StrEnum):
    """Where a task is in its life."""

    SUBMITTED = "submitted"
    WORKING = "working"
    INPUT_REQUIRED = "input_required"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        """Whether the state is final (completed, failed, cancelled, expired or rejected)."""
        return self in TERMINAL_STATES


FailureReason = Literal[
    "error",
    "max_turns",
    "max_tool_calls",
    "max_tokens",
    "budget",
    "output_invalid",
    "loop",
    "guardrail",
    "outcome_unknown",
    "recovery_exhausted",
    "nondeterminism",
    "plan",
]
"""Why a task ended `failed`."""

ExpiryReason = Literal["deadline", "ttl", "input_timeout"]
"""Why a task ended `expired`: its work deadline, its time to live, or no answer in time."""

_S = TaskState
TERMINAL_STATES = frozenset({_S.COMPLETED, _S.FAILED, _S.CANCELLED, _S.EXPIRED, _S.REJECTED})
"""The absorbing states."""

ACTIVE_STATES = frozenset({_S.SUBMITTED, _S.WORKING, _S.INPUT_REQUIRED})
"""The states a task can still leave."""

_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    _S.SUBMITTED: frozenset({_S.WORKING, _S.CANCELLED, _S.EXPIRED, _S.REJECTED, _S.FAILED}),
    _S.WORKING: frozenset(
        {_S.INPUT_REQUIRED, _S.COMPLETED, _S.FAILED, _S.CANCELLED, _S.EXPIRED, _S.REJECTED}
    ),
    _S.INPUT_REQUIRED: frozenset({_S.WORKING, _S.FAILED, _S.CANCELLED, _S.EXPIRED}),
}

_SOURCES: dict[TaskState, tuple[str, ...]] = {
    target: tuple(sorted(str(s) for s, targets in _TRANSITIONS.items() if target in targets))
    for target in TaskState
}

_VERB = {
    _S.WORKING: "start",
    _S.INPUT_REQUIRED: "ask for input on",
    _S.COMPLETED: "complete",
    _S.FAILED: "fail",
    _S.CANCELLED: "cancel",
    _S.EXPIRED: "expire",
    _S.REJECTED: "reject",
}


def sources(target: TaskState) -> tuple[str, ...]:
    """The states from which `target` may be entered, as the stores' conditional write uses them."""
    return _SOURCES[target]


def check_transition(task_id: str, current: TaskState, target: TaskState) -> bool:
    """Decide a state change.

    Returns:
        `True` when the change is allowed, `False` when the task is already terminal (the
        change is then a no-op: the first terminal transition wins).

    Raises:
        InvalidTransitionError: the table forbids the change from a non-terminal state.
    """
    if current in TERMINAL_STATES:
        return False
    if target in _TRANSITIONS[current]:
        return True
    hint = ""
    if current is _S.SUBMITTED:
        hint = "; enter it first (`async with task:`) so that it is working"
    elif current is _S.INPUT_REQUIRED and target is _S.COMPLETED:
        hint = "; answer its input request first so that it is working again"
    raise InvalidTransitionError(
        f"cannot {_VERB.get(target, str(target))} task {task_id!r}: it is {current.value}"
        f" and may only become {', '.join(sorted(_TRANSITIONS[current]))}{hint}"
    )
