"""`taskloom worker APP`: claim and perform submitted tasks until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Annotated, Any

import typer

from ._common import StoreOption, default_store, load_target, run_async

__all__ = ("register",)

_log = logging.getLogger("taskloom.worker")


def register(app: typer.Typer) -> None:
    """Add the command to `app`."""
    app.command(
        epilog="Examples: taskloom worker myapp.tasks --store sqlite:///tasks.db;"
        " taskloom worker myapp.tasks:agents --store postgresql://app@db/app --concurrency 32"
    )(worker)


def worker(
    app_path: Annotated[
        str,
        typer.Argument(
            metavar="APP",
            help="The module that defines your agents and tasks: package.module or"
            " package.module:attribute.",
        ),
    ],
    store: StoreOption = None,
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
    """Claim and perform submitted tasks until SIGTERM or Ctrl-C, then drain and release.

    Prints `worker ID ready` once it claims, and a status line (running, done) as it works.
    """
    logging.basicConfig(
        level=os.environ.get("TASKLOOM_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    target = load_target(app_path, need_attribute=False)
    run_async(_work)(
        target, store or default_store(), concurrency, lease, grace, max_recovery_attempts
    )


async def _work(
    target: Any, store: str, concurrency: int, lease: float, grace: float, recoveries: int
) -> None:
    import taskloom

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    rt = await taskloom.open(
        store, concurrency=concurrency, lease_seconds=lease, max_recovery_attempts=recoveries
    )
    try:
        rt.register(target)
        work = rt.worker
        assert work is not None
        names = ", ".join(sorted(rt.registry.names())) or "nothing"
        typer.echo(f"worker {work.id} ready")
        sys.stdout.flush()
        _log.info("worker %s performs %s from %s", work.id, names, rt.store.url)
        status = loop.create_task(_status(work, concurrency))
        await stop.wait()
        status.cancel()
        _log.info(
            "stopping: %d running get %.1fs to finish, then are released", work.running, grace
        )
    finally:
        await rt.close(grace=grace)
    _log.info("stopped")


async def _status(work: Any, concurrency: int) -> None:
    """A status line: on a terminal, rewritten every second; in a log, every 30 s."""
    tty = sys.stderr.isatty()
    last = ""
    while True:
        await asyncio.sleep(1.0 if tty else 30.0)
        line = (
            f"running {work.running}/{concurrency} · claimed {work.claimed}"
            f" · finished {work.finished}"
        )
        if tty:
            sys.stderr.write(f"\r{line}   ")
            sys.stderr.flush()
        elif line != last:
            _log.info("%s", line)
        last = line
