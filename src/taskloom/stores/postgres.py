"""`PostgresStore`: many processes on many machines sharing one PostgreSQL (the `[postgres]` extra).

Tables live in their own schema (`taskloom` unless the URL says `?schema=`). Every change is
one statement: the conditional `UPDATE`, the event `INSERT` and a `pg_notify` in one CTE, so
it is atomic without a round trip for `BEGIN`/`COMMIT`. Other processes learn of changes
through LISTEN on the schema's channel; `wait_for_change` falls back to polling when
notifications do not arrive (as behind a transaction-pooling PgBouncer).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Collection, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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

if TYPE_CHECKING:
    import asyncpg

__all__ = ("PostgresStore",)

_SCHEMA_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")
_OUR_TABLES = frozenset({"tasks", "events", "taskloom_schema"})


def _driver() -> Any:
    try:
        import asyncpg
    except ImportError:
        raise UserError(
            "PostgreSQL needs the asyncpg driver: pip install 'taskloom[postgres]'"
        ) from None
    return asyncpg


class PostgresStore(Store):
    """Tasks and events in PostgreSQL. Open with `PostgresStore.connect(url)`."""

    def __init__(self, dsn: str, schema: str, pool: asyncpg.Pool, url: str) -> None:
        self.url = url
        self.schema = schema
        self._dsn = dsn
        self._pool = pool
        self._channel = f"taskloom_{schema}"
        self._listener: asyncpg.Connection | None = None
        self._changed = asyncio.Event()
        self._closed = False
        self._apply_sql: dict[tuple[str, ...], str] = {}

    @classmethod
    async def connect(cls, url: str, *, synchronous: str | None = None) -> PostgresStore:
        """Connect, create the schema if needed and migrate it.

        Args:
            url: `postgresql://user:password@host:port/database?schema=name`.
            synchronous: Not used by PostgreSQL (its own `synchronous_commit` applies).
        """
        if synchronous is not None:
            raise UserError("synchronous= is an SQLite option; PostgreSQL has synchronous_commit")
        asyncpg = _driver()
        dsn, schema, shown = _parse(url)
        async with _errors(shown):
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=10,
                timeout=10,
                server_settings={"search_path": schema, "application_name": "taskloom"},
            )
        try:
            async with _errors(shown), pool.acquire() as conn:
                await _migrate(conn, schema, shown)
        except BaseException:
            await pool.close()
            raise
        return cls(dsn, schema, pool, shown)

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncGenerator[asyncpg.pool.PoolConnectionProxy[asyncpg.Record]]:
        if self._closed:
            raise StoreUnavailableError(f"the store {self.url} is closed")
        async with _errors(self.url), self._pool.acquire() as conn:
            yield conn

    async def create(
        self, record: TaskRecord, events: Sequence[NewEvent]
    ) -> tuple[TaskRecord, bool]:
        params = list(_sql.record_params(record))
        params[18] = len(events)
        async with self._conn() as conn, conn.transaction():
            inserted = await conn.fetchval(_INSERT_TASK, *params)
            if inserted is None:
                row = await conn.fetchrow(_GET, record.id)
                return (record if row is None else _sql.record_from_row(row)), False
            await conn.execute(
                _INSERT_EVENTS,
                record.id,
                list(range(1, len(events) + 1)),
                [e.at_ms for e in events],
                [e.kind for e in events],
                [e.data for e in events],
            )
            await conn.execute("SELECT pg_notify($1, $2)", self._channel, record.id)
        return _sql.record_from_row(params), True

    async def apply(self, change: Change) -> int | None:
        sql = self._apply_sql.get(change.from_states)
        if sql is None:
            update = _sql.update_task(change.from_states, "postgres")
            sql = self._apply_sql[change.from_states] = (
                f"WITH u AS ({update}), e AS (INSERT INTO events (task_id, seq, at_ms, kind, data)"
                " SELECT $8, last_seq, $6, $10, $11::json FROM u RETURNING seq)"
                " SELECT seq, pg_notify($12, $8) FROM e"
            )
        ev = change.event
        state = None if change.to_state is None else change.to_state.value
        async with self._conn() as conn:
            row = await conn.fetchrow(
                sql,
                state,
                change.reason,
                change.result,
                change.error,
                change.progress_json,
                ev.at_ms,
                change.terminal,
                change.task_id,
                change.usage,
                ev.kind,
                ev.data,
                self._channel,
            )
        return None if row is None else row[0]

    async def get(self, task_id: str) -> TaskRecord | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(_GET, task_id)
        return None if row is None else _sql.record_from_row(row)

    async def list(self, query: TaskQuery) -> list[TaskRecord]:
        sql, params = _sql.list_query(query, "postgres")
        async with self._conn() as conn:
            rows = await conn.fetch(sql, *params)
        return [_sql.record_from_row(r) for r in rows]

    async def read_events(self, task_id: str, *, after: int = 0, limit: int = 1000) -> list[Event]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT seq, at_ms, kind, data FROM events WHERE task_id = $1 AND seq > $2"
                " ORDER BY seq LIMIT $3",
                task_id,
                after,
                limit,
            )
        return [event_from_row(task_id, *row) for row in rows]

    async def heads(self, task_ids: Collection[str]) -> dict[str, tuple[TaskState, int]]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT id, state, last_seq FROM tasks WHERE id = ANY($1::text[])", list(task_ids)
            )
        return {r[0]: (TaskState(r[1]), r[2]) for r in rows}

    async def wait_for_change(self, max_wait: float) -> None:
        if self._listener is None or self._listener.is_closed():
            await self._listen()
        if not self._changed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max_wait):
                    await self._changed.wait()
        self._changed.clear()

    async def _listen(self) -> None:
        asyncpg = _driver()
        with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
            conn = await asyncpg.connect(self._dsn, timeout=10)
            # held before the next await, so that `close` finds it even if we are cancelled
            self._listener = conn
            await conn.add_listener(self._channel, self._on_notify)
        # without a listener the caller's timeout makes this a poll

    def _on_notify(self, *_: object) -> None:
        self._changed.set()

    async def overdue(self, now_ms: int, *, limit: int = 500) -> list[str]:
        async with self._conn() as conn:
            rows = await conn.fetch(_sql.render(_sql.OVERDUE, "postgres"), now_ms, limit)
        return [r[0] for r in rows]

    async def purge(self, now_ms: int, *, limit: int = 500) -> int:
        async with self._conn() as conn:
            rows = await conn.fetch(_PURGE, now_ms, limit)
        return len(rows)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail
                await self._listener.close(timeout=5)
        await self._pool.close()


_GET = f"SELECT {_sql.TASK_COLUMNS} FROM tasks WHERE id = $1"
_INSERT_TASK = _sql.render(f"{_sql.INSERT_TASK} RETURNING id", "postgres")
_INSERT_EVENTS = (
    "INSERT INTO events (task_id, seq, at_ms, kind, data)"
    " SELECT $1, s, a, k, d FROM unnest($2::int[], $3::bigint[], $4::text[], $5::json[])"
    " AS t(s, a, k, d)"
)
_PURGE = (
    "WITH d AS (SELECT id FROM tasks WHERE purge_ms IS NOT NULL AND purge_ms <= $1"
    " ORDER BY purge_ms LIMIT $2 FOR UPDATE SKIP LOCKED),"
    " e AS (DELETE FROM events WHERE task_id IN (SELECT id FROM d))"
    " DELETE FROM tasks WHERE id IN (SELECT id FROM d) RETURNING id"
)


def _parse(url: str) -> tuple[str, str, str]:
    """Split off `?schema=`; return the driver's DSN, the schema and a password-free URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), "taskloom")
    if not _SCHEMA_RE.fullmatch(schema):
        raise UserError(
            f"schema {schema!r} is not a plain identifier (letters, digits, _; at most 48)"
        )
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    dsn = urlunsplit(parts._replace(scheme="postgresql", query=rest))
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@")
    shown = urlunsplit(parts._replace(netloc=netloc))
    return dsn, schema, shown


