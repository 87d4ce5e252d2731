from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

import taskloom
from taskloom import Task, TaskState
from taskloom.agent import Agent, Block, Limits, Retry, ToolCallCheck
from taskloom.errors import ModelError, ModelHTTPError, TaskExpiredError, TaskFailedError
from taskloom.models import (
    FunctionModel,
    Model,
    ModelRequest,
    ModelResponse,
    RequestUsage,
)
from taskloom.models.scripted import ScriptedModel, call, reply
from taskloom.tools import tool

from ._util import content


class Weather(BaseModel):
    city: str
    temp_c: float


LOOKUPS: list[str] = []


def lookup(city: str) -> str:
    """Look up the temperature of a city.

    Args:
        city: The city's name.
    """
    LOOKUPS.append(city)
    return f"{city}: 21.5 C"


WEATHER = '{"city": "Paris", "temp_c": 21.5}'


@pytest.fixture
async def rt(store_url: str) -> AsyncIterator[taskloom.Runtime]:
    async with taskloom.open(store_url, poll_interval=0.02) as runtime:
        yield runtime


async def kinds(rt: taskloom.Runtime, task_id: str) -> list[str]:
    return [e.kind async for e in rt.events(task_id)]


async def the_task(rt: taskloom.Runtime) -> Task:
    page = await rt.list(limit=1)
    return page.tasks[0]


async def test_typed_output_with_one_tool_call(rt: taskloom.Runtime) -> None:
    model = ScriptedModel([reply(tool_calls=[call("lookup", city="Paris")]), reply(WEATHER)])
    agent = Agent(model, tools=[lookup])
    weather = await agent.run("Weather in Paris?", output_type=Weather, runtime=rt)
    assert weather == Weather(city="Paris", temp_c=21.5)
    task = await the_task(rt)
    assert task.state is TaskState.COMPLETED
    assert task.output == {"city": "Paris", "temp_c": 21.5}
    assert await kinds(rt, task.id) == [
        "submitted",
        "started",
        "model_called",
        "tool_called",
        "model_called",
        "completed",
    ]
    assert task.usage.requests == 2
    assert task.usage.input_tokens == 20 and task.usage.output_tokens == 10
    assert task.usage.tool_calls == 1
    # the tool result went back to the model in the second request
    second = model.requests[1].messages
    assert second[-1].role == "tool" and "21.5" in content(second[-1])


async def test_submit_returns_a_durable_handle_with_a_typed_result(rt: taskloom.Runtime) -> None:
    model = ScriptedModel([reply(tool_calls=[call("lookup", city="Oslo")]), reply(WEATHER)])
    task = await rt.submit(Agent(model, tools=[lookup]), "Weather?", output_type=Weather)
    assert task.state is TaskState.SUBMITTED
    weather = await task.result()
    assert isinstance(weather, Weather)
    assert weather.temp_c == 21.5


async def test_invalid_arguments_never_run_the_tool_and_the_model_corrects(
    rt: taskloom.Runtime,
) -> None:
    ran: list[int] = []

    def double(n: int) -> int:
        """Double a number."""
        ran.append(n)
        return n * 2

    model = ScriptedModel(
        [
            reply(tool_calls=[call("double", n="many")]),
            reply(tool_calls=[call("double", '{"n": ')]),
            reply(tool_calls=[call("nope", n=1)]),
            reply(tool_calls=[call("double", n=4)]),
            reply('{"result": 8}'),
        ]
    )
    value = await Agent(model, tools=[double]).run("double 4", output_type=int, runtime=rt)
    assert value == 8
    assert ran == [4]
    errors = [content(m) for m in model.requests[-1].messages if m.role == "tool"]
    assert "valid integer" in errors[0]
    assert "JSON" in errors[1] or "json" in errors[1]
    assert "no tool named 'nope'" in errors[2]
    assert errors[3] == "8"


