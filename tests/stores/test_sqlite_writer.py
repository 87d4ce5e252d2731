"""The SQLite writer thread: writes of one pass of the loop commit together, fail alone."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import StoreError
from taskloom._json import dumps
from taskloom._record import Change, NewEvent, TaskRecord
from taskloom.states import TaskState
from taskloom.stores import _sqlite_writer
from taskloom.stores.sqlite import SQLiteStore

_T0 = 1_700_000_000_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await taskloom.open_store(f"sqlite:///{tmp_path / 'tasks.db'}")
    assert isinstance(opened, SQLiteStore)
    try:
        yield opened
    finally:
        await opened.close()


def _record(task_id: str) -> TaskRecord:
    return TaskRecord(
        id=task_id, name="job", state=TaskState.WORKING, created_ms=_T0, retention_ms=60_000
    )


def _events() -> list[NewEvent]:
    return [
        NewEvent(kind="submitted", data='{"name":"job"}', at_ms=_T0),
        NewEvent(kind="started", data="{}", at_ms=_T0),
    ]


def _progress(task_id: str, patch: dict[str, Any]) -> Change:
    text = dumps(patch)
    return Change(
        task_id=task_id,
        event=NewEvent(kind="progressed", data=f'{{"progress":{text}}}', at_ms=_T0 + 1),
        from_states=(TaskState.INPUT_REQUIRED.value, TaskState.WORKING.value),
        progress=patch,
        progress_json=text,
    )


def _seqs(conn: sqlite3.Connection, task_id: str) -> list[int]:
    rows = conn.execute("SELECT seq FROM events WHERE task_id = ? ORDER BY seq", (task_id,))
    return [r[0] for r in rows]


async def test_a_failing_write_fails_alone_and_leaves_nothing_behind(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.create(_record("t1"), _events())
    apart: list[int] = []
    run_apart = _sqlite_writer.Writer._run_apart  # pyright: ignore[reportPrivateUsage] -- spied on

    def spy(self: _sqlite_writer.Writer, batch: list[Any]) -> Any:
        apart.append(len(batch))
        return run_apart(self, batch)

    monkeypatch.setattr(_sqlite_writer.Writer, "_run_apart", spy)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO events (task_id, seq, at_ms, kind, data) VALUES ('t1', 99, 0, 'x', '{}')"
        )
        conn.execute("SELECT * FROM no_such_table")

    # one pass of the loop: the four writes reach the writer as one batch
    results = await asyncio.gather(
        store.apply(_progress("t1", {"a": 1})),
        store._write(broken),  # pyright: ignore[reportPrivateUsage] -- a write that fails
        store.create(_record("t2"), _events()),
        store.apply(_progress("t1", {"b": [2]})),
        return_exceptions=True,
    )
    assert apart == [4]
    assert results[0] == 3
    assert isinstance(results[1], StoreError) and "no_such_table" in str(results[1])
    assert isinstance(results[2], tuple) and results[2][1] is True
    assert results[3] == 4
    assert await store._write(lambda conn: _seqs(conn, "t1")) == [1, 2, 3, 4]  # pyright: ignore[reportPrivateUsage] -- read on the write connection
    record = await store.get("t1")
    assert record is not None and record.progress == {"a": 1, "b": [2]}
    assert await store.get("t2") is not None


async def test_a_failing_write_alone_is_rolled_back(store: SQLiteStore) -> None:
    await store.create(_record("t1"), _events())

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE tasks SET name = 'changed' WHERE id = 't1'")
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await store._write(broken)  # pyright: ignore[reportPrivateUsage] -- a write that fails
    record = await store.get("t1")
    assert record is not None and record.name == "job"


async def test_a_plain_write_sees_the_events_queued_before_it(store: SQLiteStore) -> None:
    await store.create(_record("t1"), _events())
    seq, seen = await asyncio.gather(
        store.apply(_progress("t1", {"a": 1})),
        store._write(lambda conn: _seqs(conn, "t1")),  # pyright: ignore[reportPrivateUsage] -- same batch
    )
    assert seq == 3
    assert seen == [1, 2, 3]


async def test_close_commits_what_was_queued_in_the_same_pass(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    store = await taskloom.open_store(url)
    await store.create(_record("t1"), _events())
    write = asyncio.create_task(store.apply(_progress("t1", {"last": True})))
    await asyncio.sleep(0)  # the write is queued; the hand-over to the thread is not yet run
    await store.close()
    assert await write == 3
    store = await taskloom.open_store(url)
    try:
        record = await store.get("t1")
        assert record is not None and record.progress == {"last": True}
    finally:
        await store.close()
