"""`taskloom ls`, `show`, `logs`, `cancel`, `respond` and `retry`: reading and controlling."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from ._common import (
    Exit,
    JsonOption,
    StoreOption,
    default_store,
    die,
    emit_json,
    existing_store,
    missing_store,
    run_async,
)
from ._view import cost_of, event_json, event_line, record_json, when

if TYPE_CHECKING:
    import taskloom

__all__ = ("register",)

TaskId = Annotated[str, typer.Argument(help="The task's id.")]
_STATES = "submitted, working, input_required, completed, failed, cancelled, expired, rejected"


def register(app: typer.Typer) -> None:
    """Add the commands of this module to `app`."""
    app.command(
        "ls",
        epilog="Examples:\n\n\b\n"
        "  taskloom ls --state failed --since 2h\n"
        "  taskloom ls --state working --state input_required --owner ada --limit 10\n"
        "  taskloom ls --json | jq -r '.[].id'",
    )(list_tasks)
    app.command(
        epilog="Examples:\n\n\b\n  taskloom show 3f2a9c...\n  taskloom show 3f2a9c... --json"
    )(show)
    app.command(
        epilog="Examples:\n\n\b\n"
        "  taskloom logs 3f2a9c...\n"
        "  taskloom logs 3f2a9c... --after 10 | jq -c 'select(.kind == \"tool_called\")'"
    )(logs)
    app.command(epilog='Example:\n\n\b\n  taskloom cancel 3f2a9c... --reason "wrong input"')(cancel)
    app.command(
        epilog="Examples:\n\n\b\n"
        "  taskloom respond 3f2a9c... yes          (an approval: yes or no)\n"
        "  taskloom respond 3f2a9c... 3            (a number)\n"
        "  taskloom respond 3f2a9c... 'Oslo, please'\n"
        '  taskloom respond 3f2a9c... \'{"approved": false, "reason": "too costly"}\''
    )(respond)
    app.command(
        epilog="Examples:\n\n\b\n  taskloom retry 3f2a9c...\n"
        "  taskloom watch $(taskloom retry 3f2a9c...)"
    )(retry)


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

    url = store or default_store()
    if missing_store(url):
        typer.echo("no tasks")
        typer.echo(f"(there is no store at {url} yet; check --store or $TASKLOOM_STORE)", err=True)
        return
    async with taskloom.open(url, concurrency=0) as rt:
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

    async with taskloom.open(existing_store(store or default_store()), concurrency=0) as rt:
        task = await rt.get(task_id)
        events = await rt.history(task_id)
    if as_json:
        emit_json(record_json(task) | {"events": [event_json(e) for e in events]})
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
    if task.scheduled_at is not None:
        rows.insert(4, ("scheduled", when(task.scheduled_at)))
    if task.priority:
        rows.append(("priority", str(task.priority)))
    if task.idempotency_key:
        rows.append(("key", task.idempotency_key))
    inputs = _inputs_of(task.payload)
    if inputs is not None:
        rows.insert(2, ("inputs", inputs))
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


def _inputs_of(payload: Any) -> str | None:
    """A task function's inputs (or an agent task's prompt) as one line."""
    if not isinstance(payload, dict):
        return None if payload is None else json.dumps(payload, ensure_ascii=False, default=str)
    data = cast(dict[str, Any], payload)
    shown = data.get("inputs", data.get("prompt", data))
    return json.dumps(shown, ensure_ascii=False, default=str)


def logs(
    task_id: TaskId,
    after: Annotated[int, typer.Option(min=0, help="Only events after this sequence number.")] = 0,
    store: StoreOption = None,
) -> None:
    """Print a task's raw events, one JSON object a line."""
    run_async(_logs)(task_id, after, store)


