"""What every command shares: options, exit codes, errors, app loading and task inputs.

The CLI uses only taskloom's public API, and imports it inside the commands, so that
`taskloom --help` does not pay for importing pydantic and the models.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable, Coroutine
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast

import typer

if TYPE_CHECKING:
    import taskloom

__all__ = (
    "INTERRUPTED",
    "Exit",
    "JsonOption",
    "StoreOption",
    "default_store",
    "die",
    "emit_json",
    "existing_store",
    "exit_code_of",
    "load_target",
    "missing_store",
    "parse_inputs",
    "run_async",
)

T = TypeVar("T")


class Exit(IntEnum):
    """The exit codes of every command."""

    COMPLETED = 0
    """Done: the command did what was asked; for `run` and `watch`, the task completed."""
    FAILED = 1
    """The task ended `failed`."""
    USAGE = 2
    """Bad input: an unknown task id, a malformed argument, an app that cannot be imported."""
    CANCELLED = 3
    """The task ended `cancelled` (for `run`, also after Ctrl-C)."""
    EXPIRED = 4
    """The task ended `expired`."""
    REJECTED = 5
    """The task ended `rejected`."""
    STORE = 6
    """The store could not be reached or read."""
    WAITING = 7
    """`watch --until-input`: the task waits for an answer (`input_required`)."""


_BY_STATE = {
    "completed": Exit.COMPLETED,
    "failed": Exit.FAILED,
    "cancelled": Exit.CANCELLED,
    "expired": Exit.EXPIRED,
    "rejected": Exit.REJECTED,
    "input_required": Exit.WAITING,
}


def exit_code_of(state: str) -> int:
    """The exit code that says how a task ended (0 for states that have not ended)."""
    return int(_BY_STATE.get(state, Exit.COMPLETED))


def default_store() -> str:
    """The embedded SQLite file: `$TASKLOOM_STORE`, else `$XDG_DATA_HOME/taskloom/taskloom.db`.

    (`~/.local/share/taskloom/taskloom.db` when `XDG_DATA_HOME` is not set.)
    """
    configured = os.environ.get("TASKLOOM_STORE")
    if configured:
        return configured
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    folder = base / "taskloom"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'taskloom.db'}"


StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        "-s",
        help="The store's URL: sqlite:///path.db, postgresql://user@host/db, memory://."
        " Default: $TASKLOOM_STORE, else ~/.local/share/taskloom/taskloom.db.",
        show_default=False,
    ),
]

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")
]


def die(message: str, code: int = Exit.USAGE) -> NoReturn:
    """Print `error: message` on stderr and exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(int(code))


def emit_json(value: Any) -> None:
    """Print one JSON document on stdout."""
    typer.echo(json.dumps(value, ensure_ascii=False, default=str))


