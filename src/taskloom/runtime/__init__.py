"""The runtime: the store, the event bus, the watcher and the sweeper of one program."""

from ._open import open as open
from ._runtime import Runtime as Runtime
from ._runtime import SweepReport as SweepReport
from ._runtime import TaskPage as TaskPage

__all__ = ("Runtime", "SweepReport", "TaskPage", "open")
