"""taskloom: a runtime for tasks performed by AI agents.

```python
import taskloom

async with taskloom.open("sqlite:///tasks.db") as rt:
    async with rt.task("research", payload={"q": 1}) as task:
        await task.progress({"step": "search"})
        await task.complete({"findings": 3})
```
"""

from .errors import ConflictError as ConflictError
from .errors import InvalidTransitionError as InvalidTransitionError
from .errors import MigrationError as MigrationError
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
from .errors import UserError as UserError
from .events import Event as Event
from .events import TaskCancelled as TaskCancelled
from .events import TaskCompleted as TaskCompleted
from .events import TaskExpired as TaskExpired
from .events import TaskFailed as TaskFailed
from .events import TaskInputRequired as TaskInputRequired
from .events import TaskProgressed as TaskProgressed
from .events import TaskRejected as TaskRejected
from .events import TaskResumed as TaskResumed
from .events import TaskStarted as TaskStarted
from .events import TaskSubmitted as TaskSubmitted
from .runtime import Runtime as Runtime
from .runtime import SweepReport as SweepReport
from .runtime import TaskPage as TaskPage
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

__all__ = (
    "ConflictError",
    "Event",
    "InvalidTransitionError",
    "MemoryStore",
    "MigrationError",
    "NotFoundError",
    "NotSerializableError",
    "PayloadTooLargeError",
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
    "TaskInputRequired",
    "TaskPage",
    "TaskProgressed",
    "TaskRejected",
    "TaskRejectedError",
    "TaskResumed",
    "TaskSpec",
    "TaskStarted",
    "TaskState",
    "TaskSubmitted",
    "TaskloomError",
    "UserError",
    "current_task",
    "open",
    "open_store",
)
