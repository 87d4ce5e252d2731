"""The retry and naming helpers shared by the HTTP provider adapters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskloom.models._provider import retry_after, retryable_status, safe_name

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, timedelta(seconds=3)),
        ({"retry-after": "0.5"}, timedelta(seconds=0.5)),
        ({"retry-after-ms": "250"}, timedelta(milliseconds=250)),
        ({"retry-after-ms": "soon", "retry-after": "4"}, timedelta(seconds=4)),
        ({"retry-after": "Fri, 02 Jan 2026 03:04:35 GMT"}, timedelta(seconds=30)),
        ({"retry-after": "Fri, 02 Jan 2026 03:00:00 GMT"}, timedelta(0)),
        ({"retry-after": "-5"}, timedelta(0)),
        ({"retry-after": "whenever"}, None),
        ({"retry-after": "inf"}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: timedelta | None) -> None:
    assert retry_after(headers, now=NOW) == expected


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {}, True),
        (408, {}, True),
        (409, {}, True),
        (500, {}, True),
        (529, {}, True),
        (400, {}, False),
        (401, {}, False),
        (400, {"x-should-retry": "true"}, True),
        (503, {"x-should-retry": "false"}, False),
    ],
)
def test_retryable_status(status: int, headers: dict[str, str], expected: bool) -> None:
    assert retryable_status(status, headers) is expected


def test_safe_name() -> None:
    assert safe_name("Weather report (v2)") == "Weather_report__v2_"
    assert safe_name("") == "output"
    assert len(safe_name("x" * 100)) == 64
