"""`PostgresStore`: many processes on many machines sharing one PostgreSQL (the `[postgres]` extra).

Tables live in their own schema (`taskloom` unless the URL says `?schema=`). Every change is
one statement: the conditional `UPDATE`, the event `INSERT` and a `pg_notify` in one CTE, so
it is atomic without a round trip for `BEGIN`/`COMMIT`. Other processes learn of changes
through LISTEN on the schema's channel; `wait_for_change` falls back to polling when
notifications do not arrive (as behind a transaction-pooling PgBouncer).

A claim is one statement too: it locks its candidates with `FOR UPDATE SKIP LOCKED`, so
that many workers claim at once without waiting on each other or taking a task twice, and
it reads the time from the server's clock, so that workers whose clocks differ agree on
when a lease ended. A change that carries an epoch is fenced in its `UPDATE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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

if TYPE_CHECKING:
    import asyncpg

__all__ = ("PostgresStore",)

_SCHEMA_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")
_ACQUIRE_BACKOFF = tuple(0.02 * 2**i for i in range(8))
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

    notifies = True  # every write sends a NOTIFY that `wait_for_change` listens for

    def __init__(self, dsn: str, schema: str, pool: asyncpg.Pool, url: str) -> None:
        self.url = url
        self.schema = schema
        self._dsn = dsn
        self._pool = pool
        self._channel = f"taskloom_{schema}"
        self._listener: asyncpg.Connection | None = None
        self._changed = asyncio.Event()
        self._closed = False
        self._apply_sql: dict[tuple[tuple[str, ...], bool], str] = {}

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
        async with _errors(self.url):
            conn = await self._acquire()
            try:
                yield conn
            finally:
                await self._pool.release(conn)

    async def _acquire(self) -> asyncpg.pool.PoolConnectionProxy[asyncpg.Record]:
        """A connection of the pool, waiting (about 5 s at most) while the server has none free.

        The pool opens connections as it needs them; when the server has reached its
        `max_connections`, one of this pool's own connections is soon free again.
        """
        for delay in _ACQUIRE_BACKOFF:
            try:
                return await self._pool.acquire()
            except (_driver().TooManyConnectionsError, _driver().CannotConnectNowError):
                await asyncio.sleep(delay)  # (the tuple is built only when something is raised)
        return await self._pool.acquire()

    async def create(
        self, record: TaskRecord, events: Sequence[NewEvent]
    ) -> tuple[TaskRecord, bool]:
        params = list(_sql.record_params(record))
        params[18] = len(events)
        async with self._conn() as conn, conn.transaction():
            inserted = await conn.fetchval(_INSERT_TASK, *params)
            if inserted is None:  # the id or the key is taken (by a committed task: the
                # insert waits for a transaction that holds either)
                row = await conn.fetchrow(_EXISTING_TASK, record.id, record.idempotency_key)
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
        fenced = change.epoch is not None
        key = (change.from_states, fenced)
        sql = self._apply_sql.get(key)
        if sql is None:
            update = _sql.update_task(change.from_states, "postgres", 13 if fenced else None)
            sql = self._apply_sql[key] = (
                f"WITH u AS ({update}), e AS (INSERT INTO events (task_id, seq, at_ms, kind, data)"
                " SELECT $8, last_seq, $6, $10, $11::json FROM u RETURNING seq)"
                " SELECT seq, pg_notify($12, $8) FROM e"
            )
        ev = change.event
        state = None if change.to_state is None else change.to_state.value
        args = [
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
        ]
        if fenced:
            args.append(change.epoch)
        async with self._conn() as conn:
            row = await conn.fetchrow(sql, *args)
        return None if row is None else row[0]

    async def claim(
        self, worker: str, names: Collection[str], *, limit: int, lease_seconds: float
    ) -> list[TaskRecord]:
        if not names or limit <= 0:
            return []
        async with self._conn() as conn:
            rows = await conn.fetch(
                _CLAIM,
                list(names),
                limit,
                worker,
                round(lease_seconds * 1000),
                f'{{"worker":{dumps(worker)}}}',
                self._channel,
            )
        return [_sql.record_from_row(r) for r in rows]

    async def heartbeat(
        self, worker: str, leases: Mapping[str, int], *, lease_seconds: float
    ) -> set[str]:
        if not leases:
            return set()
        async with self._conn() as conn:
            rows = await conn.fetch(
                _HEARTBEAT,
                list(leases),
                list(leases.values()),
                worker,
                round(lease_seconds * 1000),
            )
        return {r[0] for r in rows}

    async def release(self, task_id: str, epoch: int) -> bool:
        async with self._conn() as conn:
            row = await conn.fetchrow(_RELEASE, task_id, epoch, self._channel)
        return row is not None

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
_EXISTING_TASK = _sql.render(_sql.EXISTING_TASK, "postgres")
_T_COLUMNS = ", ".join(f"t.{c.strip()}" for c in _sql.TASK_COLUMNS.split(","))
_LEASED = "state IN ('working', 'input_required')"

# One statement, so one round trip: lock the leases to take over (ended or released, oldest
# first) and then the due tasks (serial keys one at a time), skipping rows another claim
# holds, update them, append their events and notify. `clock` is read once: the server's
# time, so that workers whose clocks differ agree. `$1` names, `$2` limit, `$3` worker,
# `$4` lease length in ms, `$5` the `started` event's data, `$6` the channel.
_CLAIM = f"""WITH clock AS MATERIALIZED (
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms
), taken AS (
    SELECT t.id, t.lease_owner IS NULL AS released, t.lease_ms AS ended FROM tasks AS t, clock
    WHERE t.{_LEASED} AND t.job IS NOT NULL AND (t.lease_owner IS NULL OR t.lease_ms < clock.ms)
        AND t.name = ANY($1::text[])
    ORDER BY t.lease_ms NULLS FIRST, t.n LIMIT $2
    FOR UPDATE OF t SKIP LOCKED
), due AS (
    SELECT t.id FROM tasks AS t, clock
    WHERE t.state = 'submitted' AND t.job IS NOT NULL
        AND (t.fire_ms IS NULL OR t.fire_ms <= clock.ms) AND t.name = ANY($1::text[])
        AND (t.serial_key IS NULL OR (
            NOT EXISTS (SELECT 1 FROM tasks AS a WHERE a.serial_key = t.serial_key
                AND a.{_LEASED} AND a.job IS NOT NULL)
            AND NOT EXISTS (SELECT 1 FROM tasks AS b WHERE b.serial_key = t.serial_key
                AND b.state = 'submitted' AND b.job IS NOT NULL
                AND (b.fire_ms IS NULL OR b.fire_ms <= clock.ms)
                AND (b.priority > t.priority OR b.priority = t.priority
                    AND (coalesce(b.fire_ms, b.created_ms), b.n)
                    < (coalesce(t.fire_ms, t.created_ms), t.n)))))
    ORDER BY t.priority DESC, coalesce(t.fire_ms, t.created_ms), t.n
    LIMIT greatest($2 - (SELECT count(*) FROM taken), 0)
    FOR UPDATE OF t SKIP LOCKED
), took AS (
    UPDATE tasks AS t SET epoch = t.epoch + 1,
        recoveries = t.recoveries + CASE WHEN k.released THEN 0 ELSE 1 END,
        lease_owner = $3, lease_ms = clock.ms + $4, updated_ms = clock.ms,
        last_seq = t.last_seq + 1
    FROM taken AS k, clock WHERE t.id = k.id
    RETURNING {_T_COLUMNS}, k.released, 0 AS grp, 0::bigint AS k1,
        coalesce(k.ended, -1) AS k2, t.n
), started AS (
    UPDATE tasks AS t SET state = 'working', started_ms = coalesce(t.started_ms, clock.ms),
        epoch = t.epoch + 1, lease_owner = $3, lease_ms = clock.ms + $4, updated_ms = clock.ms,
        last_seq = t.last_seq + 1
    FROM due AS d, clock WHERE t.id = d.id
    RETURNING {_T_COLUMNS}, false AS released, 1 AS grp, -t.priority::bigint AS k1,
        coalesce(t.fire_ms, t.created_ms) AS k2, t.n
), e AS (
    INSERT INTO events (task_id, seq, at_ms, kind, data)
    SELECT id, last_seq, updated_ms, 'recovered', format(
        '{{"worker":%s,"epoch":%s,"recoveries":%s,"released":%s}}',
        to_json($3::text), epoch, recoveries, to_json(released))::json FROM took
    UNION ALL SELECT id, last_seq, updated_ms, 'started', $5::json FROM started
)
SELECT c.*, pg_notify($6, c.id) FROM (
    SELECT * FROM took UNION ALL SELECT * FROM started
) AS c ORDER BY c.grp, c.k1, c.k2, c.n"""

_HEARTBEAT = f"""WITH clock AS MATERIALIZED (
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms
)
UPDATE tasks AS t SET lease_ms = clock.ms + $4
FROM clock, unnest($1::text[], $2::int[]) AS l(id, epoch)
WHERE t.id = l.id AND t.epoch = l.epoch AND t.lease_owner = $3 AND t.{_LEASED}
RETURNING t.id"""

_RELEASE = (
    "UPDATE tasks SET lease_owner = NULL, lease_ms = NULL"
    f" WHERE id = $1 AND epoch = $2 AND {_LEASED} RETURNING pg_notify($3, id)"
)
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
    except (asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError) as exc:
        raise StoreUnavailableError(
            f"PostgreSQL at {url} accepts no more connections ({exc}); retry, raise the"
            " server's max_connections or put a pooler (PgBouncer) in front of it"
        ) from exc
    except asyncpg.PostgresError as exc:
        raise StoreError(f"PostgreSQL failed: {exc}") from exc
