"""The store of each CLI test: an SQLite file in its folder."""

from __future__ import annotations

import pytest


@pytest.fixture
def url(sqlite_url: str) -> str:
    """The test's store (`sqlite:///<tmp_path>/tasks.db`)."""
    return sqlite_url
