"""Following a task to its end in a terminal: the live view of `run`, `watch` and `demo`."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import typer

from ._common import Exit, emit_json, exit_code_of
from ._view import Follow, event_line, record_json

if TYPE_CHECKING:
    import taskloom

__all__ = ("follow_to_end", "print_outcome")


async def follow_to_end(
    rt: taskloom.Runtime,
    task: taskloom.Task[Any],
    *,
    after: int = 0,
    live: bool,
    quiet: bool = False,
    cancel_on_interrupt: bool,
    until_input: bool = False,
) -> taskloom.Task[Any]:
    """Show the task's events until it ends; return its final record.

    Ctrl-C cancels the task (`cancel_on_interrupt`) or just stops watching. A broken
    connection to the store is retried, resuming after the last event seen.
    """
    view = Follow(task)
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    printer = _Printer(view, live=live, quiet=quiet)
    follower = asyncio.create_task(_pump(rt, task.id, after, view, printer, until_input))
    try:
        with printer:
            waiter = asyncio.create_task(interrupted.wait())
            done, _ = await asyncio.wait({follower, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if follower not in done:
                if not cancel_on_interrupt:
                    follower.cancel()
                    printer.say(f"stopped watching at event {view.last_seq}; the task goes on")
                    return await rt.get(task.id)
                printer.say("Ctrl-C: cancelling the task...")
                await rt.cancel(task.id, reason="cancelled from the terminal (Ctrl-C)")
                await follower
            else:
                follower.result()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if not follower.done():
            follower.cancel()
    return await rt.get(task.id)


async def _pump(
    rt: taskloom.Runtime,
    task_id: str,
    after: int,
    view: Follow,
    printer: _Printer,
    until_input: bool,
) -> None:
    import taskloom

    failures = 0
    while True:
        try:
            async for event in rt.events(task_id, after=after):
                after = event.seq
                view.see(event)
                printer.event(event)
                failures = 0
                if until_input and event.kind == "input_required":
                    return
            return
        except taskloom.StoreUnavailableError as exc:
            failures += 1
            if failures > 30:
                raise
            printer.say(f"lost the store ({exc}); resuming after event {after}...")
            await asyncio.sleep(min(5.0, 0.2 * 2**failures))


class _Printer:
    """Event lines, under a live status panel in a terminal, or plain lines elsewhere."""

    def __init__(self, view: Follow, *, live: bool, quiet: bool) -> None:
        self.view = view
        self.quiet = quiet
        self.started = time.monotonic()
        self._live: Any = None
        self._refresher: asyncio.Task[None] | None = None
        if live and not quiet:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                view.panel(), console=Console(), refresh_per_second=8, transient=False
            )

    def __enter__(self) -> _Printer:
        if self._live is not None:
            self._live.start()
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())
        return self

    def __exit__(self, *_: object) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self._live is not None:
            self._live.update(self.view.panel())
            self._live.stop()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self._live.update(self.view.panel())

    def event(self, event: taskloom.Event) -> None:
        if self.quiet:
            return
        line = f"{time.monotonic() - self.started:7.2f}s  {event_line(event)}"
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False)
            self._live.update(self.view.panel())
        else:
            typer.echo(line)

    def say(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            typer.echo(text, err=True)


def print_outcome(task: taskloom.Task[Any], *, as_json: bool) -> int:
    """Print how the task ended (and its result); return the exit code that says so."""
    state = task.state.value
    code = exit_code_of(state)
    if as_json:
        emit_json(record_json(task))
        return code
    usage = task.usage
    cost = "unpriced" if not usage.priced else f"${usage.cost_usd:.6f}"
    summary = (
        f"{task.name} {task.id}: {state}"
        + (f" ({task.reason})" if task.reason else "")
        + f" · {usage.requests} model calls · {usage.tool_calls} tool calls"
        + f" · {usage.input_tokens}+{usage.output_tokens} tokens · cost {cost}"
    )
    typer.echo(summary)
    if state == "completed":
        typer.echo("result: " + json.dumps(task.output, indent=2, ensure_ascii=False, default=str))
    elif task.error is not None:
        typer.echo(f"error: {task.error.message}", err=True)
    elif code == Exit.WAITING:
        typer.echo(f"answer it with: taskloom respond {task.id} ANSWER", err=True)
    sys.stdout.flush()
    return code
