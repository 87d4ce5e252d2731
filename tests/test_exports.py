"""The public API surface: `taskloom.__all__` is sorted, complete and importable."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
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


def _top_level_statements() -> list[ast.stmt]:
    """The statements of `taskloom/__init__.py`, with those under `if typing.TYPE_CHECKING:`.

    (The package imports its names on first use; those imports tell type checkers what they are.)
    """
    statements: list[ast.stmt] = []
    for node in ast.parse(inspect.getsource(taskloom)).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            statements.extend(node.body)
        else:
            statements.append(node)
    return statements


def test_every_name_bound_in_init_is_in_all() -> None:
    bound: set[str] = set()
    for node in _top_level_statements():
        if isinstance(node, ast.ImportFrom):
            bound.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Assign):
            bound.update(t.id for t in node.targets if isinstance(t, ast.Name))
    public = {name for name in bound if not name.startswith("_")}
    assert public == set(taskloom.__all__)


def test_each_name_is_the_object_its_import_names() -> None:
    imports = [node for node in _top_level_statements() if isinstance(node, ast.ImportFrom)]
    wrong = [
        alias.name
        for node in imports
        for alias in node.names
        if getattr(taskloom, alias.asname or alias.name)
        is not getattr(importlib.import_module(f"taskloom.{node.module}"), alias.name)
    ]
    assert wrong == []


def test_dir_lists_every_name() -> None:
    assert set(taskloom.__all__) <= set(dir(taskloom))


def test_import_taskloom_and_the_cli_load_no_pydantic_and_no_agent() -> None:
    """What keeps `taskloom --help` fast: the names load when used (benchmarks/bench_cli.py)."""
    code = (
        "import sys, taskloom, taskloom.cli;"
        " print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'taskloom.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(ast.literal_eval(out))
    assert {m for m in loaded if m.startswith("pydantic")} == set()
    assert {m for m in loaded if m.startswith(("taskloom.agent", "taskloom.runtime"))} == set()


def test_an_agent_run_without_a_runtime_finds_the_default_one() -> None:
    """`from taskloom import Agent` loads the runtime too, which registers the default host."""
    code = (
        "import asyncio; from taskloom import Agent;"
        " from taskloom.models.scripted import ScriptedModel, reply;"
        " print(asyncio.run(Agent(ScriptedModel([reply('hi')])).run('x')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "hi"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_modules_have_a_sorted_tuple_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names: object = getattr(module, "__all__", None)
    assert isinstance(names, tuple)
    listed = [str(n) for n in cast("tuple[object, ...]", names)]
    assert listed == sorted(listed)
    assert [n for n in listed if not hasattr(module, n)] == []
