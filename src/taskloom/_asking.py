"""`Task.ask`: a typed question to a human, answered from any process by `rt.respond`."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator, Mapping
from contextvars import ContextVar
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from ._json import encode
from ._record import Change, NewEvent, now_ms
from .errors import InvalidAnswerError, InvalidTransitionError
from .events import TaskResumed
from .states import TERMINAL_STATES, TaskState, sources

if TYPE_CHECKING:
    from .task import Task

__all__ = ("WORK_DEADLINE", "ask")

_KINDS = frozenset({"question", "approval", "authorization"})

WORK_DEADLINE: ContextVar[asyncio.Timeout | None] = ContextVar(
    "taskloom_work_deadline", default=None
)
"""The deadline of the work around this code; waiting for a human does not count against it."""

# one question at a time per task: parallel tool calls may each want an answer
_LOCKS: weakref.WeakKeyDictionary[Task[Any], asyncio.Lock] = weakref.WeakKeyDictionary()


async def ask(
    task: Task[Any],
    prompt: str,
    answer_type: Any,
    kind: str,
    details: Mapping[str, Any] | None,
    input_timeout: timedelta | float | None,
) -> Any:
    if kind not in _KINDS:
        raise InvalidTransitionError(f"kind must be one of {sorted(_KINDS)}, not {kind!r}")
    lock = _LOCKS.setdefault(task, asyncio.Lock())
    async with lock, _paused(WORK_DEADLINE.get()):
        return await _ask(task, prompt, answer_type, kind, details, input_timeout)


@contextlib.asynccontextmanager
async def _paused(deadline: asyncio.Timeout | None) -> AsyncGenerator[None]:
    """Stop the work's deadline clock while a human is asked; restart it with what was left."""
    when = None if deadline is None else deadline.when()
    if deadline is None or when is None:
        yield
        return
    loop = asyncio.get_running_loop()
    left = when - loop.time()
    deadline.reschedule(None)
    try:
        yield
    finally:
        deadline.reschedule(loop.time() + max(left, 0.0))


async def _ask(
    task: Task[Any],
    prompt: str,
    answer_type: Any,
    kind: str,
    details: Mapping[str, Any] | None,
    input_timeout: timedelta | float | None,
) -> Any:
    adapter: TypeAdapter[Any] = TypeAdapter(answer_type)
    request: dict[str, Any] = {"kind": kind, "prompt": prompt, "schema": adapter.json_schema()}
    if details:
        request["details"] = dict(details)
    rec = task._rec  # pyright: ignore[reportPrivateUsage] -- Task's own helper
    host = task._host  # pyright: ignore[reportPrivateUsage] -- Task's own helper
    text = encode(request, what="input request", task_id=rec.id, limit=host.max_payload_bytes)
    target = TaskState.INPUT_REQUIRED
    if rec.state is not TaskState.WORKING:
        raise InvalidTransitionError(
            f"task {rec.id!r} is {rec.state.value}; only a working task can ask for input"
        )
    at = now_ms()
    change = Change(
        task_id=rec.id,
        event=NewEvent(kind="input_required", data=f'{{"request":{text}}}', at_ms=at),
        from_states=sources(target),
        to_state=target,
    )
    seq = await host._apply(change)  # pyright: ignore[reportPrivateUsage] -- the host protocol
    if seq is None:
        await task._settle_refused(target)  # pyright: ignore[reportPrivateUsage] -- Task's own helper
        raise task._ended_error()  # pyright: ignore[reportPrivateUsage] -- Task's own helper
    rec.state, rec.last_seq, rec.updated_ms = target, seq, at
    seconds = (
        input_timeout.total_seconds() if isinstance(input_timeout, timedelta) else input_timeout
    )
    try:
        async with asyncio.timeout(seconds):
            answer = await _wait_for_answer(task, seq)
    except TimeoutError:
        await task.expire("input_timeout")
        raise task._ended_error() from None  # pyright: ignore[reportPrivateUsage] -- Task's own helper
    try:
        return adapter.validate_python(answer)
    except ValidationError as exc:
        raise InvalidAnswerError(f"the answer to {prompt!r} does not fit: {exc}") from None


async def _wait_for_answer(task: Task[Any], after: int) -> Any:
    async for event in task.events(after=after):
        if isinstance(event, TaskResumed):
            rec = task._rec  # pyright: ignore[reportPrivateUsage] -- Task's own helper
            rec.state, rec.last_seq = TaskState.WORKING, event.seq
            return event.answer
        if event.kind in TERMINAL_STATES:
            await task.refresh()
            raise task._ended_error()  # pyright: ignore[reportPrivateUsage] -- Task's own helper
    await task.refresh()
    raise task._ended_error()  # pyright: ignore[reportPrivateUsage] -- Task's own helper
