"""JSON encoding of everything a store keeps, with the checks that run before any write."""

from __future__ import annotations

import dataclasses
import enum
import json
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from .errors import NotSerializableError, PayloadTooLargeError

__all__ = ("dumps", "encode")

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType] -- any set
    raise TypeError(f"object of type {type(value).__name__} is not JSON-serialisable")


_DEFAULT_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_default
)


def dumps(value: Any) -> str:
    """Compact JSON text for `value`, converting pydantic models, dataclasses and the like."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError):
        return _DEFAULT_ENCODER.encode(value)


def encode(value: Any, *, what: str, task_id: str, limit: int) -> str:
    """Encode `value` for the store, or raise a clear error before anything is written.

    Args:
        value: The payload, progress update, result or error to store.
        what: What it is, for the message ("result", "progress", ...).
        task_id: The task it belongs to, for the message.
        limit: The largest encoded size allowed, in bytes.

    Raises:
        NotSerializableError: `value` is not JSON (or holds NaN or infinity).
        PayloadTooLargeError: its JSON is longer than `limit` bytes.
    """
    try:
        text = dumps(value)
    except (TypeError, ValueError) as exc:
        raise NotSerializableError(
            f"the {what} of task {task_id!r} cannot be stored: {exc}; use dicts, lists, str,"
            " int, float, bool, None, pydantic models or dataclasses"
        ) from None
    size = len(text) if text.isascii() else len(text.encode())
    if size > limit:
        raise PayloadTooLargeError(
            f"the {what} of task {task_id!r} is {size} bytes of JSON, over the limit of {limit};"
            " store large data elsewhere and keep a reference, or raise the limit"
            " (`taskloom.open(..., max_payload_bytes=...)`)"
        )
    return text