async def test_output_is_sent_back_until_it_fits_then_the_task_fails(rt: taskloom.Runtime) -> None:
    model = ScriptedModel([reply("not json"), reply('{"city": "X"}'), reply(WEATHER)])
    assert await Agent(model).run("w", output_type=Weather, runtime=rt) == Weather(
        city="Paris", temp_c=21.5
    )
    bad = ScriptedModel([reply("nope")] * 3)
    with pytest.raises(TaskFailedError) as caught:
        await Agent(bad, output_retries=2).run("w", output_type=Weather, runtime=rt)
    assert caught.value.reason == "output_invalid"
    failed = await rt.get(caught.value.task_id)
    assert failed.state is TaskState.FAILED
    assert (await kinds(rt, failed.id)).count("output_rejected") == 3


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        (Limits(max_turns=2), "max_turns"),
        (Limits(max_tool_calls=1), "max_tool_calls"),
        (Limits(max_tokens=25), "max_tokens"),
    ],
)
async def test_limits_end_the_task_failed_with_their_reason(
    rt: taskloom.Runtime, limits: Limits, reason: str
) -> None:
    model = FunctionModel(
        lambda request: reply(tool_calls=[call("lookup", city=f"c{len(request.messages)}")])
    )
    with pytest.raises(TaskFailedError) as caught:
        await Agent(model, tools=[lookup], limits=limits).run("loop", runtime=rt)
    assert caught.value.reason == reason
    task = await rt.get(caught.value.task_id)
    assert task.state is TaskState.FAILED and task.reason == reason
    assert "model_called" in await kinds(rt, task.id)  # the partial transcript is kept


class PricedModel(Model):
    """Reports big token counts for a model the price table knows."""

    def __init__(self) -> None:
        self.name, self.provider, self.model_name = "openai:gpt-4o", "openai", "gpt-4o"

    async def request(self, request: ModelRequest, *, on_text: Any = None) -> ModelResponse:
        return ModelResponse(
            tool_calls=(call("lookup", city="x"),),
            finish_reason="tool_calls",
            usage=RequestUsage(input_tokens=100_000, output_tokens=10_000),
            model_name="gpt-4o",
        )


async def test_a_cost_budget_ends_the_task_with_reason_budget(rt: taskloom.Runtime) -> None:
    agent = Agent(PricedModel(), tools=[lookup], limits=Limits(max_cost_usd=0.5, max_tokens=10**9))
    with pytest.raises(TaskFailedError) as caught:
        await agent.run("spend", runtime=rt)
    assert caught.value.reason == "budget"
    task = await rt.get(caught.value.task_id)
    assert task.usage.cost_usd > 0.5
    assert task.usage.priced


async def test_the_same_failing_call_repeated_ends_the_task_with_reason_loop(
    rt: taskloom.Runtime,
) -> None:
    def flaky(x: int) -> int:
        """Always fails."""
        raise RuntimeError("backend down")

    model = FunctionModel(lambda request: reply(tool_calls=[call("flaky", x=1)]))
    with pytest.raises(TaskFailedError) as caught:
        await Agent(model, tools=[flaky]).run("go", runtime=rt)
    assert caught.value.reason == "loop"
    assert "backend down" in str(caught.value)


async def test_a_deadline_ends_the_task_expired(rt: taskloom.Runtime) -> None:
    async def slow(request: ModelRequest) -> ModelResponse:
        await asyncio.sleep(10)
        return reply("late")

    agent = Agent(FunctionModel(slow), limits=Limits(deadline_seconds=0.2))
    with pytest.raises(TaskExpiredError) as caught:
        await agent.run("hurry", runtime=rt)
    task = await rt.get(caught.value.task_id)
    assert task.state is TaskState.EXPIRED and task.reason == "deadline"


