"""Following a task to its end in a terminal: the live view of `run`, `watch` and `demo`.

Ctrl-C cancels the task (`run`, `demo`) or stops watching (`watch`); a second Ctrl-C while
the cancel is under way leaves at once (exit code 130).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import TYPE_CHECKING, Any, Literal

import typer

from ._common import INTERRUPTED, Exit, emit_json, exit_code_of
from ._view import Follow, cost_of, event_json, event_line, record_json

if TYPE_CHECKING:
    import taskloom

__all__ = ("Output", "follow_to_end", "print_outcome")

Output = Literal["live", "lines", "json", "quiet"]
"""How the events are shown: a live panel over event lines (a terminal), event lines, JSON
lines (`watch --json`), or not at all (`run --json`)."""


async def follow_to_end(
    rt: taskloom.Runtime,
    task: taskloom.Task[Any],
    *,
    after: int = 0,
    output: Output,
    cancel_on_interrupt: bool,
    until_input: bool = False,
) -> taskloom.Task[Any]:
    """Show the task's events until it ends (or, `until_input`, asks); return its record.

    Ctrl-C cancels the task (`cancel_on_interrupt`) or just stops watching. A broken
    connection to the store is retried, resuming after the last event seen.
    """
    view = Follow(task, hint="Ctrl-C cancels the task" if cancel_on_interrupt else "", after=after)
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    printer = _Printer(view, output, hint_answers=not until_input)
    follower = asyncio.create_task(_pump(rt, task.id, after, view, printer, until_input))
    try:
        with printer:
            if not await _first(follower, interrupted):
                follower.result()
            elif not cancel_on_interrupt:
                follower.cancel()
                printer.say(
                    f"stopped watching after event {view.last_seq}; the task goes on"
                    f" (taskloom watch {task.id} --after {view.last_seq} resumes)"
                )
            else:
                printer.say("Ctrl-C: cancelling the task... (Ctrl-C again leaves at once)")
                interrupted.clear()
                closing = asyncio.create_task(_cancel(rt, task.id, follower))
                if await _first(closing, interrupted):
                    closing.cancel()
                    printer.say("left without waiting: the task may still be running")
                    raise typer.Exit(INTERRUPTED)
                closing.result()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if not follower.done():
            follower.cancel()
    return await rt.get(task.id)


async def _first(work: asyncio.Task[Any], interrupted: asyncio.Event) -> bool:
    """Wait for `work` or a Ctrl-C; whether Ctrl-C came first."""
    waiter = asyncio.create_task(interrupted.wait())
    try:
        await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return not work.done()


async def _cancel(rt: taskloom.Runtime, task_id: str, follower: asyncio.Task[None]) -> None:
    await rt.cancel(task_id, reason="cancelled from the terminal (Ctrl-C)")
    await follower  # until the end shows


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
    if until_input:
        now = await rt.get(task_id)
        if now.state.value == "input_required" and now.last_seq <= after:
            return  # it already waits, and its question is before `after`
    while True:
        try:
            async for event in rt.events(task_id, after=after):
                after = event.seq
                view.see(event)
                printer.event(event)
                failures = 0
                if until_input and event.kind == "input_required":
                    if await _still_asked(rt, task_id, event.seq):
                        return
            return
        except taskloom.StoreUnavailableError as exc:
            failures += 1
            if failures > 30:
                raise
            printer.say(f"lost the store ({exc}); resuming after event {after}...")
            await asyncio.sleep(min(5.0, 0.2 * 2**failures))


async def _still_asked(rt: taskloom.Runtime, task_id: str, seq: int) -> bool:
    """Whether the question asked at event `seq` waits for its answer (not an old one)."""
    if (await rt.get(task_id)).state.value != "input_required":
        return False
    later = await rt.store.read_events(task_id, after=seq)
    return not any(e.kind == "resumed" for e in later)


class _Printer:
    """Event lines, under a live status panel in a terminal, or plain or JSON lines elsewhere."""

    def __init__(self, view: Follow, output: Output, *, hint_answers: bool) -> None:
        self.view = view
        self.output = output
        self.hint_answers = hint_answers
        self._live: Any = None
        self._refresher: asyncio.Task[None] | None = None
        if output == "live":
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
            self._live.stop()  # the last panel stays on the screen

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self._live.update(self.view.panel())

    def event(self, event: taskloom.Event) -> None:
        if self.output == "quiet":
            return
        if self.output == "json":
            emit_json(event_json(event))
            sys.stdout.flush()
            return
        line = f"{self.view.since_created(event.at):>9}  {event_line(event)}"
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False)
            self._live.update(self.view.panel())
        else:
            typer.echo(line)
            sys.stdout.flush()
        if event.kind == "input_required" and self.hint_answers:
            self.say(f"answer it with: taskloom respond {event.task_id} ANSWER")

    def say(self, text: str) -> None:
        """A message for the person, above the panel; on stderr without one."""
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
        sys.stdout.flush()
        return code
    usage = task.usage
    summary = (
        f"{task.name} {task.id}: {state}"
        + (f" ({task.reason})" if task.reason else "")
        + f" · model calls {usage.requests} · tool calls {usage.tool_calls}"
        + f" · tokens {usage.input_tokens} in, {usage.output_tokens} out · cost {cost_of(usage)}"
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
