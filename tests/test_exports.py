"""The public API surface: `taskloom.__all__` is sorted, complete and importable."""

from __future__ import annotations

import ast
import importlib
import inspect
import types
from typing import cast

import pytest

import taskloom

PUBLIC_MODULES = [
    "taskloom",
    "taskloom.errors",
    "taskloom.events",
    "taskloom.runtime",
    "taskloom.spec",
    "taskloom.states",
    "taskloom.stores",
    "taskloom.task",
]


def test_all_is_sorted() -> None:
    assert list(taskloom.__all__) == sorted(taskloom.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(set(taskloom.__all__)) == len(taskloom.__all__)


def test_every_name_in_all_exists() -> None:
    missing = [name for name in taskloom.__all__ if not hasattr(taskloom, name)]
    assert missing == []


def test_every_public_name_of_the_package_is_in_all() -> None:
    public = {
        name
        for name, value in vars(taskloom).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(public - set(taskloom.__all__)) == []


def test_every_name_bound_in_init_is_in_all() -> None:
    tree = ast.parse(inspect.getsource(taskloom))
    bound: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            bound.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Assign):
            bound.update(t.id for t in node.targets if isinstance(t, ast.Name))
    public = {name for name in bound if not name.startswith("_")}
    assert public == set(taskloom.__all__)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_modules_have_a_sorted_tuple_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names: object = getattr(module, "__all__", None)
    assert isinstance(names, tuple)
    listed = [str(n) for n in cast("tuple[object, ...]", names)]
    assert listed == sorted(listed)
    assert [n for n in listed if not hasattr(module, n)] == []
