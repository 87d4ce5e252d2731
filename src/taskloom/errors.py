"""Every exception taskloom raises.

```
TaskloomError
├── UserError                  misuse, raised early; fix the call
│   ├── InvalidTransitionError     a state change the state machine forbids
│   ├── NotSerializableError       a payload, progress, result or error that is not JSON
│   ├── PayloadTooLargeError       a payload over the configured size limit
│   └── InvalidAnswerError         an answer to an input request that does not fit it
└── RunError                   something went wrong while work ran
    ├── ModelError                 the model provider failed or answered unusably
    │   └── ModelHTTPError             the provider answered with an HTTP error status
    ├── ToolError                  a tool failed in a way the model cannot fix
    ├── UsageLimitExceededError    a turn, tool-call, token or cost limit was reached
    ├── TaskEndedError             the task ended without a result
    │   ├── TaskFailedError
    │   ├── TaskCancelledError
    │   ├── TaskExpiredError
    │   └── TaskRejectedError
    └── StoreError                 the store could not do what was asked
        ├── StoreUnavailableError      cannot reach or open the store
        ├── StoreFormatError           the file or database is not a taskloom store
        ├── MigrationError             the schema is newer than this code, or a migration failed
        ├── NotFoundError              no task with that id
        └── ConflictError              the id or the task is held by something else
            └── LeaseLostError             this worker's lease on the task was taken over
```

Retryability is data on the error (`retryable`, `retry_after`), not a family.
"""

from __future__ import annotations

from datetime import timedelta

__all__ = (
    "ConflictError",
    "InvalidAnswerError",
    "InvalidTransitionError",
    "LeaseLostError",
    "MigrationError",
    "ModelError",
    "ModelHTTPError",
    "NotFoundError",
    "NotSerializableError",
    "PayloadTooLargeError",
    "RunError",
    "StoreError",
    "StoreFormatError",
    "StoreUnavailableError",
    "TaskCancelledError",
    "TaskEndedError",
    "TaskExpiredError",
    "TaskFailedError",
    "TaskRejectedError",
    "TaskloomError",
    "ToolError",
    "UsageLimitExceededError",
    "UserError",
)


class TaskloomError(Exception):
    """The root of every taskloom exception."""

    retryable: bool = False
    """Whether the same operation may succeed if tried again unchanged."""

    retry_after: timedelta | None = None
    """How long to wait before trying again, when the cause says so."""


class UserError(TaskloomError):
    """The library was used wrongly; the message says how to fix the call."""


class InvalidTransitionError(UserError):
    """A state change that the state machine forbids, such as completing an unstarted task."""


class NotSerializableError(UserError):
    """A value that must be stored is not JSON-serialisable."""


class PayloadTooLargeError(UserError):
    """A payload, progress update or result is larger than the configured limit."""


class InvalidAnswerError(UserError):
    """An answer to an `input_required` task that does not fit its request."""


class RunError(TaskloomError):
    """A failure while work ran."""


class ModelError(RunError):
    """The model provider failed, or answered with something unusable.

    Attributes:
        model: The model's name (`provider:model`).
    """

    def __init__(
        self,
        message: str,
        *,
        model: str,
        retryable: bool = False,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.retryable = retryable
        self.retry_after = retry_after


class ModelHTTPError(ModelError):
    """The provider answered with an HTTP error status (`status_code`)."""

    def __init__(
        self,
        message: str,
        *,
        model: str,
        status_code: int,
        retryable: bool = False,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(message, model=model, retryable=retryable, retry_after=retry_after)
        self.status_code = status_code


class ToolError(RunError):
    """A tool failed in a way the model cannot correct (raised to end the task)."""


class UsageLimitExceededError(RunError):
    """A limit (turns, tool calls, tokens, cost) was reached; `limit` names it."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class TaskEndedError(RunError):
    """The task ended in a state that has no result.

    Attributes:
        task_id: The id of the task.
        state: The terminal state it ended in.
        reason: Why it ended that way, when known.
    """

    def __init__(self, message: str, *, task_id: str, state: str, reason: str | None) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.state = state
        self.reason = reason


class TaskFailedError(TaskEndedError):
    """The task ended `failed`. `error_type` and `error_message` say what was recorded."""

    def __init__(
        self,
        message: str,
        *,
        task_id: str,
        reason: str | None,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> None:
        super().__init__(message, task_id=task_id, state="failed", reason=reason)
        self.error_type = error_type
        self.error_message = error_message


class TaskCancelledError(TaskEndedError):
    """The task ended `cancelled`, by a caller in this or another process."""


class TaskExpiredError(TaskEndedError):
    """The task ended `expired`: its deadline or time to live passed."""


class TaskRejectedError(TaskEndedError):
    """The task ended `rejected`: the agent declined it."""


class StoreError(RunError):
    """The store could not do what was asked."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached or opened (server down, file not writable)."""

    retryable = True


class StoreFormatError(StoreError):
    """The file or database is not a taskloom store, or is damaged."""


class MigrationError(StoreError):
    """The store's schema is newer than this code knows, or a migration failed."""


class NotFoundError(StoreError):
    """No task has the given id (it never existed, or retention purged it)."""


class ConflictError(StoreError):
    """The id or the task is already held: a different task with that id, or a live handle."""


class LeaseLostError(ConflictError):
    """This worker's lease on the task ended and another worker took it over.

    Nothing this worker writes for the task is accepted any more (fencing); it stops
    performing the task and leaves it to the new holder.
    """