def run_async(work: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command body, turning taskloom's errors into messages and exit codes."""

    @functools.wraps(work)
    def command(*args: Any, **kwargs: Any) -> T:
        import asyncio  # here, not at the top: `taskloom --help` does not need it

        import taskloom

        try:
            return asyncio.run(work(*args, **kwargs))
        except KeyboardInterrupt:
            die("interrupted", INTERRUPTED)
        except taskloom.NotFoundError as exc:
            die(str(exc), Exit.USAGE)
        except taskloom.UserError as exc:
            die(str(exc), Exit.USAGE)
        except taskloom.StoreError as exc:
            die(str(exc), Exit.STORE)

    return command


INTERRUPTED = 130
"""The exit code after a second Ctrl-C (or one before there is a task to cancel): 128 + SIGINT."""


def missing_store(url: str) -> bool:
    """Whether `url` names an SQLite file that is not there (opening it would create it).

    Only a well-formed `sqlite:///path` without options counts; anything else is left to
    `taskloom.open`, whose error says what is wrong with the URL.
    """
    if not url.startswith("sqlite:///") or "?" in url:
        return False
    path = url[len("sqlite:///") :]
    return bool(path) and not Path(path).exists()


def existing_store(url: str) -> str:
    """`url`, for commands that read: an SQLite file that is not there is an error, not a new store.

    (Opening a store creates its file; `taskloom show ID --store sqlite:///typo.db` should not.)
    """
    if missing_store(url):
        die(
            f"there is no store at {url!r}: nothing was ever submitted there."
            " Check --store or $TASKLOOM_STORE",
            Exit.STORE,
        )
    return url


def load_target(path: str, *, need_attribute: bool) -> Any:
    """Import `package.module` or `package.module:attribute` (the current folder first)."""
    module_name, _, attribute = path.partition(":")
    if need_attribute and not attribute:
        die(f"give the task as APP:TASK, e.g. myapp.tasks:summarise, not {path!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current folder's modules
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        die(
            f"cannot import the app {module_name!r}: {exc}. Give an importable module"
            " (run from the folder that holds it, or set PYTHONPATH)."
        )
    if not attribute:
        return module
    try:
        found = getattr(module, attribute)
    except AttributeError:
        found = None
    if not _runnable(found) and not (not need_attribute and _all_runnable(found)):
        tasks = sorted(n for n, v in vars(module).items() if _runnable(v))
        known = f"; it defines {', '.join(tasks)}" if tasks else "; it defines no tasks or agents"
        if found is None:
            die(f"the app module {module_name!r} has no {attribute!r}{known}")
        die(
            f"{path!r} is {type(found).__name__} {found!r:.40}, not an @agent.task function"
            f" or an Agent{known}"
        )
    return found


def _all_runnable(value: Any) -> bool:
    """A list or tuple of agents and tasks (what `taskloom worker APP:attr` may name)."""
    if not isinstance(value, list | tuple):
        return False
    items = cast(list[Any] | tuple[Any, ...], value)
    return bool(items) and all(_runnable(v) for v in items)


def _runnable(value: Any) -> bool:
    import taskloom

    return isinstance(value, taskloom.Agent | taskloom.TaskFunction)


def parse_inputs(
    target: taskloom.TaskFunction[..., Any], pairs: list[str], input_file: Path | None
) -> dict[str, Any]:
    """Task inputs from `key=value` pairs and/or a JSON file (pairs win).

    A value for a parameter that is not a `str` is read as JSON when it parses and fits
    (`n=3`, `tags=["a","b"]`), else kept as text. Each input is checked against its type
    here, before any store is opened, so a mistake costs nothing and says what to give.
    """
    inputs: dict[str, Any] = {}
    if input_file is not None:
        inputs.update(_read_inputs(input_file))
    params = target.signature.parameters
    names = ", ".join(params) or "none"
    given: set[str] = set()
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            die(
                f"arguments are key=value pairs; got {pair!r} (the inputs of {target.name}: {names})"
            )
        if key not in params:
            die(f"{target.name} has no input {key!r}; its inputs are {names}")
        if key in given:
            die(f"the input {key!r} is given twice; give each input once")
        given.add(key)
        inputs[key] = _value(target.hints.get(key, Any), text)
    missing = [
        f"{n}=<{_type_name(target.hints.get(n, Any))}>"
        for n, p in params.items()
        if p.default is p.empty and n not in inputs
    ]
    if missing:
        die(
            f"{target.name} needs {' '.join(missing)}: give it as key=value or in --input FILE.json"
        )
    unknown = sorted(set(inputs) - set(params))
    if unknown:
        die(f"{target.name} has no input {unknown[0]!r}; its inputs are {names}")
    problems = [p for n, v in inputs.items() if (p := _problem(n, target.hints.get(n, Any), v))]
    if problems:
        die(f"invalid input for {target.name}: {'; '.join(problems)}")
    return inputs


def _problem(name: str, hint: Any, value: Any) -> str:
    """Why `value` does not fit the input (checked before the store is opened), or ``."""
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(hint).validate_python(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in (name, *error["loc"]))
        got = json.dumps(value, default=str)
        return f"{where}: {error['msg']} (got {got}; {name} takes {_type_name(hint)})"
    return ""


def _read_inputs(input_file: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(input_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        die(f"cannot read the inputs from {str(input_file)!r}: {exc}")
    if not isinstance(loaded, dict):
        die(f"{str(input_file)!r} must hold a JSON object of inputs, not {type(loaded).__name__}")
    return cast(dict[str, Any], loaded)


def _value(hint: Any, text: str) -> Any:
    """`text` as the input's value: JSON when it parses and fits the type, else the text."""
    if hint is str:
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(value, str):
        return value
    from pydantic import TypeAdapter, ValidationError

    adapter: TypeAdapter[Any] = TypeAdapter(hint)
    try:
        adapter.validate_python(value)
    except ValidationError:
        try:  # `name=42` for an `str | None` input means the text "42"
            adapter.validate_python(text)
        except ValidationError:
            return value  # neither fits: the task function's message says why
        return text
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
