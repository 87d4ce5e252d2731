"""`SQLiteStore`: the embedded default, one file, WAL mode.

Writes go to one writer thread that owns the write connection and commits in groups
(`_sqlite_writer`): it takes every write queued while the previous commit was syncing,
runs them in one transaction, commits once, and only then acknowledges each caller.
Acknowledged therefore still means durable, and concurrent tasks share one fsync.

Each change is one `UPDATE` shaped to what it changes (a progress update touches no
indexed column), and a progress patch is merged by SQLite (`json_patch`) when that is the
same as the shallow merge: when no value in it is an object or null.

Durability: `synchronous=FULL` (the default) syncs the write-ahead log on every commit, so
an acknowledged write survives a power cut. `?synchronous=normal` syncs only at
checkpoints: an acknowledged write survives a crash of the process but the last commits
before a power cut or OS crash may be lost; the file is never corrupted either way.

Claims, heartbeats and releases (`_sqlite_leases`) are writes like the others: a claim is
one operation of the writer, timed by this machine's clock. Submission order is the rowid.

Reads use a second connection on a reader thread. Other processes' commits are found by
polling, once per the runtime's `poll_interval`. The `aiosqlite` bridge is not used: it
costs a thread hop per statement and cannot batch several callers into one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import operator
import sqlite3
from collections.abc import Callable, Collection, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qs

from .._json import dumps
from .._record import Change, NewEvent, TaskQuery, TaskRecord
from ..errors import MigrationError, StoreFormatError, StoreUnavailableError, UserError
from ..events import Event, event_from_row
from ..states import TERMINAL_STATES, TaskState
from . import _sql, _sqlite_leases
from ._base import Store
from ._sqlite_writer import EventRow, Op, Writer, insert_events, translate

__all__ = ("SQLiteStore",)

T = TypeVar("T")
_INSERT_TASK = _sql.render(_sql.INSERT_TASK, "sqlite")
_EXISTING_TASK = _sql.render(_sql.EXISTING_TASK, "sqlite")
_SELECT_PROGRESS = "SELECT progress FROM tasks WHERE id = ?"
_LAST_SEQ = "SELECT last_seq FROM tasks WHERE id = ?"
_SYNC_MODES = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}
_OUR_TABLES = frozenset({"tasks", "events", "taskloom_schema"})


class SQLiteStore(Store):
    """Tasks and events in one SQLite file. Open with `SQLiteStore.connect(url_or_path)`."""

    def __init__(self, path: str, writer: Writer, reader: sqlite3.Connection) -> None:
        self.url = f"sqlite:///{path}"
        self.path = path
        self._writer = writer
        self._reader_conn = reader
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="taskloom-sqlite-read")
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
        writer = Writer(write_conn)
        writer.start()
        return cls(path, writer, read_conn)

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run `op` on the writer thread, in a transaction; return once it is committed."""

        def write(conn: sqlite3.Connection, rows: list[EventRow]) -> T:
            insert_events(conn, rows)  # `op` may read or delete events: write the queued ones
            return op(conn)

        return await self._submit(write)

    async def _submit(self, op: Op) -> Any:
        """Run an `Op` on the writer thread, in a transaction; return once it is committed."""
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
        params = list(_sql.record_params(record))
        params[18] = len(events)
        task_id = record.id
        rows = [(task_id, seq, e.at_ms, e.kind, e.data) for seq, e in enumerate(events, 1)]
        if record.progress:  # what reading the row back gives: progress as JSON decodes it
            stored = _sql.record_from_row(params)
        else:
            stored = record.copy()
            stored.last_seq = len(events)

        def op(conn: sqlite3.Connection, queued: list[EventRow]) -> tuple[TaskRecord, bool]:
            if conn.execute(_INSERT_TASK, params).rowcount != 1:  # the id or the key is taken
                row = conn.execute(_EXISTING_TASK, (task_id, record.idempotency_key)).fetchone()
                return (record if row is None else _sql.record_from_row(row)), False
            queued += rows
            return stored, True

        if self._closed:  # `_submit` inlined: this is the hot path
            raise StoreUnavailableError(f"the store {self.url} is closed")
        return await self._writer.submit(op)

    async def apply(self, change: Change) -> int | None:
        task_id, event, patch = change.task_id, change.event, change.progress
        merge = patch is not None and not _patchable(patch)
        update = _update_sql(
            change.from_states,
            change.to_state,
            change.reason is not None,
            change.result is not None,
            change.error is not None,
            None if patch is None else "merged" if merge else "patch",
            change.usage is not None,
            change.epoch is not None,
        )
        values = [
            change.reason,
            change.result,
            change.error,
            None if patch is None or merge else change.progress_json or dumps(patch),
            event.at_ms,
            task_id,
            change.usage,
            change.epoch,
        ]

        def op(conn: sqlite3.Connection, queued: list[EventRow]) -> int | None:
            if merge:
                assert patch is not None
                row = conn.execute(_SELECT_PROGRESS, (task_id,)).fetchone()
                if row is None:
                    return None
                merged = json.loads(row[0])
                merged.update(patch)
                values[3] = dumps(merged)
            if conn.execute(update.sql, update.pick(values)).rowcount != 1:
                return None  # no such task, or not in one of `from_states`, or fenced off
            seq: int = conn.execute(_LAST_SEQ, (task_id,)).fetchone()[0]
            queued.append((task_id, seq, event.at_ms, event.kind, event.data))
            return seq

        if self._closed:  # `_submit` inlined: this is the hot path
            raise StoreUnavailableError(f"the store {self.url} is closed")
        return await self._writer.submit(op)

    async def claim(
        self, worker: str, names: Collection[str], *, limit: int, lease_seconds: float
    ) -> list[TaskRecord]:
        if not names or limit <= 0:
            return []
        listed = json.dumps(list(names))
        if not await self._read(lambda conn: _sqlite_leases.anything_to_claim(conn, listed)):
            return []
        op = functools.partial(
            _sqlite_leases.claim,
            worker=worker,
            names=listed,
            limit=limit,
            lease_ms=round(lease_seconds * 1000),
        )
        return await self._submit(op)

    async def heartbeat(
        self, worker: str, leases: Mapping[str, int], *, lease_seconds: float
    ) -> set[str]:
        if not leases:
            return set()
        pairs = list(leases.items())
        lease_ms = round(lease_seconds * 1000)
        return await self._submit(
            lambda conn, _: _sqlite_leases.heartbeat(conn, pairs, worker=worker, lease_ms=lease_ms)
        )

    async def release(self, task_id: str, epoch: int) -> bool:
        return await self._submit(lambda conn, _: _sqlite_leases.release(conn, task_id, epoch))

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
        return {r[0]: (_sql.state_of(r[1]), r[2]) for r in rows}

    async def wait_for_change(self, max_wait: float) -> None:
        # SQLite tells no one of a commit, so the runtime polls, once per `max_wait`. Returning
        # early when `PRAGMA data_version` has moved would poll without pause while this
        # process writes (its own commits move it too) and cost every write a read.
        await asyncio.sleep(max_wait)

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
        self._writer.flush(asyncio.get_running_loop())  # what this loop queued goes first
        await asyncio.to_thread(self._writer.stop)
        await asyncio.get_running_loop().run_in_executor(self._reader, self._reader_conn.close)
        self._reader.shutdown(wait=True)


