"""Tools: typed Python functions the model may call.

```python
@tool(effect="pure")
def add(a: int, b: int = 1) -> int:
    \"\"\"Add two numbers (Google, Sphinx or NumPy `Args` describe each one).\"\"\"
    return a + b
```

The model sees a name, a description and a JSON schema of the arguments object, all taken
from the function: the schema from its signature and type hints (pydantic models,
dataclasses, enums, `Literal`, lists, optionals, `Annotated[..., Field(...)]`), the
descriptions from its docstring (Google `Args:`, Sphinx `:param:` or NumPy `Parameters`).
Parameters with defaults are optional and their defaults are shown. Unknown argument
names are refused (`additionalProperties: false`), so a misspelt optional argument is an
error the model can fix rather than a silently ignored value.

Two kinds of parameter are filled in by taskloom and left out of the schema: one annotated
`Task` receives the task the tool runs for, and one annotated `IdempotencyKey` receives
the call's stable idempotency key.

What the model writes is checked with `Tool.validate`: malformed JSON or invalid
arguments raise `ToolArgumentsError`, whose text tells the model what to correct. The
validated arguments (pydantic models constructed, strings coerced as pydantic's lax mode
does) are then passed to the function by `Tool.call`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NewType, Union, cast, get_args, get_origin, overload

from pydantic import BaseModel, TypeAdapter, ValidationError

from ._docstrings import parse_docstring
from ._json import dumps
from ._tool_schema import ArgumentIssue as ArgumentIssue
from ._tool_schema import Injection, Param, analyse, issues, unwrap
from .errors import UserError
from .task import Task, current_task


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolDefinition:
    """A tool as the model sees it (what `Model` adapters send to providers)."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    """JSON schema of the arguments object."""


__all__ = (
    "ArgumentIssue",
    "Effect",
    "IdempotencyKey",
    "Tool",
    "ToolArgumentsError",
    "ToolDefinition",
    "as_tool",
    "result_text",
    "tool",
)

Effect = Literal["pure", "idempotent", "at_most_once"]
"""What running a tool does to the world, which decides what happens after a crash.

- `pure`: no side effects; it may be re-run freely.
- `idempotent` (the default): it may run again after a crash, and receives a stable
  idempotency key (see `IdempotencyKey`) so that the service it calls can tell a repeat
  from a new request.
- `at_most_once`: it must never run twice. The durable runtime does not re-run one that
  was in flight at a crash; the task asks a human (or fails with `outcome_unknown`).
"""

IdempotencyKey = NewType("IdempotencyKey", str)
"""Annotate a tool parameter with this to receive the call's idempotency key.

