"""JSON encoding of everything a store keeps, with the checks that run before any write."""

from __future__ import annotations

import dataclasses
import enum
import json
import uuid
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any, TypeGuard

from pydantic import BaseModel

from .errors import NotSerializableError, PayloadTooLargeError

__all__ = ("clip", "dumps", "encode", "is_flat")

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

_SCALARS = frozenset({str, int, float, bool, type(None)})

# `_ENCODER` builds a C encoder on every call; `dumps` first tries one built once, with the
# same settings but no `default` and no check for circular references (neither can be
# shared between calls). On anything it cannot encode (a type needing `default`, NaN, a
# cycle, which ends in `RecursionError`) `dumps` falls back to the full encoders, which
# give the usual result or error; whatever it does encode, it encodes as they would.
_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)  # private; always in CPython
_FAST_ENCODER: Callable[[Any, int], list[str]] | None = (
    None
    if _make_encoder is None
    else _make_encoder(None, None, encode_basestring, None, ":", ",", False, False, False)
)
_CONTAINERS = (dict, list)


def is_flat(value: object) -> TypeGuard[dict[str, Any]]:
    """Whether `value` is a `dict` of `str` keys to str, int, float, bool or None (exact types).

    Such a dict round-trips through JSON unchanged (given finite floats), so a shallow copy
    of it equals what `json.loads(dumps(value))` would give.
    """
    if type(value) is not dict:
        return False
    for key, item in value.items():  # pyright: ignore[reportUnknownVariableType] -- any dict
        if type(key) is not str or type(item) not in _SCALARS:  # pyright: ignore[reportUnknownArgumentType] -- any dict
            return False
    return True


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
    if value is None:
        return "null"
    if _FAST_ENCODER is not None and type(value) in _CONTAINERS:
        try:
            return "".join(_FAST_ENCODER(value, 0))
        except (TypeError, ValueError, RecursionError):
            pass  # the full encoders below encode it, or raise the usual error
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
        NotSerializableError: `value` is not JSON (or holds NaN, infinity or a NUL character).
        PayloadTooLargeError: its JSON is longer than `limit` bytes.
    """
    try:
        text = dumps(value)
    except (TypeError, ValueError) as exc:
        raise NotSerializableError(
            f"the {what} of task {task_id!r} cannot be stored: {exc}; use dicts, lists, str,"
            " int, float, bool, None, pydantic models or dataclasses"
        ) from None
    if "\\u0000" in text:
        raise NotSerializableError(
            f"the {what} of task {task_id!r} holds a NUL character (\\u0000), which PostgreSQL"
            " cannot keep in JSON; remove it (the same refusal on every store keeps them alike)"
        )
    size = len(text) if text.isascii() else len(text.encode())
    if size > limit:
        raise PayloadTooLargeError(
            f"the {what} of task {task_id!r} is {size} bytes of JSON, over the limit of {limit};"
            " store large data elsewhere and keep a reference, or raise the limit"
            " (`taskloom.open(..., max_payload_bytes=...)`)"
        )
    return text


def clip(text: str, max_bytes: int) -> str:
    """`text`, cut so that it takes at most `max_bytes` bytes as a JSON string.

    Counting characters is not enough: one character may take up to six bytes of JSON.
    """
    size = len(dumps(text).encode())
    while size > max_bytes and text:
        text = text[: len(text) * max_bytes // size]
        size = len(dumps(text).encode())
    return text
