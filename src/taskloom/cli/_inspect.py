"""`taskloom ls`, `show`, `logs`, `cancel`, `respond` and `retry`: reading and controlling."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from ._common import Exit, JsonOption, StoreOption, default_store, die, emit_json, run_async
from ._view import cost_of, event_line, record_json, when

__all__ = ("register",)

TaskId = Annotated[str, typer.Argument(help="The task's id.")]
_STATES = "submitted, working, input_required, completed, failed, cancelled, expired, rejected"


def register(app: typer.Typer) -> None:
    """Add the commands of this module to `app`."""
    app.command("ls", epilog="Examples: taskloom ls --state failed --since 2h; taskloom ls --json")(
        list_tasks
    )
    app.command()(show)
    app.command()(logs)
    app.command(epilog='Example: taskloom cancel 3f2a9c... --reason "wrong input"')(cancel)
    app.command(
        epilog='Examples: taskloom respond 3f2a9c... yes; taskloom respond 3f2a9c... \'{"city": "Oslo"}\''
    )(respond)
    app.command()(retry)


def list_tasks(
    state: Annotated[
        list[str] | None, typer.Option("--state", help=f"Only these states ({_STATES}).")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Only this owner's tasks.")] = None,
    name: Annotated[str | None, typer.Option(help="Only tasks of this name.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only tasks created since: 30m, 2h, 7d, or an ISO date/time."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """List tasks, newest first."""
    run_async(_list)(state, owner, name, since, limit, store, as_json)


async def _list(
    state: list[str] | None,
    owner: str | None,
    name: str | None,
    since: str | None,
    limit: int,
    store: str | None,
    as_json: bool,
) -> None:
    import taskloom

    async with taskloom.open(store or default_store(), concurrency=0) as rt:
        page = await rt.list(
            state=list(state or []) or None,
            owner=owner,
            name=name,
            since=_since(since),
            limit=limit,
        )
    if as_json:
        emit_json([record_json(t) for t in page.tasks])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("id", "name", "state", "reason", "created", "ended", "cost"):
        table.add_column(column, no_wrap=column in ("id", "created", "ended"))
    for task in page.tasks:
        table.add_row(
            task.id,
            task.name,
            task.state.value,
            task.reason or "",
            when(task.created_at),
            when(task.ended_at),
            cost_of(task.usage),
        )
    # a pipe or a file gets whole lines; a terminal, its own width
    console = Console() if sys.stdout.isatty() else Console(width=240)
    if page.tasks:
        console.print(table)
    else:
        typer.echo("no tasks")


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: float(match.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        die(f"--since takes 30m, 2h, 7d or an ISO date/time, not {text!r}")
    return moment if moment.tzinfo is not None else moment.astimezone()


def show(task_id: TaskId, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Print a task's record, usage, cost and event timeline."""
    run_async(_show)(task_id, store, as_json)


async def _show(task_id: str, store: str | None, as_json: bool) -> None:
    import taskloom

    async with taskloom.open(store or default_store(), concurrency=0) as rt:
        task = await rt.get(task_id)
        events = await _all_events(rt, task_id)
    if as_json:
        emit_json(record_json(task) | {"events": [_event_json(e) for e in events]})
        return
    usage = task.usage
    rows = [
        ("task", f"{task.name} {task.id}"),
        ("state", task.state.value + (f" ({task.reason})" if task.reason else "")),
        ("owner", task.owner or "-"),
        ("created", when(task.created_at)),
        ("started", when(task.started_at)),
        ("ended", when(task.ended_at)),
        ("worker", f"{task.worker or '-'} (epoch {task.epoch}, recoveries {task.recoveries})"),
        ("model calls", str(usage.requests)),
        ("tool calls", str(usage.tool_calls)),
        ("tokens", f"{usage.input_tokens} in, {usage.output_tokens} out"),
        ("cost", cost_of(usage)),
    ]
    if task.retry_of:
        rows.append(("retry of", task.retry_of))
    if task.parent_id:
        rows.append(("parent", task.parent_id))
    for label, value in rows:
        typer.echo(f"{label:<12} {value}")
    if task.state.value == "completed":
        typer.echo("result       " + json.dumps(task.output, ensure_ascii=False, default=str))
    if task.error is not None:
        typer.echo(f"error        {task.error.message}")
    typer.echo("")
    for event in events:
        typer.echo(f"{event.seq:>4}  {when(event.at)}  {event_line(event)}")