The key is the same every time the same call of the same task is run (after a crash, on
another worker), and differs between calls. Pass it on to the service the tool calls.
"""

_EFFECTS: frozenset[str] = frozenset(get_args(Effect))
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ToolArgumentsError(Exception):
    """The model's arguments for a tool are malformed JSON or do not fit its schema.

    A signal for the agent loop, not a `TaskloomError`: its text is written for the model,
    which gets it back as the tool's result and may call again with corrected arguments.

    Attributes:
        tool_name: The tool the arguments were for.
        issues: Every problem found, in order.
    """

    def __init__(self, tool_name: str, issues: Sequence[ArgumentIssue]) -> None:
        self.tool_name = tool_name
        self.issues = tuple(issues)
        count = len(self.issues)
        lines = [f"Invalid arguments for tool {tool_name!r} ({count} problem{'s' * (count > 1)}):"]
        lines += [f"- {issue}" for issue in self.issues]
        lines.append("Call the tool again with corrected arguments.")
        super().__init__("\n".join(lines))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    """A typed Python function the model may call.

    Make one with `tool` or `as_tool`. Change the name, description, effect, timeout or
    approval with `dataclasses.replace`; the schema and validator follow the function.
    """

    name: str
    """What the model calls it: 1 to 64 letters, digits, `_` or `-`."""
    description: str
    """What it does, for the model."""
    function: Callable[..., object]
    """The function itself, sync or async."""
    effect: Effect = "idempotent"
    """What running it does to the world (see `Effect`)."""
    timeout: float | None = None
    """Seconds one call may take, or `None` for no limit."""
    requires_approval: bool = False
    """Whether a human must approve each call before it runs."""
    parameters: Mapping[str, Any] = dataclasses.field(hash=False, repr=False)
    """The JSON schema of the arguments object, as the model sees it. Do not mutate."""
    _validator: TypeAdapter[dict[str, Any]] = dataclasses.field(repr=False, compare=False)
    _params: tuple[Param, ...] = dataclasses.field(repr=False, compare=False)
    _is_async: bool = dataclasses.field(repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_options(self.name, self.effect, self.timeout)

    def definition(self) -> ToolDefinition:
        """The tool as the model sees it."""
        return ToolDefinition(
            name=self.name, description=self.description, parameters=self.parameters
        )

    def validate(self, arguments: str) -> dict[str, Any]:
        """Parse and validate the arguments the model wrote.

        Args:
            arguments: The model's JSON text; blank text counts as `{}`.

        Returns:
            The validated arguments, ready for `call`: pydantic models and dataclasses
            constructed, values coerced (`"3"` to `3` for an `int`), defaults left to the
            function.

        Raises:
            ToolArgumentsError: the text is not a JSON object fitting the schema; its
                message lists every problem.
        """
        try:
            return self._validator.validate_json(arguments if arguments.strip() else "{}")
        except ValidationError as exc:
            found = issues(exc.errors(include_url=False), self.parameters)
            raise ToolArgumentsError(self.name, found) from None

    async def call(
        self,
        arguments: Mapping[str, object],
        *,
        task: Task | None = None,
        idempotency_key: str = "",
    ) -> object:
        """Run the function with validated arguments and return what it returned.

        A sync function runs in a worker thread, an async one is awaited. Exceptions the
        function raises propagate unchanged.

        Args:
            arguments: The arguments as returned by `validate`.
            task: The task the call is for, given to a parameter annotated `Task`
                (default: `current_task()`).
            idempotency_key: The call's stable key, given to a parameter annotated
                `IdempotencyKey`.

        Raises:
            TimeoutError: the call took longer than `timeout`. An async function is
                cancelled; a sync one cannot be stopped, so its thread runs on and its
                result is discarded.
            UserError: the function takes a `Task` but there is none.
        """
        args, kwargs = self._bind(arguments, task, idempotency_key)
        async with asyncio.timeout(self.timeout):
            if self._is_async:
                return await cast(Callable[..., Any], self.function)(*args, **kwargs)
            result = await asyncio.to_thread(self.function, *args, **kwargs)
            if inspect.isawaitable(result):  # a sync wrapper around a coroutine function
                result = await result
            return result

    def _bind(
        self, arguments: Mapping[str, object], task: Task | None, key: str
    ) -> tuple[list[object], dict[str, object]]:
        args: list[object] = []
        kwargs: dict[str, object] = {}
        for param in self._params:
            if param.inject == "task":
                value: object = task if task is not None else current_task()
                if value is None and not param.optional:
                    raise UserError(
                        f"tool {self.name!r} takes the active task (parameter {param.name!r})"
                        " but there is none: call it inside `async with task:` or pass `task=`"
                    )
            elif param.inject == "key":
                value = key
            elif param.name in arguments:
                value = arguments[param.name]
            elif param.positional and param.optional:
                value = param.default  # later positional-only arguments may follow
            else:
                continue
            if param.positional:
                args.append(value)
            else:
                kwargs[param.name] = value
        return args, kwargs


@overload
def tool(
    func: Callable[..., object],
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    effect: Effect = "idempotent",
    timeout: float | None = None,
    requires_approval: bool = False,
) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    effect: Effect = "idempotent",
    timeout: float | None = None,
    requires_approval: bool = False,
) -> Callable[[Callable[..., object]], Tool]: ...


def tool(
    func: Callable[..., object] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    effect: Effect = "idempotent",
    timeout: float | None = None,
    requires_approval: bool = False,
) -> Tool | Callable[[Callable[..., object]], Tool]:
    """Make a function a `Tool`: `@tool`, `@tool(effect="pure", ...)` or `tool(f, name=...)`.

    Args:
        func: The function; without it, `tool` returns a decorator.
        name: The tool's name (default: the function's name).
        description: What it does (default: the docstring without its sections).
        effect: What running it does to the world (see `Effect`).
        timeout: Seconds one call may take, or `None` for no limit.
        requires_approval: Whether a human must approve each call before it runs.

    Raises:
        UserError: the function or an option cannot make a tool; the message says why.
    """
    _check_options(name, effect, timeout)

    def make(function: Callable[..., object]) -> Tool:
        return _make_tool(
            function,
            name=name,
            description=description,
            effect=effect,
            timeout=timeout,
            requires_approval=requires_approval,
        )

    return make if func is None else make(func)


def as_tool(obj: Tool | Callable[..., object]) -> Tool:
    """`obj` itself if it is a `Tool`, else a `Tool` made from the function with defaults.

    Raises:
        UserError: `obj` cannot make a tool; the message says why.
    """
    if isinstance(obj, Tool):
        return obj
    return _make_tool(obj)


def result_text(value: object) -> str:
    """How a tool's return value is shown to the model.

    A `str` is passed as it is, except that an empty one becomes `"(no output)"` (some
    providers refuse empty tool results). Anything else that is JSON (including `None`,
    shown as `null`, numbers, booleans, dicts, lists, pydantic models and dataclasses) is
    shown as compact JSON; what is not JSON is shown as `str(value)`.
    """
    if isinstance(value, str):
        return str.__str__(value) or "(no output)"
    if _is_json_like(value):
        try:
            return dumps(value)
        except (TypeError, ValueError):  # something inside has no JSON form
            pass
    return str(value)


def _is_json_like(value: object) -> bool:
    if dataclasses.is_dataclass(value):
        return not isinstance(value, type)
    return value is None or isinstance(value, int | float | Mapping | list | tuple | BaseModel)


# -- making a tool -------------------------------------------------------------------------


def _check_options(name: str | None, effect: str, timeout: float | None) -> None:
    if name is not None and not _NAME.fullmatch(name):
        raise UserError(
            f"tool name {name!r} is not allowed: use 1 to 64 letters, digits, '_' or '-'"
            " (pass name=... to choose another)"
        )
    if effect not in _EFFECTS:
        raise UserError(
            f"tool effect {effect!r} is not one of {sorted(_EFFECTS)}: say 'pure' for no side"
            " effects, 'idempotent' if running it twice is harmless, 'at_most_once' otherwise"
        )
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise UserError(f"tool timeout must be a positive number of seconds, not {timeout!r}")


def _make_tool(
    function: Callable[..., object],
    *,
    name: str | None = None,
    description: str | None = None,
    effect: Effect = "idempotent",
    timeout: float | None = None,
    requires_approval: bool = False,
) -> Tool:
    if not callable(function):
        raise UserError(f"a tool must be a function, not {function!r}")
    if name is None:
        name = getattr(function, "__name__", None)
        if name is None or name == "<lambda>":
            raise UserError(f"{function!r} has no usable name: pass one with tool(name=...)")
        if not _NAME.fullmatch(name):
            raise UserError(
                f"function name {name!r} cannot be a tool name (1 to 64 letters, digits, '_'"
                " or '-'): pass one with tool(name=...)"
            )
    doc = parse_docstring(inspect.getdoc(unwrap(function)))
    params, validator, schema = analyse(function, name, doc.params, _injection)
    dunder_call = cast(Any, function).__call__  # an instance's async __call__ counts
    return Tool(
        name=name,
        description=doc.description if description is None else description,
        function=function,
        effect=effect,
        timeout=timeout,
        requires_approval=requires_approval,
        parameters=schema,
        _validator=validator,
        _params=params,
        _is_async=inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(dunder_call),
    )


def _injection(hint: object) -> tuple[Injection | None, bool]:
    """Whether taskloom fills a parameter with this hint (and with what), and if `None` will do."""
    if get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    if hint is IdempotencyKey:
        return "key", False
    if hint is Task:
        return "task", False
    if get_origin(hint) in (Union, types.UnionType):
        if [m for m in get_args(hint) if m is not type(None)] == [Task]:
            return "task", True
    return None, False
