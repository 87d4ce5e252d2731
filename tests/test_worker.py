"""The in-process worker: claims, order, scheduling, uniqueness, leases, fencing, handover.

Every test runs on the memory store, a SQLite file and PostgreSQL. The processes-and-signals
proofs (kill -9, SIGSTOP, SIGTERM, many workers) live in `tests/durable/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import taskloom
from taskloom import Agent, LeaseLostError, TaskState, UserError
from taskloom.models import ModelRequest, ModelResponse
from taskloom.models.scripted import FunctionModel, call, reply

from .agent._util import content


class Answer(BaseModel):
    text: str


def _echo_model(log: list[str], gate: asyncio.Event | None = None) -> FunctionModel:
    """Answers `{"text": <the prompt>}`; logs each prompt; waits for `gate` if given."""

    async def answer(request: ModelRequest) -> ModelResponse:
        prompt = content(request.messages[-1])
        log.append(prompt)
        if gate is not None and prompt.startswith("block"):
            await gate.wait()
        return reply(json.dumps({"text": prompt}))

    return FunctionModel(answer)


@contextlib.asynccontextmanager
async def _another(
    rt: taskloom.Runtime, store_url: str, **options: Any
) -> AsyncGenerator[taskloom.Runtime]:
    """A second runtime on the same store (as another process would open it)."""
    if store_url.startswith("memory"):
        other = await taskloom.Runtime(rt.store, poll_interval=0.02, **options).start()
    else:
        other = await taskloom.open(store_url, poll_interval=0.02, **options)
    try:
        yield other
    finally:
        await other.close()


async def _wait_for(predicate: Any, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not await predicate():  # noqa: ASYNC110 -- another process may be the writer
            await asyncio.sleep(0.01)


async def test_a_submitted_task_is_claimed_performed_and_completed(rt: taskloom.Runtime) -> None:
    agent = Agent(name="echo", model=_echo_model([]))
    task = await rt.submit(agent, "hello", output_type=Answer)
    assert task.state is TaskState.SUBMITTED
    assert await task.result() == Answer(text="hello")
    done = await rt.get(task.id)
    assert done.state is TaskState.COMPLETED
    assert done.epoch == 1 and done.recoveries == 0
    assert rt.worker is not None and done.worker == rt.worker.id
    events = await rt.store.read_events(task.id)
    started = next(e for e in events if isinstance(e, taskloom.TaskStarted))
    assert started.worker == rt.worker.id
    model_steps = [e.step for e in events if isinstance(e, taskloom.ModelCalled)]
    assert model_steps == ["m1"]


async def test_due_tasks_start_by_priority_then_fire_time_then_submission(
    store_url: str,
) -> None:
    log: list[str] = []
    gate = asyncio.Event()
    agent = Agent(name="echo", model=_echo_model(log, gate))
    async with taskloom.open(store_url, poll_interval=0.02, concurrency=1) as rt:
        blocker = await rt.submit(agent, "block", output_type=Answer)
        await _wait_for(lambda: _started(rt, blocker.id))
        past = datetime.now(UTC) - timedelta(seconds=5)
        await rt.submit(agent, "low-1", output_type=Answer, priority=-1)
        await rt.submit(agent, "mid-1", output_type=Answer)
        await rt.submit(agent, "high", output_type=Answer, priority=5)
        await rt.submit(agent, "mid-2", output_type=Answer)
        await rt.submit(agent, "mid-0-earlier", output_type=Answer, at=past)
        last = await rt.submit(agent, "low-2", output_type=Answer, priority=-1)
        gate.set()
        await last.result()
    assert log == ["block", "high", "mid-0-earlier", "mid-1", "mid-2", "low-1", "low-2"]


async def _started(rt: taskloom.Runtime, task_id: str) -> bool:
    return (await rt.get(task_id)).state is not TaskState.SUBMITTED


async def test_a_delayed_task_waits_for_its_time(rt: taskloom.Runtime) -> None:
    agent = Agent(name="echo", model=_echo_model([]))
    task = await rt.submit(agent, "later", output_type=Answer, delay=0.4)
    assert task.scheduled_at is not None
    assert task.scheduled_at > datetime.now(UTC)
    await asyncio.sleep(0.1)
    assert (await rt.get(task.id)).state is TaskState.SUBMITTED
    assert await task.result() == Answer(text="later")
    done = await rt.get(task.id)
    assert done.started_at is not None and done.started_at >= task.scheduled_at


async def test_scheduling_options_are_checked_before_anything_is_stored(
    rt: taskloom.Runtime,
) -> None:
    agent = Agent(name="echo", model=_echo_model([]))
    bad: list[dict[str, Any]] = [
        {"at": datetime.now(UTC), "delay": 1},
        {"at": datetime(2030, 1, 1)},  # naive
        {"delay": -1},
        {"delay": "soon"},
        {"priority": 1.5},
        {"idempotency_key": ""},
        {"serial_key": 3},
    ]
    for options in bad:
        with pytest.raises(UserError):
            await rt.submit(agent, "x", **options)
    assert (await rt.list()).tasks == []


async def test_the_same_idempotency_key_returns_the_existing_task(rt: taskloom.Runtime) -> None:
    log: list[str] = []
    agent = Agent(name="echo", model=_echo_model(log))
    first = await rt.submit(agent, "once", output_type=Answer, idempotency_key="order-42")
    again = await rt.submit(agent, "once", output_type=Answer, idempotency_key="order-42")
    assert again.id == first.id
    assert again.idempotency_key == "order-42"
    assert await first.result() == Answer(text="once")
    third = await rt.submit(agent, "once", output_type=Answer, idempotency_key="order-42")
    assert third.id == first.id and third.state is TaskState.COMPLETED
    assert log == ["once"]
    assert len((await rt.list()).tasks) == 1


async def test_tasks_with_one_serial_key_run_one_at_a_time_in_order(rt: taskloom.Runtime) -> None:
    running = 0
    most = 0
    order: list[str] = []

    async def answer(request: ModelRequest) -> ModelResponse:
        nonlocal running, most
        prompt = content(request.messages[-1])
        running += 1
        most = max(most, running)
        order.append(prompt)
        await asyncio.sleep(0.03)
        running -= 1
        return reply(json.dumps({"text": prompt}))

    agent = Agent(name="serial", model=FunctionModel(answer))
    tasks = [
        await rt.submit(agent, f"s{i}", output_type=Answer, serial_key="user-7") for i in range(4)
    ]
    other = await rt.submit(agent, "free", output_type=Answer)
    for task in [*tasks, other]:
        await task.result()
    assert [p for p in order if p.startswith("s")] == ["s0", "s1", "s2", "s3"]
    assert most <= 2  # the serial ones never overlap each other; "free" may overlap them


async def test_a_client_runtime_submits_and_a_worker_runtime_performs(
    rt: taskloom.Runtime, store_url: str
) -> None:
    log: list[str] = []
    agent = Agent(name="remote-echo", model=_echo_model(log))
    async with _another(rt, store_url, concurrency=0) as client:
        assert client.worker is None
        task = await client.submit(agent, "from the client", output_type=Answer)
        await asyncio.sleep(0.1)
        assert (await client.get(task.id)).state is TaskState.SUBMITTED  # nobody performs it yet
        rt.register(agent)
        assert await task.result() == Answer(text="from the client")
    assert log == ["from the client"]


async def test_registering_refuses_a_name_that_stands_for_another_agent(
    rt: taskloom.Runtime,
) -> None:
    one = Agent(name="same", model=_echo_model([]))
    two = Agent(name="same", model=_echo_model([]))
    rt.register(one, [one])  # the same agent twice is fine
    with pytest.raises(UserError, match="registered already"):
        rt.register(two)
    with pytest.raises(UserError, match="cannot register"):
        rt.register(42)


async def test_a_task_taken_over_too_often_fails_with_recovery_exhausted(
    rt: taskloom.Runtime, store_url: str
) -> None:
    agent = Agent(name="fragile", model=_echo_model([]))
    async with _another(rt, store_url, concurrency=0) as client:
        task = await client.submit(agent, "x", output_type=Answer)
        for n in range(5):  # five workers that each died right after claiming it
            claimed = await rt.store.claim(f"doomed-{n}", {"fragile"}, limit=1, lease_seconds=0.01)
            assert [r.id for r in claimed] == [task.id]
            await asyncio.sleep(0.03)
        assert (await client.get(task.id)).recoveries == 4
        rt.register(agent)  # this worker (max_recovery_attempts=3) takes it over once more
        with pytest.raises(taskloom.TaskFailedError) as failed:
            await task.result()
    assert failed.value.reason == "recovery_exhausted"


async def test_a_write_with_an_old_epoch_is_refused_and_raises_lease_lost(
    rt: taskloom.Runtime, store_url: str
) -> None:
    agent = Agent(name="fenced", model=_echo_model([]))
    async with _another(rt, store_url, concurrency=0) as client:
        task = await client.submit(agent, "x", output_type=Answer)
        [record] = await rt.store.claim("w1", {"fenced"}, limit=1, lease_seconds=0.02)
        stale = taskloom.Task(client, record, stored=True)
        stale._fence = record.epoch  # pyright: ignore[reportPrivateUsage] -- as a worker holds it
        await stale.progress({"step": 1})  # still ours
        await asyncio.sleep(0.05)
        [taken] = await rt.store.claim("w2", {"fenced"}, limit=1, lease_seconds=30)
        assert taken.epoch == record.epoch + 1
        before = (await client.get(task.id)).last_seq
        with pytest.raises(LeaseLostError, match="taken over by worker 'w2'"):
            await stale.progress({"step": 2})
        with pytest.raises(LeaseLostError, match="writes nothing more"):
            await stale.complete({"text": "late"})
        after = await client.get(task.id)
        assert after.last_seq == before and after.state is TaskState.WORKING
        kinds = [e.kind for e in await client.store.read_events(task.id)]
        assert kinds == ["submitted", "started", "progressed", "recovered"]


async def test_a_worker_that_loses_its_lease_stops_and_writes_nothing(
    store_url: str,
) -> None:
    cancelled = asyncio.Event()
    entered = asyncio.Event()

    async def slow(text: str) -> str:
        """Take a while.

        Args:
            text: Anything.
        """
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return text

    script = iter([reply(tool_calls=[call("slow", text="a")])])
    agent = Agent(
        name="slowpoke",
        model=FunctionModel(lambda _: next(script)),
        tools=[taskloom.tool(slow, effect="idempotent")],
    )
    async with taskloom.open(store_url, poll_interval=0.02, lease_seconds=0.3) as rt:
        task = await rt.submit(agent, "go", output_type=Answer)
        await asyncio.wait_for(entered.wait(), 10)
        # another worker takes it over (as if this one had stalled past its lease); this
        # worker may claim the released task back first (a NOTIFY wakes it): then again
        taken: list[Any] = []
        while not taken:
            record = await rt.get(task.id)
            await rt.store.release(task.id, record.epoch)
            taken = await rt.store.claim("thief", {"slowpoke"}, limit=1, lease_seconds=30)
        await asyncio.wait_for(cancelled.wait(), 10)  # the next heartbeat found the lease lost
        assert rt.worker is not None
        await _wait_for(_idle(rt.worker))
        seq = taken[0].last_seq
        await asyncio.sleep(0.2)
        after = await rt.get(task.id)
        assert after.last_seq == seq and after.worker == "thief"
        assert after.state is TaskState.WORKING


async def test_closing_releases_running_tasks_and_the_next_worker_resumes_them(
    sqlite_url: str,
) -> None:
    calls: list[str] = []
    gate = asyncio.Event()

    async def answer(request: ModelRequest) -> ModelResponse:
        calls.append(f"turn {len(request.messages)}")
        if len(request.messages) > 2 and not gate.is_set():
            await asyncio.sleep(30)  # the second turn hangs in the first runtime
        if len(request.messages) > 2:
            return reply(json.dumps({"text": "done"}))
        return reply(tool_calls=[call("note", text="n")])

    def note(text: str) -> str:
        """Note something.

        Args:
            text: What.
        """
        return text.upper()

    agent = Agent(
        name="handover", model=FunctionModel(answer), tools=[taskloom.tool(note, effect="pure")]
    )
    async with taskloom.open(sqlite_url, poll_interval=0.02) as first:
        task = await first.submit(agent, "go", output_type=Answer)
        await _wait_for(lambda: _has(first, task.id, "tool_called"))
        await asyncio.sleep(0.05)
    record = await _peek(sqlite_url, task.id)
    assert record.state is TaskState.WORKING and record.worker is None  # released, not cancelled
    gate.set()
    async with taskloom.open(sqlite_url, poll_interval=0.02) as second:
        second.register(agent)
        done = await second.get(task.id)
        assert await done.result() == {"text": "done"}
        final = await second.get(task.id)
        assert final.state is TaskState.COMPLETED and final.epoch == 2
        kinds = [e.kind for e in await second.store.read_events(task.id)]
        assert kinds.count("tool_called") == 1  # the journaled tool call was replayed, not rerun
        assert "recovered" in kinds


async def _has(rt: taskloom.Runtime, task_id: str, kind: str) -> bool:
    return any(e.kind == kind for e in await rt.store.read_events(task_id))


async def _peek(url: str, task_id: str) -> taskloom.Task:
    async with taskloom.open(url, concurrency=0) as rt:
        return await rt.get(task_id)


async def test_cancel_from_another_runtime_stops_the_worker_run(
    rt: taskloom.Runtime, store_url: str
) -> None:
    log: list[str] = []
    gate = asyncio.Event()
    agent = Agent(name="cancellable", model=_echo_model(log, gate))
    task = await rt.submit(agent, "block", output_type=Answer)
    await _wait_for(lambda: _started(rt, task.id))
    async with _another(rt, store_url, concurrency=0) as other:
        await other.cancel(task.id, reason="not needed")
    with pytest.raises(taskloom.TaskCancelledError):
        await task.result()
    assert rt.worker is not None
    await _wait_for(_idle(rt.worker))


def _idle(worker: taskloom.Worker) -> Any:
    async def check() -> bool:
        return worker.running == 0

    return check


async def test_task_functions_submit_with_scheduling_options(rt: taskloom.Runtime) -> None:
    log: list[str] = []
    agent = Agent(name="writer", model=_echo_model(log))

    @agent.task
    async def shout(word: str) -> Answer:  # pyright: ignore[reportReturnType] -- a stub
        """Shout the word."""

    first = await shout.submit(word="hi", runtime=rt, idempotency_key="k", priority=3)
    again = await shout.submit(word="hi", runtime=rt, idempotency_key="k")
    assert again.id == first.id and first.priority == 3
    assert isinstance(await first.result(), Answer)
    assert len(log) == 1


def test_a_task_input_may_not_use_a_reserved_name() -> None:
    agent = Agent(name="x", model=_echo_model([]))
    with pytest.raises(UserError, match="priority"):

        @agent.task
        async def rank(priority: int) -> str:  # pyright: ignore[reportReturnType] -- a stub
            """Rank it."""

        del rank


async def test_closing_hands_a_task_waiting_for_a_human_over_at_once(sqlite_url: str) -> None:
    def publish(text: str) -> str:
        """Publish the text.

        Args:
            text: What to publish.
        """
        return f"published {text}"

    script = [reply(tool_calls=[call("publish", text="hi")]), reply(json.dumps({"text": "ok"}))]

    def answer(request: ModelRequest) -> ModelResponse:
        return script[0] if len(request.messages) <= 2 else script[1]

    agent = Agent(
        name="approver",
        model=FunctionModel(answer),
        tools=[taskloom.tool(publish, requires_approval=True)],
    )
    async with taskloom.open(sqlite_url, poll_interval=0.02) as first:
        task = await first.submit(agent, "go", output_type=Answer)
        await _wait_for(lambda: _is(first, task.id, TaskState.INPUT_REQUIRED))
        async with asyncio.timeout(10):  # a hang guard: the grace below is an hour
            await first.close(grace=3600)
    waiting = await _peek(sqlite_url, task.id)
    assert waiting.state is TaskState.INPUT_REQUIRED and waiting.worker is None
    async with taskloom.open(sqlite_url, poll_interval=0.02) as second:
        second.register(agent)
        await _wait_for(lambda: _held(second, task.id))
        await second.respond(task.id, True)
        assert await (await second.get(task.id)).result() == {"text": "ok"}
        kinds = [e.kind for e in await second.store.read_events(task.id)]
        assert kinds.count("input_required") == 1  # the question was not asked twice


async def _is(rt: taskloom.Runtime, task_id: str, state: TaskState) -> bool:
    return (await rt.get(task_id)).state is state


async def _held(rt: taskloom.Runtime, task_id: str) -> bool:
    return (await rt.get(task_id)).worker is not None
