"""The SQLite store's claims, heartbeats and releases: each one operation of the writer thread.

The writer runs them in its transaction (`BEGIN IMMEDIATE`, so no other process writes in
between), which is what lets a claim read the candidates and then update them without a
lock of its own. The time is this machine's clock, read in the writer thread.
"""

from __future__ import annotations

import sqlite3

from .._json import dumps
from .._record import TaskRecord, now_ms
from ..states import TaskState
from . import _sql
from ._sqlite_writer import EventRow

__all__ = ("anything_to_claim", "claim", "heartbeat", "release")

_LEASED = "(state = 'working' OR state = 'input_required')"
"""The active states, written as the partial index `tasks_leases` has them (SQLite uses a
partial index only when the query repeats its terms)."""

_TAKEN = (
    f"SELECT {_sql.TASK_COLUMNS} FROM tasks"
    f" WHERE {_LEASED} AND job IS NOT NULL AND (lease_owner IS NULL OR lease_ms < ?1)"
    " AND name IN (SELECT value FROM json_each(?2))"
    " ORDER BY lease_ms, rowid LIMIT ?3"
)
"""Leases that ended or were released (their `lease_ms` is NULL, which sorts first)."""

# a due task with a serial key waits while a task with that key is active, or is due before
# it in the claim's order; rowid is the submission order
_DUE = (
    f"SELECT {_sql.TASK_COLUMNS} FROM tasks AS t"
    " WHERE state = 'submitted' AND job IS NOT NULL AND (fire_ms IS NULL OR fire_ms <= ?1)"
    " AND name IN (SELECT value FROM json_each(?2))"
    " AND (serial_key IS NULL OR ("
    "NOT EXISTS (SELECT 1 FROM tasks AS a WHERE a.serial_key = t.serial_key"
    " AND (a.state = 'working' OR a.state = 'input_required') AND a.job IS NOT NULL)"
    " AND NOT EXISTS (SELECT 1 FROM tasks AS b WHERE b.serial_key = t.serial_key"
    " AND b.state = 'submitted' AND b.job IS NOT NULL AND (b.fire_ms IS NULL OR b.fire_ms <= ?1)"
    " AND (b.priority > t.priority OR b.priority = t.priority"
    " AND (coalesce(b.fire_ms, b.created_ms), b.rowid)"
    " < (coalesce(t.fire_ms, t.created_ms), t.rowid)))))"
    " ORDER BY priority DESC, coalesce(fire_ms, created_ms), rowid LIMIT ?3"
)

_TAKE = (
    "UPDATE tasks SET epoch = ?1, recoveries = ?2, lease_owner = ?3, lease_ms = ?4,"
    " updated_ms = ?5, last_seq = ?6 WHERE id = ?7"
)
_START = (
    "UPDATE tasks SET state = 'working', started_ms = ?1, epoch = ?2, lease_owner = ?3,"
    " lease_ms = ?4, updated_ms = ?5, last_seq = ?6 WHERE id = ?7"
)
_EXTEND = (
    f"UPDATE tasks SET lease_ms = ?1 WHERE id = ?2 AND epoch = ?3 AND lease_owner = ?4"
    f" AND {_LEASED}"
)
_RELEASE = (
    "UPDATE tasks SET lease_owner = NULL, lease_ms = NULL WHERE id = ?1 AND epoch = ?2"
    f" AND {_LEASED}"
)


def anything_to_claim(conn: sqlite3.Connection, names: str) -> bool:
    """Whether `claim` would take anything now.

    Read first, so that an idle worker's polls never take the write lock: a worker stopped
    (SIGSTOP, a debugger) while it holds the lock holds up every other writer of the file.
    """
    now = now_ms()
    return (
        conn.execute(_TAKEN, (now, names, 1)).fetchone() is not None
        or conn.execute(_DUE, (now, names, 1)).fetchone() is not None
    )


def claim(
    conn: sqlite3.Connection,
    queued: list[EventRow],
    *,
    worker: str,
    names: str,
    limit: int,
    lease_ms: int,
) -> list[TaskRecord]:
    """`Store.claim`, with `names` as a JSON array and the lease's length in milliseconds."""
    now = now_ms()
    lease = now + lease_ms
    who = dumps(worker)
    claimed: list[TaskRecord] = []
    taken = [_sql.record_from_row(r) for r in conn.execute(_TAKEN, (now, names, limit))]
    for rec in taken:
        released = rec.lease_owner is None
        rec.recoveries += 0 if released else 1
        rec.epoch += 1
        _lease(rec, worker, lease, now)
        data = (
            f'{{"worker":{who},"epoch":{rec.epoch},"recoveries":{rec.recoveries},'
            f'"released":{"true" if released else "false"}}}'
        )
        queued.append((rec.id, rec.last_seq, now, "recovered", data))
        claimed.append(rec)
    if taken:
        conn.executemany(
            _TAKE,
            [(r.epoch, r.recoveries, worker, lease, now, r.last_seq, r.id) for r in taken],
        )
    if len(taken) < limit:
        rows = conn.execute(_DUE, (now, names, limit - len(taken))).fetchall()
        due = [_sql.record_from_row(r) for r in rows]
        started = f'{{"worker":{who}}}'
        for rec in due:
            rec.state = TaskState.WORKING
            rec.started_ms = now if rec.started_ms is None else rec.started_ms
            rec.epoch += 1
            _lease(rec, worker, lease, now)
            queued.append((rec.id, rec.last_seq, now, "started", started))
            claimed.append(rec)
        if due:
            conn.executemany(
                _START,
                [(r.started_ms, r.epoch, worker, lease, now, r.last_seq, r.id) for r in due],
            )
    return claimed


def _lease(rec: TaskRecord, worker: str, lease: int, now: int) -> None:
    rec.lease_owner, rec.lease_ms, rec.updated_ms = worker, lease, now
    rec.last_seq += 1


def heartbeat(
    conn: sqlite3.Connection, leases: list[tuple[str, int]], *, worker: str, lease_ms: int
) -> set[str]:
    """`Store.heartbeat`, with the lease's length in milliseconds."""
    until = now_ms() + lease_ms
    return {
        task_id
        for task_id, epoch in leases
        if conn.execute(_EXTEND, (until, task_id, epoch, worker)).rowcount == 1
    }


def release(conn: sqlite3.Connection, task_id: str, epoch: int) -> bool:
    """`Store.release`."""
    return conn.execute(_RELEASE, (task_id, epoch)).rowcount == 1
