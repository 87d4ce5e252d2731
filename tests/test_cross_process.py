"""Cancel and follow tasks across real processes, on SQLite and on PostgreSQL.

The other process is `tests/_children.py`, started with this interpreter. Every wait has a
timeout and every child is killed in `finally`, so a broken build fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import taskloom

pytestmark = pytest.mark.slow

_CHILD = Path(__file__).with_name("_children.py")
_CANCEL_BOUND_S = 5.0  # generous: this is a correctness test, not a benchmark


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    """A fresh store shared by this process and its children."""
    return request.getfixturevalue(f"{request.param}_url")


class Child:
    """A child process whose stdout is read one line at a time, with timeouts."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, within: float = 20) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(within):
            raw = await self.proc.stdout.readline()
        if not raw:
            await self.fail_exited()
        return raw.decode().rstrip("\n")

    async def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()

    async def exit_code(self, within: float = 20) -> int:
        async with asyncio.timeout(within):
            return await self.proc.wait()

    async def fail_exited(self) -> None:
        assert self.proc.stderr is not None
        async with asyncio.timeout(10):
            err = await self.proc.stderr.read()
            code = await self.proc.wait()
        pytest.fail(f"the child exited ({code}) without the expected line:\n{err.decode()}")


@asynccontextmanager
async def child(*args: str) -> AsyncGenerator[Child, None]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(_CHILD),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Child(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("child_poll", [0.02, 30.0], ids=["watched", "slow-watcher"])
async def test_cancel_from_here_interrupts_a_block_running_in_another_process(
    url: str, child_poll: float
) -> None:
    # With a 30 s poll the child's watcher barely looks: the child's own next write, refused
    # by the store, must interrupt its block just the same.
    task_id = f"xproc-{uuid.uuid4().hex[:8]}"
    async with (
        taskloom.open(url, poll_interval=0.02) as rt,
        child("run-until-cancelled", url, task_id, str(child_poll)) as a,
    ):
        assert await a.line() == "started"
        assert (await rt.get(task_id)).state is taskloom.TaskState.WORKING
        start = time.perf_counter()
        await rt.cancel(task_id, reason="operator said stop")
        assert await a.line(within=_CANCEL_BOUND_S * 2) == "cancelled operator said stop"
        latency = time.perf_counter() - start
        assert await a.exit_code() == 0
        assert latency < _CANCEL_BOUND_S, f"the other process took {latency:.2f} s to stop"

        task = await rt.get(task_id)
        assert task.state is taskloom.TaskState.CANCELLED
        assert task.reason == "operator said stop"
        kinds = [e.kind async for e in rt.events(task_id)]
        assert kinds[:2] == ["submitted", "started"]
        assert kinds[-1] == "cancelled"
        assert set(kinds[2:-1]) <= {"progressed"}


async def test_a_task_cancelled_by_another_process_cannot_be_entered_here(url: str) -> None:
    task_id = f"xproc-{uuid.uuid4().hex[:8]}"
    async with taskloom.open(url, poll_interval=0.02) as rt:
        submitted = await rt.create("xproc", task_id=task_id, payload={"n": 1})
        assert submitted.state is taskloom.TaskState.SUBMITTED
        async with child("cancel", url, task_id, "not needed any more") as b:
            assert await b.line() == "state cancelled"
            assert await b.exit_code() == 0

        # the handle from `create` still says submitted; entering it learns the truth
        with pytest.raises(taskloom.TaskCancelledError) as caught:
            async with submitted:
                pytest.fail("the block of a cancelled task ran")
        assert caught.value.reason == "not needed any more"
        assert caught.value.task_id == task_id
        # and so does a fresh handle for the same id
        with pytest.raises(taskloom.TaskCancelledError):
            async with rt.task("xproc", task_id=task_id):
                pytest.fail("the block of a cancelled task ran")

        task = await rt.get(task_id)
        assert task.state is taskloom.TaskState.CANCELLED
        assert task.reason == "not needed any more"
        assert task.started_at is None
        assert [e.kind async for e in rt.events(task_id)] == ["submitted", "cancelled"]


async def test_events_of_a_task_run_in_another_process_arrive_in_order(url: str) -> None:
    task_id = f"xproc-{uuid.uuid4().hex[:8]}"
    progress = 8
    async with (
        taskloom.open(url, poll_interval=0.02) as rt,
        child("run-on-go", url, task_id, str(progress)) as a,
    ):
        assert await a.line() == "started"
        events = rt.events(task_id)
        seen: list[taskloom.Event] = []
        async with asyncio.timeout(30):
            seen.append(await anext(events))  # the stored snapshot: the subscription is live
            await a.send("go")  # only now does the other process report progress
            seen.extend([e async for e in events])  # ends by itself after the terminal event
        done = await a.line()
        assert await a.exit_code() == 0

    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert [e.kind for e in seen] == ["submitted", "started"] + ["progressed"] * progress + [
        "completed"
    ]
    assert done == f"done {seen[-1].seq}"
    assert all(e.task_id == task_id for e in seen)
    progressed = [e for e in seen if isinstance(e, taskloom.TaskProgressed)]
    assert [e.progress for e in progressed] == [{"i": i} for i in range(progress)]
    completed = seen[-1]
    assert isinstance(completed, taskloom.TaskCompleted)
    assert completed.result == {"n": progress}


async def test_a_follower_that_joins_late_gets_the_whole_log(url: str) -> None:
    task_id = f"xproc-{uuid.uuid4().hex[:8]}"
    async with child("run-on-go", url, task_id, "3") as a:
        assert await a.line() == "started"
        await a.send("go")
        assert await a.line() == "done 6"
        assert await a.exit_code() == 0
    async with taskloom.open(url, poll_interval=0.02) as rt:
        async with asyncio.timeout(10):
            seqs = [e.seq async for e in rt.events(task_id)]
            tail = [e.seq async for e in rt.events(task_id, after=4)]
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert tail == [5, 6]
