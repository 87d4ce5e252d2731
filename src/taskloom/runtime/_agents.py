"""The runtime's side of agent tasks: submit, run, respond, and event listeners.

`submit` stores the task (`submitted`) with its job, for a worker (this runtime's or any
other process's) to claim and perform, so the caller gets a handle at once; `run` performs
it in the caller's own asyncio task.
`respond` answers a task waiting in `input_required`, from any process: the answer is
checked against the JSON schema stored with the request, then written as the `resumed`
event, which the waiting task (in whichever process) picks up.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Self, cast

from .._json import encode
from .._record import Change, NewEvent, now_ms, submitted_event
from .._schema import schema_problems
from ..errors import InvalidAnswerError, InvalidTransitionError, UserError
from ..events import Event, TaskInputRequired, event_from_row
from ..states import TaskState, sources
from ..task import OutputT, Task
from ._jobs import Job, Registry, Runnable
from ._worker import LocalRun, Worker

if TYPE_CHECKING:
    # Only annotations here: the agent layer (pydantic models, tools, the loop) loads when
    # agents are used, not with the runtime, so that `taskloom ls` and friends start fast.
    from ..agent import Agent, Limits
    from ._runtime import Runtime

__all__ = ("AgentTasks", "Listeners", "Schedule")

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
        if task_id in self._by_task:
            await self.deliver_event(
                event_from_row(task_id, seq, event.at_ms, event.kind, event.data)
            )

    async def deliver_event(self, typed: Event) -> None:
        callbacks = self._by_task.get(typed.task_id)
        if not callbacks:
            return
        for callback in list(callbacks):
            try:
                outcome = callback(typed)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:  # an observer must not break the task it observes
                _log.warning("on_event callback failed: %s", exc, exc_info=exc)


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """When and in which order a submitted task runs, and what makes it unique."""

    fire_ms: int | None = None
    priority: int = 0
    idempotency_key: str | None = None
    serial_key: str | None = None

    @classmethod
    def of(
        cls,
        *,
        at: datetime | None = None,
        delay: timedelta | float | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        serial_key: str | None = None,
    ) -> Schedule:
        """Check the options of `submit`.

        Raises:
            UserError: one of them is unusable; the message says which and why.
        """
        if at is not None and delay is not None:
            raise UserError("give at= or delay=, not both")
        fire_ms: int | None = None
        if at is not None:
            if not isinstance(at, datetime):  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may pass anything
                raise UserError(f"at must be a datetime, not {at!r}")
            if at.tzinfo is None:
                raise UserError(f"at must be timezone-aware (e.g. datetime.now(UTC)), not {at!r}")
            fire_ms = int(at.timestamp() * 1000)
        elif delay is not None:
            seconds: Any = delay.total_seconds() if isinstance(delay, timedelta) else delay
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise UserError(f"delay must be a number of seconds of at least 0, not {delay!r}")
            fire_ms = now_ms() + int(seconds * 1000)
        if isinstance(priority, bool) or not isinstance(priority, int):  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may pass anything
            raise UserError(f"priority must be a whole number, not {priority!r}")
        for option, value in (("idempotency_key", idempotency_key), ("serial_key", serial_key)):
            if value is not None and (not isinstance(value, str) or not value):  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may pass anything
                raise UserError(f"{option} must be a non-empty string, not {value!r}")
        return cls(
            fire_ms=fire_ms,
            priority=priority,
            idempotency_key=idempotency_key,
            serial_key=serial_key,
        )


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
    schedule: Schedule,
) -> Task:
    """Store a `submitted` agent task with its job, for a worker to claim and perform."""
    from ..agent._output import OutputType  # loaded already: the caller has an agent

    OutputType.of(output_type)  # refuse an unusable output type before anything is stored
    if not isinstance(prompt, str):  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may pass anything
        raise UserError(f"prompt must be a str, not {type(prompt).__name__}")
    handle = rt.task(
        name or agent.name,
        owner=owner,
        payload={"prompt": prompt} if payload is None else payload,
        task_id=task_id,
        parent=parent,
    )
    rec = handle._rec  # pyright: ignore[reportPrivateUsage] -- same package
    rec.job = Job.of(prompt, output_type, limits).to_json()
    rec.fire_ms, rec.priority = schedule.fire_ms, schedule.priority
    rec.idempotency_key, rec.serial_key = schedule.idempotency_key, schedule.serial_key
    worker = rt.worker
    if worker is not None and rec.name not in rt.registry:
        rt.registry.add(rec.name, Runnable(agent))
    # listen before the first write, so that `on_event` sees `submitted` too
    stop = rt.listen(rec.id, on_event) if on_event is not None else None
    if worker is not None:
        worker.local[rec.id] = LocalRun(
            agent=agent,
            output_type=output_type,
            on_event=on_event,
            on_token=on_token,
            stop_listening=stop,
        )
    try:
        stored, created = await rt._create(rec, [submitted_event(rec, rec.created_ms)])  # pyright: ignore[reportPrivateUsage] -- same package
    except BaseException:
        _forget(rt, rec.id, stop)
        raise
    if not created:
        _forget(rt, rec.id, stop)  # the same id or key again: the existing task, never a duplicate
    elif worker is not None:
        worker.notify()
    return Task(rt, stored, stored=True)


def _forget(rt: Runtime, task_id: str, stop: Callable[[], None] | None) -> None:
    if rt.worker is not None:
        rt.worker.local.pop(task_id, None)
    if stop is not None:
        stop()


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


class AgentTasks:
    """The agent-task side of `Runtime`: submit, register, respond and listen."""

    registry: Registry
    worker: Worker | None
    _listeners: Listeners

    def _runtime(self) -> Runtime:
        return cast("Runtime", self)

    async def submit(
        self,
        agent: Agent,
        prompt: str,
        *,
        output_type: type[OutputT] = str,
        name: str | None = None,
        owner: str | None = None,
        payload: Any = None,
        task_id: str | None = None,
        parent: Task | str | None = None,
        limits: Limits | None = None,
        on_event: Callable[[Event], None | Awaitable[None]] | None = None,
        on_token: Callable[[str], None] | None = None,
        at: datetime | None = None,
        delay: timedelta | float | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        serial_key: str | None = None,
    ) -> Task[OutputT]:
        """Store a durable agent task for a worker to perform; return its handle at once.

        A worker (this runtime's own, or one in any process sharing the store) claims it
        when it is due and performs it; `await task.result()` waits for the validated
        output. If that worker dies, another one resumes the task from its journal.

        Args:
            agent: The agent that performs it; workers elsewhere find it by its name (or
                `name`), so register it there too.
            prompt: What to do.
            output_type: The type of the result; define it at module level so that workers
                in other processes can import it.
            name: The task's name; the agent's name by default.
            owner: Who the task belongs to.
            payload: The task's input as shown on the record; `{"prompt": prompt}` by default.
            task_id: The id to use; the same id again returns the existing task.
            parent: The task that spawned it.
            limits: Its limits; the agent's by default.
            on_event: Called with each event this runtime writes for it (when this
                runtime's worker performs it, that is every event).
            on_token: Called with streamed text when this runtime's worker performs it.
            at: Do not start it before this time.
            delay: Do not start it before this many seconds from now.
            priority: Among due tasks, higher starts first (then earlier fire time, then
                earlier submission).
            idempotency_key: Submitting the same key again returns the existing task
                instead of creating another.
            serial_key: Tasks with the same key run one at a time, in submission order.
        """
        task = await start_agent_task(
            self._runtime(),
            agent,
            prompt,
            output_type=output_type,
            name=name,
            owner=owner,
            payload=payload,
            task_id=task_id,
            parent=parent,
            limits=limits,
            on_event=on_event,
            on_token=on_token,
            schedule=Schedule.of(
                at=at,
                delay=delay,
                priority=priority,
                idempotency_key=idempotency_key,
                serial_key=serial_key,
            ),
        )
        return _typed(task, output_type)

    async def retry(self, task_id: str) -> Task:
        """Submit a new attempt of an ended agent task: same name, input, job and priority.

        The new task records which task it retries (`task.retry_of`); the old one is kept.

        Raises:
            NotFoundError: there is no such task.
            UserError: the task is not an ended submitted agent task.
        """
        rt = self._runtime()
        old = await rt.get(task_id)
        rec = old._rec  # pyright: ignore[reportPrivateUsage] -- same package
        if rec.job is None:
            raise UserError(
                f"task {task_id!r} was not submitted to a worker (it ran in an `async with`"
                " block), so there is nothing to run again; start a new task instead"
            )
        if not rec.state.terminal:
            raise UserError(
                f"task {task_id!r} is {rec.state.value}; only an ended task can be retried"
                " (cancel it first to replace it)"
            )
        handle = rt.task(rec.name, owner=rec.owner, parent=rec.parent_id)
        new = handle._rec  # pyright: ignore[reportPrivateUsage] -- same package
        new.payload, new.priority, new.serial_key = rec.payload, rec.priority, rec.serial_key
        new.job = Job.from_json(rec.job).retrying(rec.id).to_json()
        stored, _ = await rt._create(new, [submitted_event(new, new.created_ms)])  # pyright: ignore[reportPrivateUsage] -- same package
        if self.worker is not None:
            self.worker.notify()
        return Task(rt, stored, stored=True)

    def register(self, *things: Any) -> Self:
        """Tell this runtime's worker which tasks it may perform.

        Give agents (found by their `name`), `@agent.task` functions (by the function's
        name), modules that define them, or lists of these. A worker claims only tasks whose
        names are registered; `submit` registers its agent on its own.

        Raises:
            UserError: a name already stands for another agent.
        """
        added = sum(self.registry.register(thing) for thing in things)
        if added and self.worker is not None:
            self.worker.notify()
        return self

    async def respond(self, task_id: str, answer: Any) -> Task:
        """Answer a task waiting in `input_required`, from any process, and resume it.

        For an approval, `True`/`False` (or "yes"/"no") will do.

        Raises:
            InvalidAnswerError: the answer does not fit the request's type.
            InvalidTransitionError: the task is not waiting for input.
        """
        return await respond(self._runtime(), task_id, answer)

    def listen(
        self, task_id: str, callback: Callable[[Event], None | Awaitable[None]]
    ) -> Callable[[], None]:
        """Call `callback` with every event written through this runtime for the task.

        Returns:
            A function that stops the calls.
        """
        return self._listeners.add(task_id, callback)


def _typed(task: Task, output_type: Any) -> Task[Any]:
    """Make `task.result()` return a validated `output_type`."""
    from ..agent._output import OutputType  # loaded already: the caller has an agent

    output: OutputType[Any] = OutputType.of(output_type)
    task._decode = output.adapter.validate_python  # pyright: ignore[reportPrivateUsage] -- same package
    return task
