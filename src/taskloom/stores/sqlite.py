"""`SQLiteStore`: the embedded default, one file, WAL mode.

Writes go to one writer thread that owns the write connection and commits in groups:
it takes every write queued while the previous commit was syncing, runs each in its own
savepoint inside one transaction, commits once, and only then acknowledges each caller.
Acknowledged therefore still means durable, and concurrent tasks share one fsync.

Durability: `synchronous=FULL` (the default) syncs the write-ahead log on every commit, so
an acknowledged write survives a power cut. `?synchronous=normal` syncs only at
checkpoints: an acknowledged write survives a crash of the process but the last commits
before a power cut or OS crash may be lost; the file is never corrupted either way.

Reads use a second connection on a reader thread. Other processes' commits are noticed
through `PRAGMA data_version`. The `aiosqlite` bridge is not used: it costs a thread hop per
statement and cannot batch several callers into one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from .._json import dumps
from .._record import Change, NewEvent, TaskQuery, TaskRecord
from ..errors import (
    MigrationError,
    StoreError,
    StoreFormatError,
    StoreUnavailableError,
    UserError,
)
from ..events import Event, event_from_row
from ..states import TaskState
from . import _sql
from ._base import Store

__all__ = ("SQLiteStore",)

T = TypeVar("T")
_Op = Callable[[sqlite3.Connection], Any]
_MAX_BATCH = 1024
_SYNC_MODES = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}
_OUR_TABLES = frozenset({"tasks", "events", "taskloom_schema"})


class SQLiteStore(Store):
    """Tasks and events in one SQLite file. Open with `SQLiteStore.connect(url_or_path)`."""

    def __init__(self, path: str, writer: _Writer, reader: sqlite3.Connection) -> None:
        self.url = f"sqlite:///{path}"
        self.path = path
        self._writer = writer
        self._reader_conn = reader
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="taskloom-sqlite-read")
        self._data_version: int | None = None
        self._closed = False

    @classmethod
    async def connect(cls, url: str, *, synchronous: str | None = None) -> SQLiteStore:
        """Open (creating and migrating if needed) the SQLite store at `url`.

        Args:
            url: `sqlite:///relative.db`, `sqlite:////absolute.db`, or a plain path.
            synchronous: `full` (default) or `normal`; overrides `?synchronous=` in the URL.
        """
        path, options = _parse(url)
        mode = (synchronous or options.get("synchronous") or "full").lower()
        if mode not in _SYNC_MODES:
            raise UserError(f"synchronous must be full or normal, not {mode!r}")
        write_conn, read_conn = await asyncio.to_thread(_open_files, path, _SYNC_MODES[mode])
        writer = _Writer(write_conn)
        writer.start()
        return cls(path, writer, read_conn)

    async def _write(self, op: _Op) -> Any:
        if self._closed:
            raise StoreUnavailableError(f"the store {self.url} is closed")
        return await self._writer.submit(op)

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailableError(f"the store {self.url} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, _guarded, op, self._reader_conn)

    async def create(
        self, record: TaskRecord, events: Sequence[NewEvent]
    ) -> tuple[TaskRecord, bool]:
        insert_task = _sql.render(_sql.INSERT_TASK, "sqlite")
        insert_event = _sql.render(_sql.INSERT_EVENT, "sqlite")
        params = list(_sql.record_params(record))
        params[18] = len(events)

        def op(conn: sqlite3.Connection) -> tuple[TaskRecord, bool]:
            if conn.execute(insert_task, params).fetchone() is None:
                return _get(conn, record.id) or record, False
            conn.executemany(
                insert_event,
                [(record.id, seq, e.at_ms, e.kind, e.data) for seq, e in enumerate(events, 1)],
            )
            stored = _sql.record_from_row(params)
            return stored, True

        return await self._write(op)

    async def apply(self, change: Change) -> int | None:
        update = _sql.update_task(change.from_states, "sqlite")
        insert_event = _sql.render(_sql.INSERT_EVENT, "sqlite")
        ev = change.event

        def op(conn: sqlite3.Connection) -> int | None:
            progress = None
            if change.progress is not None:
                row = conn.execute(
                    "SELECT progress FROM tasks WHERE id = ?", (change.task_id,)
                ).fetchone()
                if row is None:
                    return None
                merged = json.loads(row[0])
                merged.update(change.progress)
                progress = dumps(merged)
            state = None if change.to_state is None else change.to_state.value
            row = conn.execute(
                update,
                (
                    state,
                    change.reason,
                    change.result,
                    change.error,
                    progress,
                    ev.at_ms,
                    int(change.terminal),
                    change.task_id,
                ),
            ).fetchone()
            if row is None:
                return None
            conn.execute(insert_event, (change.task_id, row[0], ev.at_ms, ev.kind, ev.data))
            return row[0]

        return await self._write(op)

    async def get(self, task_id: str) -> TaskRecord | None:
        return await self._read(lambda conn: _get(conn, task_id))

    async def list(self, query: TaskQuery) -> list[TaskRecord]:
        sql, params = _sql.list_query(query, "sqlite")
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [_sql.record_from_row(r) for r in rows]

    async def read_events(self, task_id: str, *, after: int = 0, limit: int = 1000) -> list[Event]:
        sql = (
            "SELECT seq, at_ms, kind, data FROM events WHERE task_id = ? AND seq > ?"
            " ORDER BY seq LIMIT ?"
        )
        rows = await self._read(lambda conn: conn.execute(sql, (task_id, after, limit)).fetchall())
        return [event_from_row(task_id, *row) for row in rows]

    async def heads(self, task_ids: Collection[str]) -> dict[str, tuple[TaskState, int]]:
        sql = "SELECT id, state, last_seq FROM tasks WHERE id IN (SELECT value FROM json_each(?))"
        ids = json.dumps(list(task_ids))
        rows = await self._read(lambda conn: conn.execute(sql, (ids,)).fetchall())
        return {r[0]: (TaskState(r[1]), r[2]) for r in rows}

    async def wait_for_change(self, max_wait: float) -> None:
        def version(conn: sqlite3.Connection) -> int:
            return conn.execute("PRAGMA data_version").fetchone()[0]

        if await self._read(version) != self._data_version:
            self._data_version = await self._read(version)
            return
        await asyncio.sleep(max_wait)
        self._data_version = await self._read(version)

    async def overdue(self, now_ms: int, *, limit: int = 500) -> list[str]:
        sql = _sql.render(_sql.OVERDUE, "sqlite")
        rows = await self._read(lambda conn: conn.execute(sql, (now_ms, limit)).fetchall())
        return [r[0] for r in rows]

    async def purge(self, now_ms: int, *, limit: int = 500) -> int:
        sql = _sql.render(_sql.PURGEABLE, "sqlite")

        def op(conn: sqlite3.Connection) -> int:
            ids = [r[0] for r in conn.execute(sql, (now_ms, limit)).fetchall()]
            conn.executemany("DELETE FROM events WHERE task_id = ?", [(i,) for i in ids])
            conn.executemany("DELETE FROM tasks WHERE id = ?", [(i,) for i in ids])
            return len(ids)

        return await self._write(op)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._writer.stop)
        await asyncio.get_running_loop().run_in_executor(self._reader, self._reader_conn.close)
        self._reader.shutdown(wait=True)


def _get(conn: sqlite3.Connection, task_id: str) -> TaskRecord | None:
    row = conn.execute(f"SELECT {_sql.TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return None if row is None else _sql.record_from_row(row)


class _Writer(threading.Thread):
    """The one thread that writes; it commits every queued write in one transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(name="taskloom-sqlite-write", daemon=True)
        self._conn = conn
        self._queue: queue.SimpleQueue[
            tuple[_Op, asyncio.Future[Any], asyncio.AbstractEventLoop] | None
        ] = queue.SimpleQueue()

    def submit(self, op: _Op) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put((op, fut, loop))
        return fut

    def stop(self) -> None:
        self._queue.put(None)
        self.join()
        self._conn.close()

    def run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stopping = False
            while len(batch) < _MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            self._run(batch)
            if stopping:
                return

    def _run(self, batch: list[tuple[_Op, asyncio.Future[Any], asyncio.AbstractEventLoop]]) -> None:
        conn = self._conn
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if len(batch) == 1:
                    outcomes.append((batch[0][0](conn), None))
                else:
                    for op, _, _ in batch:
                        outcomes.append(_in_savepoint(conn, op))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            outcomes = [(None, exc)] * len(batch)
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]
        ] = {}
        for (_, fut, loop), (value, exc) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((fut, value, _translate(exc)))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed while we wrote
                loop.call_soon_threadsafe(_settle, settled)


