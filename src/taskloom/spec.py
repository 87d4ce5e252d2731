"""`TaskSpec`: what to do, reusable and serialisable."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import UserError

__all__ = ("TaskSpec",)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    """A reusable description of a kind of task.

    The agent layer adds input and output types, tools and limits; the core needs only
    what every task has: a name and its clocks.
    """

    name: str
    """Names the kind of task; listed and filtered on."""
    instructions: str = ""
    """What to do, in words (the agent's prompt for this task)."""
    ttl_seconds: float | None = None
    """How long a task may live before it ends `expired` (reason `ttl`); `None` for no limit."""
    retention_seconds: float | None = None
    """How long the record lives after it ends; `None` for the runtime's default."""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may pass anything
            raise UserError("a task needs a non-empty name, such as TaskSpec(name='summarise')")
        check_seconds("ttl_seconds", self.ttl_seconds)
        check_seconds("retention_seconds", self.retention_seconds)


def check_seconds(what: str, value: float | None) -> None:
    """Refuse a duration that is negative, zero, NaN or not a number."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may pass anything
        raise UserError(f"{what} must be a number of seconds, not {value!r}")
    if value <= 0:
        raise UserError(f"{what} must be positive, not {value!r}; leave it unset for no limit")
