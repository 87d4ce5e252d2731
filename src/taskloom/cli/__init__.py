"""The `taskloom` command. It uses only taskloom's public API.

```
taskloom worker APP --store URL [--concurrency N] [--lease SECONDS] [--grace SECONDS]
```
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
from types import ModuleType
from typing import Annotated, Any

import typer

import taskloom

__all__ = ("app", "main")

DEFAULT_STORE = "sqlite:///taskloom.db"

app = typer.Typer(
    name="taskloom",
    help="Run, watch and operate tasks performed by AI agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Run, watch and operate tasks performed by AI agents."""


def _store_option() -> Any:
    return typer.Option(
        "--store",
        envvar="TASKLOOM_STORE",
        help="The store's URL (sqlite:///path.db, postgresql://user@host/db).",
    )


@app.command(
    epilog=(
        "Examples: taskloom worker myapp.tasks --store sqlite:///tasks.db;"
        " taskloom worker myapp.tasks:agents --store postgresql://app@db/app --concurrency 32"
    )
)
def worker(
    app_path: Annotated[
        str,
        typer.Argument(
            metavar="APP",
            help="The module that defines your agents and tasks: package.module or"
            " package.module:attribute.",
        ),
    ],
    store: Annotated[str, _store_option()] = DEFAULT_STORE,
    concurrency: Annotated[
        int, typer.Option(min=1, help="How many tasks this worker performs at once.")
    ] = 16,
    lease: Annotated[
        float,
        typer.Option(
            min=0.1, help="Seconds a claim holds without a heartbeat before others take over."
        ),
    ] = 30.0,
    grace: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="On SIGTERM or Ctrl-C, seconds running tasks get to finish before their"
            " leases are released to other workers.",
        ),
    ] = 30.0,
    max_recovery_attempts: Annotated[
        int, typer.Option(min=0, help="Takeovers a task survives before it fails.")
    ] = 3,
) -> None:
    """Claim and perform submitted tasks until SIGTERM or Ctrl-C, then drain and release."""
    logging.basicConfig(
        level=os.environ.get("TASKLOOM_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    target = _load(app_path)
    try:
        asyncio.run(
            _work(
                target,
                store=store,
                concurrency=concurrency,
                lease=lease,
                grace=grace,
                max_recovery_attempts=max_recovery_attempts,
            )
        )
    except taskloom.UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except taskloom.StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None


async def _work(
    target: Any,
    *,
    store: str,
    concurrency: int,
    lease: float,
    grace: float,
    max_recovery_attempts: int,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    rt = await taskloom.open(
        store,
        concurrency=concurrency,
        lease_seconds=lease,
        max_recovery_attempts=max_recovery_attempts,
    )
    try:
        rt.register(target)
        worker = rt.worker
        assert worker is not None
        names = ", ".join(sorted(rt.registry.names())) or "nothing"
        typer.echo(f"worker {worker.id} ready", color=False)
        sys.stdout.flush()
        logging.getLogger("taskloom.worker").info(
            "worker %s performs %s from %s", worker.id, names, rt.store.url
        )
        await stop.wait()
        logging.getLogger("taskloom.worker").info(
            "stopping: %d running, %.1fs to finish", worker.running, grace
        )
    finally:
        await rt.close(grace=grace)


def _load(path: str) -> ModuleType | Any:
    """Import `package.module` or `package.module:attribute`, with a clear error."""
    module_name, _, attribute = path.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current folder's modules
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        typer.echo(
            f"error: cannot import the app {module_name!r}: {exc}. Give an importable module"
            " (run from the folder that holds it, or set PYTHONPATH).",
            err=True,
        )
        raise typer.Exit(2) from None
    if not attribute:
        return module
    try:
        return getattr(module, attribute)
    except AttributeError:
        typer.echo(f"error: the app module {module_name!r} has no {attribute!r}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    """The console script's entry point."""
    app()
