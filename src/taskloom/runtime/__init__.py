"""The runtime: the store, the event bus, the watcher and the sweeper of one program."""

from ._open import open as open
from ._pages import SweepReport as SweepReport
from ._pages import TaskPage as TaskPage
from ._runtime import Runtime as Runtime
from ._worker import Worker as Worker

__all__ = ("Runtime", "SweepReport", "TaskPage", "Worker", "open")
