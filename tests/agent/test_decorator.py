# Task stubs hold only their docstring (the agent performs them), so they return nothing:
# pyright: reportReturnType=false
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel

import taskloom
from taskloom import TaskState
from taskloom.agent import Agent, Limits
from taskloom.models import FunctionModel, ModelRequest, ModelResponse
from taskloom.models.scripted import ScriptedModel, call, reply

from ._util import content


class Weather(BaseModel):
    city: str
    temp_c: float


@pytest.fixture
async def rt(store_url: str) -> AsyncIterator[taskloom.Runtime]:
    async with taskloom.open(store_url, poll_interval=0.02) as runtime:
        yield runtime


def weather_model() -> FunctionModel:
    def answer(request: ModelRequest) -> ModelResponse:
        inputs = json.loads(content(request.messages[-1]).split("Inputs (JSON): ")[1])
        return reply(json.dumps({"city": inputs["city"], "temp_c": 20.0}))

    return FunctionModel(answer)


async def test_a_typed_stub_becomes_a_task(rt: taskloom.Runtime) -> None:
    agent = Agent(weather_model())

    @agent.task
    async def forecast(city: str) -> Weather:
        """Give the current weather for a city."""

    w = await forecast("Paris", runtime=rt)
    assert w == Weather(city="Paris", temp_c=20.0)
    task = (await rt.list(name="forecast")).tasks[0]
    assert task.payload == {"inputs": {"city": "Paris"}, "session": None}
    assert task.state is TaskState.COMPLETED

    handle = await forecast.submit("Oslo", runtime=rt)
    assert (await handle.result()) == Weather(city="Oslo", temp_c=20.0)


async def test_inputs_are_validated_at_call_time(rt: taskloom.Runtime) -> None:
    agent = Agent(weather_model())

    @agent.task
    async def forecast(city: str, days: int = 1) -> Weather:
        """Forecast."""

    with pytest.raises(taskloom.UserError, match="days"):
        await forecast("Paris", days="many", runtime=rt)
    with pytest.raises(taskloom.UserError, match="missing"):
        await forecast(runtime=rt)


def test_unusable_stubs_are_refused_when_decorating() -> None:
    agent = Agent(ScriptedModel([]))
    with pytest.raises(taskloom.UserError, match="has a body"):

        @agent.task
        async def busy(city: str) -> str:
            """Has code."""
            return city

    with pytest.raises(taskloom.UserError, match="no instructions"):

        @agent.task
        async def silent(city: str) -> str: ...

    with pytest.raises(taskloom.UserError, match=r"takes \*cities"):

        @agent.task
        async def starred(*cities: str) -> str:
            """Many."""

    @agent.task
    async def once(city: str) -> str:
        """Once."""

    with pytest.raises(taskloom.UserError, match="only once"):
        agent.task(once)

    @agent.task("Say hello to the city.")
    async def primed(city: str) -> str: ...

    assert primed.instructions == "Say hello to the city."


def test_a_sync_stub_blocks_and_returns_the_output() -> None:
    agent = Agent(weather_model())

    @agent.task
    def forecast(city: str) -> Weather:
        """Give the weather."""

    assert forecast("Lima") == Weather(city="Lima", temp_c=20.0)


async def test_cancel_by_session_stops_only_that_session(rt: taskloom.Runtime) -> None:
    started = asyncio.Event()

    async def slow(request: ModelRequest) -> ModelResponse:
        started.set()
        await asyncio.sleep(30)
        return reply("late")

    agent = Agent(FunctionModel(slow))

    @agent.task
    async def work(item: str) -> str:
        """Work on an item."""

    running = asyncio.create_task(work("a", session="s1", runtime=rt))
    await asyncio.wait_for(started.wait(), 5)
    assert await work.cancel(session="other") == 0
    assert await work.cancel(session="s1") == 1
    with pytest.raises(taskloom.TaskCancelledError):
        await running


async def test_another_agent_gets_the_task_as_a_typed_tool(rt: taskloom.Runtime) -> None:
    inner = Agent(weather_model(), name="inner")

    @inner.task
    async def forecast(city: str) -> Weather:
        """Give the current weather for a city."""

    outer_model = ScriptedModel(
        [
            reply(tool_calls=[call("forecast", city="Quito")]),
            reply("It is 20 degrees in Quito."),
        ]
    )
    outer = Agent(outer_model, name="outer")
    outer.fn(forecast)
    assert "forecast" in outer.tools
    assert outer.tools["forecast"].parameters["properties"]["city"]["type"] == "string"
    answer = await outer.run("Weather in Quito?", runtime=rt)
    assert answer == "It is 20 degrees in Quito."
    parent = (await rt.list(name="outer")).tasks[0]
    children = (await rt.list(parent_id=parent.id)).tasks
    assert [c.name for c in children] == ["forecast"]
    assert children[0].output == {"city": "Quito", "temp_c": 20.0}
    tool_result = content(outer_model.requests[1].messages[-1])
    assert json.loads(tool_result) == {"city": "Quito", "temp_c": 20.0}


async def test_delegation_depth_is_limited(rt: taskloom.Runtime) -> None:
    def recurse(request: ModelRequest) -> ModelResponse:
        if request.messages[-1].role == "tool":
            return reply("done")
        return reply(tool_calls=[call("deeper", x="1")])

    agent = Agent(FunctionModel(recurse), limits=Limits(max_depth=2))

    @agent.task
    async def deeper(x: str) -> str:
        """Go deeper."""

    agent.fn(deeper)
    assert await agent.run("start", runtime=rt) == "done"
    events = [e async for e in rt.events((await rt.list(name="deeper", limit=1000)).tasks[-1].id)]
    errors = [e for e in events if isinstance(e, taskloom.ToolCalled) and e.error]
    assert errors and "deep" in (errors[0].error or "")


async def test_sub_agent_tasks_report_to_the_same_callbacks(rt: taskloom.Runtime) -> None:
    inner = Agent(ScriptedModel([reply("inner says hi")]), name="inner")

    @inner.task
    async def greet(name: str) -> str:
        """Greet someone."""

    outer = Agent(
        ScriptedModel([reply(tool_calls=[call("greet", name="Ada")]), reply("done")]), name="outer"
    )
    outer.fn(greet)
    seen: list[tuple[str, str]] = []
    tokens: list[str] = []
    await outer.run(
        "go",
        runtime=rt,
        on_event=lambda e: seen.append((e.task_id, e.kind)),
        on_token=tokens.append,
    )
    task_ids = {task_id for task_id, _ in seen}
    assert len(task_ids) == 2  # the outer task and its child, each with its own id
    assert "".join(tokens).startswith("inner says hi")
