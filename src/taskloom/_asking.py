"""`Task.ask`: a typed question to a human, answered from any process by `rt.respond`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
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

__all__ = ("ask",)

_KINDS = frozenset({"question", "approval", "authorization"})


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