def _in_savepoint(conn: sqlite3.Connection, op: _Op) -> tuple[Any, BaseException | None]:
    conn.execute("SAVEPOINT op")
    try:
        value = op(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return None, exc
    conn.execute("RELEASE op")
    return value, None


def _settle(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, exc in settled:
        if fut.done():
            continue  # the caller was cancelled; the write stands
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


def _translate(exc: BaseException | None) -> BaseException | None:
    """Turn an `sqlite3` error into a `StoreError` that says what to do."""
    if exc is None or not isinstance(exc, sqlite3.Error):
        return exc
    message = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "locked" in message:
        err: StoreError = StoreUnavailableError(
            f"the SQLite file is locked by another process ({message}); retry, or give each"
            " heavy writer its own file"
        )
    elif isinstance(exc, sqlite3.DatabaseError) and "malformed" in message:
        err = StoreFormatError(
            f"the SQLite file is damaged ({message}); restore a backup or start a new file"
        )
    else:
        err = StoreError(f"SQLite failed: {message}")
    err.__cause__ = exc
    return err


def _guarded(op: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    try:
        return op(conn)
    except sqlite3.Error as exc:
        translated = _translate(exc)
        assert translated is not None
        raise translated from exc


def _parse(url: str) -> tuple[str, dict[str, str]]:
    rest = url
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if not rest.startswith("/"):
            raise UserError(
                f"cannot read the SQLite URL {url!r}: write sqlite:///relative/path.db or"
                " sqlite:////absolute/path.db"
            )
        rest = rest[1:]
    path, _, query = rest.partition("?")
    if not path or path == ":memory:":
        raise UserError(f"the SQLite URL {url!r} names no file; for memory use memory://")
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    return path, options


def _open_files(path: str, synchronous: str) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """Open, check and migrate the file; return the write and read connections."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    except (OSError, sqlite3.Error) as exc:
        raise StoreUnavailableError(
            f"cannot open the SQLite file {path!r}: {exc}; check the path and its permissions"
        ) from exc
    try:
        with _as_store_error(path):
            _check_and_migrate(writer, path, synchronous)
            reader = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10
            )
            reader.execute("PRAGMA query_only = ON")
            reader.execute("PRAGMA busy_timeout = 10000")
    except BaseException:
        writer.close()
        raise
    return writer, reader


def _check_and_migrate(conn: sqlite3.Connection, path: str, synchronous: str) -> None:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    foreign = tables - _OUR_TABLES - {"sqlite_sequence"}
    if foreign and "taskloom_schema" not in tables:
        raise StoreFormatError(
            f"{path!r} is an SQLite database of something else (tables:"
            f" {', '.join(sorted(foreign)[:5])}); give taskloom a file of its own"
        )
    conn.execute("PRAGMA busy_timeout = 10000")
    known = _sql.migrations("sqlite")
    if "taskloom_schema" in tables:  # refuse a newer schema before changing anything
        _check_version(conn, path, len(known))
    if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
        raise StoreUnavailableError(f"cannot put {path!r} in WAL mode; is it on a network drive?")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS taskloom_schema (version INTEGER NOT NULL)")
        current = _check_version(conn, path, len(known))
        for version, sql in known[current:]:
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO taskloom_schema (version) VALUES (?)", (version,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _check_version(conn: sqlite3.Connection, path: str, known: int) -> int:
    current = conn.execute("SELECT max(version) FROM taskloom_schema").fetchone()[0] or 0
    if current > known:
        raise MigrationError(
            f"{path!r} has taskloom schema version {current}, newer than this taskloom knows"
            f" ({known}); upgrade taskloom (pip install -U taskloom)"
        )
    return current


def _statements(sql: str) -> Iterator[str]:
    """Split a migration file into statements (they hold no semicolons inside)."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement


@contextlib.contextmanager
def _as_store_error(path: str) -> Generator[None]:
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc) or "malformed" in str(exc):
            raise StoreFormatError(
                f"{path!r} is not an SQLite database, or it is damaged ({exc}); point taskloom"
                " at a new file or restore a backup"
            ) from exc
        translated = _translate(exc)
        assert translated is not None
        raise translated from exc
    except OSError as exc:
        raise StoreUnavailableError(f"cannot use the SQLite file {path!r}: {exc}") from exc