async def test_retryable_errors_are_retried_with_retry_after_and_recorded(
    rt: taskloom.Runtime,
) -> None:
    limited = ModelHTTPError(
        "rate limited",
        model="test:s",
        status_code=429,
        retryable=True,
        retry_after=timedelta(milliseconds=10),
    )
    model = ScriptedModel(
        [limited, ModelError("reset", model="test:s", retryable=True), reply("ok")]
    )
    assert await Agent(model).run("hi", runtime=rt) == "ok"
    task = await the_task(rt)
    events = [e async for e in rt.events(task.id)]
    retried = [e for e in events if isinstance(e, taskloom.ModelRetried)]
    assert [r.attempt for r in retried] == [1, 2]
    assert retried[0].delay_s == pytest.approx(0.01)


async def test_non_retryable_errors_fail_at_once(rt: taskloom.Runtime) -> None:
    bad_key = ModelHTTPError("bad key", model="test:s", status_code=401, retryable=False)
    model = ScriptedModel([bad_key, reply("never")])
    with pytest.raises(TaskFailedError) as caught:
        await Agent(model).run("hi", runtime=rt)
    assert caught.value.error_type == "ModelHTTPError"
    assert len(model.requests) == 1


async def test_a_hung_model_call_times_out_and_is_retried(rt: taskloom.Runtime) -> None:
    calls = 0

    async def hangs_once(request: ModelRequest) -> ModelResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(30)
        return reply("ok")

    agent = Agent(FunctionModel(hangs_once), limits=Limits(model_timeout_seconds=0.1))
    assert await agent.run("hi", runtime=rt) == "ok"
    assert calls == 2


async def test_guardrails_pass_retry_and_block(rt: taskloom.Runtime) -> None:
    def no_paris(weather: Weather) -> Retry | None:
        return Retry("not Paris, please") if weather.city == "Paris" else None

    model = ScriptedModel([reply(WEATHER), reply('{"city": "Rome", "temp_c": 30}')])
    agent = Agent(model, output_guardrails=[no_paris])
    assert (await agent.run("w", output_type=Weather, runtime=rt)).city == "Rome"
    assert "not Paris" in content(model.requests[1].messages[-1])

    def refuse(prompt: str) -> Block | None:
        return Block("no secrets") if "password" in prompt else None

    with pytest.raises(TaskFailedError) as caught:
        await Agent(ScriptedModel([reply("x")]), input_guardrails=[refuse]).run(
            "the password is", runtime=rt
        )
    assert caught.value.reason == "guardrail"

    async def only_oslo(check: ToolCallCheck) -> bool:
        return check.arguments.get("city") == "Oslo"

    model = ScriptedModel([reply(tool_calls=[call("lookup", city="Paris")]), reply("x")])
    with pytest.raises(TaskFailedError) as caught:
        await Agent(model, tools=[lookup], tool_guardrails=[only_oslo]).run("w", runtime=rt)
    assert caught.value.reason == "guardrail"
    verdicts = [
        e
        for e in [e async for e in rt.events(caught.value.task_id)]
        if isinstance(e, taskloom.GuardrailChecked)
    ]
    assert [(v.stage, v.verdict) for v in verdicts] == [("tool", "block")]


async def wait_for_state(rt: taskloom.Runtime, task_id: str, state: TaskState) -> Task:
    for _ in range(500):
        task = await rt.get(task_id)
        if task.state is state:
            return task
        await asyncio.sleep(0.01)
    raise AssertionError(f"task never became {state}")


async def test_a_tool_needing_approval_waits_for_a_human(rt: taskloom.Runtime) -> None:
    sent: list[str] = []

    @tool(requires_approval=True, effect="at_most_once")
    def send_email(to: str) -> str:
        """Send an email."""
        sent.append(to)
        return "sent"

    model = ScriptedModel([reply(tool_calls=[call("send_email", to="a@b.c")]), reply("done")])
    task = await rt.submit(Agent(model, tools=[send_email]), "mail a@b.c")
    waiting = await wait_for_state(rt, task.id, TaskState.INPUT_REQUIRED)
    assert sent == []
    with pytest.raises(taskloom.InvalidAnswerError):
        await rt.respond(waiting.id, {"approved": "maybe"})
    await rt.respond(waiting.id, True)
    assert await task.result() == "done"
    assert sent == ["a@b.c"]
    assert "input_required" in await kinds(rt, task.id)


