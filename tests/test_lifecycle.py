"""The task lifecycle through the public API, on every store.

A `Task` is a handle: its id exists before it is entered; entering starts it; leaving
settles it (a clean exit completes, an exception fails, a cancel cancels, a passed time to
live expires); the first terminal transition wins and nothing changes afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import taskloom
from taskloom import (
    ConflictError,
    InvalidTransitionError,
    NotFoundError,
    NotSerializableError,
    PayloadTooLargeError,
    TaskCancelledError,
    TaskExpiredError,
    TaskFailedError,
    TaskState,
    UserError,
)
from taskloom._record import Change, NewEvent, TaskQuery, TaskRecord

_S = TaskState


async def _kinds(rt: taskloom.Runtime, task_id: str) -> list[str]:
    return [e.kind for e in await rt.store.read_events(task_id)]


async def _snapshot(rt: taskloom.Runtime, task_id: str) -> tuple[Any, ...]:
    """What the store holds for a task, to prove that a refused call wrote nothing."""
    task = await rt.get(task_id)
    events = await rt.store.read_events(task_id)
    return (task.state, task.last_seq, dict(task.current_progress), task.output, len(events))


# -- the handle -----------------------------------------------------------------------------


async def test_the_id_exists_before_the_block_is_entered(rt: taskloom.Runtime) -> None:
    handle = rt.task("job", payload={"q": 1})
    assert handle.id
    assert handle.state is _S.SUBMITTED
    with pytest.raises(NotFoundError):
        await rt.get(handle.id)  # nothing is stored until the block is entered
    async with handle as task:
        assert task is handle
        assert task.state is _S.WORKING
        stored = await rt.get(handle.id)
        assert (stored.id, stored.state, stored.payload) == (handle.id, _S.WORKING, {"q": 1})
    assert handle.state is _S.COMPLETED


async def test_the_same_task_id_enters_the_existing_task(rt: taskloom.Runtime) -> None:
    created = await rt.create("job", task_id="t-1", owner="ann", payload=[1, 2])
    again = await rt.create("job", task_id="t-1", owner="bob", payload="other")
    assert (again.id, again.owner, again.payload, again.created_at) == (
        "t-1",
        "ann",
        [1, 2],
        created.created_at,
    )
    async with rt.task("job", task_id="t-1", payload="ignored") as task:
        assert (task.id, task.state, task.owner, task.payload) == ("t-1", _S.WORKING, "ann", [1, 2])
        assert task.last_seq == 2
    page = await rt.list()
    assert [t.id for t in page.tasks] == ["t-1"]
    assert await _kinds(rt, "t-1") == ["submitted", "started", "completed"]


async def test_entering_a_completed_task_again_is_a_conflict(rt: taskloom.Runtime) -> None:
    async with rt.task("job", task_id="t-2") as task:
        await task.complete("first")
    ran = False
    with pytest.raises(ConflictError, match="already completed"):
        async with rt.task("job", task_id="t-2"):
            ran = True
    assert not ran
    stored = await rt.get("t-2")
    assert (stored.state, stored.output, stored.last_seq) == (_S.COMPLETED, "first", 3)


async def test_entering_a_working_task_again_is_a_conflict(rt: taskloom.Runtime) -> None:
    async with rt.task("job", task_id="t-3"):
        with pytest.raises(ConflictError, match="already working"):
            async with rt.task("job", task_id="t-3"):
                pass
        assert (await rt.get("t-3")).state is _S.WORKING
    assert (await rt.get("t-3")).state is _S.COMPLETED


async def test_the_same_id_with_another_name_is_a_conflict(rt: taskloom.Runtime) -> None:
    await rt.create("summarise", task_id="t-4")
    with pytest.raises(ConflictError, match="summarise"):
        async with rt.task("translate", task_id="t-4"):
            pass
    with pytest.raises(ConflictError):
        await rt.create("translate", task_id="t-4")
    stored = await rt.get("t-4")
    assert (stored.name, stored.state, stored.last_seq) == ("summarise", _S.SUBMITTED, 1)


async def test_a_handle_is_entered_once(rt: taskloom.Runtime) -> None:
    handle = rt.task("job")
    async with handle:
        pass
    with pytest.raises(UserError, match="already entered"):
        async with handle:
            pass


async def test_bad_arguments_are_refused_before_anything_is_stored(rt: taskloom.Runtime) -> None:
    with pytest.raises(NotSerializableError, match="payload"):
        rt.task("job", payload={"when": object()}, task_id="bad")
    with pytest.raises(UserError, match="ttl_seconds"):
        rt.task("job", ttl_seconds=0)
    with pytest.raises(UserError, match="retention_seconds"):
        await rt.create("job", retention_seconds=-1)
    with pytest.raises(UserError, match="name"):
        rt.task("")
    with pytest.raises(UserError, match="task_id"):
        rt.task("job", task_id="")
    assert (await rt.list()).tasks == []


async def test_a_spec_gives_its_name_and_clocks(rt: taskloom.Runtime) -> None:
    spec = taskloom.TaskSpec(name="summarise", ttl_seconds=30, retention_seconds=60)
    async with rt.task(spec) as task:
        assert task.name == "summarise"
        assert task.expires_at is not None and task.started_at is not None
        assert timedelta(seconds=29) < task.expires_at - task.started_at <= timedelta(seconds=30)
    stored = await rt.get(task.id)
    assert stored.purge_at is not None and stored.ended_at is not None
    assert stored.purge_at - stored.ended_at == timedelta(seconds=60)


# -- how a block ends -----------------------------------------------------------------------


async def test_a_clean_exit_completes_with_none(rt: taskloom.Runtime) -> None:
    async with rt.task("job") as task:
        pass
    stored = await rt.get(task.id)
    assert (stored.state, stored.output, stored.reason, stored.error) == (
        _S.COMPLETED,
        None,
        None,
        None,
    )
    assert stored.ended_at is not None and stored.started_at is not None
    assert stored.started_at <= stored.ended_at
    assert await _kinds(rt, task.id) == ["submitted", "started", "completed"]
    assert await stored.result() is None


async def test_an_exception_fails_the_task_and_propagates(rt: taskloom.Runtime) -> None:
    boom = ValueError("the ticket has no text")
    task = rt.task("job")
    with pytest.raises(ValueError) as info:
        async with task:
            raise boom
    assert info.value is boom
    stored = await rt.get(task.id)
    assert (stored.state, stored.reason) == (_S.FAILED, "error")
    assert stored.error == taskloom.TaskError(type="ValueError", message="the ticket has no text")
    *_, last = await rt.store.read_events(task.id)
    assert isinstance(last, taskloom.TaskFailed)
    assert (last.error_type, last.message, last.reason) == (
        "ValueError",
        "the ticket has no text",
        "error",
    )


@pytest.mark.parametrize("char", ["x", "日", "\x01"], ids=["ascii", "cjk", "control"])
async def test_a_huge_exception_message_still_fails_the_task(store_url: str, char: str) -> None:
    boom = ValueError(char * 5000)
    async with taskloom.open(store_url, max_payload_bytes=4096) as rt:
        task = rt.task("job")
        with pytest.raises(ValueError) as info:
            async with task:
                raise boom
        assert info.value is boom
        stored = await rt.get(task.id)
        assert stored.state is _S.FAILED
        assert stored.error is not None and stored.error.type == "ValueError"
        assert 0 < len(stored.error.message) < 5000
        assert boom.args[0].startswith(stored.error.message)


async def test_cancelling_the_asyncio_task_cancels_the_task(rt: taskloom.Runtime) -> None:
    entered = asyncio.Event()
    handle = rt.task("job")

    async def body() -> None:
        async with handle:
            entered.set()
            await asyncio.sleep(30)

    runner = asyncio.create_task(body())
    await entered.wait()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    stored = await rt.get(handle.id)
    assert stored.state is _S.CANCELLED
    assert stored.reason
    assert await _kinds(rt, handle.id) == ["submitted", "started", "cancelled"]


async def test_a_passed_ttl_interrupts_the_body_and_expires_the_task(rt: taskloom.Runtime) -> None:
    reached_the_end = False
    started = time.monotonic()
    task = rt.task("job", ttl_seconds=0.1)
    with pytest.raises(TaskExpiredError) as info:
        async with task:
            await asyncio.sleep(30)
            reached_the_end = True
    assert time.monotonic() - started < 3  # the handle's own timer, not the 30 s sweeper
    assert not reached_the_end
    assert (info.value.task_id, info.value.state, info.value.reason) == (task.id, "expired", "ttl")
    stored = await rt.get(task.id)
    assert (stored.state, stored.reason) == (_S.EXPIRED, "ttl")
    assert stored.expires_at is not None and stored.ended_at is not None
    assert stored.ended_at >= stored.expires_at - timedelta(milliseconds=5)
    assert await _kinds(rt, task.id) == ["submitted", "started", "expired"]


async def test_a_block_that_finishes_in_time_is_not_expired(rt: taskloom.Runtime) -> None:
    async with rt.task("job", ttl_seconds=0.2) as task:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    stored = await rt.get(task.id)
    assert stored.state is _S.COMPLETED
    assert stored.last_seq == 3


async def test_entering_a_task_past_its_ttl_expires_it(rt: taskloom.Runtime) -> None:
    created = await rt.create("job", ttl_seconds=0.05)
    await asyncio.sleep(0.1)
    ran = False
    with pytest.raises(TaskExpiredError):
        async with created:
            ran = True
    assert not ran
    assert (await rt.get(created.id)).state is _S.EXPIRED


async def test_a_child_lives_no_longer_than_its_parent(rt: taskloom.Runtime) -> None:
    async with rt.task("parent", ttl_seconds=0.5) as parent:
        child = rt.task("child", parent=parent)
        longer = rt.task("child", parent=parent, ttl_seconds=60)
        shorter = rt.task("child", parent=parent, ttl_seconds=0.1)
        assert child.expires_at == parent.expires_at
        assert longer.expires_at == parent.expires_at
        assert shorter.expires_at is not None and parent.expires_at is not None
        assert shorter.expires_at < parent.expires_at
        assert child.parent_id == parent.id


# -- progress -------------------------------------------------------------------------------


async def test_progress_merges_and_writes_one_event_each(rt: taskloom.Runtime) -> None:
    async with rt.task("job") as task:
        assert task.last_progress_at is None
        await task.progress({"stage": {"name": "search", "hits": 3}, "pct": 10})
        first = task.last_progress_at
        assert first is not None
        await task.progress({"stage": {"name": "read"}})
        assert task.current_progress == {"stage": {"name": "read"}, "pct": 10}
        stored = await rt.get(task.id)
        assert stored.current_progress == {"stage": {"name": "read"}, "pct": 10}
        assert stored.last_progress_at is not None and stored.last_progress_at >= first
        assert stored.last_seq == task.last_seq == 4
    events = await rt.store.read_events(task.id)
    progressed = [e for e in events if isinstance(e, taskloom.TaskProgressed)]
    assert [(e.seq, e.progress) for e in progressed] == [
        (3, {"stage": {"name": "search", "hits": 3}, "pct": 10}),
        (4, {"stage": {"name": "read"}}),
    ]
    assert (await rt.get(task.id)).current_progress == {"stage": {"name": "read"}, "pct": 10}


async def test_progress_after_the_end_is_a_no_op(rt: taskloom.Runtime) -> None:
    before: tuple[Any, ...] | None = None
    async with rt.task("job") as task:
        await task.progress({"n": 1})
        await task.complete({"ok": True})
        before = await _snapshot(rt, task.id)
        await task.progress({"n": 2})
        assert await _snapshot(rt, task.id) == before
        assert task.current_progress == {"n": 1}
    assert await _snapshot(rt, task.id) == before


@pytest.mark.parametrize(
    ("update", "error"),
    [
        ({"blob": "x" * (64 << 10)}, PayloadTooLargeError),
        ({"when": object()}, NotSerializableError),
        ({"ratio": float("nan")}, NotSerializableError),
        ({1: "not a str key"}, UserError),
    ],
    ids=["too-large", "object", "nan", "int-key"],
)
async def test_refused_progress_changes_nothing(
    rt: taskloom.Runtime, update: dict[Any, Any], error: type[Exception]
) -> None:
    async with rt.task("job") as task:
        await task.progress({"n": 1})
        before = await _snapshot(rt, task.id)
        with pytest.raises(error):
            await task.progress(update)
        assert await _snapshot(rt, task.id) == before
        assert (task.last_seq, dict(task.current_progress)) == (3, {"n": 1})
        await task.progress({"n": 2})
        assert task.last_seq == 4
    assert (await rt.get(task.id)).current_progress == {"n": 2}


async def test_progress_limit_is_configurable(store_url: str) -> None:
    async with taskloom.open(store_url, max_progress_bytes=32) as rt:
        async with rt.task("job") as task:
            await task.progress({"short": 1})
            with pytest.raises(PayloadTooLargeError, match="max_payload_bytes|limit"):
                await task.progress({"long": "y" * 40})


async def test_progress_on_a_submitted_task_is_refused(rt: taskloom.Runtime) -> None:
    created = await rt.create("job")
    with pytest.raises(InvalidTransitionError, match="enter it first"):
        await created.progress({"n": 1})
    assert (await rt.get(created.id)).last_seq == 1


# -- results --------------------------------------------------------------------------------


class Summary(BaseModel):
    title: str
    score: float
    tags: list[str]


async def test_complete_with_a_pydantic_model(rt: taskloom.Runtime) -> None:
    summary = Summary(title="Safari export bug", score=0.75, tags=["bug", "export"])
    async with rt.task("job") as task:
        assert await task.complete(summary) is True
        assert task.state is _S.COMPLETED
    expected = {"title": "Safari export bug", "score": 0.75, "tags": ["bug", "export"]}
    stored = await rt.get(task.id)
    assert stored.output == expected
    assert Summary.model_validate(await stored.result()) == summary
    *_, last = await rt.store.read_events(task.id)
    assert isinstance(last, taskloom.TaskCompleted) and last.result == expected


async def test_an_unserialisable_result_writes_nothing(rt: taskloom.Runtime) -> None:
    async with rt.task("job") as task:
        before = await _snapshot(rt, task.id)
        with pytest.raises(NotSerializableError, match=task.id):
            await task.complete({"handle": object()})
        assert task.state is _S.WORKING
        assert await _snapshot(rt, task.id) == before
    assert (await rt.get(task.id)).state is _S.COMPLETED  # the clean exit still completes


async def test_an_oversized_result_writes_nothing(store_url: str) -> None:
    async with taskloom.open(store_url, max_payload_bytes=100) as rt:
        async with rt.task("job") as task:
            with pytest.raises(PayloadTooLargeError):
                await task.complete("z" * 200)
            assert (await rt.get(task.id)).state is _S.WORKING
            await task.complete("small")
        assert (await rt.get(task.id)).output == "small"


async def test_the_first_terminal_call_wins(rt: taskloom.Runtime) -> None:
    task = rt.task("job")
    with pytest.raises(RuntimeError):
        async with task:
            assert await task.complete({"n": 1}) is True
            before = await _snapshot(rt, task.id)
            assert await task.fail("too late") is False
            assert await task.cancel("too late") is False
            assert await task.expire() is False
            assert await task.reject("too late") is False
            assert await task.complete({"n": 2}) is False
            assert await _snapshot(rt, task.id) == before
            raise RuntimeError("after the end")  # propagates, but does not fail the task
    stored = await rt.get(task.id)
    assert (stored.state, stored.output, stored.error, stored.reason) == (
        _S.COMPLETED,
        {"n": 1},
        None,
        None,
    )
    assert await _kinds(rt, task.id) == ["submitted", "started", "completed"]
    # other handles on the same task cannot end it either
    assert await (await rt.cancel(task.id, reason="late")).result() == {"n": 1}
    assert await _kinds(rt, task.id) == ["submitted", "started", "completed"]


async def test_completing_a_submitted_task_is_an_invalid_transition(
    rt: taskloom.Runtime,
) -> None:
    created = await rt.create("job", task_id="t-sub")
    with pytest.raises(InvalidTransitionError) as info:
        await created.complete("nope")
    message = str(info.value)
    assert "'t-sub'" in message and "submitted" in message and "working" in message
    stored = await rt.get("t-sub")
    assert (stored.state, stored.last_seq, stored.output) == (_S.SUBMITTED, 1, None)
    assert await _kinds(rt, "t-sub") == ["submitted"]


class _LateAcks(taskloom.Store):
    """A store that acknowledges terminal writes late, as a busy connection pool may: the
    runtime's watcher then sees the new state before the writer hears back."""

    def __init__(self, inner: taskloom.Store) -> None:
        self.inner = inner
        self.url = inner.url

    async def create(
        self, record: TaskRecord, events: Sequence[NewEvent]
    ) -> tuple[TaskRecord, bool]:
        return await self.inner.create(record, events)

    async def apply(self, change: Change) -> int | None:
        seq = await self.inner.apply(change)
        if change.terminal:
            await asyncio.sleep(0.1)
        return seq

    async def claim(
        self, worker: str, names: Collection[str], *, limit: int, lease_seconds: float
    ) -> list[TaskRecord]:
        return await self.inner.claim(worker, names, limit=limit, lease_seconds=lease_seconds)

    async def heartbeat(
        self, worker: str, leases: Mapping[str, int], *, lease_seconds: float
    ) -> set[str]:
        return await self.inner.heartbeat(worker, leases, lease_seconds=lease_seconds)

    async def release(self, task_id: str, epoch: int) -> bool:
        return await self.inner.release(task_id, epoch)

    async def get(self, task_id: str) -> TaskRecord | None:
        return await self.inner.get(task_id)

    async def list(self, query: TaskQuery) -> list[TaskRecord]:
        return await self.inner.list(query)

    async def read_events(
        self, task_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[taskloom.Event]:
        return await self.inner.read_events(task_id, after=after, limit=limit)

    async def heads(self, task_ids: Collection[str]) -> dict[str, tuple[TaskState, int]]:
        return await self.inner.heads(task_ids)

    async def wait_for_change(self, max_wait: float) -> None:
        await self.inner.wait_for_change(max_wait)

    async def overdue(self, now_ms: int, *, limit: int = 500) -> list[str]:
        return await self.inner.overdue(now_ms, limit=limit)

    async def purge(self, now_ms: int, *, limit: int = 500) -> int:
        return await self.inner.purge(now_ms, limit=limit)

    async def close(self) -> None:
        await self.inner.close()


_ENDS: list[Callable[[taskloom.Task], Awaitable[bool]]] = [
    lambda task: task.complete("done"),
    lambda task: task.fail("gave up"),
    lambda task: task.reject("not mine"),
    lambda task: task.cancel("changed my mind"),
    lambda task: task.expire("deadline"),
]


@pytest.mark.parametrize("end", _ENDS, ids=["complete", "fail", "reject", "cancel", "expire"])
async def test_a_body_that_ends_its_own_task_is_not_interrupted(
    store_url: str, end: Callable[[taskloom.Task], Awaitable[bool]]
) -> None:
    store = _LateAcks(await taskloom.open_store(store_url))
    async with taskloom.Runtime(store, poll_interval=0.01) as rt:
        reached_the_end = False
        async with rt.task("job") as task:
            assert await end(task) is True
            await asyncio.sleep(0.05)
            reached_the_end = True
        assert reached_the_end
        assert (await rt.get(task.id)).state is task.state
        assert task.state.terminal


# -- current_task ---------------------------------------------------------------------------


async def test_current_task_inside_nested_code(rt: taskloom.Runtime) -> None:
    async def deep() -> str | None:
        await asyncio.sleep(0)
        current = taskloom.current_task()
        return None if current is None else current.id

    assert taskloom.current_task() is None
    async with rt.task("outer") as outer:
        assert await deep() == outer.id
        async with rt.task("inner", parent=outer) as inner:
            assert await deep() == inner.id
            assert inner.parent_id == outer.id
        assert await deep() == outer.id
    assert taskloom.current_task() is None


async def test_current_task_of_concurrent_siblings(rt: taskloom.Runtime) -> None:
    seen: dict[str, list[str | None]] = {}

    async def run(name: str, pause: float) -> str:
        async with rt.task(name) as task:
            for _ in range(4):
                await asyncio.sleep(pause)
                current = taskloom.current_task()
                seen.setdefault(task.id, []).append(None if current is None else current.id)
        return task.id

    first, second = await asyncio.gather(run("a", 0.003), run("b", 0.005))
    assert first != second
    assert seen == {first: [first] * 4, second: [second] * 4}
    assert taskloom.current_task() is None


# -- cancelling -----------------------------------------------------------------------------


async def test_runtime_cancel_interrupts_a_running_block(rt: taskloom.Runtime) -> None:
    entered = asyncio.Event()
    reached_the_end = False
    handle = rt.task("job")

    async def body() -> None:
        nonlocal reached_the_end
        async with handle:
            entered.set()
            await asyncio.sleep(30)
            reached_the_end = True

    runner = asyncio.create_task(body())
    await entered.wait()
    started = time.monotonic()
    cancelled = await rt.cancel(handle.id, reason="user pressed stop")
    assert (cancelled.state, cancelled.reason) == (_S.CANCELLED, "user pressed stop")
    with pytest.raises(TaskCancelledError) as info:
        await asyncio.wait_for(runner, timeout=5)
    assert time.monotonic() - started < 2
    assert not reached_the_end
    assert (info.value.task_id, info.value.reason) == (handle.id, "user pressed stop")
    stored = await rt.get(handle.id)
    assert (stored.state, stored.reason) == (_S.CANCELLED, "user pressed stop")
    assert await _kinds(rt, handle.id) == ["submitted", "started", "cancelled"]


async def test_a_task_cancelled_before_it_is_entered_never_runs(rt: taskloom.Runtime) -> None:
    created = await rt.create("job")
    await rt.cancel(created.id, reason="changed my mind")
    ran = False
    with pytest.raises(TaskCancelledError, match="changed my mind"):
        async with created:
            ran = True
    with pytest.raises(TaskCancelledError):
        async with rt.task("job", task_id=created.id):
            ran = True
    assert not ran
    stored = await rt.get(created.id)
    assert (stored.state, stored.reason, stored.started_at) == (
        _S.CANCELLED,
        "changed my mind",
        None,
    )
    assert await _kinds(rt, created.id) == ["submitted", "cancelled"]


async def test_cancel_through_another_runtime_interrupts_the_block(store_url: str) -> None:
    async with taskloom.open(store_url, poll_interval=0.02) as here:
        if store_url == "memory://":  # two runtimes may share one MemoryStore
            there = await taskloom.Runtime(here.store, poll_interval=0.02).start()
        else:
            there = await taskloom.open(store_url, poll_interval=0.02)
        try:
            entered = asyncio.Event()
            handle = here.task("job")

            async def body() -> None:
                async with handle:
                    entered.set()
                    await asyncio.sleep(30)

            runner = asyncio.create_task(body())
            await entered.wait()
            await there.cancel(handle.id, reason="from elsewhere")
            with pytest.raises(TaskCancelledError, match="from elsewhere"):
                await asyncio.wait_for(runner, timeout=5)
        finally:
            if store_url != "memory://":
                await there.close()
        assert (await here.get(handle.id)).state is _S.CANCELLED


async def test_cancelling_an_unknown_task_is_not_found(rt: taskloom.Runtime) -> None:
    with pytest.raises(NotFoundError):
        await rt.cancel("no-such-task")


# -- reading --------------------------------------------------------------------------------


async def test_get_of_an_unknown_task_is_not_found(rt: taskloom.Runtime) -> None:
    with pytest.raises(NotFoundError, match="no-such-task"):
        await rt.get("no-such-task")


async def test_list_filters_by_state_and_owner(rt: taskloom.Runtime) -> None:
    async with rt.task("job", owner="ann", task_id="done-ann"):
        pass
    with pytest.raises(ValueError):
        async with rt.task("job", owner="bob", task_id="failed-bob"):
            raise ValueError("x")
    await rt.create("job", owner="ann", task_id="queued-ann")
    await rt.create("other", owner="bob", task_id="queued-bob")

    async def ids(**filters: Any) -> set[str]:
        return {t.id for t in (await rt.list(**filters)).tasks}

    assert await ids(state="completed") == {"done-ann"}
    assert await ids(state=_S.SUBMITTED) == {"queued-ann", "queued-bob"}
    assert await ids(state=["completed", _S.FAILED]) == {"done-ann", "failed-bob"}
    assert await ids(owner="ann") == {"done-ann", "queued-ann"}
    assert await ids(owner="bob", state="submitted") == {"queued-bob"}
    assert await ids(name="other") == {"queued-bob"}
    assert await ids(owner="nobody") == set()
    assert len(await ids()) == 4
    with pytest.raises(UserError, match="unknown state"):
        await rt.list(state="sleeping")
    with pytest.raises(UserError):
        await rt.list(limit=0)


async def test_list_since_and_parent(rt: taskloom.Runtime) -> None:
    parent = await rt.create("job", task_id="parent")
    await asyncio.sleep(0.005)
    child = await rt.create("job", task_id="child", parent=parent)
    await rt.create("job", task_id="orphan")
    assert child.parent_id == "parent"
    assert [t.id for t in (await rt.list(parent_id="parent")).tasks] == ["child"]
    newer = {t.id for t in (await rt.list(since=parent.created_at)).tasks}
    assert newer == {"child", "orphan"}


async def test_list_pages_cover_every_task_once(rt: taskloom.Runtime) -> None:
    for i in range(8):
        await rt.create("job", owner="pager", task_id=f"p{i}")
        if i % 3 == 0:
            await asyncio.sleep(0.002)  # some distinct creation times, some ties
    everything = [t.id for t in (await rt.list(owner="pager")).tasks]
    assert sorted(everything) == [f"p{i}" for i in range(8)]
    created = [(await rt.get(i)).created_at for i in everything]
    assert created == sorted(created, reverse=True)
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await rt.list(owner="pager", limit=3, cursor=cursor)
        pages.append([t.id for t in page.tasks])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [i for p in pages for i in p] == everything
    exact = await rt.list(owner="pager", limit=4)
    assert exact.next_cursor is not None
    last = await rt.list(owner="pager", limit=4, cursor=exact.next_cursor)
    assert len(last.tasks) == 4 and last.next_cursor is None


@pytest.mark.parametrize("cursor", ["not a cursor!", "%%%", "bm9jb2xvbg"])
async def test_a_bad_cursor_is_a_user_error(rt: taskloom.Runtime, cursor: str) -> None:
    with pytest.raises(UserError, match="cursor"):
        await rt.list(cursor=cursor)


# -- events ---------------------------------------------------------------------------------


async def test_events_follow_a_running_task_until_it_ends(rt: taskloom.Runtime) -> None:
    task = await rt.create("job")
    first_step = asyncio.Event()
    go_on = asyncio.Event()

    async def work() -> None:
        async with task:
            await task.progress({"step": 1})
            first_step.set()
            await go_on.wait()
            await task.progress({"step": 2})
            await asyncio.sleep(0.01)
            await task.complete({"done": True})

    seen: list[taskloom.Event] = []

    async def follow() -> None:
        await first_step.wait()  # events 1..3 are stored before the subscription starts
        async for event in rt.events(task.id, after=1):
            seen.append(event)
            if event.seq == 3:
                go_on.set()

    async with asyncio.timeout(10):
        await asyncio.gather(work(), follow())
    assert [(e.seq, e.kind) for e in seen] == [
        (2, "started"),
        (3, "progressed"),
        (4, "progressed"),
        (5, "completed"),
    ]
    last = seen[-1]
    assert isinstance(last, taskloom.TaskCompleted) and last.result == {"done": True}


async def test_task_events_follow_from_a_handle(rt: taskloom.Runtime) -> None:
    task = await rt.create("job")

    async def work() -> None:
        await asyncio.sleep(0.02)
        async with task:
            await task.progress({"n": 1})

    async def follow() -> list[str]:
        return [e.kind async for e in task.events()]

    async with asyncio.timeout(10):
        _, kinds = await asyncio.gather(work(), follow())
    assert kinds == ["submitted", "started", "progressed", "completed"]


async def test_every_event_is_numbered_and_stamped(rt: taskloom.Runtime) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    async with rt.task("job", owner="ann", payload={"q": "é"}) as task:
        for i in range(3):
            await task.progress({"i": i})
        await task.fail("gave up", reason="budget")
    after = datetime.now(UTC) + timedelta(seconds=1)
    async with asyncio.timeout(5):
        events = [e async for e in rt.events(task.id)]
    assert [e.seq for e in events] == list(range(1, 7))
    assert [e.kind for e in events] == [
        "submitted",
        "started",
        "progressed",
        "progressed",
        "progressed",
        "failed",
    ]
    for event in events:
        assert event.task_id == task.id
        assert event.at.tzinfo is not None and event.at.utcoffset() == timedelta(0)
        assert before <= event.at <= after
    assert [e.at for e in events] == sorted(e.at for e in events)
    submitted, failed = events[0], events[-1]
    assert isinstance(submitted, taskloom.TaskSubmitted)
    assert (submitted.name, submitted.owner, submitted.payload) == ("job", "ann", {"q": "é"})
    assert isinstance(failed, taskloom.TaskFailed)
    assert (failed.reason, failed.message, failed.error_type) == ("budget", "gave up", None)
    async with asyncio.timeout(5):
        assert [e.seq async for e in rt.events(task.id, after=4)] == [5, 6]


async def test_events_of_an_ended_task_after_its_last_seq_end_at_once(
    rt: taskloom.Runtime,
) -> None:
    async with rt.task("job") as task:
        pass
    async with asyncio.timeout(5):
        assert [e async for e in rt.events(task.id, after=3)] == []


async def test_events_of_an_unknown_task_is_not_found(rt: taskloom.Runtime) -> None:
    with pytest.raises(NotFoundError):
        async for _ in rt.events("no-such-task"):
            pass


# -- result() -------------------------------------------------------------------------------


async def test_result_waits_for_the_task_to_end(rt: taskloom.Runtime) -> None:
    created = await rt.create("job")
    waiter = await rt.get(created.id)

    async def work() -> None:
        await asyncio.sleep(0.05)
        async with created:
            await created.complete({"answer": 42})

    async with asyncio.timeout(10):
        output, _ = await asyncio.gather(waiter.result(), work())
    assert output == {"answer": 42}
    assert waiter.state is _S.COMPLETED


async def test_result_raises_why_a_task_has_none(rt: taskloom.Runtime) -> None:
    failed = rt.task("job")
    with pytest.raises(KeyError):
        async with failed:
            raise KeyError("missing")
    with pytest.raises(TaskFailedError) as failure:
        await (await rt.get(failed.id)).result()
    assert (failure.value.state, failure.value.reason) == ("failed", "error")
    assert (failure.value.error_type, failure.value.error_message) == ("KeyError", "'missing'")

    cancelled = await rt.create("job")
    await rt.cancel(cancelled.id, reason="stop")
    with pytest.raises(TaskCancelledError) as cancel:
        await cancelled.result()
    assert (cancel.value.state, cancel.value.reason) == ("cancelled", "stop")

    expired = rt.task("job", ttl_seconds=0.05)
    with pytest.raises(TaskExpiredError):
        async with expired:
            await asyncio.sleep(10)
    with pytest.raises(TaskExpiredError) as expiry:
        await expired.result()
    assert (expiry.value.state, expiry.value.reason) == ("expired", "ttl")

    async with rt.task("job") as rejected:
        await rejected.reject("not my job")
    with pytest.raises(taskloom.TaskRejectedError):
        await (await rt.get(rejected.id)).result()


# -- the sweeper ----------------------------------------------------------------------------


async def test_sweep_purges_tasks_past_their_retention(rt: taskloom.Runtime) -> None:
    async with rt.task("job", retention_seconds=0.05) as short:
        await short.progress({"n": 1})
    async with rt.task("job") as long:
        pass
    stored = await rt.get(short.id)
    assert stored.purge_at is not None and stored.ended_at is not None
    assert stored.purge_at - stored.ended_at == timedelta(milliseconds=50)
    await asyncio.sleep(0.1)
    report = await rt.sweep()
    assert (report.purged, report.expired) == (1, 0)
    with pytest.raises(NotFoundError):
        await rt.get(short.id)
    assert await rt.store.read_events(short.id) == []
    assert (await rt.get(long.id)).state is _S.COMPLETED
    assert (await rt.sweep()).purged == 0


async def test_sweep_expires_unfinished_tasks_past_their_ttl(rt: taskloom.Runtime) -> None:
    doomed = await rt.create("job", ttl_seconds=0.05)
    fine = await rt.create("job", ttl_seconds=60)
    timeless = await rt.create("job")
    await asyncio.sleep(0.1)
    report = await rt.sweep()
    assert (report.expired, report.purged) == (1, 0)
    stored = await rt.get(doomed.id)
    assert (stored.state, stored.reason) == (_S.EXPIRED, "ttl")
    assert await _kinds(rt, doomed.id) == ["submitted", "expired"]
    assert (await rt.get(fine.id)).state is _S.SUBMITTED
    assert (await rt.get(timeless.id)).state is _S.SUBMITTED
    assert (await rt.sweep()).expired == 0


# -- opening --------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://host/db", "tasks.db", "mysql://root@localhost/db"])
async def test_open_with_an_unknown_scheme_is_a_user_error(url: str) -> None:
    with pytest.raises(UserError, match="cannot open a store"):
        async with taskloom.open(url):
            pass


async def test_open_with_an_unknown_option_is_a_user_error() -> None:
    with pytest.raises(UserError, match="poll_intervall"):
        async with taskloom.open("memory://", poll_intervall=0.1):
            pass
    with pytest.raises(UserError):
        await taskloom.open("memory://", synchronous="normal")


async def test_open_can_be_awaited(store_url: str) -> None:
    rt = await taskloom.open(store_url)
    try:
        async with rt.task("job") as task:
            pass
        assert (await rt.get(task.id)).state is _S.COMPLETED
    finally:
        await rt.close()
    await rt.close()  # idempotent


async def test_cancelling_a_parent_cancels_its_unfinished_children(rt: taskloom.Runtime) -> None:
    parent = await rt.create("parent")
    child = await rt.create("child", parent=parent)
    grandchild = await rt.create("grandchild", parent=child)
    done = await rt.create("done-child", parent=parent)
    async with done:
        pass
    await rt.cancel(parent.id, reason="stop")
    assert (await rt.get(child.id)).state is taskloom.TaskState.CANCELLED
    assert (await rt.get(child.id)).reason == f"parent task {parent.id!r} was cancelled"
    assert (await rt.get(grandchild.id)).state is taskloom.TaskState.CANCELLED
    assert (await rt.get(done.id)).state is taskloom.TaskState.COMPLETED


async def test_a_handle_entered_after_its_ttl_leaves_an_expired_record(
    rt: taskloom.Runtime,
) -> None:
    handle = rt.task("late", ttl_seconds=0.01)
    await asyncio.sleep(0.03)
    with pytest.raises(taskloom.TaskExpiredError):
        async with handle:
            raise AssertionError("the body must not run")
    stored = await rt.get(handle.id)
    assert stored.state is taskloom.TaskState.EXPIRED
    assert stored.reason == "ttl"
    assert [e.kind async for e in rt.events(handle.id)] == ["submitted", "expired"]


async def test_a_sibling_completing_the_task_does_not_interrupt_the_body(
    rt: taskloom.Runtime,
) -> None:
    reached_end = asyncio.Event()
    async with rt.task("shared") as task:
        sibling = asyncio.create_task(task.complete({"by": "sibling"}))
        await sibling
        await asyncio.sleep(0.01)
        await task.progress({"after": True})  # a no-op now
        reached_end.set()
    assert reached_end.is_set()
    assert task.state is taskloom.TaskState.COMPLETED
    assert task.output == {"by": "sibling"}
