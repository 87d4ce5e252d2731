"""`@agent.task`: a typed function stub becomes a task the agent performs.

```python
@agent.task
async def forecast(city: str) -> Weather:
    \"\"\"Give the current weather for a city.\"\"\"

w = await forecast("Paris")                 # a validated Weather
task = await forecast.submit("Paris")       # a durable Task handle
```

The docstring (or a primer, `@agent.task("...")`) is the instruction, the parameters are
inputs validated at call time, and the return annotation is the output type. A sync stub
gives a sync call that blocks. Every call also takes the keyword-only extras `session=`,
`on_event=`, `on_token=` and `runtime=`.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import textwrap
import typing
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar

from pydantic import ValidationError, create_model

from .._json import dumps
from ..errors import UserError
from ..states import TERMINAL_STATES
from ..task import Task
from ..tools import Tool, tool

__all__ = ("RESERVED", "TaskFunction", "make_task_function", "task_as_tool")

RESERVED = frozenset(
    {
        "session",
        "on_event",
        "on_token",
        "runtime",
        "at",
        "delay",
        "priority",
        "idempotency_key",
        "serial_key",
    }
)
"""Keyword arguments of calling and submitting a task, so not usable as its inputs."""

P = ParamSpec("P")
R = TypeVar("R")


class TaskFunction(Generic[P, R]):
    """A task stub bound to an agent: call it, `submit` it, or `cancel(session=...)` it."""

    def __init__(self, agent: Any, function: Callable[P, Any], primer: str | None) -> None:
        _refuse_unusable(function, primer)
        self.agent = agent
        self.function = function
        self.name: str = function.__name__
        self.instructions = primer or inspect.cleandoc(function.__doc__ or "")
        self.signature = inspect.signature(function)
        hints = typing.get_type_hints(function, include_extras=True)
        self.output_type: Any = hints.pop("return", str)
        self.hints = hints
        fields: dict[str, Any] = {}
        for pname, param in self.signature.parameters.items():
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (hints.get(pname, Any), default)
        self._inputs = create_model(f"{self.name}_inputs", **fields)
        self.is_async = inspect.iscoroutinefunction(function)
        self._running: dict[str, set[Task]] = {}
        self.__doc__ = function.__doc__
        self.__name__ = self.name

    def __repr__(self) -> str:
        return f"<TaskFunction {self.name!r} of {self.agent!r}>"

    def _prompt(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise UserError(f"{self.name}{self.signature}: {exc}") from None
        try:
            inputs = self._inputs.model_validate(dict(bound.arguments))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise UserError(f"invalid input for {self.name}: {problems}") from None
        data = inputs.model_dump(mode="json")
        prompt = f"{self.instructions}\n\nInputs (JSON): {dumps(data)}"
        return prompt, data

    async def _call(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        session: str | None,
        on_event: Any,
        on_token: Any,
        runtime: Any,
    ) -> R:
        from ._agent import _default_host  # pyright: ignore[reportPrivateUsage] -- same package

        prompt, data = self._prompt(args, kwargs)
        parent = _parent()
        host = runtime or await _default_host(parent)
        task = host.task(self.name, payload={"inputs": data, "session": session}, parent=parent)
        running = self._running.setdefault(session or "", set())
        running.add(task)
        try:
            return await self.agent.perform(
                task,
                prompt,
                output_type=self.output_type,
                host=host,
                on_event=on_event,
                on_token=on_token,
            )
        finally:
            running.discard(task)

    def __call__(
        self,
        *args: Any,
        session: str | None = None,
        on_event: Any = None,
        on_token: Any = None,
        runtime: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Perform the task now and return its validated output (an awaitable for async stubs)."""
        call = self._call(
            args, kwargs, session=session, on_event=on_event, on_token=on_token, runtime=runtime
        )
        if self.is_async:
            return call
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(call)
        call.close()
        raise UserError(
            f"{self.name} is a sync task and blocks; inside async code declare it `async def`"
        )

    async def submit(
        self,
        *args: Any,
        session: str | None = None,
        on_event: Any = None,
        on_token: Any = None,
        runtime: Any = None,
        at: datetime | None = None,
        delay: timedelta | float | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        serial_key: str | None = None,
        **kwargs: Any,
    ) -> Task:
        """Store a durable task for these inputs and return its handle at once.

        A worker performs it (see `Runtime.submit` for `at`, `delay`, `priority`,
        `idempotency_key` and `serial_key`); workers in other processes find it by this
        function's name, so their app must define it too.
        """
        from ._agent import _default_host  # pyright: ignore[reportPrivateUsage] -- same package

        prompt, data = self._prompt(args, kwargs)
        parent = _parent()
        host = runtime or await _default_host(parent)
        task: Task = await host.submit(
            self.agent,
            prompt,
            output_type=self.output_type,
            name=self.name,
            payload={"inputs": data, "session": session},
            parent=parent,
            on_event=on_event,
            on_token=on_token,
            at=at,
            delay=delay,
            priority=priority,
            idempotency_key=idempotency_key,
            serial_key=serial_key,
        )
        running = self._running.setdefault(session or "", set())
        running.difference_update([t for t in running if t.state in TERMINAL_STATES])
        running.add(task)  # the runner updates this same handle as the task goes on
        return task

    async def cancel(self, *, session: str | None = None, reason: str = "") -> int:
        """Cancel the running calls of `session` (all sessionless calls by default).

        Returns:
            How many running calls were cancelled.
        """
        running = self._running.get(session or "", set())
        for ended in [t for t in running if t.state in TERMINAL_STATES]:
            running.discard(ended)
        cancelled = 0
        for task in list(running):
            if await task.cancel(reason or f"cancelled by {self.name}.cancel()"):
                cancelled += 1
        return cancelled