async def test_a_denied_approval_tells_the_model_and_runs_nothing(rt: taskloom.Runtime) -> None:
    sent: list[str] = []

    @tool(requires_approval=True)
    def send_email(to: str) -> str:
        """Send an email."""
        sent.append(to)
        return "sent"

    model = ScriptedModel(
        [reply(tool_calls=[call("send_email", to="x@y.z")]), reply("ok, not sent")]
    )
    task = await rt.submit(Agent(model, tools=[send_email]), "mail")
    await wait_for_state(rt, task.id, TaskState.INPUT_REQUIRED)
    await rt.respond(task.id, {"approved": False, "reason": "not today"})
    assert await task.result() == "ok, not sent"
    assert sent == []
    shown = [content(m) for m in model.requests[1].messages if m.role == "tool"]
    assert "not today" in shown[0]


async def test_a_tool_can_ask_a_typed_question(rt: taskloom.Runtime) -> None:
    async def convert(celsius: float, task: Task) -> str:
        """Convert a temperature to the unit the user wants."""
        unit = await task.ask("Which unit?", answer_type=Literal["C", "F"])
        return f"{celsius * 9 / 5 + 32:.1f} F" if unit == "F" else f"{celsius} C"

    model = ScriptedModel([reply(tool_calls=[call("convert", celsius=20)]), reply("68.0 F")])
    task = await rt.submit(Agent(model, tools=[convert]), "convert 20")
    await wait_for_state(rt, task.id, TaskState.INPUT_REQUIRED)
    with pytest.raises(taskloom.InvalidAnswerError):
        await rt.respond(task.id, "K")
    await rt.respond(task.id, "F")
    assert await task.result() == "68.0 F"
    assert content(model.requests[1].messages[-1]) == "68.0 F"


async def test_an_unanswered_question_expires_the_task(rt: taskloom.Runtime) -> None:
    async def ask(task: Task) -> str:
        """Ask something."""
        return await task.ask("anyone?", input_timeout=0.1)

    model = ScriptedModel([reply(tool_calls=[call("ask")]), reply("x")])
    with pytest.raises(TaskExpiredError):
        await Agent(model, tools=[ask]).run("q", runtime=rt)
    task = await the_task(rt)
    assert task.state is TaskState.EXPIRED and task.reason == "input_timeout"


async def test_callbacks_receive_tokens_and_every_event(rt: taskloom.Runtime) -> None:
    tokens: list[str] = []
    seen: list[str] = []
    model = ScriptedModel([reply("hello there, world")], stream_chunk=5)
    out = await Agent(model).run(
        "hi", runtime=rt, on_token=tokens.append, on_event=lambda e: seen.append(e.kind)
    )
    assert out == "hello there, world"
    assert "".join(tokens) == out and len(tokens) > 1
    assert seen == ["started", "model_called", "completed"] or seen == [
        "submitted",
        "started",
        "model_called",
        "completed",
    ]


async def test_one_agent_serves_many_concurrent_tasks(rt: taskloom.Runtime) -> None:
    def answer(request: ModelRequest) -> ModelResponse:
        if request.messages[-1].role == "tool":
            city = content(request.messages[-1]).split(":")[0]
            return reply(json.dumps({"city": city, "temp_c": 1.0}))
        prompt = content(request.messages[-1])
        return reply(tool_calls=[call("lookup", city=prompt)])

    agent = Agent(FunctionModel(answer), tools=[lookup])
    cities = [f"city{i}" for i in range(40)]
    results = await asyncio.gather(*(agent.run(c, output_type=Weather, runtime=rt) for c in cities))
    assert [r.city for r in results] == cities