def _get(conn: sqlite3.Connection, task_id: str) -> TaskRecord | None:
    row = conn.execute(f"SELECT {_sql.TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return None if row is None else _sql.record_from_row(row)


def _patchable(patch: dict[str, Any]) -> bool:
    """Whether `json_patch` merges `patch` shallowly: no value is an object or null.

    RFC 7396 merges object values recursively and deletes keys whose value is null; every
    other value replaces the stored one, as the shallow merge does.
    """
    for value in patch.values():
        if value is None or isinstance(value, dict):
            return False
    return True


class _Update(NamedTuple):
    """The statement of one shape of change, and what to bind to it."""

    sql: str
    pick: Callable[[Sequence[Any]], tuple[Any, ...]]
    """Takes the parameters the statement uses from `[reason, result, error, progress,
    time, task id, usage, epoch]`, in order."""


@functools.cache
def _update_sql(
    from_states: tuple[str, ...],
    target: TaskState | None,
    reason: bool,
    result: bool,
    error: bool,
    progress: str | None,
    usage: bool = False,
    fenced: bool = False,
) -> _Update:
    """The conditional write of one change, setting only the columns it changes.

    The same write as `_sql.update_task`, but a column left as it is stays out of the
    statement, so that an update of progress rewrites no index, and so does its parameter:
    binding `None` costs the `sqlite3` module a failed adapter look-up. `progress` is
    `"patch"` (merged by `json_patch`) or `"merged"` (the merged object is bound). The
    statement changes no row when the state does not match (or, when `fenced`, the epoch); a
    terminal record is never matched, whatever `from_states` says. There is no `RETURNING` clause: SQLite builds a
    temporary table for it, which costs more than reading `last_seq` back.
    """
    used: list[int] = []

    def param(index: int) -> str:  # index into `_Update.pick`'s list
        if index not in used:
            used.append(index)
        return f"?{used.index(index) + 1}"

    sets: list[str] = []
    if target is not None:
        sets.append(f"state = '{target.value}'")
        if target is TaskState.WORKING:
            sets.append(f"started_ms = coalesce(started_ms, {param(4)})")
        elif target in TERMINAL_STATES:
            sets.append(f"ended_ms = {param(4)}, purge_ms = {param(4)} + retention_ms")
    for flag, column, index in ((reason, "reason", 0), (result, "result", 1), (error, "error", 2)):
        if flag:
            sets.append(f"{column} = {param(index)}")
    if progress is not None:
        value = f"json_patch(progress, {param(3)})" if progress == "patch" else param(3)
        sets.append(f"progress = {value}, last_progress_ms = {param(4)}")
    if usage:
        sets.append(f"usage = {param(6)}")
    sets.append(f"updated_ms = {param(4)}, last_seq = last_seq + 1")
    # `state IN (...)` of more than two values, or `NOT IN`, makes SQLite build a temporary
    # index on every run: compare with `=` instead, leaving out the terminal states here
    allowed = sorted({TaskState(s) for s in from_states} - TERMINAL_STATES)
    matches = " OR ".join(f"state = '{s.value}'" for s in allowed) or "0"
    fence = f" AND epoch = {param(7)}" if fenced else ""
    sql = f"UPDATE tasks SET {', '.join(sets)} WHERE id = {param(5)} AND ({matches}){fence}"
    return _Update(sql, operator.itemgetter(*used))


def _guarded(op: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    try:
        return op(conn)
    except sqlite3.Error as exc:
        raise translate(exc) from exc


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
        raise translate(exc) from exc
    except OSError as exc:
        raise StoreUnavailableError(f"cannot use the SQLite file {path!r}: {exc}") from exc