async def _all_events(rt: Any, task_id: str) -> list[Any]:
    events: list[Any] = []
    while True:
        page = await rt.store.read_events(task_id, after=events[-1].seq if events else 0)
        events.extend(page)
        if len(page) < 1000:
            return events


def _event_json(event: Any) -> dict[str, Any]:
    from taskloom.events import event_data

    return {"seq": event.seq, "at": event.at.isoformat(), "kind": event.kind, **event_data(event)}


def logs(
    task_id: TaskId,
    after: Annotated[int, typer.Option(min=0, help="Only events after this sequence number.")] = 0,
    store: StoreOption = None,
) -> None:
    """Print a task's raw events, one JSON object a line."""
    run_async(_logs)(task_id, after, store)


async def _logs(task_id: str, after: int, store: str | None) -> None:
    import taskloom

    async with taskloom.open(store or default_store(), concurrency=0) as rt:
        await rt.get(task_id)  # a clear error for an unknown id
        for event in await _all_events(rt, task_id):
            if event.seq > after:
                emit_json(_event_json(event))


def cancel(
    task_id: TaskId,
    reason: Annotated[str, typer.Option(help="Why; kept on the record.")] = "",
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a task from anywhere; the worker running it stops at once."""
    code = run_async(_cancel)(task_id, reason, store, as_json)
    raise typer.Exit(code)


async def _cancel(task_id: str, reason: str, store: str | None, as_json: bool) -> int:
    import taskloom

    async with taskloom.open(store or default_store(), concurrency=0) as rt:
        before = await rt.get(task_id)
        task = await rt.cancel(task_id, reason=reason or "cancelled from the command line")
    if as_json:
        emit_json(record_json(task))
    elif before.state.terminal:
        typer.echo(f"{task.id} had already ended {task.state.value}; nothing to cancel")
    else:
        typer.echo(f"{task.id} cancelled")
    return (
        Exit.COMPLETED if task.state.value == "cancelled" or before.state.terminal else Exit.USAGE
    )


def respond(
    task_id: TaskId,
    answer: Annotated[
        str, typer.Argument(help="The answer: JSON, or plain text; yes/no for an approval.")
    ],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a task that waits for input; the answer is checked against the question's type."""
    run_async(_respond)(task_id, answer, store, as_json)


async def _respond(task_id: str, answer: str, store: str | None, as_json: bool) -> None:
    import taskloom

    try:
        value: Any = json.loads(answer)
    except json.JSONDecodeError:
        value = answer
    async with taskloom.open(store or default_store(), concurrency=0) as rt:
        try:
            task = await rt.respond(task_id, value)
        except taskloom.InvalidAnswerError as exc:
            if isinstance(value, str) or value is answer:
                raise
            task = None
            try:  # "42" meant as text: try the text before saying no
                task = await rt.respond(task_id, answer)
            except taskloom.InvalidAnswerError:
                raise exc from None
    if as_json:
        emit_json(record_json(task))
    else:
        typer.echo(f"{task.id} answered; it is {task.state.value}")


def retry(task_id: TaskId, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Submit a new attempt of an ended task (same input); print the new task's id."""
    run_async(_retry)(task_id, store, as_json)


async def _retry(task_id: str, store: str | None, as_json: bool) -> None:
    import taskloom

    async with taskloom.open(store or default_store(), concurrency=0) as rt:
        task = await rt.retry(task_id)
    if as_json:
        emit_json(record_json(task))
    else:
        typer.echo(task.id)
