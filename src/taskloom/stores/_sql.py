"""SQL shared by the SQLite and PostgreSQL stores: columns, statements, rows, migrations.

Statements are written once with `{p1}`-style placeholders and rendered per dialect
(`?1` for SQLite, `$1` for PostgreSQL). The state lists of conditional writes come from
the `TaskState` enum, never from callers, so they are inlined as literals.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any, Literal, Protocol

from .._record import TaskQuery, TaskRecord
from ..states import TERMINAL_STATES, TaskState

__all__ = (
    "EXISTING_TASK",
    "INSERT_EVENT",
    "INSERT_TASK",
    "TASK_COLUMNS",
    "list_query",
    "migrations",
    "record_from_row",
    "record_params",
    "render",
    "state_of",
    "update_task",
)

Dialect = Literal["sqlite", "postgres"]

TASK_COLUMNS = (
    "id, name, owner, state, reason, payload, progress, result, error, parent_id, created_ms,"
    " updated_ms, started_ms, ended_ms, last_progress_ms, expires_ms, retention_ms, purge_ms,"
    " last_seq, epoch, usage, priority, fire_ms, idempotency_key, serial_key, job, lease_owner,"
    " lease_ms, recoveries"
)

# no conflict target: a taken id and a taken `idempotency_key` both leave the row unwritten
INSERT_TASK = (
    f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({{p1}}, {{p2}}, {{p3}}, {{p4}}, {{p5}}, {{p6}},"
    " {p7}, {p8}, {p9}, {p10}, {p11}, {p12}, {p13}, {p14}, {p15}, {p16}, {p17}, {p18}, {p19},"
    " {p20}, {p21}, {p22}, {p23}, {p24}, {p25}, {p26}, {p27}, {p28}, {p29}) ON CONFLICT DO NOTHING"
)

EXISTING_TASK = (
    f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = {{p1}} OR idempotency_key = {{p2}}"
    " ORDER BY id = {p1} DESC LIMIT 1"
)
"""The task that kept a create from writing: the one with its id, else the one with its key."""

INSERT_EVENT = (
    "INSERT INTO events (task_id, seq, at_ms, kind, data) VALUES ({p1}, {p2}, {p3}, {p4}, {p5})"
)


def render(sql: str, dialect: Dialect) -> str:
    """Turn `{pN}` placeholders into the dialect's parameter markers."""
    marker = "?" if dialect == "sqlite" else "$"
    return re.sub(r"\{p(\d+)\}", lambda m: f"{marker}{m.group(1)}", sql)


def _in_list(states: Sequence[str]) -> str:
    return ", ".join(f"'{TaskState(s).value}'" for s in states)


@functools.cache
def update_task(from_states: tuple[str, ...], dialect: Dialect, fence: int | None = None) -> str:
    """The conditional write of one change.

    Parameters: 1 new state or NULL, 2 reason, 3 result, 4 error, 5 progress (SQLite: the
    merged object; PostgreSQL: the patch), 6 the time, 7 whether the change ends the task,
    8 the task id, 9 usage, and, when `fence` is a parameter's number, that parameter: the
    epoch the record must have. Returns the new `last_seq`, or no row when the state (or the
    epoch) did not match. A terminal record is never matched, whatever `from_states` says:
    terminal is absorbing.
    """
    if dialect == "sqlite":
        progress = "coalesce({p5}, progress)"
        is_working = "{p1} = 'working'"
        terminal = "{p7}"
    else:
        progress = "CASE WHEN {p5}::jsonb IS NULL THEN progress ELSE progress || {p5}::jsonb END"
        is_working = "{p1}::text = 'working'"
        terminal = "{p7}::boolean"
    fenced = "" if fence is None else f" AND epoch = {{p{fence}}}"
    sql = f"""UPDATE tasks SET
        state = coalesce({{p1}}, state),
        reason = coalesce({{p2}}, reason),
        usage = coalesce({{p9}}, usage),
        result = coalesce({{p3}}, result),
        error = coalesce({{p4}}, error),
        progress = {progress},
        last_progress_ms = CASE WHEN {{p5}} IS NULL THEN last_progress_ms ELSE {{p6}} END,
        started_ms = CASE WHEN {is_working} THEN coalesce(started_ms, {{p6}}) ELSE started_ms END,
        ended_ms = CASE WHEN {terminal} THEN {{p6}} ELSE ended_ms END,
        purge_ms = CASE WHEN {terminal} THEN {{p6}} + retention_ms ELSE purge_ms END,
        updated_ms = {{p6}},
        last_seq = last_seq + 1
    WHERE id = {{p8}} AND state IN ({_in_list(from_states)})
        AND state NOT IN ({_in_list(sorted(TERMINAL_STATES))}){fenced}
    RETURNING last_seq"""
    return render(sql, dialect)