async def _migrate(conn: asyncpg.Connection, schema: str, shown: str) -> None:
    known = _sql.migrations("postgres")
    # one migrator at a time across every process sharing the database
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"taskloom:{schema}")
    try:
        tables = {
            r[0]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
            )
        }
        foreign = tables - _OUR_TABLES
        if foreign and "taskloom_schema" not in tables:
            raise StoreFormatError(
                f"schema {schema!r} of {shown} holds tables of something else"
                f" ({', '.join(sorted(foreign)[:5])}); give taskloom its own with ?schema="
            )
        async with conn.transaction():
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".taskloom_schema (version INTEGER NOT NULL)'
            )
            current = await conn.fetchval(f'SELECT max(version) FROM "{schema}".taskloom_schema')
            current = current or 0
            if current > len(known):
                raise MigrationError(
                    f"{shown} has taskloom schema version {current}, newer than this taskloom"
                    f" knows ({len(known)}); upgrade taskloom (pip install -U taskloom)"
                )
            for version, sql in known[current:]:
                await conn.execute(sql)
                await conn.execute(
                    f'INSERT INTO "{schema}".taskloom_schema (version) VALUES ($1)', version
                )
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"taskloom:{schema}")


@contextlib.asynccontextmanager
async def _errors(url: str) -> AsyncGenerator[None]:
    """Translate driver and network errors into `StoreError`s."""
    asyncpg = _driver()
    try:
        yield
    except StoreError:
        raise
    except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
        raise StoreUnavailableError(
            f"cannot reach PostgreSQL at {url}: {exc}; check that the server is running and"
            " the URL (host, port, user, database) is right"
        ) from exc
    except (
        asyncpg.InvalidCatalogNameError,
        asyncpg.InvalidAuthorizationSpecificationError,
        asyncpg.InvalidPasswordError,
    ) as exc:
        raise StoreUnavailableError(f"PostgreSQL refused {url}: {exc}") from exc
    except asyncpg.PostgresError as exc:
        raise StoreError(f"PostgreSQL failed: {exc}") from exc
