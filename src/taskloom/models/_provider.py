"""Helpers shared by the HTTP provider adapters (`openai.py`, `anthropic.py`).

Names: providers accept `[A-Za-z0-9_-]` names for tools and schemas, so an output's name is
made to fit.

Retries: the provider SDKs run with their own retries off (the agent loop owns retries), so the
adapters read the same signals the SDKs would have used: the status code, the
`x-should-retry` header, and `retry-after-ms` / `retry-after` (seconds or an HTTP date).
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

__all__ = ("retry_after", "retryable_status", "safe_name")

_RETRYABLE_STATUS = frozenset({408, 409, 429})


def retryable_status(status_code: int, headers: Mapping[str, str]) -> bool:
    """Whether an error answer with this status may succeed if sent again unchanged.

    The server's `x-should-retry` header wins when present; otherwise 408 (timeout),
    409 (lock conflict), 429 (rate limit) and every 5xx (529 "overloaded" included) are
    retryable.
    """
    hint = headers.get("x-should-retry")
    if hint == "true":
        return True
    if hint == "false":
        return False
    return status_code in _RETRYABLE_STATUS or status_code >= 500


def retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> timedelta | None:
    """The wait the server asked for, or `None` when absent or unreadable.

    `retry-after-ms` wins over `retry-after`, which may be seconds or an HTTP date (a date in
    the past gives zero).
    """
    for name, unit in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * unit
        except ValueError:
            continue
        if math.isfinite(seconds):
            return timedelta(seconds=max(seconds, 0.0))
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; a naive one means the same
        when = when.replace(tzinfo=UTC)
    return max(when - (now or datetime.now(UTC)), timedelta(0))


def safe_name(name: str) -> str:
    """`name` made fit for a tool or schema name: refused characters become `_`.

    It is cut to 64 characters, OpenAI's limit (Anthropic allows 128).
    """
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "output"
