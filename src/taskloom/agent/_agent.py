"""`Agent`: a model, instructions and tools. It holds no per-run state.

```python
agent = Agent("openai:gpt-4o-mini", instructions="Be brief.", tools=[lookup])
weather = await agent.run("Weather in Paris?", output_type=Weather)
```

`run` performs the prompt as a task on a runtime (the one given, or a private in-memory one
for this event loop) and returns the validated output. For a durable task that outlives the
call, use `rt.submit(agent, prompt, output_type=...)`.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import weakref
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from ..errors import TaskEndedError, UserError
from ..events import Event
from ..models import Model, ModelSettings, default_model, infer_model
from ..states import TaskState
from ..task import Task, current_task
from ..tools import Tool, as_tool, tool
from ._guardrails import Guardrail
from ._journal import UnknownOutcome
from ._limits import Limits
from ._loop import charge_parent, inherit_limits, run_loop
from ._output import OutputType

if TYPE_CHECKING:
    from ._decorator import TaskFunction

__all__ = ("Agent", "AgentHost", "register_default_host")

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")

EventCallback = Callable[[Event], None | Awaitable[None]]

_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("taskloom_agent_depth", default=0)
# the callbacks of the enclosing agent task: sub-agent tasks report to them too
_CALLBACKS: contextvars.ContextVar[tuple[EventCallback | None, Callable[[str], None] | None]] = (
    contextvars.ContextVar("taskloom_agent_callbacks", default=(None, None))
)


class AgentHost(Protocol):
    """What an agent needs from a runtime (implemented by `taskloom.Runtime`)."""

    def task(
        self,
        spec: Any,
        *,
        owner: str | None = None,
        payload: Any = None,
        task_id: str | None = None,
        ttl_seconds: float | None = None,
        retention_seconds: float | None = None,
        parent: Task | str | None = None,
    ) -> Task: ...

    def listen(self, task_id: str, callback: EventCallback) -> Callable[[], None]: ...

    async def submit(
        self,
        agent: Agent,
        prompt: str,
        *,
        output_type: Any = str,
        name: str | None = None,
        payload: Any = None,
        parent: Task | str | None = None,
        on_event: EventCallback | None = None,
        on_token: Callable[[str], None] | None = None,
        at: datetime | None = None,
        delay: timedelta | float | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        serial_key: str | None = None,
    ) -> Task[Any]: ...


_default_host_factory: Callable[[], Awaitable[AgentHost]] | None = None
_default_hosts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AgentHost] = (
    weakref.WeakKeyDictionary()
)


def register_default_host(factory: Callable[[], Awaitable[AgentHost]]) -> None:
    """Called by the runtime layer: how `Agent.run` makes a runtime when given none."""
    global _default_host_factory
    _default_host_factory = factory


async def _default_host(parent: Task | None = None) -> AgentHost:
    """The runtime of the enclosing task, else a private in-memory one for this event loop."""
    if parent is not None:
        return parent._host  # pyright: ignore[reportPrivateUsage, reportReturnType] -- a Runtime
    loop = asyncio.get_running_loop()
    host = _default_hosts.get(loop)
    if host is None:
        if _default_host_factory is None:
            # the runtime layer registers the factory when it loads; load it by name (the
            # agent layer never imports it: it sits above)
            importlib.import_module("taskloom.runtime._runtime").register_default_runtime()
        if _default_host_factory is None:  # pragma: no cover -- registered just above
            raise UserError("no runtime: import taskloom, or pass runtime=")
        host = _default_hosts[loop] = await _default_host_factory()
    return host


class Agent:
    """A model, instructions and tools, able to perform any number of tasks at once.

    Args:
        model: A `Model`, or `provider:name` (`openai:gpt-4o-mini`, `anthropic:...`,
            `local:smollm2`). By default an OpenAI-compatible endpoint when one is
            configured (`OPENAI_API_KEY` / `OPENAI_BASE_URL`), else the offline local model.
        name: The agent's name; tasks it performs are named after it unless told otherwise.
        instructions: The system prompt.
        tools: Functions (or `Tool`s) the model may call.
        output_retries: How often an answer that does not fit the output type is sent back.
        limits: Default limits for its tasks.
        input_guardrails: Checks on the prompt. output_guardrails: checks on the validated
            output. tool_guardrails: checks on each tool call (`ToolCallCheck`).
        settings: Generation settings for every model call.
        ask_human: Give the model a tool `ask_human(question)` that moves the task to
            `input_required` until someone answers with `rt.respond`.
        unknown_outcome: What a task taken over after a crash does about an `at_most_once`
            tool call that was in flight: `"ask"` a human whether it took effect (answer
            `OutcomeAnswer`), or `"fail"` the task (reason `outcome_unknown`).
    """

    def __init__(
        self,
        model: Model | str | None = None,
        *,
        name: str = "agent",
        instructions: str = "",
        tools: Iterable[Tool | Callable[..., Any]] = (),
        output_retries: int = 2,
        limits: Limits | None = None,
        input_guardrails: Iterable[Guardrail] = (),
        output_guardrails: Iterable[Guardrail] = (),
        tool_guardrails: Iterable[Guardrail] = (),
        settings: ModelSettings | None = None,
        ask_human: bool = False,
        unknown_outcome: UnknownOutcome = "ask",
    ) -> None:
        self.model: Model = infer_model(model if model is not None else default_model())
        self.name = name
        self.instructions = instructions
        built = [as_tool(t) for t in tools]
        if ask_human:
            built.append(_ASK_HUMAN)
        self.tools: dict[str, Tool] = {t.name: t for t in built}
        if len(self.tools) != len(built):
            names = [t.name for t in built]
            twice = sorted({n for n in names if names.count(n) > 1})
            raise UserError(f"two tools share the name(s) {', '.join(twice)}; give each its own")
        if output_retries < 0:
            raise UserError(f"output_retries must be 0 or more, not {output_retries!r}")
        self.output_retries = output_retries
        self.limits = limits or Limits()
        self.input_guardrails = tuple(input_guardrails)
        self.output_guardrails = tuple(output_guardrails)
        self.tool_guardrails = tuple(tool_guardrails)
        self.settings = settings or ModelSettings()
        if unknown_outcome not in ("ask", "fail"):
            raise UserError(f"unknown_outcome must be 'ask' or 'fail', not {unknown_outcome!r}")
        self.unknown_outcome: UnknownOutcome = unknown_outcome

    def __repr__(self) -> str:
        return f"<Agent {self.name!r} model={self.model.name!r} tools={list(self.tools)}>"

    @overload
    async def run(
        self,
        prompt: str,
        *,
        output_type: type[T],
        runtime: AgentHost | None = None,
        name: str | None = None,
        owner: str | None = None,
        payload: Any = None,
        task_id: str | None = None,
        parent: Task | str | None = None,
        limits: Limits | None = None,
        on_event: EventCallback | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> T: ...

    @overload
    async def run(
        self,
        prompt: str,
        *,
        runtime: AgentHost | None = None,
        name: str | None = None,
        owner: str | None = None,
        payload: Any = None,
        task_id: str | None = None,
        parent: Task | str | None = None,
        limits: Limits | None = None,
        on_event: EventCallback | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> str: ...

    async def run(
        self,
        prompt: str,
        *,
        output_type: Any = str,
        runtime: AgentHost | None = None,
        name: str | None = None,
        owner: str | None = None,
        payload: Any = None,
        task_id: str | None = None,
        parent: Task | str | None = None,
        limits: Limits | None = None,
        on_event: EventCallback | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Any:
        """Perform `prompt` as a task and return its validated output.

        Raises:
            TaskFailedError: a limit, the loop guard, a guardrail, invalid output or an error
                ended it (`reason` says which). TaskExpiredError: its deadline passed.
                TaskCancelledError: it was cancelled.
        """
        parent = parent if parent is not None else current_task()
        host = runtime or await _default_host(parent if isinstance(parent, Task) else None)
        task = host.task(
            name or self.name,
            owner=owner,
            payload={"prompt": prompt} if payload is None else payload,
            task_id=task_id,
            parent=parent,
        )
        return await self.perform(
            task,
            prompt,
            output_type=output_type,
            host=host,
            limits=limits,
            on_event=on_event,
            on_token=on_token,
        )

    async def perform(
        self,
        task: Task,
        prompt: str,
        *,
        output_type: Any = str,
        host: AgentHost,
        limits: Limits | None = None,
        on_event: EventCallback | None = None,
        on_token: Callable[[str], None] | None = None,
        listening: bool = False,
        resumed: bool = False,
    ) -> Any:
        """Run the loop inside `task` (entering it), complete it and return the output.

        `listening=True` says that `on_event` already listens to the task (set up by the
        caller before the task was stored). `resumed=True` says that the task ran before
        (a worker took it over): its journal is replayed, so that no model call, tool call
        or question already in its log is made again.
        """
        output: OutputType[Any] = OutputType.of(output_type)
        chosen = inherit_limits(limits or self.limits)
        depth = _DEPTH.get()
        if depth >= chosen.max_depth:
            raise UserError(
                f"delegation is {depth} tasks deep, the limit (Limits.max_depth); an agent task"
                " may not start more nested agent tasks"
            )
        inherited_event, inherited_token = _CALLBACKS.get()
        on_event = on_event or inherited_event
        on_token = on_token or inherited_token
        stop = host.listen(task.id, on_event) if on_event is not None and not listening else None
        token = _DEPTH.set(depth + 1)
        callbacks = _CALLBACKS.set((on_event, on_token))
        try:
            async with task:
                value: Any = await run_loop(
                    self,
                    task,
                    prompt,
                    output=output,
                    limits=chosen,
                    on_token=on_token,
                    resumed=resumed,
                )
                await task.complete(output.dump(value))
                return value
        except TaskEndedError:
            raise
        except Exception as exc:
            if task.state is not TaskState.FAILED:
                raise
            # the block recorded the failure; say so in the same terms as task.result()
            raise task._ended_error() from exc  # pyright: ignore[reportPrivateUsage] -- same package
        finally:
            _DEPTH.reset(token)
            _CALLBACKS.reset(callbacks)
            charge_parent(task.usage)
            if stop is not None:
                stop()

    def task(self, function: Any = None, /) -> Any:
        """Decorate a typed function stub as a task this agent performs (see `TaskFunction`)."""
        from ._decorator import make_task_function

        return make_task_function(self, function)

    def fn(self, task_function: TaskFunction[P, R]) -> TaskFunction[P, R]:
        """Give this agent another agent's task as a typed tool; use as a decorator or call.

        When the model calls it, the task runs as a child of the calling task (linked by
        `parent_id`), within `Limits.max_depth`. Returns the task function unchanged.
        """
        from ._decorator import task_as_tool

        made = task_as_tool(task_function)
        if made.name in self.tools:
            raise UserError(f"{self.name} already has a tool named {made.name!r}")
        self.tools[made.name] = made
        return task_function


async def _ask_human(question: str, task: Task) -> str:
    """Ask the human you work for a question and wait for the answer.

    Args:
        question: The question, complete enough to answer without other context.
        task: The running task (injected, not shown to the model).
    """
    answer: str = await task.ask(question, answer_type=str)
    return answer


# idempotent: its only effect, the question, is journaled, so a run taken over after a crash
# waits for the open question (or has its answer) instead of asking again
_ASK_HUMAN = tool(_ask_human, name="ask_human", effect="idempotent")
