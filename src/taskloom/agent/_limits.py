"""Limits: every task has finite ones, and reaching one is an honest ending, never `completed`."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..errors import UserError

__all__ = ("Limits",)


_MAY_BE_ZERO = frozenset({"model_retries", "task_retries"})
"""Limits where zero means "none" (no retries) rather than "no work at all"."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What one agent task may use. Every field has a finite default.

    Reaching `max_turns`, `max_tool_calls`, `max_tokens` or `max_cost_usd` ends the task
    `failed` with that reason (`max_turns`, `max_tool_calls`, `max_tokens`, `budget`);
    `deadline_seconds` ends it `expired` (reason `deadline`); `input_timeout_seconds` ends a
    task waiting for a human `expired` (reason `input_timeout`).
    """

    max_turns: int = 20
    """Model calls that produce an answer (retries of one call count once)."""
    max_tool_calls: int = 50
    max_tokens: int = 200_000
    """Input plus output tokens over the whole task."""
    max_cost_usd: float = 5.0
    deadline_seconds: float = 600.0
    """Wall-clock time for the work, from the start of the run."""
    input_timeout_seconds: float = 3600.0
    """How long to wait for a human's answer."""
    tool_timeout_seconds: float = 120.0
    """Per tool call, unless the tool sets its own timeout."""
    model_timeout_seconds: float = 120.0
    """Per model call, streaming included (a hung stream is a retryable failure)."""
    model_retries: int = 3
    """Retries of one failed model call (retryable errors only)."""
    task_retries: int = 10
    """Retries of model calls over the whole task."""
    max_retry_wait_seconds: float = 60.0
    """The longest `retry-after` honoured; a provider asking for more fails the call."""
    loop_threshold: int = 3
    """The same failing tool call (name and arguments) this many times ends the task (`loop`)."""
    max_depth: int = 3
    """How deep tasks may delegate to sub-agent tasks."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"Limits.{f.name} must be a number, not {value!r}")
            if not math.isfinite(value) or value < 0 or (value == 0 and f.name not in _MAY_BE_ZERO):
                raise UserError(
                    f"Limits.{f.name} must be a finite positive number, not {value!r}: every"
                    " task has finite limits"
                )
