"""Guardrails: checks on a task's input, its output, and each tool call.

A guardrail is a plain callable, sync or async, that returns (or raises) a verdict:

- `None` or `True`: pass;
- `Retry("reason")`: ask the model to try again, telling it the reason (output and tool
  calls only; for input it blocks);
- `Block("reason")` or `False`: stop: the task ends `failed` with reason `guardrail`.

```python
def no_secrets(output: Report) -> Retry | None:
    if "password" in output.body:
        return Retry("do not include passwords")
```

Every verdict is recorded as a `guardrail_checked` event.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ("Block", "Guardrail", "Retry", "Verdict", "judge")


@dataclass(frozen=True, slots=True)
class Retry(Exception):
    """Ask the model to try again; `reason` is what it is told."""

    reason: str


@dataclass(frozen=True, slots=True)
class Block(Exception):
    """Stop the task: it ends `failed` with reason `guardrail`."""

    reason: str


Verdict = Literal["pass", "retry", "block"]
Guardrail = Callable[[Any], Any | Awaitable[Any]]
"""A check: takes the input text, the output value, or a `ToolCallCheck`; returns a verdict."""


async def judge(guardrail: Guardrail, value: Any) -> tuple[Verdict, str]:
    """Run one guardrail and return its verdict and reason."""
    try:
        outcome = guardrail(value)
        if inspect.isawaitable(outcome):
            outcome = await outcome
    except (Retry, Block) as signal:
        outcome = signal
    if outcome is None or outcome is True:
        return "pass", ""
    if outcome is False:
        return "block", f"{_name(guardrail)} refused"
    if isinstance(outcome, Retry):
        return "retry", outcome.reason
    if isinstance(outcome, Block):
        return "block", outcome.reason
    raise TypeError(
        f"guardrail {_name(guardrail)} returned {outcome!r}; return None/True, False, Retry(...)"
        " or Block(...)"
    )


def guardrail_name(guardrail: Guardrail) -> str:
    return _name(guardrail)


def _name(guardrail: Guardrail) -> str:
    return str(getattr(guardrail, "__name__", None) or type(guardrail).__name__)
