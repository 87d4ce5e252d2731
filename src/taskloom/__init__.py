"""taskloom: a runtime for tasks performed by AI agents.

```python
import taskloom

async with taskloom.open("sqlite:///tasks.db") as rt:
    async with rt.task("research", payload={"q": 1}) as task:
        await task.progress({"step": "search"})
        await task.complete({"findings": 3})
```

The names below are imported when first used (PEP 562), so that `import taskloom` and the
`taskloom` command start fast: `taskloom --help` never loads pydantic or the models. Type
checkers and IDEs read the `TYPE_CHECKING` imports, which name the same objects.
"""

import importlib
import typing

if typing.TYPE_CHECKING:
    from .agent import Agent as Agent
    from .agent import Approval as Approval
    from .agent import Block as Block
    from .agent import Limits as Limits
    from .agent import OutcomeAnswer as OutcomeAnswer
    from .agent import Retry as Retry
    from .agent import TaskFunction as TaskFunction
    from .agent import ToolCallCheck as ToolCallCheck
    from .errors import ConflictError as ConflictError
    from .errors import InvalidAnswerError as InvalidAnswerError
    from .errors import InvalidTransitionError as InvalidTransitionError
    from .errors import LeaseLostError as LeaseLostError
    from .errors import MigrationError as MigrationError
    from .errors import ModelError as ModelError
    from .errors import ModelHTTPError as ModelHTTPError
    from .errors import NotFoundError as NotFoundError
    from .errors import NotSerializableError as NotSerializableError
    from .errors import PayloadTooLargeError as PayloadTooLargeError
    from .errors import RunError as RunError
    from .errors import StoreError as StoreError
    from .errors import StoreFormatError as StoreFormatError
    from .errors import StoreUnavailableError as StoreUnavailableError
    from .errors import TaskCancelledError as TaskCancelledError
    from .errors import TaskEndedError as TaskEndedError
    from .errors import TaskExpiredError as TaskExpiredError
    from .errors import TaskFailedError as TaskFailedError
    from .errors import TaskloomError as TaskloomError
    from .errors import TaskRejectedError as TaskRejectedError
    from .errors import ToolError as ToolError
    from .errors import UsageLimitExceededError as UsageLimitExceededError
    from .errors import UserError as UserError
    from .events import Event as Event
    from .events import GuardrailChecked as GuardrailChecked
    from .events import ModelCalled as ModelCalled
    from .events import ModelRetried as ModelRetried
    from .events import OutputRejected as OutputRejected
    from .events import TaskCancelled as TaskCancelled
    from .events import TaskCompleted as TaskCompleted
    from .events import TaskExpired as TaskExpired
    from .events import TaskFailed as TaskFailed
    from .events import TaskInputRequired as TaskInputRequired
    from .events import TaskProgressed as TaskProgressed
    from .events import TaskRecovered as TaskRecovered
    from .events import TaskRejected as TaskRejected
    from .events import TaskResumed as TaskResumed
    from .events import TaskStarted as TaskStarted
    from .events import TaskSubmitted as TaskSubmitted
    from .events import ToolCalled as ToolCalled
    from .events import ToolStarted as ToolStarted
    from .models import Model as Model
    from .runtime import Runtime as Runtime
    from .runtime import SweepReport as SweepReport
    from .runtime import TaskPage as TaskPage
    from .runtime import Worker as Worker
    from .runtime import open as open
    from .spec import TaskSpec as TaskSpec
    from .states import TERMINAL_STATES as TERMINAL_STATES
    from .states import TaskState as TaskState
    from .stores import MemoryStore as MemoryStore
    from .stores import Store as Store
    from .stores import open_store as open_store
    from .task import Task as Task
    from .task import TaskError as TaskError
    from .task import current_task as current_task
    from .tools import IdempotencyKey as IdempotencyKey
    from .tools import Tool as Tool
    from .tools import tool as tool
    from .usage import Usage as Usage

__all__ = (
    "Agent",
    "Approval",
    "Block",
    "ConflictError",
    "Event",
    "GuardrailChecked",
    "IdempotencyKey",
    "InvalidAnswerError",
    "InvalidTransitionError",
    "LeaseLostError",
    "Limits",
    "MemoryStore",
    "MigrationError",
    "Model",
    "ModelCalled",
    "ModelError",
    "ModelHTTPError",
    "ModelRetried",
    "NotFoundError",
    "NotSerializableError",
    "OutcomeAnswer",
    "OutputRejected",
    "PayloadTooLargeError",
    "Retry",
    "RunError",
    "Runtime",
    "Store",
    "StoreError",
    "StoreFormatError",
    "StoreUnavailableError",
    "SweepReport",
    "TERMINAL_STATES",
    "Task",
    "TaskCancelled",
    "TaskCancelledError",
    "TaskCompleted",
    "TaskEndedError",
    "TaskError",
    "TaskExpired",
    "TaskExpiredError",
    "TaskFailed",
    "TaskFailedError",
    "TaskFunction",
    "TaskInputRequired",
    "TaskPage",
    "TaskProgressed",
    "TaskRecovered",
    "TaskRejected",
    "TaskRejectedError",
    "TaskResumed",
    "TaskSpec",
    "TaskStarted",
    "TaskState",
    "TaskSubmitted",
    "TaskloomError",
    "Tool",
    "ToolCallCheck",
    "ToolCalled",
    "ToolError",
    "ToolStarted",
    "Usage",
    "UsageLimitExceededError",
    "UserError",
    "Worker",
    "current_task",
    "open",
    "open_store",
    "tool",
)

# public name -> the module that defines it (the same pairs as the TYPE_CHECKING imports)
_HOMES: dict[str, str] = {
    name: module
    for module, names in {
        "agent": "Agent Approval Block Limits OutcomeAnswer Retry TaskFunction ToolCallCheck",
        "errors": "ConflictError InvalidAnswerError InvalidTransitionError LeaseLostError"
        " MigrationError ModelError ModelHTTPError NotFoundError NotSerializableError"
        " PayloadTooLargeError RunError StoreError StoreFormatError StoreUnavailableError"
        " TaskCancelledError TaskEndedError TaskExpiredError TaskFailedError TaskloomError"
        " TaskRejectedError ToolError UsageLimitExceededError UserError",
        "events": "Event GuardrailChecked ModelCalled ModelRetried OutputRejected TaskCancelled"
        " TaskCompleted TaskExpired TaskFailed TaskInputRequired TaskProgressed TaskRecovered"
        " TaskRejected TaskResumed TaskStarted TaskSubmitted ToolCalled ToolStarted",
        "models": "Model",
        "runtime": "Runtime SweepReport TaskPage Worker open",
        "spec": "TaskSpec",
        "states": "TERMINAL_STATES TaskState",
        "stores": "MemoryStore Store open_store",
        "task": "Task TaskError current_task",
        "tools": "IdempotencyKey Tool tool",
        "usage": "Usage",
    }.items()
    for name in names.split()
}


def __getattr__(name: str) -> object:
    """Import a public name on first use and keep it, so the next lookup is a plain one."""
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'taskloom' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    if module == "agent":
        # An agent run with no `runtime=` gets a private in-memory one: the runtime layer
        # registers it with the agent layer, which it does not import itself.
        importlib.import_module(".runtime._runtime", __name__).register_default_runtime()
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
