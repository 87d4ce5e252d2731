# pyright: reportReturnType=false
"""The app the CLI tests run: `taskloom run tests.cli.app:add a=1 b=2`.

Every model is a `FunctionModel` that decides from the request alone (the turn is the
number of assistant messages so far plus one; the inputs are in the prompt), so the same
app works in the test process and in every child process. The models say they are
`openai`'s `gpt-4o-mini`, so each call is priced from the offline price table and the cost
shown is not zero.

Tasks:
    `add(a, b)`: one model call answers a typed `Sum` at once.
    `survey(steps, pause)`: `steps` turns, each calling the tool `measure`, which sleeps
        `pause` seconds (so a Ctrl-C or a cancel lands mid-run); then a typed `Survey`.
    `publish(title)`: calls the tool `release`, which needs a human's approval.
    `count(item)`: a tool asks a human how many (an `int`), then the task answers.
    `label(item)`: a tool asks for a label (text), then how many (an `int`).
    `broken(why)`: the model fails for good; the task ends `failed`.
    `parrot`: an agent (not a task function) that says its prompt back.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import BaseModel

from taskloom import Agent, ModelError, Task, tool
from taskloom.models import (
    AssistantMessage,
    FunctionModel,
    ModelRequest,
    ModelResponse,
    RequestUsage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)

_INPUTS_MARK = "Inputs (JSON): "
_USAGE = RequestUsage(input_tokens=1200, output_tokens=300)


class PricedModel(FunctionModel):
    """A `FunctionModel` priced as `openai:gpt-4o-mini`."""

    def __init__(self, function: Any, *, name: str) -> None:
        super().__init__(function, name=name)
        self.provider = "openai"
        self.model_name = "gpt-4o-mini"


class Sum(BaseModel):
    total: int


class Survey(BaseModel):
    readings: list[str]


class Published(BaseModel):
    title: str
    outcome: str


class Counted(BaseModel):
    item: str
    copies: int


# -- helpers -------------------------------------------------------------------------------


def _inputs(request: ModelRequest) -> dict[str, Any]:
    for message in request.messages:
        if isinstance(message, UserMessage) and _INPUTS_MARK in message.content:
            return json.loads(message.content.split(_INPUTS_MARK, 1)[1])
    return {}


def _turn(request: ModelRequest) -> int:
    return 1 + sum(isinstance(m, AssistantMessage) for m in request.messages)


def _results(request: ModelRequest) -> list[str]:
    return [m.content for m in request.messages if isinstance(m, ToolResultMessage)]


def _call(turn: int, name: str, **arguments: Any) -> ModelResponse:
    made = ToolCall(id=f"call-{turn}", name=name, arguments=json.dumps(arguments))
    return ModelResponse(
        tool_calls=(made,), usage=_USAGE, finish_reason="tool_calls", model_name="gpt-4o-mini"
    )


def _answer(value: BaseModel | str) -> ModelResponse:
    text = value if isinstance(value, str) else value.model_dump_json()
    return ModelResponse(text=text, usage=_USAGE, model_name="gpt-4o-mini")


# -- add: quick and typed ------------------------------------------------------------------


def _add_model(request: ModelRequest) -> ModelResponse:
    inputs = _inputs(request)
    return _answer(Sum(total=int(inputs["a"]) + int(inputs["b"])))


adder = Agent(PricedModel(_add_model, name="adder"), name="adder")


@adder.task
async def add(a: int, b: int) -> Sum:
    """Add two numbers."""


# -- survey: slow, with tool calls ---------------------------------------------------------


async def measure(station: int, pause: float) -> str:
    """Take a reading at a station (slowly).

    Args:
        station: The station's number.
        pause: Seconds the reading takes.
    """
    await asyncio.sleep(pause)
    return f"station {station}: 21.5 C"


def _survey_model(request: ModelRequest) -> ModelResponse:
    inputs, turn = _inputs(request), _turn(request)
    if turn <= int(inputs.get("steps", 3)):
        return _call(turn, "measure", station=turn, pause=float(inputs.get("pause", 0.5)))
    return _answer(Survey(readings=_results(request)))


surveyor = Agent(
    PricedModel(_survey_model, name="surveyor"), name="surveyor", tools=[tool(measure)]
)


@surveyor.task
async def survey(steps: int = 3, pause: float = 0.5) -> Survey:
    """Survey the stations one by one."""


# -- publish: a tool that needs a human's approval -----------------------------------------


def release(title: str) -> str:
    """Publish the piece.

    Args:
        title: The piece's title.
    """
    return f"published {title!r}"


def _publish_model(request: ModelRequest) -> ModelResponse:
    inputs = _inputs(request)
    if _turn(request) == 1:
        return _call(1, "release", title=inputs["title"])
    return _answer(Published(title=inputs["title"], outcome=_results(request)[-1]))


publisher = Agent(
    PricedModel(_publish_model, name="publisher"),
    name="publisher",
    tools=[tool(release, requires_approval=True)],
)


@publisher.task
async def publish(title: str) -> Published:
    """Publish a piece, once a human approves."""


# -- count: a tool asks a typed question ---------------------------------------------------


async def how_many(item: str, task: Task) -> str:
    """Ask a human how many copies to make.

    Args:
        item: What to copy.
        task: The running task (injected).
    """
    copies = await task.ask(f"How many copies of {item}?", answer_type=int)
    return str(copies)


def _count_model(request: ModelRequest) -> ModelResponse:
    inputs = _inputs(request)
    if _turn(request) == 1:
        return _call(1, "how_many", item=inputs["item"])
    return _answer(Counted(item=inputs["item"], copies=int(_results(request)[-1])))


counter = Agent(PricedModel(_count_model, name="counter"), name="counter", tools=[how_many])


@counter.task
async def count(item: str) -> Counted:
    """Count copies, as a human says."""


# -- label: a tool asks two questions, a text one then a number -------------------------------


class Labelled(BaseModel):
    item: str
    label: str
    copies: int


async def ask_label(item: str, task: Task) -> str:
    """Ask a human for a label and a count.

    Args:
        item: What to label.
        task: The running task (injected).
    """
    label = await task.ask(f"What label for {item}?", answer_type=str)
    copies = await task.ask(f"How many {label!r} labels?", answer_type=int)
    return json.dumps({"label": label, "copies": copies})


def _label_model(request: ModelRequest) -> ModelResponse:
    inputs = _inputs(request)
    if _turn(request) == 1:
        return _call(1, "ask_label", item=inputs["item"])
    return _answer(Labelled(item=inputs["item"], **json.loads(_results(request)[-1])))


labeller = Agent(PricedModel(_label_model, name="labeller"), name="labeller", tools=[ask_label])


@labeller.task
async def label(item: str) -> Labelled:
    """Label an item, as a human says."""


# -- broken: fails -------------------------------------------------------------------------


def _broken_model(request: ModelRequest) -> ModelResponse:
    why = _inputs(request).get("why", "no reason")
    raise ModelError(f"the model is broken: {why}", model="test:broken", retryable=False)


breaker = Agent(PricedModel(_broken_model, name="broken"), name="breaker")


@breaker.task
async def broken(why: str) -> Sum:
    """Fail."""


# -- parrot: an agent with a prompt --------------------------------------------------------


def _parrot_model(request: ModelRequest) -> ModelResponse:
    said = next(m.content for m in request.messages if isinstance(m, UserMessage))
    return _answer(f"you said: {said}")


parrot = Agent(PricedModel(_parrot_model, name="parrot"), name="parrot")

not_a_task = 42

__all__ = (
    "Counted",
    "Labelled",
    "Published",
    "Sum",
    "Survey",
    "add",
    "broken",
    "count",
    "label",
    "parrot",
    "publish",
    "survey",
)