async def _logs(task_id: str, after: int, store: str | None) -> None:
    import taskloom

    async with taskloom.open(existing_store(store or default_store()), concurrency=0) as rt:
        await rt.get(task_id)  # a clear error for an unknown id
        for event in await rt.history(task_id, after=after):
            emit_json(event_json(event))


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

    async with taskloom.open(existing_store(store or default_store()), concurrency=0) as rt:
        before = await rt.get(task_id)
        task = await rt.cancel(task_id, reason=reason or "cancelled from the command line")
    if as_json:
        emit_json(record_json(task))
    elif not before.state.terminal and task.state.value == "cancelled":
        typer.echo(f"{task.id} cancelled ({task.reason})")
    else:  # ended before, or meanwhile: the task is not running, as asked
        typer.echo(f"{task.id} had already ended {task.state.value}; nothing to cancel")
    return Exit.COMPLETED


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

    async with taskloom.open(existing_store(store or default_store()), concurrency=0) as rt:
        waiting = await rt.get(task_id)
        request = await _request(rt, waiting) if waiting.state.value == "input_required" else {}
        schema: dict[str, Any] = request.get("schema") or {}
        approval = request.get("kind") == "approval"
        value = _answer(answer, schema, approval=approval)
        try:
            task = await rt.respond(task_id, value)
        except taskloom.InvalidAnswerError as exc:
            if value == answer or schema.get("type") == "string":
                die(f"{exc}. Answer with {_expected(schema, approval=approval)}")
            try:  # `42` meant as text, when the question takes text among other things
                task = await rt.respond(task_id, answer)
            except taskloom.InvalidAnswerError:
                die(f"{exc}. Answer with {_expected(schema, approval=approval)}")
    if as_json:
        emit_json(record_json(task))
    else:
        typer.echo(f"{task.id} answered; it is {task.state.value}")


async def _request(rt: taskloom.Runtime, task: taskloom.Task[Any]) -> dict[str, Any]:
    """The question a task waits for: its `kind`, `prompt` and `schema`."""
    import taskloom

    events = await rt.store.read_events(task.id, after=max(0, task.last_seq - 20))
    if not any(isinstance(e, taskloom.TaskInputRequired) for e in events):
        events = await rt.history(task.id)
    for event in reversed(events):
        if isinstance(event, taskloom.TaskInputRequired):
            request: Any = event.request
            if isinstance(request, dict):
                return cast(dict[str, Any], request)
    return {}


_YES_NO = {"yes": True, "y": True, "true": True, "no": False, "n": False, "false": False}


def _answer(text: str, schema: dict[str, Any], *, approval: bool) -> Any:
    """The answer as the question's type reads it: text for text, JSON for the rest."""
    kind = schema.get("type")
    if kind == "string":
        return text
    if kind == "boolean" and text.strip().lower() in _YES_NO:
        return _YES_NO[text.strip().lower()]
    if approval and not text.lstrip().startswith("{"):
        return text.strip()  # yes / no / approve / deny: the runtime reads these
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _expected(schema: dict[str, Any], *, approval: bool) -> str:
    """What a fitting answer looks like, for the error message."""
    if approval:
        return 'yes or no (or JSON: {"approved": false, "reason": "why"})'
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        keys = ", ".join(schema.get("required") or schema.get("properties") or [])
        return f"a JSON object (with {keys})" if keys else "a JSON object"
    described = {
        "integer": "a whole number, e.g. 3",
        "number": "a number, e.g. 2.5",
        "boolean": "yes or no",
        "string": "text",
        "array": 'a JSON array, e.g. ["a", "b"]',
    }
    return described.get(str(kind), "JSON that fits the question's schema (see taskloom show ID)")


def retry(task_id: TaskId, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Submit a new attempt of an ended task (same input); print the new task's id."""
    run_async(_retry)(task_id, store, as_json)


async def _retry(task_id: str, store: str | None, as_json: bool) -> None:
    import taskloom

    async with taskloom.open(existing_store(store or default_store()), concurrency=0) as rt:
        task = await rt.retry(task_id)
    if as_json:
        emit_json(record_json(task))
    else:
        typer.echo(task.id)
