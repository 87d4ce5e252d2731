"""The SQLite writer thread: every write of a store, committed in groups.

One thread owns the write connection. Callers on an event loop submit operations; the
operations submitted during one pass of the loop are handed over together when the pass
ends, so the thread is woken once per pass rather than once per write, and it wakes when
the loop is about to go idle instead of competing with it for the GIL. The thread takes
everything handed over while it was busy, runs it in one transaction, commits once, and
only then acknowledges the callers (group commit): acknowledged means durable, and
concurrent writers share one sync.

An operation appends the events it writes to a list rather than inserting them one by one;
the thread inserts them all with one `executemany` before the commit. Operations run
without savepoints: if one of them raises, the transaction is rolled back and the batch is
run again with each operation in its own savepoint, so that the failure is its alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from ..errors import StoreError, StoreFormatError, StoreUnavailableError

__all__ = ("EventRow", "Op", "Writer", "insert_events", "translate")

EventRow = tuple[str, int, int, str, str]
"""`(task_id, seq, at_ms, kind, data)`: one row of the events table."""

Op = Callable[[sqlite3.Connection, list[EventRow]], Any]
"""A write: it runs on the connection and appends the events it writes to the list."""

_Item = tuple[Op, asyncio.Future[Any], asyncio.AbstractEventLoop]
_Outcome = tuple[Any, BaseException | None]

_INSERT_EVENT = "INSERT INTO events (task_id, seq, at_ms, kind, data) VALUES (?, ?, ?, ?, ?)"
_MAX_BATCH = 4096


def insert_events(conn: sqlite3.Connection, rows: list[EventRow]) -> None:
    """Write the events queued so far (an operation that reads events calls this first)."""
    if rows:
        conn.executemany(_INSERT_EVENT, rows)
        rows.clear()


class Writer(threading.Thread):
    """The one thread that writes; see the module docstring."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(name="taskloom-sqlite-write", daemon=True)
        self._conn = conn
        self._queue: queue.SimpleQueue[list[_Item] | None] = queue.SimpleQueue()
        self._pending: dict[asyncio.AbstractEventLoop, list[_Item]] = {}

    def submit(self, op: Op) -> asyncio.Future[Any]:
        """Queue `op`; the future resolves once the transaction that ran it has committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self.flush, loop)
        pending.append((op, fut, loop))
        return fut

    def flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the operations `loop` queued to the thread (at the end of the loop's pass)."""
        batch = self._pending.pop(loop, None)
        if batch:
            self._queue.put(batch)

    def stop(self) -> None:
        """Finish what was handed over, then end the thread and close the connection."""
        self._queue.put(None)
        self.join()
        self._conn.close()

    def run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            stopping = False
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch += more
            _acknowledge(batch, self._run(batch))
            if stopping:
                return

    def _run(self, batch: list[_Item]) -> list[_Outcome]:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            return [(None, exc)] * len(batch)
        rows: list[EventRow] = []
        try:
            values = [op(conn, rows) for op, _, _ in batch]
            insert_events(conn, rows)
        except Exception as exc:
            _rollback(conn)
            if len(batch) == 1:
                return [(None, exc)]
            return self._run_apart(batch)
        except BaseException:
            _rollback(conn)
            raise
        return _commit(conn, [(value, None) for value in values])

    def _run_apart(self, batch: list[_Item]) -> list[_Outcome]:
        """Run the batch again with each operation in its own savepoint."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            return [(None, exc)] * len(batch)
        try:
            outcomes = [_in_savepoint(conn, op) for op, _, _ in batch]
        except BaseException:
            _rollback(conn)
            raise
        return _commit(conn, outcomes)


def _commit(conn: sqlite3.Connection, outcomes: list[_Outcome]) -> list[_Outcome]:
    try:
        conn.execute("COMMIT")
    except Exception as exc:
        _rollback(conn)
        return [(None, exc)] * len(outcomes)
    return outcomes


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _in_savepoint(conn: sqlite3.Connection, op: Op) -> _Outcome:
    conn.execute("SAVEPOINT op")
    try:
        rows: list[EventRow] = []
        value = op(conn, rows)
        insert_events(conn, rows)
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return None, exc
    conn.execute("RELEASE op")
    return value, None


def _acknowledge(batch: list[_Item], outcomes: list[_Outcome]) -> None:
    """Resolve the callers' futures, with one call into each event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
    for (_, fut, loop), (value, exc) in zip(batch, outcomes, strict=True):
        settled = by_loop.get(loop)
        if settled is None:
            settled = by_loop[loop] = []
        settled.append((fut, value, None if exc is None else translate(exc)))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed while we wrote
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, exc in settled:
        if fut.done():
            continue  # the caller was cancelled; the write stands
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


def translate(exc: BaseException) -> BaseException:
    """Turn an `sqlite3` error into a `StoreError` that says what to do."""
    if not isinstance(exc, sqlite3.Error):
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
