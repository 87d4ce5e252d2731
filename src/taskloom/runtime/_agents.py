"""The runtime's side of agent tasks: submit, run, respond, and event listeners.

`submit` stores the task (`submitted`) and runs it in the runtime's background group, so
the caller gets a handle at once; `run` performs it in the caller's own asyncio task.
`respond` answers a task waiting in `input_required`, from any process: the answer is
checked against the JSON schema stored with the request, then written as the `resumed`
event, which the waiting task (in whichever process) picks up.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from .._json import encode
from .._record import Change, NewEvent, now_ms
from .._schema import schema_problems
from ..agent import Agent, Limits
from ..agent._output import OutputType
from ..errors import InvalidAnswerError, InvalidTransitionError, TaskEndedError
from ..events import Event, TaskInputRequired, event_from_row
from ..states import TaskState, sources
from ..task import Task

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ("Listeners", "respond", "start_agent_task")

_log = logging.getLogger("taskloom")
EventCallback = Callable[[Event], None | Awaitable[None]]


class Listeners:
    """Callbacks that receive every event written through this runtime for one task."""

    def __init__(self) -> None:
        self._by_task: dict[str, list[EventCallback]] = {}

    def add(self, task_id: str, callback: EventCallback) -> Callable[[], None]:
        callbacks = self._by_task.setdefault(task_id, [])
        callbacks.append(callback)

        def remove() -> None:
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks and self._by_task.get(task_id) is callbacks:
                del self._by_task[task_id]

        return remove

    def wants(self, task_id: str) -> bool:
        return task_id in self._by_task

    async def deliver(self, task_id: str, seq: int, event: NewEvent) -> None:
        callbacks = self._by_task.get(task_id)
        if not callbacks:
            return
        typed = event_from_row(task_id, seq, event.at_ms, event.kind, event.data)
        for callback in list(callbacks):
            try:
                outcome = callback(typed)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:  # an observer must not break the task it observes
                _log.warning("on_event callback failed: %s", exc, exc_info=exc)


async def start_agent_task(
    rt: Runtime,
    agent: Agent,
    prompt: str,
    *,
    output_type: Any,
    name: str | None,
    owner: str | None,
    payload: Any,
    task_id: str | None,
    parent: Task | str | None,
    limits: Limits | None,
    on_event: EventCallback | None,
    on_token: Callable[[str], None] | None,
) -> Task:
    """Store a `submitted` agent task and start performing it in the background."""
    OutputType.of(output_type)  # refuse an unusable output type before anything is stored
    handle = rt.task(
        name or agent.name,
        owner=owner,
        payload={"prompt": prompt} if payload is None else payload,
        task_id=task_id,
        parent=parent,
    )
    # listen before the first write, so that `on_event` sees `submitted` too
    stop = rt.listen(handle.id, on_event) if on_event is not None else None
    try:
        task = await rt._store_submitted(handle)  # pyright: ignore[reportPrivateUsage] -- same package
    except BaseException:
        if stop is not None:
            stop()
        raise
    if task.state is not TaskState.SUBMITTED:
        if stop is not None:
            stop()
        return task  # the same id again: the existing task, never a duplicate

    async def perform() -> None:
        try:
            await agent.perform(
                task,
                prompt,
                output_type=output_type,
                host=rt,
                limits=limits,
                on_event=on_event,
                on_token=on_token,
                listening=stop is not None,
            )
        except TaskEndedError:
            pass  # recorded on the task
        except Exception as exc:
            if task.state is TaskState.SUBMITTED:  # it never started: say why on the record
                await task.fail(exc)
            _log.info("task %s failed: %s", task.id, exc)
        finally:
            if stop is not None:
                stop()

    rt._spawn(perform())  # pyright: ignore[reportPrivateUsage] -- the runtime's own group
    return task


async def respond(rt: Runtime, task_id: str, answer: Any) -> Task:
    """Answer a task waiting for input; see `Runtime.respond`."""
    task = await rt.get(task_id)
    if task.state is not TaskState.INPUT_REQUIRED:
        raise InvalidTransitionError(
            f"task {task_id!r} is {task.state.value}, not waiting for input; nothing to answer"
        )
    request = await _pending_request(rt, task)
    answer = _normalise(request, answer)
    problems = schema_problems(answer, request.get("schema", {}))
    if problems:
        raise InvalidAnswerError(
            f"the answer to {request.get('prompt', 'the request')!r} does not fit: "
            + "; ".join(problems)
        )
    text = encode(answer, what="answer", task_id=task_id, limit=rt.max_payload_bytes)
    change = Change(
        task_id=task_id,
        event=NewEvent(kind="resumed", data=f'{{"answer":{text}}}', at_ms=now_ms()),
        from_states=sources(TaskState.WORKING),
        to_state=TaskState.WORKING,
    )
    if await rt._apply(change) is None:  # pyright: ignore[reportPrivateUsage] -- same package
        task = await rt.get(task_id)
        raise InvalidTransitionError(
            f"task {task_id!r} is {task.state.value} now; it was answered or ended meanwhile"
        )
    return await rt.get(task_id)


async def _pending_request(rt: Runtime, task: Task) -> dict[str, Any]:
    # the request is usually among the last events; else read the whole log
    events = await rt.store.read_events(task.id, after=max(0, task.last_seq - 50))
    if not any(isinstance(e, TaskInputRequired) for e in events):
        events = await rt.store.read_events(task.id, after=0, limit=task.last_seq)
    for event in reversed(events):
        request: Any = event.request if isinstance(event, TaskInputRequired) else None
        if isinstance(request, dict):
            return cast(dict[str, Any], request)
    return {}


def _normalise(request: dict[str, Any], answer: Any) -> Any:
    """Accept `True`/`False` for an approval, and `"yes"`/`"no"` from a terminal."""
    if request.get("kind") == "approval":
        if isinstance(answer, str) and answer.strip().lower() in _YES | _NO:
            answer = answer.strip().lower() in _YES
        if isinstance(answer, bool):
            return {"approved": answer, "reason": ""}
    return answer


_YES = frozenset({"y", "yes", "true", "approve", "approved", "ok"})
_NO = frozenset({"n", "no", "false", "deny", "denied", "reject"})
