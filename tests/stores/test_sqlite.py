"""What only the SQLite store does: refuse foreign files untouched, migrate, and reopen."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

import taskloom
from taskloom import MigrationError, StoreFormatError, TaskState, UserError
from taskloom.stores._sql import migrations
from taskloom.stores.sqlite import SQLiteStore


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    junk = random.Random(7).randbytes(8192)
    path.write_bytes(junk)
    with pytest.raises(StoreFormatError, match="not an SQLite database"):
        await taskloom.open_store(_url(path))
    with pytest.raises(StoreFormatError):
        async with taskloom.open(_url(path)):
            pass
    assert path.read_bytes() == junk
    assert _files(tmp_path) == ["notes.db"]


async def test_a_text_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "README.db"
    text = b"# not a database\n" * 200
    path.write_bytes(text)
    with pytest.raises(StoreFormatError):
        await taskloom.open_store(_url(path))
    assert path.read_bytes() == text


async def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreFormatError, match="invoices"):
        await taskloom.open_store(_url(path))
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["shop.db"]
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    assert tables == {"invoices"}
    assert mode == "delete"


async def test_a_newer_schema_is_refused_with_upgrade_advice(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with taskloom.open(_url(path)) as rt:
        async with rt.task("job", task_id="kept"):
            pass
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO taskloom_schema (version) VALUES (999)")
    conn.commit()
    conn.close()
    with pytest.raises(MigrationError, match="upgrade") as info:
        await taskloom.open_store(_url(path))
    assert "999" in str(info.value)
    with pytest.raises(MigrationError):
        async with taskloom.open(_url(path)):
            pass
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT id, state FROM tasks").fetchall()
        versions = [r[0] for r in conn.execute("SELECT version FROM taskloom_schema")]
    finally:
        conn.close()
    assert rows == [("kept", "completed")]
    assert max(versions) == 999


async def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    async with taskloom.open(_url(path)) as rt:
        async with rt.task("job") as task:
            pass
        assert (await rt.get(task.id)).state is TaskState.COMPLETED


async def test_a_missing_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "tasks.db"
    store = await taskloom.open_store(_url(path))
    await store.close()
    assert path.is_file()


@pytest.mark.parametrize(("mode", "level"), [("normal", 1), ("NORMAL", 1), ("full", 2)])
async def test_synchronous_is_accepted(tmp_path: Path, mode: str, level: int) -> None:
    path = tmp_path / "tasks.db"
    store = await taskloom.open_store(f"{_url(path)}?synchronous={mode}")
    try:
        assert isinstance(store, SQLiteStore)
        found = await store._write(  # pyright: ignore[reportPrivateUsage] -- read the pragma on the write connection
            lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]
        )
        assert found == level
    finally:
        await store.close()
    async with taskloom.open(_url(path), synchronous=mode) as rt:
        async with rt.task("job") as task:
            pass
        assert (await rt.get(task.id)).state is TaskState.COMPLETED


async def test_synchronous_defaults_to_full(tmp_path: Path) -> None:
    store = await taskloom.open_store(_url(tmp_path / "tasks.db"))
    try:
        assert isinstance(store, SQLiteStore)
        found = await store._write(  # pyright: ignore[reportPrivateUsage] -- read the pragma on the write connection
            lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]
        )
        assert found == 2
    finally:
        await store.close()


async def test_an_unknown_synchronous_mode_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    with pytest.raises(UserError, match="bogus"):
        await taskloom.open_store(f"{_url(path)}?synchronous=bogus")
    with pytest.raises(UserError, match="bogus"):
        async with taskloom.open(_url(path), synchronous="bogus"):
            pass
    assert not path.exists()


async def test_reopening_keeps_tasks_and_events(tmp_path: Path) -> None:
    url = _url(tmp_path / "tasks.db")
    async with taskloom.open(url) as rt:
        async with rt.task("job", task_id="done", owner="ann", payload={"q": "é"}) as task:
            await task.progress({"step": 1})
            await task.complete({"answer": 42})
        await rt.create("job", task_id="queued")
    async with taskloom.open(url) as rt:
        done = await rt.get("done")
        assert (done.state, done.owner, done.payload, done.output) == (
            TaskState.COMPLETED,
            "ann",
            {"q": "é"},
            {"answer": 42},
        )
        assert done.current_progress == {"step": 1}
        kinds = [e.kind for e in await rt.store.read_events("done")]
        assert kinds == ["submitted", "started", "progressed", "completed"]
        queued = await rt.get("queued")
        assert queued.state is TaskState.SUBMITTED
        async with queued:
            pass
        assert [t.id for t in (await rt.list()).tasks] == ["queued", "done"]
    conn = sqlite3.connect(tmp_path / "tasks.db")
    try:
        versions = [r[0] for r in conn.execute("SELECT version FROM taskloom_schema")]
    finally:
        conn.close()
    assert versions == [1, 2, 3]  # reopening migrates nothing twice


@pytest.mark.parametrize(
    "url",
    ["sqlite://relative.db", "sqlite://relative/tasks.db", "sqlite:///", "sqlite:///:memory:"],
)
async def test_urls_that_name_no_usable_file_are_user_errors(url: str) -> None:
    with pytest.raises(UserError, match="sqlite"):
        await taskloom.open_store(url)


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await taskloom.open_store(_url(tmp_path / "tasks.db"))
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(taskloom.StoreUnavailableError, match="closed"):
        await store.get("anything")


async def test_a_file_of_schema_version_2_migrates_forward(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE taskloom_schema (version INTEGER NOT NULL)")
    for version, sql in migrations("sqlite")[:2]:
        conn.executescript(sql)
        conn.execute("INSERT INTO taskloom_schema (version) VALUES (?)", (version,))
    conn.execute(
        "INSERT INTO tasks (id, name, state, payload, created_ms, updated_ms, retention_ms,"
        " last_seq) VALUES ('old', 'job', 'submitted', '1', 5, 5, 0, 1)"
    )
    conn.commit()
    conn.close()
    store = await taskloom.open_store(_url(path))
    try:
        old = await store.get("old")
        assert old is not None and old.payload == "1"
        assert (old.priority, old.fire_ms, old.idempotency_key, old.serial_key, old.job) == (
            0,
            None,
            None,
            None,
            None,
        )
        assert (old.lease_owner, old.lease_ms, old.recoveries) == (None, None, 0)
        assert await store.claim("w", ["job"], limit=5, lease_seconds=1) == []  # no job
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        versions = [r[0] for r in conn.execute("SELECT version FROM taskloom_schema")]
        indexes = {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    finally:
        conn.close()
    assert versions == [1, 2, 3]
    assert {"tasks_due", "tasks_leases", "tasks_idempotency", "tasks_serial"} <= indexes
