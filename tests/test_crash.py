"""kill -9 in the middle of a write loop on SQLite: nothing acknowledged is lost, nothing torn.

A child process (`tests/_children.py write-loop`) runs tasks with many progress calls and
prints `ack TASK_ID SEQ` after each write the store acknowledged. The parent reads until a
number of writes were acknowledged, sends SIGKILL, and then checks the file with `sqlite3`
directly (integrity, every acknowledged event present, each task's record and log agree)
before opening it again with taskloom and running new work on it.

SIGKILL stops the process, not the machine: the operating system still writes out what the
process handed it. This proves the store's atomicity and its acknowledge-after-commit rule
under a process crash, in both `synchronous` modes; a power cut is not simulated.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

import taskloom

pytestmark = pytest.mark.slow

_CHILD = Path(__file__).with_name("_children.py")
_TERMINAL_KINDS = {"completed", "failed", "cancelled", "expired", "rejected"}


async def _kill_after(url: str, *, workers: int, progress: int, acks: int) -> set[tuple[str, int]]:
    """Run the write loop until `acks` writes were acknowledged, SIGKILL it, return all acks."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(_CHILD),
        "write-loop",
        url,
        str(workers),
        str(progress),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    acked: set[tuple[str, int]] = set()
    try:
        async with asyncio.timeout(60):
            while len(acked) < acks:
                line = await proc.stdout.readline()
                if not line:
                    err = await proc.stderr.read()
                    pytest.fail(f"the writer exited early ({proc.returncode}): {err.decode()}")
                acked.add(_parse(line))
            proc.send_signal(signal.SIGKILL)
            # lines already in the pipe were printed after their write was acknowledged too
            rest = await proc.stdout.read()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for line in rest.splitlines(keepends=True):
        if line.endswith(b"\n"):  # a line cut by the kill was never a whole acknowledgement
            acked.add(_parse(line))
    return acked


def _parse(line: bytes) -> tuple[str, int]:
    word, task_id, seq = line.decode().split()
    assert word == "ack"
    return task_id, int(seq)


def _check_file(path: Path, acked: set[tuple[str, int]]) -> None:
    """Check the killed store's file with sqlite3 alone, as any recovery tool would."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        events = set(conn.execute("SELECT task_id, seq FROM events").fetchall())
        missing = acked - events
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"
        tasks = conn.execute("SELECT id, state, last_seq FROM tasks").fetchall()
        logs: dict[str, list[tuple[int, str]]] = {}
        for task_id, seq, kind in conn.execute(
            "SELECT task_id, seq, kind FROM events ORDER BY task_id, seq"
        ):
            logs.setdefault(task_id, []).append((seq, kind))
    finally:
        conn.close()
    assert {t for t, _ in acked} <= {t[0] for t in tasks}
    assert set(logs) == {t[0] for t in tasks}, "every task has a log and every log a task"
    for task_id, state, last_seq in tasks:
        log = logs[task_id]
        # the record and its events were written in one transaction: they agree exactly
        assert [seq for seq, _ in log] == list(range(1, last_seq + 1)), task_id
        assert [kind for _, kind in log[:2]] == ["submitted", "started"], task_id
        last_kind = log[-1][1]
        expected = last_kind if last_kind in _TERMINAL_KINDS else "working"
        assert state == expected, (task_id, state, log[-3:])


async def _reopen_and_work(url: str, acked: set[tuple[str, int]]) -> None:
    async with taskloom.open(url, poll_interval=0.02) as rt:
        newest: dict[str, int] = {}
        for task_id, seq in acked:
            newest[task_id] = max(seq, newest.get(task_id, 0))
        for task_id, seq in newest.items():
            assert (await rt.get(task_id)).last_seq >= seq
        # tasks orphaned by the kill can still be ended: the old rows are writable
        for task in (await rt.list(state="working", limit=1000)).tasks:
            assert await task.cancel("its process was killed")
            assert (await rt.get(task.id)).state is taskloom.TaskState.CANCELLED
        async with rt.task("after-crash") as task:
            await task.progress({"ok": True})
            await task.complete({"fine": 1})
        assert await (await rt.get(task.id)).result() == {"fine": 1}
        page = await rt.list(state="working")
        assert page.tasks == []


@pytest.mark.parametrize(
    ("synchronous", "workers", "progress", "acks"),
    [
        ("full", 1, 20, 1),
        ("full", 1, 20, 57),
        ("full", 8, 25, 400),
        ("full", 16, 50, 1500),
        ("normal", 8, 25, 777),
    ],
)
async def test_kill_9_mid_write_loses_no_acknowledged_write(
    tmp_path: Path, synchronous: str, workers: int, progress: int, acks: int
) -> None:
    path = tmp_path / "tasks.db"
    url = f"sqlite:///{path}?synchronous={synchronous}"
    acked = await _kill_after(url, workers=workers, progress=progress, acks=acks)
    assert len(acked) >= acks
    # killed, not closed: the write-ahead log is left for recovery
    assert await asyncio.to_thread(Path(f"{path}-wal").exists)
    await asyncio.to_thread(_check_file, path, acked)
    await _reopen_and_work(url, acked)
    await asyncio.to_thread(_check_file, path, acked)


async def test_repeated_kills_on_one_file(tmp_path: Path) -> None:
    """Crash, recover and crash again: each recovery starts from the last one's state."""
    path = tmp_path / "tasks.db"
    url = f"sqlite:///{path}"
    acked: set[tuple[str, int]] = set()
    for acks in (5, 120, 60):
        acked |= await _kill_after(url, workers=4, progress=10, acks=acks)
        await asyncio.to_thread(_check_file, path, acked)
    await _reopen_and_work(url, acked)