def list_query(query: TaskQuery, dialect: Dialect) -> tuple[str, list[Any]]:
    """A SELECT for `Store.list`, newest first, with keyset pagination."""
    where: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"{{p{len(params)}}}"

    if query.states:
        where.append(f"state IN ({_in_list(query.states)})")
    if query.owner is not None:
        where.append(f"owner = {param(query.owner)}")
    if query.name is not None:
        where.append(f"name = {param(query.name)}")
    if query.parent_id is not None:
        where.append(f"parent_id = {param(query.parent_id)}")
    if query.created_after_ms is not None:
        where.append(f"created_ms > {param(query.created_after_ms)}")
    if query.before is not None:
        created, task_id = query.before
        where.append(
            f"(created_ms < {param(created)} OR (created_ms = {param(created)}"
            f" AND id < {param(task_id)}))"
        )
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = (
        f"SELECT {TASK_COLUMNS} FROM tasks{clause}"
        f" ORDER BY created_ms DESC, id DESC LIMIT {param(query.limit)}"
    )
    return render(sql, dialect), params


OVERDUE = (
    "SELECT id FROM tasks WHERE expires_ms IS NOT NULL AND ended_ms IS NULL"
    f" AND expires_ms <= {{p1}} AND state NOT IN ({_in_list(sorted(TERMINAL_STATES))})"
    " ORDER BY expires_ms LIMIT {p2}"
)
PURGEABLE = "SELECT id FROM tasks WHERE purge_ms IS NOT NULL AND purge_ms <= {p1} LIMIT {p2}"


def record_params(rec: TaskRecord) -> tuple[Any, ...]:
    """The INSERT_TASK parameters of a record."""
    return (
        rec.id,
        rec.name,
        rec.owner,
        rec.state.value,
        rec.reason,
        rec.payload,
        json.dumps(rec.progress, separators=(",", ":")) if rec.progress else "{}",
        rec.result,
        rec.error,
        rec.parent_id,
        rec.created_ms,
        rec.updated_ms,
        rec.started_ms,
        rec.ended_ms,
        rec.last_progress_ms,
        rec.expires_ms,
        rec.retention_ms,
        rec.purge_ms,
        rec.last_seq,
        rec.epoch,
        rec.usage,
        rec.priority,
        rec.fire_ms,
        rec.idempotency_key,
        rec.serial_key,
        rec.job,
        rec.lease_owner,
        rec.lease_ms,
        rec.recoveries,
    )


_STATES = {s.value: s for s in TaskState}


def state_of(value: str) -> TaskState:
    """`TaskState(value)`, with a dictionary look-up first: calling the enum is slow."""
    return _STATES.get(value) or TaskState(value)


class Row(Protocol):
    """A database row: `sqlite3` tuples and `asyncpg` records both index by position."""

    def __getitem__(self, index: int, /) -> Any: ...


def record_from_row(row: Row) -> TaskRecord:
    """A record from a row of `TASK_COLUMNS`."""
    return TaskRecord(
        id=row[0],
        name=row[1],
        owner=row[2],
        state=state_of(row[3]),
        reason=row[4],
        payload=row[5],
        progress=json.loads(row[6]),
        result=row[7],
        error=row[8],
        parent_id=row[9],
        created_ms=row[10],
        updated_ms=row[11],
        started_ms=row[12],
        ended_ms=row[13],
        last_progress_ms=row[14],
        expires_ms=row[15],
        retention_ms=row[16],
        purge_ms=row[17],
        last_seq=row[18],
        epoch=row[19],
        usage=row[20],
        priority=row[21],
        fire_ms=row[22],
        idempotency_key=row[23],
        serial_key=row[24],
        job=row[25],
        lease_owner=row[26],
        lease_ms=row[27],
        recoveries=row[28],
    )


@functools.cache
def migrations(dialect: Dialect) -> tuple[tuple[int, str], ...]:
    """The numbered migrations of a dialect, in order: `(version, sql)`."""
    folder = resources.files("taskloom.stores") / "migrations" / dialect
    found: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_\w+\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    assert [v for v, _ in found] == list(range(1, len(found) + 1)), "migrations are numbered 1..N"
    return tuple(found)
