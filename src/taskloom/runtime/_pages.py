"""What `Runtime.list` and `Runtime.sweep` return, and the opaque list cursor."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .._record import TaskQuery, TaskRecord
from ..errors import UserError
from ..states import TaskState

if TYPE_CHECKING:
    from ..task import Task

__all__ = ("SweepReport", "TaskPage", "decode_cursor", "encode_cursor", "list_query")


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPage:
    """One page of `Runtime.list`."""

    tasks: list[Task]
    """The tasks, newest first."""
    next_cursor: str | None
    """Pass as `cursor=` for the next page; `None` on the last page."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepReport:
    """What one sweep did."""

    expired: int
    """Unfinished tasks past their time to live, now `expired`."""
    purged: int
    """Ended tasks past their retention, now deleted with their events."""


def encode_cursor(record: TaskRecord) -> str:
    raw = f"{record.created_ms}:{record.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, task_id = raw.partition(":")
        return int(created), task_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise UserError(
            f"cursor {cursor!r} is not one this runtime gave out; pass a page's `next_cursor`"
        ) from None


def list_query(
    *,
    state: TaskState | str | list[TaskState | str] | None,
    owner: str | None,
    name: str | None,
    parent_id: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
) -> TaskQuery:
    """The store query of `Runtime.list` (one more than `limit`, to know if there is more).

    Raises:
        UserError: a limit out of range, an unknown state or a foreign cursor.
    """
    if not 1 <= limit <= 1000:
        raise UserError(f"limit must be between 1 and 1000, not {limit!r}")
    states = [state] if isinstance(state, str) else list(state or [])
    try:
        parsed = tuple(TaskState(s).value for s in states)
    except ValueError:
        raise UserError(
            f"unknown state in {state!r}; states are {', '.join(s.value for s in TaskState)}"
        ) from None
    return TaskQuery(
        states=parsed,
        owner=owner,
        name=name,
        parent_id=parent_id,
        created_after_ms=None if since is None else int(since.timestamp() * 1000),
        before=decode_cursor(cursor),
        limit=limit + 1,
    )