def make_task_function(agent: Any, function: Any) -> Any:
    """`@agent.task`, `@agent.task()` and `@agent.task("primer")`."""
    if function is None or isinstance(function, str):
        primer = function

        def decorate(fn: Any) -> Any:
            return _make(agent, fn, primer)

        return decorate
    return _make(agent, function, None)


def _make(agent: Any, function: Any, primer: str | None) -> TaskFunction[..., Any]:
    if isinstance(function, TaskFunction):
        raise UserError(f"{function.name} is already a task; decorate the stub only once")
    if not callable(function):
        raise UserError(f"@agent.task decorates a function, not {function!r}")
    return TaskFunction(agent, function, primer)


def task_as_tool(task_function: TaskFunction[..., Any]) -> Tool:
    """A tool that performs `task_function` as a child task of the calling task."""
    tf = task_function

    async def delegate(**kwargs: Any) -> Any:
        return await tf._call((), kwargs, session=None, on_event=None, on_token=None, runtime=None)  # pyright: ignore[reportPrivateUsage] -- same package

    delegate.__name__ = tf.name
    delegate.__doc__ = tf.instructions
    delegate.__signature__ = tf.signature.replace(
        return_annotation=tf.output_type
    )  # how inspect reads a signature
    delegate.__annotations__ = {**tf.hints, "return": tf.output_type}
    return tool(delegate, name=tf.name, description=tf.instructions, effect="at_most_once")


def _parent() -> Task | None:
    from ..task import current_task

    return current_task()


def _refuse_unusable(function: Callable[..., Any], primer: str | None) -> None:
    name = getattr(function, "__name__", repr(function))
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise UserError(f"task {name} takes *{param.name}; list its inputs as named parameters")
        if param.name in RESERVED:
            raise UserError(
                f"task {name} has an input named {param.name!r}, which calling and submitting"
                f" a task use for themselves ({', '.join(sorted(RESERVED))}); rename it"
            )
    if not primer and not (function.__doc__ or "").strip():
        raise UserError(
            f'task {name} has no instructions: give it a docstring or a primer, @agent.task("...")'
        )
    if _has_body(function):
        raise UserError(
            f"task {name} has a body; a task stub holds only its docstring (the agent"
            " performs it): remove the code, or make it a tool instead"
        )


def _has_body(function: Callable[..., Any]) -> bool:
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return False  # no source to read (a REPL): trust the stub
    tree = ast.parse(source)
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return any(
        not (
            isinstance(stmt, ast.Pass)
            or (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Constant)
                and stmt.value.value is Ellipsis
            )
        )
        for stmt in body
    )
