from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import taskloom


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[taskloom.Store]:
    """An open store of each kind (memory, SQLite, PostgreSQL), closed afterwards."""
    opened = await taskloom.open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()