async def test_cancelling_a_running_agent_task_cancels_the_model_call(rt: taskloom.Runtime) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(request: ModelRequest) -> ModelResponse:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return reply("late")

    task = await rt.submit(Agent(FunctionModel(slow)), "slow")
    await asyncio.wait_for(started.wait(), 5)
    await rt.cancel(task.id, reason="enough")
    await asyncio.wait_for(cancelled.wait(), 5)
    with pytest.raises(taskloom.TaskCancelledError):
        await task.result()


async def test_the_model_can_ask_a_human(rt: taskloom.Runtime) -> None:
    model = ScriptedModel(
        [reply(tool_calls=[call("ask_human", question="Which city?")]), reply("Lima it is")]
    )
    task = await rt.submit(Agent(model, ask_human=True), "weather somewhere")
    waiting = await wait_for_state(rt, task.id, TaskState.INPUT_REQUIRED)
    await rt.respond(waiting.id, "Lima")
    assert await task.result() == "Lima it is"
    assert content(model.requests[1].messages[-1]) == "Lima"


@dataclass
class Point:
    x: int
    y: int


class Box(TypedDict):
    label: str
    size: float


@pytest.mark.parametrize(
    ("output_type", "answer", "expected"),
    [
        (Point, '{"x": 1, "y": 2}', Point(1, 2)),
        (Box, '{"label": "a", "size": 1.5}', {"label": "a", "size": 1.5}),
        (list[int], '{"result": [1, 2, 3]}', [1, 2, 3]),
        (bool, '{"result": true}', True),
        (float, '```json\n{"result": 2.5}\n```', 2.5),
    ],
)
async def test_output_types(
    rt: taskloom.Runtime, output_type: Any, answer: str, expected: Any
) -> None:
    model = ScriptedModel([reply(answer)])
    assert await Agent(model).run("x", output_type=output_type, runtime=rt) == expected
    spec = model.requests[0].output
    assert spec is not None and spec.schema["type"] == "object"


async def test_an_answer_cut_at_the_token_limit_is_sent_back(rt: taskloom.Runtime) -> None:
    model = ScriptedModel([reply('{"city": "Par', finish_reason="length"), reply(WEATHER)])
    assert (await Agent(model).run("w", output_type=Weather, runtime=rt)).city == "Paris"
    assert "cut off" in content(model.requests[1].messages[-1])


async def test_waiting_for_a_human_does_not_count_against_the_deadline(
    rt: taskloom.Runtime,
) -> None:
    async def confirm(task: Task) -> str:
        """Ask for confirmation."""
        return await task.ask("go?")

    model = ScriptedModel([reply(tool_calls=[call("confirm")]), reply("went")])
    agent = Agent(model, tools=[confirm], limits=Limits(deadline_seconds=0.3))
    task = await rt.submit(agent, "x")
    await wait_for_state(rt, task.id, TaskState.INPUT_REQUIRED)
    await asyncio.sleep(0.5)  # longer than the whole deadline
    await rt.respond(task.id, "yes")
    assert await task.result() == "went"


async def test_parallel_questions_are_asked_one_at_a_time(rt: taskloom.Runtime) -> None:
    async def ask_name(task: Task, who: str) -> str:
        """Ask a name."""
        return await task.ask(f"name of {who}?")

    model = ScriptedModel(
        [reply(tool_calls=[call("ask_name", who="a"), call("ask_name", who="b")]), reply("ok")]
    )
    task = await rt.submit(Agent(model, tools=[ask_name]), "x")
    for answer in ("Ann", "Bob"):
        await wait_for_state(rt, task.id, TaskState.INPUT_REQUIRED)
        await rt.respond(task.id, answer)
    assert await task.result() == "ok"
    results = sorted(content(m) for m in model.requests[1].messages if m.role == "tool")
    assert results == ["Ann", "Bob"]
