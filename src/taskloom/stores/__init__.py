"""Stores: where tasks and events live. `open_store(url)` picks one by the URL's scheme."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import UserError
from ._base import Store as Store
from .memory import MemoryStore as MemoryStore

__all__ = ("MemoryStore", "Store", "open_store")

# scheme -> (module, class); imported only when used, so the PostgreSQL driver stays optional
_SCHEMES: dict[str, tuple[str, str]] = {
    "memory": ("taskloom.stores.memory", "MemoryStore"),
    "sqlite": ("taskloom.stores.sqlite", "SQLiteStore"),
    "postgresql": ("taskloom.stores.postgres", "PostgresStore"),
    "postgres": ("taskloom.stores.postgres", "PostgresStore"),
}


async def open_store(url: str, **options: Any) -> Store:
    """Open the store that `url` names.

    Raises:
        UserError: the URL has no known scheme.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise UserError(
            f"cannot open a store at {url!r}: use sqlite:///path/to/file.db, memory:// or"
            " postgresql://user@host:5432/database"
        )
    module_name, class_name = _SCHEMES[scheme]
    cls = getattr(importlib.import_module(module_name), class_name)
    if cls is MemoryStore:
        if options:
            raise UserError(f"memory:// takes no options, got {', '.join(sorted(options))}")
        return MemoryStore()
    return await cls.connect(url, **options)
