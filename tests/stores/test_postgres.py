from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

import taskloom
from taskloom.stores import postgres
from taskloom.stores._sql import migrations
from tests.conftest import POSTGRES_URL, drop_schema, require_postgres

pytestmark = pytest.mark.postgres


async def test_unreachable_server_is_a_clear_error_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(taskloom.StoreUnavailableError, match="server is running"):
        await taskloom.open("postgresql://postgres@127.0.0.1:1/test")
    assert time.perf_counter() - started < 5


async def test_missing_database_is_a_clear_error() -> None:
    require_postgres()
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(taskloom.StoreUnavailableError, match="does not exist"):
        await taskloom.open(url)


def test_password_is_not_shown() -> None:
    shown = postgres._parse("postgresql://u:secret@h:5/db?schema=x")[2]  # pyright: ignore[reportPrivateUsage]
    assert "secret" not in shown
    assert shown == "postgresql://u:***@h:5/db?schema=x"


async def test_bad_schema_name_is_refused() -> None:
    with pytest.raises(taskloom.UserError, match="identifier"):
        await taskloom.open(f"{POSTGRES_URL}?schema=bad;name")


async def test_newer_schema_refuses_to_start(postgres_url: str) -> None:
    schema = postgres_url.rsplit("schema=", 1)[1]
    async with taskloom.open(postgres_url):
        pass
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'INSERT INTO "{schema}".taskloom_schema (version) VALUES (999)')
        before = await conn.fetchval(f'SELECT count(*) FROM "{schema}".taskloom_schema')
    finally:
        await conn.close()
    with pytest.raises(taskloom.MigrationError, match="upgrade taskloom"):
        await taskloom.open(postgres_url)
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        after = await conn.fetchval(f'SELECT count(*) FROM "{schema}".taskloom_schema')
    finally:
        await conn.close()
    assert after == before


async def test_foreign_schema_is_refused_and_left_alone() -> None:
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'CREATE TABLE "{schema}".invoices (id int)')
        with pytest.raises(taskloom.StoreFormatError, match="something else"):
            await taskloom.open(f"{POSTGRES_URL}?schema={schema}")
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        assert [r[0] for r in tables] == ["invoices"]
    finally:
        await conn.close()
        await drop_schema(schema)


async def test_concurrent_opens_migrate_once(postgres_url: str) -> None:
    runtimes = await asyncio.gather(*(taskloom.open(postgres_url) for _ in range(4)))
    for rt in runtimes:
        await rt.close()
    schema = postgres_url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        versions = await conn.fetch(f'SELECT version FROM "{schema}".taskloom_schema')
    finally:
        await conn.close()
    assert [r[0] for r in versions] == list(range(1, len(migrations("postgres")) + 1))


async def test_notify_wakes_a_follower_in_another_runtime(postgres_url: str) -> None:
    # a long poll interval: only LISTEN/NOTIFY can make the follower this quick
    async with (
        taskloom.open(postgres_url, poll_interval=5.0) as follower,
        taskloom.open(postgres_url) as runner,
    ):
        task = await runner.create("notify")
        seen: list[tuple[int, float]] = []

        async def follow() -> None:
            async for event in follower.events(task.id):
                seen.append((event.seq, time.perf_counter()))

        following = asyncio.create_task(follow())
        await asyncio.sleep(0.3)
        async with task:
            sent = time.perf_counter()
            await task.progress({"n": 1})
        await asyncio.wait_for(following, 10)
        assert [s for s, _ in seen] == [1, 2, 3, 4]
        progressed_at = seen[2][1]
        assert progressed_at - sent < 2.0


async def test_a_schema_of_version_2_migrates_forward(postgres_url: str) -> None:
    schema = postgres_url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute("CREATE TABLE taskloom_schema (version INTEGER NOT NULL)")
        for version, sql in migrations("postgres")[:2]:
            await conn.execute(sql)
            await conn.execute("INSERT INTO taskloom_schema (version) VALUES ($1)", version)
        await conn.execute(
            "INSERT INTO tasks (id, name, state, payload, created_ms, updated_ms, retention_ms,"
            " last_seq) VALUES ('old', 'job', 'submitted', '1', 5, 5, 0, 1)"
        )
    finally:
        await conn.close()
    store = await taskloom.open_store(postgres_url)
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
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        versions = await conn.fetch(f'SELECT version FROM "{schema}".taskloom_schema')
        numbered = await conn.fetchval(f'SELECT n FROM "{schema}".tasks')
    finally:
        await conn.close()
    assert [r[0] for r in versions] == [1, 2, 3]
    assert numbered == 1  # the existing row got a submission number


async def test_a_server_out_of_connections_is_waited_for(postgres_url: str) -> None:
    # a role allowed two connections stands for a server at its `max_connections`
    role = f"r_{uuid.uuid4().hex[:12]}"
    schema = postgres_url.rsplit("schema=", 1)[1]
    database = POSTGRES_URL.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 2')
        await admin.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{role}"')
        limited = postgres_url.replace("://postgres@", f"://{role}@", 1)
        assert limited != postgres_url
        store = await taskloom.open_store(limited)
        try:
            found = await asyncio.gather(*(store.get(f"t{i}") for i in range(12)))
            assert found == [None] * 12
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.execute(f'REVOKE CREATE ON DATABASE "{database}" FROM "{role}"')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
