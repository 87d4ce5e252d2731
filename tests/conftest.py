"""Fixtures shared by every test: store URLs for memory, SQLite and PostgreSQL.

PostgreSQL tests use `TASKLOOM_TEST_POSTGRES_URL` (default: the server on this machine,
`postgresql://postgres@127.0.0.1:5432/test`), each in a schema of its own that is dropped
afterwards. When no server answers they skip locally and fail in CI (`CI=true`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import taskloom

POSTGRES_URL = os.environ.get(
    "TASKLOOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
_pg_checked: bool | None = None


def _postgres_answers() -> bool:
    global _pg_checked
    if _pg_checked is None:
        try:
            import asyncpg  # imported here: only when PostgreSQL tests run
        except ImportError:
            _pg_checked = False
            return False

        async def probe() -> bool:
            try:
                conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                return False
            await conn.close()
            return True

        # a thread of its own: callers may be inside a running event loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            _pg_checked = pool.submit(asyncio.run, probe()).result()
    return _pg_checked


def require_postgres() -> None:
    """Skip (locally) or fail (in CI) when the PostgreSQL server does not answer."""
    if not _postgres_answers():
        message = f"PostgreSQL does not answer at {POSTGRES_URL} (set TASKLOOM_TEST_POSTGRES_URL)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


async def drop_schema(schema: str) -> None:
    import asyncpg  # imported here: only when PostgreSQL tests run

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL store URL on a fresh schema, dropped after the test."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}schema={schema}"
    asyncio.run(drop_schema(schema))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tasks.db'}"


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty store of each kind."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tasks.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
async def rt(store_url: str) -> AsyncIterator[taskloom.Runtime]:
    """An open runtime on each kind of store, with quick polling for tests."""
    async with taskloom.open(store_url, poll_interval=0.02) as runtime:
        yield runtime
