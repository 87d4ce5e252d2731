"""`taskloom.open`: a runtime on the store a URL names, awaited or used with `async with`."""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any

from ..errors import UserError
from ..stores import open_store
from ._runtime import Runtime

__all__ = ("open",)


class _Opening:
    """What `open` returns: await it, or use it with `async with`."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._runtime: Runtime | None = None

    async def _open(self) -> Runtime:
        store_options = {k: self._options.pop(k) for k in ("synchronous",) if k in self._options}
        store = await open_store(self._url, **store_options)
        try:
            return await Runtime(store, **self._options).start()
        except BaseException:
            await store.close()
            raise

    def __await__(self) -> Generator[Any, None, Runtime]:
        return self._open().__await__()

    async def __aenter__(self) -> Runtime:
        self._runtime = await self._open()
        return self._runtime

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runtime is not None:
            await self._runtime.close()


def open(url: str = "sqlite:///taskloom.db", **options: Any) -> _Opening:
    """Open a runtime on the store at `url`.

    ```python
    rt = await taskloom.open("sqlite:///tasks.db")
    async with taskloom.open("postgresql://user@host/db") as rt: ...
    ```

    Args:
        url: `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, `memory://`, or
            `postgresql://user:password@host:port/database` (`?schema=` picks the schema,
            default `taskloom`). SQLite takes `?synchronous=normal` to trade the last
            moments of durability for speed.
        **options: `Runtime` options (`retention`, `max_payload_bytes`, `max_progress_bytes`,
            `poll_interval`, `sweep_interval`, and for its worker `concurrency`,
            `lease_seconds`, `max_recovery_attempts`, `claim_interval`, `worker_id`).

    Raises:
        UserError: an unknown scheme or option.
        StoreUnavailableError: the store cannot be reached or opened.
        StoreFormatError: the file or database is not a taskloom store.
        MigrationError: its schema is newer than this taskloom.
    """
    known = {
        "retention",
        "max_payload_bytes",
        "max_progress_bytes",
        "poll_interval",
        "sweep_interval",
        "synchronous",
        "concurrency",
        "lease_seconds",
        "max_recovery_attempts",
        "claim_interval",
        "worker_id",
    }
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return _Opening(url, dict(options))
