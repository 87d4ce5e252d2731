"""`Task`: one unit of work, as the handle you hold and the record the store keeps.

```python
async with rt.task("research", owner="me", ttl_seconds=60, payload={"q": 1}) as task:
    await task.progress({"step": "search"})
    await task.complete({"findings": 3})
```

Entering starts the task (`working`); leaving settles it: a clean exit without a terminal
call completes it with `None`, an exception fails it (and propagates), an
`asyncio.CancelledError` cancels it (and propagates). The handle enforces its own time to
live: past it, the body is interrupted, the task ends `expired` and `TaskExpiredError` is
raised. A task ended by anyone else (a cancel from another process, the sweeper) interrupts
the body the same way and raises the matching `TaskEndedError`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar, Token
from datetime import timedelta
from types import TracebackType
from typing import Any, Generic, Self

from typing_extensions import TypeVar

from ._json import clip as _clip
from ._json import dumps, encode, is_flat
from ._record import Change, NewEvent, TaskRecord, now_ms, started_event, submitted_event
from ._task_view import TaskError as TaskError
from ._task_view import TaskHost as TaskHost
from ._task_view import TaskView
from .errors import (
    ConflictError,
    InvalidTransitionError,
    LeaseLostError,
    StoreUnavailableError,
    UserError,
)
from .events import Event
from .states import TERMINAL_STATES, TaskState, check_transition, sources

__all__ = ("Task", "TaskError", "current_task")

_S = TaskState
# module constants: an enum member looked up on its class costs a descriptor call each time
_SUBMITTED, _WORKING, _COMPLETED = _S.SUBMITTED, _S.WORKING, _S.COMPLETED
_CURRENT: ContextVar[Task | None] = ContextVar("taskloom_current_task", default=None)


def current_task() -> Task | None:
    """The task whose `async with` block encloses the running code, or `None`.

    Each asyncio task sees its own, so concurrent sibling tasks never see each other's.
    """
    return _CURRENT.get()


OutputT = TypeVar("OutputT", default=Any)


class Task(TaskView, Generic[OutputT]):
    """One unit of work: its record (state, progress, result, timestamps) and its controls.

    Make one with `Runtime.task` or `Runtime.create`, or fetch one with `Runtime.get`.
    Attributes are a snapshot of the record; `await task.refresh()` reloads it.
    """

    __slots__ = (
        "__weakref__",
        "_body",
        "_cancelling",
        "_decode",
        "_ending_in_body",
        "_exiting",
        "_fence",
        "_host",
        "_interrupted",
        "_lost",
        "_rec",
        "_stored",
        "_timer",
        "_token",
    )

    def __init__(self, host: TaskHost, record: TaskRecord, *, stored: bool) -> None:
        self._host = host
        self._rec = record
        self._stored = stored
        self._body: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._decode: Callable[[Any], OutputT] | None = None
        self._ending_in_body = False
        self._exiting = False
        self._interrupted = False
        self._fence: int | None = None
        """The epoch a worker claimed the task at; its writes require it (fencing)."""
        self._lost = False
        """The worker lost or released its lease: this handle writes nothing more."""
        self._timer: asyncio.TimerHandle | None = None
        self._token: Token[Task | None] | None = None

    def __repr__(self) -> str:
        return f"<Task {self._rec.id!r} {self._rec.name!r} {self._rec.state.value}>"

    async def refresh(self) -> Self:
        """Reload the record from the store."""
        self._rec = await self._host._reload(self._rec.id)  # pyright: ignore[reportPrivateUsage] -- the host protocol
        self._stored = True
        return self

    def events(self, *, after: int = 0) -> AsyncIterator[Event]:
        """Every event after `after`, then live ones until the task ends (any process)."""
        return self._host.events(self._rec.id, after=after)

    async def result(self) -> OutputT:
        """Wait until the task ends; return its result or raise why it has none.

        A task submitted with an `output_type` returns a validated value of that type; other
        tasks return the stored JSON.

        Raises:
            TaskFailedError: it failed. TaskCancelledError, TaskExpiredError,
            TaskRejectedError: it ended that way.
        """
        if self._rec.state not in TERMINAL_STATES:
            async for event in self.events(after=self._rec.last_seq):
                if event.kind in TERMINAL_STATES:
                    break
            await self.refresh()
        if self._rec.state is _S.COMPLETED:
            value = self.output
            return value if self._decode is None else self._decode(value)
        raise self._ended_error()

    async def ask(
        self,
        prompt: str,
        *,
        answer_type: Any = str,
        kind: str = "question",
        details: Mapping[str, Any] | None = None,
        input_timeout: timedelta | float | None = None,
    ) -> Any:
        """Ask a human (or any caller) a typed question and wait for the answer.

        The task moves to `input_required` with the request (its prompt and the JSON schema
        of `answer_type`); `rt.respond(task_id, answer)`, from any process, checks the
        answer and resumes the task, and this returns the answer validated as `answer_type`.

        Args:
            prompt: The question.
            answer_type: The type of the answer (`str`, `bool`, a `Literal`, a model...).
            kind: `question`, `approval` or `authorization`.
            details: Anything that helps to answer (shown to whoever answers).
            input_timeout: How long to wait; past it the task ends `expired` (`input_timeout`).

        Raises:
            TaskExpiredError: no answer in time. TaskCancelledError and the like: the task
                ended while waiting.
        """
        from ._asking import ask

        return await ask(self, prompt, answer_type, kind, details, input_timeout)

    async def _note(
        self, kind: str, data: Mapping[str, Any], *, usage: Mapping[str, Any] | None = None
    ) -> int | None:
        """Append an event that changes no state (a model call, a tool call, a verdict).

        Returns:
            Its `seq`, or `None` when the task has ended (then nothing is written).
        """
        rec = self._rec
        if rec.state in TERMINAL_STATES:
            return None
        text = encode(data, what=kind, task_id=rec.id, limit=self._host.max_payload_bytes)
        change = Change(
            task_id=rec.id,
            event=NewEvent(kind=kind, data=text, at_ms=now_ms()),
            from_states=_PROGRESS_FROM,
            usage=None if usage is None else dumps(usage),
        )
        seq = await self._write(change)
        if seq is None:
            await self._settle_refused(None)
            return None
        rec.last_seq = seq
        if change.usage is not None:
            rec.usage = change.usage
        return seq

    # -- transitions -----------------------------------------------------------------------

    async def progress(self, update: Mapping[str, Any]) -> None:
        """Merge `update` into the task's progress and record it as an event.

        Each key replaces the stored one (a shallow merge). A no-op once the task has ended.

        Raises:
            InvalidTransitionError: the task has not been started.
            NotSerializableError, PayloadTooLargeError: `update` cannot be stored.
        """
        rec = self._rec
        state = rec.state
        if state in TERMINAL_STATES:
            return
        flat = is_flat(update)
        if not flat and (
            not isinstance(update, Mapping) or not all(isinstance(k, str) for k in update)  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may pass anything
        ):
            raise UserError(f"progress must be a mapping with str keys, not {update!r}")
        if state is _SUBMITTED:
            raise InvalidTransitionError(
                f"cannot report progress on task {rec.id!r}: it is submitted; enter it first"
                " (`async with task:`)"
            )
        text = encode(update, what="progress", task_id=rec.id, limit=self._host.max_progress_bytes)
        # a dict of scalars is what decoding its JSON would give: a shallow copy will do
        patch: dict[str, Any] = dict(update) if flat else json.loads(text)
        at = now_ms()
        change = Change(
            task_id=rec.id,
            event=NewEvent(kind="progressed", data=f'{{"progress":{text}}}', at_ms=at),
            from_states=_PROGRESS_FROM,
            progress=patch,
            progress_json=text,
        )
        seq = await self._write(change)
        if seq is None:
            await self._settle_refused(None)
            return
        rec.progress.update(patch)
        rec.last_progress_ms = rec.updated_ms = at
        rec.last_seq = seq

    async def complete(self, result: Any = None) -> bool:
        """End the task `completed` with `result` (JSON-serialisable; pydantic models are fine).

        Returns:
            `True` if this call ended the task, `False` if it had already ended (a no-op).
        """
        if self._rec.state in TERMINAL_STATES:
            return False
        text = encode(
            result, what="result", task_id=self._rec.id, limit=self._host.max_payload_bytes
        )
        return await self._end(_COMPLETED, data=f'{{"result":{text}}}', result=text)

    async def fail(self, error: str | BaseException, *, reason: str = "error") -> bool:
        """End the task `failed`, recording the error's type and message.

        Returns:
            `True` if this call ended the task, `False` if it had already ended.
        """
        if isinstance(error, BaseException):
            etype, message = type(error).__name__, str(error) or type(error).__name__
        else:
            etype, message = None, str(error)
        limit = self._host.max_payload_bytes
        message = _clip(message, limit // 2)
        err = encode(
            {"type": etype, "message": message}, what="error", task_id=self.id, limit=limit
        )
        data = encode(
            {"reason": reason, "error_type": etype, "message": message},
            what="error",
            task_id=self.id,
            limit=limit,
        )
        return await self._end(_S.FAILED, data=data, reason=reason, error=err)

    async def cancel(self, reason: str = "") -> bool:
        """End the task `cancelled`. From outside its `async with` block, this interrupts it.

        Returns:
            `True` if this call ended the task, `False` if it had already ended.
        """
        return await self._end(_S.CANCELLED, data=_reason_data(reason), reason=reason)

    async def reject(self, reason: str = "") -> bool:
        """End the task `rejected`: it is declined.

        Returns:
            `True` if this call ended the task, `False` if it had already ended.
        """
        return await self._end(_S.REJECTED, data=_reason_data(reason), reason=reason)

    async def expire(self, reason: str = "ttl") -> bool:
        """End the task `expired` (reason `ttl` or `deadline`).

        Returns:
            `True` if this call ended the task, `False` if it had already ended.
        """
        return await self._end(_S.EXPIRED, data=_reason_data(reason), reason=reason)

    async def _end(
        self,
        target: TaskState,
        *,
        data: str,
        reason: str | None = None,
        result: str | None = None,
        error: str | None = None,
    ) -> bool:
        if not check_transition(self._rec.id, self._rec.state, target):
            return False
        at = now_ms()
        change = Change(
            task_id=self._rec.id,
            event=NewEvent(kind=target.value, data=data, at_ms=at),
            from_states=sources(target),
            to_state=target,
            reason=reason,
            result=result,
            error=error,
        )
        # while the body ends its own task, a watcher that sees the new state first must not
        # take it for an end from elsewhere and interrupt the body
        self._ending_in_body = self._body is not None and self._body is asyncio.current_task()
        try:
            seq = await self._write(change)
        finally:
            self._ending_in_body = False
        if seq is None:
            await self._settle_refused(target)
            return False
        rec = self._rec
        rec.state = target
        rec.reason, rec.result, rec.error = reason, result, error
        rec.ended_ms = rec.updated_ms = at
        rec.purge_ms = at + rec.retention_ms
        rec.last_seq = seq
        return True

    async def _write(self, change: Change) -> int | None:
        """Apply a change through the host; a worker's handle fences it with its epoch."""
        if self._fence is not None:
            if self._lost:
                raise LeaseLostError(
                    f"this worker gave task {self._rec.id!r} up; it writes nothing more for it"
                )
            change.epoch = self._fence
        return await self._host._apply(change)  # pyright: ignore[reportPrivateUsage] -- the host protocol

    def _give_up(self) -> None:
        """The worker lost or released its lease: stop the body and write nothing more."""
        self._lost = True
        if self._body is not None and not self._exiting:
            self._body.cancel(f"taskloom: the lease on task {self._rec.id!r} ended here")

    async def _settle_refused(self, target: TaskState | None) -> None:
        """A conditional write was refused: learn the stored state and explain it."""
        self._rec = await self._host._reload(self._rec.id)  # pyright: ignore[reportPrivateUsage] -- the host protocol
        if self._rec.state in TERMINAL_STATES:
            self._interrupt()
            return
        if self._fence is not None and self._rec.epoch != self._fence:
            self._lost = True
            holder = self._rec.lease_owner
            raise LeaseLostError(
                f"task {self._rec.id!r} was taken over by "
                + (f"worker {holder!r}" if holder else "another worker")
                + " (the lease here ended); this worker stops performing it"
            )
        if target is not None:
            check_transition(self._rec.id, self._rec.state, target)
        raise ConflictError(
            f"task {self._rec.id!r} changed under this handle (it is now {self._rec.state.value});"
            " another handle or process is driving it"
        )

    # -- the block -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._body is not None:
            raise UserError(f"task {self.id!r} is already entered; a task runs once")
        await self._start()
        body = asyncio.current_task()
        assert body is not None, "a Task is entered from inside an asyncio task"
        self._body, self._cancelling = body, body.cancelling()
        self._token = _CURRENT.set(self)
        self._host._attach(self)  # pyright: ignore[reportPrivateUsage] -- the host protocol
        if self._rec.expires_ms is not None:
            loop = asyncio.get_running_loop()
            delay = (self._rec.expires_ms - now_ms()) / 1000
            self._timer = loop.call_at(loop.time() + delay, self._host._expire_later, self)  # pyright: ignore[reportPrivateUsage] -- the host protocol
        return self

    async def _start(self) -> None:
        if self._fence is not None:
            return  # a worker's claim started it (or took it over) already
        rec = self._rec
        at = now_ms()
        if rec.expires_ms is not None and rec.expires_ms <= at:
            if not self._stored:  # keep a record of it, so that `rt.get` can say what happened
                events = [submitted_event(rec, rec.created_ms)]
                self._rec, _ = await self._host._create(rec, events)  # pyright: ignore[reportPrivateUsage] -- the host protocol
                self._stored = True
            await self.expire("ttl")
            raise self._ended_error()
        if not self._stored:
            rec.created_ms = rec.updated_ms = rec.started_ms = at
            rec.state = _WORKING
            events = [submitted_event(rec, at), started_event(at)]
            stored, created = await self._host._create(rec, events)  # pyright: ignore[reportPrivateUsage] -- the host protocol
            self._rec, self._stored = stored, True
            if created:
                return
        await self._start_stored(at)

    async def _start_stored(self, at: int) -> None:
        """Start a task that is in the store: only a `submitted` one may start."""
        rec = self._rec
        if rec.state in TERMINAL_STATES:
            if rec.state is _S.COMPLETED:
                raise ConflictError(
                    f"task {rec.id!r} already completed; read its result with"
                    " `await rt.get(task_id)` or start a new task with another id"
                )
            raise self._ended_error()
        if rec.state is not _S.SUBMITTED:
            raise ConflictError(
                f"task {rec.id!r} is already {rec.state.value} under another handle;"
                " a task runs in one place at a time"
            )
        change = Change(
            task_id=rec.id,
            event=started_event(at),
            from_states=sources(_S.WORKING),
            to_state=_S.WORKING,
        )
        seq = await self._write(change)
        if seq is None:
            await self.refresh()
            return await self._start()
        rec.state, rec.started_ms, rec.updated_ms, rec.last_seq = _S.WORKING, at, at, seq

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exiting = True
        if self._timer is not None:
            self._timer.cancel()
        self._host._detach(self)  # pyright: ignore[reportPrivateUsage] -- the host protocol
        if self._token is not None:
            _CURRENT.reset(self._token)
        if self._lost:
            return  # another worker holds the task now: leave it to that one
        if self._fence is not None and isinstance(exc, StoreUnavailableError):
            self._lost = True  # the store is away: a worker resumes the task once it is back
            return
        if self._interrupted:
            await self._exit_interrupted(exc)
        elif exc is None:
            if self._rec.state is _WORKING:
                await self.complete(None)
                self._raise_unless_completed()
        elif isinstance(exc, Exception):
            await asyncio.shield(self.fail(exc))
        else:
            await asyncio.shield(self.cancel(_cancel_reason(exc)))

    def _raise_unless_completed(self) -> None:
        """After the implicit completion: if the task ended elsewhere first, say how."""
        if self._rec.state is not _COMPLETED:
            raise self._ended_error()

    async def _exit_interrupted(self, exc: BaseException | None) -> None:
        """Leave a body that this handle interrupted because the task ended elsewhere."""
        body = self._body
        assert body is not None
        if not isinstance(exc, asyncio.CancelledError):
            # our cancel has not reached the body (it ended, or raised, first): take it here
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                pass
        if body.uncancel() > self._cancelling:
            # someone else cancelled the body too: that cancellation goes on
            if exc is None:
                raise asyncio.CancelledError
            return
        raise self._ended_error() from (None if isinstance(exc, asyncio.CancelledError) else exc)

    def _interrupt(self) -> None:
        """Stop the body: the task ended (elsewhere, or by another coroutine).

        A task completed by someone else is not interrupted: its work is done, and what
        the body still writes is a no-op.
        """
        body = self._body
        # the body itself may be the caller (its own write was refused): the cancel then
        # lands at its next await, or in `_exit_interrupted` if it has none
        if body is None or self._exiting or self._interrupted or self._rec.state is _COMPLETED:
            return
        self._interrupted = True
        body.cancel(f"taskloom: task {self._rec.id!r} ended {self._rec.state.value}")

    def _ended_externally(self, record: TaskRecord) -> None:
        """Called by the runtime when the store shows this task ended without this handle."""
        if self._rec.state not in TERMINAL_STATES and not self._ending_in_body:
            self._rec = record
            self._interrupt()


_PROGRESS_FROM = (_S.WORKING.value, _S.INPUT_REQUIRED.value)


def _reason_data(reason: str) -> str:
    return json.dumps({"reason": reason})


def _cancel_reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "the asyncio task running it was cancelled"
    return f"interrupted by {type(exc).__name__}"
