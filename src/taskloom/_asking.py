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

__all__ = ("INPUT_TIMEOUT", "PAUSABLE", "ask")

_KINDS = frozenset({"question", "approval", "authorization"})

PAUSABLE: ContextVar[tuple[asyncio.Timeout, ...]] = ContextVar("taskloom_pausable", default=())
"""Clocks of the work around this code (its deadline, a tool's timeout): waiting for a human
does not count against them."""

INPUT_TIMEOUT: ContextVar[float | None] = ContextVar("taskloom_input_timeout", default=None)
"""How long `ask` waits when not told, as the enclosing agent run's limits say."""

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
    if input_timeout is None:
        input_timeout = INPUT_TIMEOUT.get()
    async with lock, _paused(PAUSABLE.get()):
        return await _ask(task, prompt, answer_type, kind, details, input_timeout)


@contextlib.asynccontextmanager
async def _paused(clocks: tuple[asyncio.Timeout, ...]) -> AsyncGenerator[None]:
    """Stop the work's clocks while a human is asked; restart each with what it had left."""
    loop = asyncio.get_running_loop()
    stopped: list[tuple[asyncio.Timeout, float]] = []
    for clock in clocks:
        when = clock.when()
        if when is not None and not clock.expired():
            stopped.append((clock, when - loop.time()))
            clock.reschedule(None)
    try:
        yield
    finally:
        for clock, left in stopped:
            clock.reschedule(loop.time() + max(left, 0.0))


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
    except BaseException:
        # the wait was abandoned (cancelled, or it failed): take the question back
        await asyncio.shield(_withdraw(task))
        raise
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


async def _withdraw(task: Task[Any]) -> None:
    """Move a task still waiting for an answer back to `working`, with no answer."""
    rec = task._rec  # pyright: ignore[reportPrivateUsage] -- Task's own helper
    if rec.state is not TaskState.INPUT_REQUIRED:
        return
    change = Change(
        task_id=rec.id,
        event=NewEvent(kind="resumed", data='{"answer":null,"withdrawn":true}', at_ms=now_ms()),
        from_states=(TaskState.INPUT_REQUIRED.value,),
        to_state=TaskState.WORKING,
    )
    seq = await task._host._apply(change)  # pyright: ignore[reportPrivateUsage] -- the host protocol
    if seq is not None:
        rec.state, rec.last_seq = TaskState.WORKING, seq
