"""`Task.ask`: a typed question to a human, answered from any process by `rt.respond`.

Each question is journaled: its request carries a `step` key (`t2.0/1` is the first question
asked during turn 2's first tool call, `ask1` the first asked outside a tool). A resumed agent
run (see `taskloom.agent`) hands `ask` the questions of the task's log through `ASK_SCOPE`:
one already answered returns its answer without asking again, the one still open is waited
for (with the input timeout that is left), one taken back unanswered is asked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
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

__all__ = ("ASK_SCOPE", "INPUT_TIMEOUT", "PAUSABLE", "AskScope", "PastAsk", "ask")

_KINDS = frozenset({"question", "approval", "authorization"})

PAUSABLE: ContextVar[tuple[asyncio.Timeout, ...]] = ContextVar("taskloom_pausable", default=())
"""Clocks of the work around this code (its deadline, a tool's timeout): waiting for a human
does not count against them."""

INPUT_TIMEOUT: ContextVar[float | None] = ContextVar("taskloom_input_timeout", default=None)
"""How long `ask` waits when not told, as the enclosing agent run's limits say."""

# one question at a time per task: parallel tool calls may each want an answer
_LOCKS: weakref.WeakKeyDictionary[Task[Any], asyncio.Lock] = weakref.WeakKeyDictionary()
# questions asked outside an agent run, per task: their keys are `ask1`, `ask2`, ...
_ASKED: weakref.WeakKeyDictionary[Task[Any], int] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True, kw_only=True)
class PastAsk:
    """A question found in the log of a resumed task: answered, or still open."""

    seq: int
    """The `seq` of its `input_required` event."""
    at_ms: int
    """When it was asked (epoch milliseconds): the input timeout counts from then."""
    answered: bool = False
    answer: Any = None
    """The answer, when `answered`."""


@dataclass(slots=True, kw_only=True)
class AskScope:
    """Where questions are asked from: an agent run of `task_id`, or one of its tool steps."""

    task_id: str
    step: str = ""
    """The tool step key (`t2.0`), or `""` outside a tool call."""
    past: dict[str, PastAsk] = field(default_factory=dict[str, PastAsk])
    """The journaled questions of the task by key, shared by the run's scopes and consumed
    as they are replayed."""
    asked: int = 0

    def next_key(self) -> str:
        """The journal key of the next question asked in this scope."""
        self.asked += 1
        return f"{self.step}/{self.asked}" if self.step else f"ask{self.asked}"


ASK_SCOPE: ContextVar[AskScope | None] = ContextVar("taskloom_ask_scope", default=None)
"""Set by the agent loop around its run and each tool call."""


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
    seconds = (
        input_timeout.total_seconds() if isinstance(input_timeout, timedelta) else input_timeout
    )
    # the key is taken when asked, not when the lock is had: the order of the calls is the
    # order of the code, the same in a resumed run
    scope = ASK_SCOPE.get()
    if scope is not None and scope.task_id == task.id:
        key = scope.next_key()
        past = scope.past.pop(key, None)
    else:
        _ASKED[task] = asked = _ASKED.get(task, 0) + 1
        key, past = f"ask{asked}", None
    adapter: TypeAdapter[Any] = TypeAdapter(answer_type)
    async with lock, _paused(PAUSABLE.get()):
        if past is None:
            answer = _AGAIN
        elif past.answered:
            answer = past.answer
            if task.state is TaskState.INPUT_REQUIRED:
                await task.refresh()  # answered since this handle last looked: it is working
        else:
            answer = await _wait_again(task, past, seconds)
        if answer is _AGAIN:
            request: dict[str, Any] = {
                "kind": kind,
                "prompt": prompt,
                "schema": adapter.json_schema(),
                "step": key,
            }
            if details:
                request["details"] = dict(details)
            while answer is _AGAIN:  # taken back unanswered (by an earlier worker): ask again
                answer = await _ask(task, request, seconds)
    try:
        return adapter.validate_python(answer)
    except ValidationError as exc:
        raise InvalidAnswerError(f"the answer to {prompt!r} does not fit: {exc}") from None


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


_AGAIN: Any = object()
"""What waiting gives when the question was taken back unanswered: ask it again."""


async def _ask(task: Task[Any], request: dict[str, Any], seconds: float | None) -> Any:
    """Write the request (the task goes `input_required`) and wait for the answer."""
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
    seq = await task._write(change)  # pyright: ignore[reportPrivateUsage] -- Task's own helper
    if seq is None:
        await task._settle_refused(target)  # pyright: ignore[reportPrivateUsage] -- Task's own helper
        raise task._ended_error()  # pyright: ignore[reportPrivateUsage] -- Task's own helper
    rec.state, rec.last_seq, rec.updated_ms = target, seq, at
    return await _answer(task, seq, seconds)


async def _wait_again(task: Task[Any], past: PastAsk, seconds: float | None) -> Any:
    """A resumed run reached the question its task still waits for: wait for the answer.

    No new request is written; the input timeout counts from when it was asked.
    """
    if seconds is not None:
        seconds = max(0.0, seconds - (now_ms() - past.at_ms) / 1000)
    return await _answer(task, past.seq, seconds)


async def _answer(task: Task[Any], seq: int, seconds: float | None) -> Any:
    """The answer to the request written at `seq`, within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            return await _wait_for_answer(task, seq)
    except TimeoutError:
        await task.expire("input_timeout")
        raise task._ended_error() from None  # pyright: ignore[reportPrivateUsage] -- Task's own helper
    except BaseException:
        # the wait was abandoned (cancelled, or it failed): take the question back
        await asyncio.shield(_withdraw(task))
        raise


async def _wait_for_answer(task: Task[Any], after: int) -> Any:
    async for event in task.events(after=after):
        if isinstance(event, TaskResumed):
            rec = task._rec  # pyright: ignore[reportPrivateUsage] -- Task's own helper
            rec.state, rec.last_seq = TaskState.WORKING, event.seq
            return _AGAIN if event.withdrawn else event.answer
        if event.kind in TERMINAL_STATES:
            await task.refresh()
            raise task._ended_error()  # pyright: ignore[reportPrivateUsage] -- Task's own helper
    await task.refresh()
    raise task._ended_error()  # pyright: ignore[reportPrivateUsage] -- Task's own helper


async def _withdraw(task: Task[Any]) -> None:
    """Move a task still waiting for an answer back to `working`, with no answer."""
    rec = task._rec  # pyright: ignore[reportPrivateUsage] -- Task's own helper
    if rec.state is not TaskState.INPUT_REQUIRED or task._lost:  # pyright: ignore[reportPrivateUsage] -- Task's own helper
        return  # not waiting, or another worker holds the task now: its question stays open
    change = Change(
        task_id=rec.id,
        event=NewEvent(kind="resumed", data='{"answer":null,"withdrawn":true}', at_ms=now_ms()),
        from_states=(TaskState.INPUT_REQUIRED.value,),
        to_state=TaskState.WORKING,
    )
    seq = await task._write(change)  # pyright: ignore[reportPrivateUsage] -- Task's own helper
    if seq is not None:
        rec.state, rec.last_seq = TaskState.WORKING, seq
