"""What a worker needs to perform a stored task: the registry of runnables, and the job.

A submitted agent task stores a *job* next to its payload: the prompt, a reference to the
output type and the limits. Any worker whose app registers the task's name (an `Agent` by
its name, an `@agent.task` function by its function's name) can then perform it, in this
process or another one. The output type travels as an import reference (`module:qualname`),
so it must be defined at module level; a worker that cannot import it fails the task with
that explanation rather than guess.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .._json import dumps
from ..errors import UserError

if TYPE_CHECKING:
    # The agent layer loads when agents are used, not with the runtime (see _agents.py).
    from ..agent import Agent, Limits, TaskFunction

__all__ = ("Job", "Registry", "Runnable")


@dataclass(frozen=True, slots=True)
class Runnable:
    """What a name stands for: the agent that performs it and, if known, its output type."""

    agent: Agent
    output_type: Any = None
    """`None`: take it from the job's reference."""


class Registry:
    """Names this process's worker can perform."""

    def __init__(self) -> None:
        self._by_name: dict[str, Runnable] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def get(self, name: str) -> Runnable | None:
        return self._by_name.get(name)

    def add(self, name: str, runnable: Runnable) -> bool:
        """Register `runnable` as `name`; return whether the name is new.

        Raises:
            UserError: the name already stands for another agent.
        """
        known = self._by_name.get(name)
        if known is not None:
            if known.agent is not runnable.agent:
                raise UserError(
                    f"the task name {name!r} is registered already, for {known.agent!r};"
                    " give one of them another name"
                )
            if runnable.output_type is None or known.output_type is not None:
                return False
        self._by_name[name] = runnable
        return known is None

    def register(self, thing: Any) -> int:
        """Register agents and task functions, from a module, a list or themselves.

        Returns:
            How many new names there are.
        """
        from ..agent import TaskFunction  # loaded already: `thing` holds agents

        added = 0
        for item in _items(thing):
            if isinstance(item, TaskFunction):
                task_function: TaskFunction[..., Any] = item
                added += self.add(
                    task_function.name, Runnable(task_function.agent, task_function.output_type)
                )
            else:
                added += self.add(item.name, Runnable(item))
        return added


def _items(thing: Any) -> Iterable[Agent | TaskFunction[..., Any]]:
    from ..agent import Agent, TaskFunction  # here, not at the top: see the imports

    found: list[Agent | TaskFunction[..., Any]] = []
    if isinstance(thing, Agent | TaskFunction):
        found.append(cast("Agent | TaskFunction[..., Any]", thing))
        return found
    if isinstance(thing, types.ModuleType):
        values: list[Any] = list(vars(thing).values())
        for value in values:
            if isinstance(value, Agent | TaskFunction):
                found.extend(_items(value))
        return found
    if isinstance(thing, list | tuple | set | frozenset):
        items: list[Any] = list(cast("Iterable[Any]", thing))
        for item in items:
            found.extend(_items(item))
        return found
    raise UserError(
        f"cannot register {thing!r}: give an Agent, an @agent.task function, a module that"
        " defines them, or a list of these"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """How to perform a stored agent task."""

    prompt: str
    output: str | None
    """An import reference to the output type (`module:qualname`)."""
    limits: dict[str, Any] | None = None
    retry_of: str | None = None
    """The task this one is a new attempt of (`Runtime.retry`)."""

    @classmethod
    def of(cls, prompt: str, output_type: Any, limits: Limits | None) -> Job:
        return cls(
            prompt=prompt,
            output=type_reference(output_type),
            limits=None if limits is None else dataclasses.asdict(limits),
        )

    def to_json(self) -> str:
        data: dict[str, Any] = {"prompt": self.prompt, "output": self.output, "limits": self.limits}
        if self.retry_of is not None:
            data["retry_of"] = self.retry_of
        return dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Job:
        data = json.loads(text)
        return cls(
            prompt=data["prompt"],
            output=data.get("output"),
            limits=data.get("limits"),
            retry_of=data.get("retry_of"),
        )

    def retrying(self, task_id: str) -> Job:
        """This job, for a new attempt of `task_id`."""
        return dataclasses.replace(self, retry_of=task_id)

    def limits_or(self, default: Limits) -> Limits:
        from ..agent import Limits  # loaded already: a worker that runs jobs has agents

        return default if self.limits is None else Limits(**self.limits)

    def output_type(self) -> Any:
        """Import the output type.

        Raises:
            UserError: it cannot be imported here.
        """
        if self.output is None:
            raise UserError(
                "the task's output type has no import path (it is not defined at module"
                " level); define it at module level so that workers can import it"
            )
        module_name, _, qualname = self.output.partition(":")
        try:
            found: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            raise UserError(
                f"the worker cannot import the output type {self.output!r} ({exc}); make the"
                " worker's app import the module that defines it"
            ) from None
        return found


def type_reference(output_type: Any) -> str | None:
    """`module:qualname` of a class defined at module level, else `None`."""
    module = getattr(output_type, "__module__", None)
    qualname = getattr(output_type, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<locals>" in qualname:
        return None
    if isinstance(output_type, types.GenericAlias):
        return None  # `list[Report]`: not importable by name
    return f"{module}:{qualname}"
