"""The journal: a task taken over after a crash replays its steps instead of redoing them.

A crash is simulated in-process: the agent performs a task in an asyncio task until it
reaches a chosen point (a tool or a model call waiting on an `asyncio.Event`), then the
handle gives up its lease (`Task._give_up`: it writes nothing more and cancels the body).
The store then holds a `working` task with a partial journal, which a second handle,
fenced at the task's epoch as a worker's is, performs again with `resumed=True`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import taskloom
from taskloom import Task, TaskState
from taskloom.agent import Agent, Limits
from taskloom.agent import _loop as loop_module  # pyright: ignore[reportPrivateUsage] -- spied on
from taskloom.agent._journal import Journal, Prints, model_fp, tool_fp
from taskloom.errors import LeaseLostError, TaskExpiredError, TaskFailedError, UserError
from taskloom.events import (
    Event,
    ModelCalled,
    TaskInputRequired,
    TaskResumed,
    ToolCalled,
    ToolStarted,
)
from taskloom.models import (
    AssistantMessage,
    FunctionModel,
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    RequestUsage,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from taskloom.models.scripted import call, reply
from taskloom.tools import IdempotencyKey, Tool, tool

from ._util import content


class Weather(BaseModel):
    city: str
    temp_c: float


WEATHER = '{"city": "Paris", "temp_c": 21.5}'


@dataclass
class Turns:
    """A model script by turn (one response per turn) that counts the calls it answers.

    With `hold_at`, the call of that turn waits for `release` (a model call in flight).
    """

    responses: list[ModelResponse]
    hold_at: int | None = None
    calls: list[int] = field(default_factory=list[int])
    requests: list[ModelRequest] = field(default_factory=list[ModelRequest])
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, request: ModelRequest) -> ModelResponse:
        turn = sum(m.role == "assistant" for m in request.messages) + 1
        self.calls.append(turn)
        self.requests.append(request)
        if turn == self.hold_at:
            self.reached.set()
            await self.release.wait()
        return self.responses[turn - 1]

    def again(self) -> Turns:
        """The same script, not held, with its own counts (the resuming worker's model)."""
        return Turns(self.responses)


@dataclass
class Gate:
    """Lets a tool run until the test says so; counts the calls and their idempotency keys."""

    hold: bool = True
    runs: list[str] = field(default_factory=list[str])
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def pass_through(self, key: str) -> None:
        self.runs.append(key)
        if self.hold:
            self.reached.set()
            await self.release.wait()


def make_tools(gate: Gate, looked_up: list[str], *, effect: str = "idempotent") -> list[Tool]:
    def lookup(city: str) -> str:
        """Look up the temperature of a city.

        Args:
            city: The city's name.
        """
        looked_up.append(city)
        return f"{city}: 21.5 C"

    async def send(to: str, key: IdempotencyKey) -> str:
        """Send a message.

        Args:
            to: Who to send it to.
            key: The idempotency key (injected).
        """
        await gate.pass_through(key)
        return f"sent to {to}"

    return [tool(lookup, effect="pure"), tool(send, effect=effect)]  # pyright: ignore[reportArgumentType] -- tests pass each effect


def script() -> list[ModelResponse]:
    return [
        reply(tool_calls=[call("lookup", city="Paris")]),
        reply(tool_calls=[call("send", to="ann")]),
        reply(WEATHER),
    ]


async def start(
    rt: taskloom.Runtime, agent: Agent, prompt: str, **options: Any
) -> tuple[Task, asyncio.Task[Any]]:
    handle = await rt.create("job")  # stored (submitted) first, so that it can be watched
    return handle, asyncio.create_task(agent.perform(handle, prompt, host=rt, **options))


async def crash(handle: Task, running: asyncio.Task[Any], reached: asyncio.Event) -> None:
    """Wait until the run reaches the point, then lose its lease there."""
    await reached.wait()
    handle._give_up()  # pyright: ignore[reportPrivateUsage] -- what a worker does on a lost lease
    with contextlib.suppress(asyncio.CancelledError, LeaseLostError):
        await running
    assert (await handle.refresh()).state in (TaskState.WORKING, TaskState.INPUT_REQUIRED)


async def resume(
    rt: taskloom.Runtime, task_id: str, agent: Agent, prompt: str, **options: Any
) -> Any:
    """Perform the task again, as the worker that took it over does."""
    handle = await rt.get(task_id)
    handle._fence = handle.epoch  # pyright: ignore[reportPrivateUsage] -- what a worker's claim sets
    return await agent.perform(handle, prompt, host=rt, resumed=True, **options)


async def events_of(rt: taskloom.Runtime, task_id: str) -> list[Event]:
    return await rt.store.read_events(task_id, limit=10_000)


async def steps(rt: taskloom.Runtime, task_id: str) -> list[str]:
    """The step keys of the task's model and tool calls, in order."""
    return [
        e.step
        for e in await events_of(rt, task_id)
        if isinstance(e, ModelCalled | ToolCalled | ToolStarted)
    ]


async def uninterrupted(
    rt: taskloom.Runtime,
    agent_of: Callable[[Turns, Gate], Agent],
    responses: list[ModelResponse] | None = None,
) -> Task:
    """The same task, run without a crash: what a resumed run must end up with."""
    agent = agent_of(Turns(responses or script()), Gate(hold=False))
    handle = rt.task("job")
    await agent.perform(handle, "weather", host=rt, output_type=Weather)
    return await rt.get(handle.id)


async def wait_for_state(rt: taskloom.Runtime, task_id: str, state: TaskState) -> Task:
    async for event in rt.events(task_id):
        if event.kind == state.value:
            break
    return await rt.get(task_id)


def agent_with(looked_up: list[str], **options: Any) -> Callable[[Turns, Gate], Agent]:
    effect = options.pop("effect", "idempotent")

    def make(turns: Turns, gate: Gate) -> Agent:
        tools = make_tools(gate, looked_up, effect=effect)
        return Agent(FunctionModel(turns), tools=tools, **options)

    return make


async def test_a_resumed_run_replays_its_journal_and_reruns_the_cut_off_tool(
    rt: taskloom.Runtime,
) -> None:
    looked_up: list[str] = []
    make = agent_with(looked_up)
    turns, gate = Turns(script()), Gate()
    handle, running = await start(rt, make(turns, gate), "weather", output_type=Weather)
    await crash(handle, running, gate.reached)
    assert turns.calls == [1, 2] and looked_up == ["Paris"]

    again, gate_again = turns.again(), Gate(hold=False)
    weather = await resume(rt, handle.id, make(again, gate_again), "weather", output_type=Weather)

    assert weather == Weather(city="Paris", temp_c=21.5)
    assert again.calls == [3]  # turns 1 and 2 were replayed, not asked again
    assert looked_up == ["Paris"]  # the journaled tool call did not run again
    assert gate_again.runs == gate.runs == [f"{handle.id}/2/0"]  # re-run, same key
    assert await steps(rt, handle.id) == ["m1", "t1.0", "m2", "t2.0", "m3"]
    done, reference = await rt.get(handle.id), await uninterrupted(rt, make)
    assert done.state is TaskState.COMPLETED and done.output == reference.output
    assert done.usage == reference.usage
    assert done.usage.requests == 3 and done.usage.tool_calls == 2


async def test_a_model_call_in_flight_is_made_again_and_nothing_before_it(
    rt: taskloom.Runtime,
) -> None:
    looked_up: list[str] = []
    make = agent_with(looked_up)
    turns, gate = Turns(script(), hold_at=3), Gate(hold=False)
    handle, running = await start(rt, make(turns, gate), "weather", output_type=Weather)
    await crash(handle, running, turns.reached)

    again, gate_again = turns.again(), Gate(hold=False)
    weather = await resume(rt, handle.id, make(again, gate_again), "weather", output_type=Weather)

    assert weather.city == "Paris"
    assert again.calls == [3]
    assert looked_up == ["Paris"] and gate_again.runs == []
    # the resumed model was sent the same conversation, rebuilt from the journal
    assert model_fp(again.requests[0]) == model_fp(turns.requests[-1])
    assert await steps(rt, handle.id) == ["m1", "t1.0", "m2", "t2.0", "m3"]
    assert (await rt.get(handle.id)).usage == (await uninterrupted(rt, make)).usage


async def test_an_at_most_once_call_cut_off_fails_the_task_when_told_to(
    rt: taskloom.Runtime,
) -> None:
    looked_up: list[str] = []
    make = agent_with(looked_up, effect="at_most_once", unknown_outcome="fail")
    turns, gate = Turns(script()), Gate()
    handle, running = await start(rt, make(turns, gate), "weather", output_type=Weather)
    await crash(handle, running, gate.reached)
    assert await steps(rt, handle.id) == ["m1", "t1.0", "m2", "t2.0"]  # t2.0: tool_started

    gate_again = Gate(hold=False)
    with pytest.raises(TaskFailedError) as caught:
        await resume(rt, handle.id, make(turns.again(), gate_again), "weather", output_type=Weather)
    assert caught.value.reason == "outcome_unknown"
    assert "send" in (caught.value.error_message or "")
    assert gate_again.runs == []


async def test_an_at_most_once_call_cut_off_asks_whether_it_happened(
    rt: taskloom.Runtime,
) -> None:
    looked_up: list[str] = []
    make = agent_with(looked_up, effect="at_most_once")
    turns, gate = Turns(script()), Gate()
    handle, running = await start(rt, make(turns, gate), "weather", output_type=Weather)
    await crash(handle, running, gate.reached)

    again, gate_again = turns.again(), Gate(hold=False)
    resumed = asyncio.create_task(
        resume(rt, handle.id, make(again, gate_again), "weather", output_type=Weather)
    )
    waiting = await wait_for_state(rt, handle.id, TaskState.INPUT_REQUIRED)
    request = [e for e in await events_of(rt, waiting.id) if isinstance(e, TaskInputRequired)]
    assert len(request) == 1
    assert request[0].request["kind"] == "question"
    assert request[0].request["step"] == "t2.0/1"
    assert request[0].request["details"] == {
        "tool": "send",
        "arguments": {"to": "ann"},
        "step": "t2.0",
    }
    await rt.respond(handle.id, {"happened": True, "result": "sent"})

    assert await resumed == Weather(city="Paris", temp_c=21.5)
    assert gate_again.runs == []  # a human said it happened: it did not run again
    shown = [content(m) for m in again.requests[-1].messages if m.role == "tool"]
    assert shown[-1] == "sent"
    assert (await steps(rt, handle.id)).count("t2.0") == 2  # tool_started, then tool_called


async def test_a_call_that_did_not_happen_runs_after_the_answer(rt: taskloom.Runtime) -> None:
    looked_up: list[str] = []
    make = agent_with(looked_up, effect="at_most_once")
    turns, gate = Turns(script()), Gate()
    handle, running = await start(rt, make(turns, gate), "weather", output_type=Weather)
    await crash(handle, running, gate.reached)

    again, gate_again = turns.again(), Gate(hold=False)
    resumed = asyncio.create_task(
        resume(rt, handle.id, make(again, gate_again), "weather", output_type=Weather)
    )
    await wait_for_state(rt, handle.id, TaskState.INPUT_REQUIRED)
    await rt.respond(handle.id, {"happened": False})
    assert (await resumed).city == "Paris"
    assert gate_again.runs == [f"{handle.id}/2/0"]
    shown = [content(m) for m in again.requests[-1].messages if m.role == "tool"]
    assert shown[-1] == "sent to ann"


@pytest.mark.parametrize("change", ["instructions", "tool order", "prompt"])
async def test_a_changed_agent_cannot_resume(rt: taskloom.Runtime, change: str) -> None:
    looked_up: list[str] = []
    turns, gate = Turns(script()), Gate()
    agent = Agent(FunctionModel(turns), tools=make_tools(gate, looked_up))
    handle, running = await start(rt, agent, "weather", output_type=Weather)
    await crash(handle, running, gate.reached)

    again = turns.again()
    tools = make_tools(Gate(hold=False), looked_up)
    prompt = "weather"
    if change == "instructions":
        changed = Agent(FunctionModel(again), tools=tools, instructions="Be brief.")
    elif change == "tool order":
        changed = Agent(FunctionModel(again), tools=list(reversed(tools)))
    else:
        changed, prompt = Agent(FunctionModel(again), tools=tools), "the weather, please"
    with pytest.raises(TaskFailedError) as caught:
        await resume(rt, handle.id, changed, prompt, output_type=Weather)
    assert caught.value.reason == "nondeterminism"
    assert "'m1'" in (caught.value.error_message or "")
    assert again.calls == [] and looked_up == ["Paris"]


async def test_a_different_model_may_resume(rt: taskloom.Runtime) -> None:
    looked_up: list[str] = []
    turns, gate = Turns(script()), Gate()
    agent = Agent(FunctionModel(turns, name="one"), tools=make_tools(gate, looked_up))
    handle, running = await start(rt, agent, "weather", output_type=Weather)
    await crash(handle, running, gate.reached)
    tools = make_tools(Gate(hold=False), looked_up)
    other = Agent(FunctionModel(turns.again(), name="two"), tools=tools)
    assert (await resume(rt, handle.id, other, "weather", output_type=Weather)).city == "Paris"


async def test_an_answered_approval_is_not_asked_again(rt: taskloom.Runtime) -> None:
    looked_up: list[str] = []

    def make(turns: Turns, gate: Gate) -> Agent:
        lookup, send = make_tools(gate, looked_up)
        return Agent(FunctionModel(turns), tools=[lookup, _approved(send)])

    turns, gate = Turns(script()), Gate()
    handle, running = await start(rt, make(turns, gate), "weather", output_type=Weather)
    await wait_for_state(rt, handle.id, TaskState.INPUT_REQUIRED)
    await rt.respond(handle.id, True)
    await crash(handle, running, gate.reached)  # cut off while the approved call runs

    gate_again = Gate(hold=False)
    weather = await resume(
        rt, handle.id, make(turns.again(), gate_again), "weather", output_type=Weather
    )
    assert weather.city == "Paris"
    assert gate_again.runs == [f"{handle.id}/2/0"]
    kinds = [e.kind for e in await events_of(rt, handle.id)]
    assert kinds.count("input_required") == 1 and kinds.count("resumed") == 1


async def test_a_pending_approval_is_waited_for(rt: taskloom.Runtime) -> None:
    looked_up: list[str] = []

    def make(turns: Turns, gate: Gate) -> Agent:
        lookup, send = make_tools(gate, looked_up)
        return Agent(FunctionModel(turns), tools=[lookup, _approved(send)])

    turns, gate = Turns(script()), Gate(hold=False)
    handle, running = await start(rt, make(turns, gate), "weather", output_type=Weather)
    asked = asyncio.Event()
    waiting = await wait_for_state(rt, handle.id, TaskState.INPUT_REQUIRED)
    asked.set()
    await crash(handle, running, asked)  # cut off while it waits for the answer
    assert (await rt.get(handle.id)).state is TaskState.INPUT_REQUIRED  # not taken back

    gate_again = Gate(hold=False)
    resumed = asyncio.create_task(
        resume(rt, handle.id, make(turns.again(), gate_again), "weather", output_type=Weather)
    )
    await rt.respond(waiting.id, True)
    assert (await resumed).city == "Paris"
    assert gate.runs == [] and gate_again.runs == [f"{handle.id}/2/0"]
    kinds = [e.kind for e in await events_of(rt, handle.id)]
    assert kinds.count("input_required") == 1 and kinds.count("resumed") == 1


async def test_an_answer_given_after_the_handle_was_read_is_replayed(
    rt: taskloom.Runtime,
) -> None:
    """Regression: the worker read the task (input_required), then the answer came, then the
    journal was read: the replayed answer must not leave the handle thinking it still waits."""
    looked_up: list[str] = []

    def make(turns: Turns, gate: Gate) -> Agent:
        lookup, send = make_tools(gate, looked_up)
        return Agent(FunctionModel(turns), tools=[lookup, _approved(send)])

    turns, gate = Turns(script()), Gate(hold=False)
    handle, running = await start(rt, make(turns, gate), "weather", output_type=Weather)
    asked = asyncio.Event()
    await wait_for_state(rt, handle.id, TaskState.INPUT_REQUIRED)
    asked.set()
    await crash(handle, running, asked)
    stale = await rt.get(handle.id)  # what the next worker read: still waiting
    await rt.respond(handle.id, True)
    stale._fence = stale.epoch  # pyright: ignore[reportPrivateUsage] -- what a worker's claim sets
    again = make(turns.again(), Gate(hold=False))
    weather = await again.perform(stale, "weather", host=rt, resumed=True, output_type=Weather)
    assert weather.city == "Paris"
    assert (await rt.get(handle.id)).state is TaskState.COMPLETED


def _approved(send: Tool) -> Tool:
    return dataclasses.replace(send, requires_approval=True)


async def test_an_open_question_of_ask_human_is_waited_for(rt: taskloom.Runtime) -> None:
    def agent_of(turns: Turns) -> Agent:
        return Agent(FunctionModel(turns), ask_human=True)

    turns = Turns([reply(tool_calls=[call("ask_human", question="Which city?")]), reply("Lima")])
    handle, running = await start(rt, agent_of(turns), "weather somewhere")
    asked = asyncio.Event()
    await wait_for_state(rt, handle.id, TaskState.INPUT_REQUIRED)
    asked.set()
    await crash(handle, running, asked)

    again = turns.again()
    resumed = asyncio.create_task(resume(rt, handle.id, agent_of(again), "weather somewhere"))
    await rt.respond(handle.id, "Lima")
    assert await resumed == "Lima"
    assert again.calls == [2]
    assert content(again.requests[0].messages[-1]) == "Lima"
    kinds = [e.kind for e in await events_of(rt, handle.id)]
    assert kinds.count("input_required") == 1


async def test_an_open_question_keeps_the_input_timeout_it_had(rt: taskloom.Runtime) -> None:
    def agent_of(turns: Turns) -> Agent:
        return Agent(FunctionModel(turns), ask_human=True)

    turns = Turns([reply(tool_calls=[call("ask_human", question="Which city?")]), reply("Lima")])
    handle, running = await start(rt, agent_of(turns), "weather somewhere")
    asked = asyncio.Event()
    await wait_for_state(rt, handle.id, TaskState.INPUT_REQUIRED)
    await asyncio.sleep(0.3)  # asked 0.3 s ago at least
    asked.set()
    await crash(handle, running, asked)

    with pytest.raises(TaskExpiredError) as caught:
        limits = Limits(input_timeout_seconds=0.2)
        await resume(rt, handle.id, agent_of(turns.again()), "weather somewhere", limits=limits)
    assert caught.value.reason == "input_timeout"
    kinds = [e.kind for e in await events_of(rt, handle.id)]
    assert kinds.count("input_required") == 1


async def test_parallel_calls_and_the_loop_guard_replay(rt: taskloom.Runtime) -> None:
    failures: list[int] = []

    def flaky(n: int) -> str:
        """Fail, always."""
        failures.append(n)
        raise ValueError("down")

    def agent_of(turns: Turns) -> Agent:
        return Agent(FunctionModel(turns), tools=[flaky], limits=Limits(loop_threshold=3))

    parallel = [call("flaky", n=1), call("flaky", n=2)]
    turns = Turns(
        [
            reply(tool_calls=parallel),
            reply(tool_calls=[call("flaky", n=1)]),
            reply(tool_calls=[call("flaky", n=1)]),
        ],
        hold_at=3,
    )
    handle, running = await start(rt, agent_of(turns), "go")
    await crash(handle, running, turns.reached)
    assert sorted(failures) == [1, 1, 2]

    again = turns.again()
    with pytest.raises(TaskFailedError) as caught:
        await resume(rt, handle.id, agent_of(again), "go")
    assert caught.value.reason == "loop"  # the two failures before the crash still count
    assert again.calls == [3] and sorted(failures) == [1, 1, 1, 2]
    # each step once (the two parallel calls of turn 1 in either order)
    assert sorted(await steps(rt, handle.id)) == ["m1", "m2", "m3", "t1.0", "t1.1", "t2.0", "t3.0"]


async def test_notes_and_usage_are_not_written_twice(rt: taskloom.Runtime) -> None:
    looked_up: list[str] = []
    checked: list[str] = []

    def polite(prompt: str) -> None:
        checked.append(prompt)

    cached = ModelResponse(
        text=WEATHER,
        usage=RequestUsage(input_tokens=7, output_tokens=3, cache_read_tokens=4),
        model_name="cached-1",
    )
    responses = [*script()[:2], cached]
    turns, gate = Turns(responses, hold_at=3), Gate(hold=False)
    tools = make_tools(gate, looked_up)
    agent = Agent(FunctionModel(turns), tools=tools, input_guardrails=[polite])
    handle, running = await start(rt, agent, "weather", output_type=Weather)
    await crash(handle, running, turns.reached)

    again = turns.again()
    agent = Agent(FunctionModel(again), tools=tools, input_guardrails=[polite])
    await resume(rt, handle.id, agent, "weather", output_type=Weather)
    events = await events_of(rt, handle.id)
    assert [e.kind for e in events].count("guardrail_checked") == 1
    assert checked == ["weather", "weather"]  # judged again, recorded once
    last = [e for e in events if isinstance(e, ModelCalled)][-1]
    assert (last.model_name, last.cache_read_tokens, last.step) == ("cached-1", 4, "m3")
    assert len(last.fp) == 16
    usage = (await rt.get(handle.id)).usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (3, 27, 13)


async def test_what_a_sub_agent_used_before_the_crash_stays_counted(
    rt: taskloom.Runtime,
) -> None:
    child = Agent(FunctionModel(lambda _: reply("hi", input_tokens=100, output_tokens=50)))

    @child.task
    async def helper(topic: str) -> str:  # pyright: ignore[reportReturnType] -- a task stub
        """Help with a topic."""

    def make(turns: Turns, gate: Gate) -> Agent:
        agent = Agent(FunctionModel(turns), tools=make_tools(gate, []))
        agent.fn(helper)
        return agent

    responses = [reply(tool_calls=[call("helper", topic="x")]), *script()[1:]]
    turns, gate = Turns(responses), Gate()
    handle, running = await start(rt, make(turns, gate), "weather", output_type=Weather)
    await crash(handle, running, gate.reached)

    await resume(
        rt, handle.id, make(turns.again(), Gate(hold=False)), "weather", output_type=Weather
    )
    usage = (await rt.get(handle.id)).usage
    assert usage == (await uninterrupted(rt, make, responses)).usage
    assert (usage.requests, usage.input_tokens) == (4, 130)


async def test_the_deadline_counts_the_time_worked_before_the_crash(rt: taskloom.Runtime) -> None:
    looked_up: list[str] = []
    make = agent_with(looked_up)
    turns, gate = Turns(script()), Gate()
    handle, running = await start(rt, make(turns, gate), "weather", output_type=Weather)
    await gate.reached.wait()
    await asyncio.sleep(0.2)  # it works 0.2 s at least before the crash, over its deadline
    await crash(handle, running, gate.reached)

    again = turns.again()
    with pytest.raises(TaskExpiredError) as caught:
        await resume(
            rt,
            handle.id,
            make(again, Gate(hold=False)),
            "weather",
            output_type=Weather,
            limits=Limits(deadline_seconds=0.1),
        )
    assert caught.value.reason == "deadline"
    assert again.calls == []


async def test_a_fresh_run_reads_no_journal(
    rt: taskloom.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(task: Task) -> Journal:
        raise AssertionError("a fresh run read its log")

    monkeypatch.setattr(loop_module, "load_journal", refuse)
    agent = Agent(FunctionModel(Turns(script())), tools=make_tools(Gate(hold=False), []))
    assert (await agent.run("weather", output_type=Weather, runtime=rt)).city == "Paris"


def test_unknown_outcome_is_ask_or_fail() -> None:
    assert Agent(FunctionModel(Turns([]))).unknown_outcome == "ask"
    with pytest.raises(UserError, match="unknown_outcome"):
        Agent(FunctionModel(Turns([])), unknown_outcome="maybe")  # pyright: ignore[reportArgumentType] -- what is refused


def test_fingerprints_are_stable_across_processes() -> None:
    request = ModelRequest(
        messages=(SystemMessage(content="Be brief."), UserMessage(content="Weather in Paris?")),
        settings=ModelSettings(temperature=0.5),
    )
    # pinned: the same in every process and Python run (no hash(), no id())
    assert model_fp(request) == PINNED_MODEL_FP
    assert tool_fp("lookup", '{"b": 1, "a": [1, 2]}') == tool_fp("lookup", '{"a":[1,2],"b":1}')
    assert tool_fp("lookup", '{"a": 1}') != tool_fp("lookup", '{"a": 2}')
    assert tool_fp("lookup", "not json") != tool_fp("other", "not json")
    assert tool_fp("lookup", '{"a": "\\ud800"}') != tool_fp("lookup", '{"a": "\\ud801"}')
    lone = ModelRequest(messages=(UserMessage(content="\ud800"),))
    assert model_fp(lone) != model_fp(ModelRequest(messages=(UserMessage(content="\ud801"),)))
    other = ModelRequest(messages=request.messages, settings=ModelSettings(temperature=0.6))
    assert model_fp(other) != model_fp(request)


def test_a_run_fingerprints_its_growing_conversation_as_model_fp_does() -> None:
    send = make_tools(Gate(hold=False), [])[1]
    tools = (send,)
    prints = Prints(tools, None, ModelSettings())
    messages: list[Message] = [UserMessage(content="hi")]
    for reply_text in ("one", "two"):
        request = ModelRequest(messages=tuple(messages), tools=(send.definition(),))
        assert prints.of(messages) == model_fp(request)
        messages.append(AssistantMessage(text=reply_text))
    # kept per agent: a second run starts from the same line
    assert Prints(tools, None, ModelSettings()).of(messages[:1]) == model_fp(
        ModelRequest(messages=tuple(messages[:1]), tools=(send.definition(),))
    )


def test_every_field_of_a_message_is_fingerprinted() -> None:
    # the fingerprint writes each message's fields in a fixed order (see `_message_line`):
    # a new field must be added there too, or a change in it would go unnoticed on resume
    assert {cls.__name__: [f.name for f in dataclasses.fields(cls)] for cls in MESSAGES} == {
        "SystemMessage": ["content", "role"],
        "UserMessage": ["content", "role"],
        "AssistantMessage": ["text", "tool_calls", "role"],
        "ToolResultMessage": ["call_id", "name", "content", "is_error", "role"],
        "ToolCall": ["id", "name", "arguments"],
    }


MESSAGES = (SystemMessage, UserMessage, AssistantMessage, ToolResultMessage, ToolCall)
PINNED_MODEL_FP = "6795de211c07bb9e"


def _at(seconds_ago: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds_ago)


def test_the_journal_reads_questions_and_the_time_spent_waiting() -> None:
    base: dict[str, Any] = {"task_id": "t"}
    events: list[Event] = [
        TaskInputRequired(**base, seq=1, at=_at(90), request={"step": "t1.0/1"}),
        TaskResumed(**base, seq=2, at=_at(30), answer={"approved": True}),
        TaskInputRequired(**base, seq=3, at=_at(20), request={"step": "t2.0/1"}),
        TaskResumed(**base, seq=4, at=_at(20), withdrawn=True),
        TaskInputRequired(**base, seq=5, at=_at(10), request={"step": "ask1"}),
    ]
    started = round(_at(100).timestamp() * 1000)
    journal = Journal.of(events, started_ms=started)
    assert journal.asks["t1.0/1"].answered and journal.asks["t1.0/1"].answer == {"approved": True}
    assert "t2.0/1" not in journal.asks  # taken back: asked again when reached
    assert not journal.asks["ask1"].answered and journal.asks["ask1"].seq == 5
    # 100 s since the start, 60 s + 10 s of it waiting for answers: 30 s worked
    assert 69 < journal.time_left(100) <= 70.5
    assert journal.replaying
    assert Journal().time_left(100) == 100
