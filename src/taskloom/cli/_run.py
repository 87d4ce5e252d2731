"""`taskloom run`, `submit`, `watch` and `demo`: starting tasks and following them."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from ._common import (
    JsonOption,
    StoreOption,
    default_store,
    die,
    emit_json,
    existing_store,
    load_target,
    parse_inputs,
    run_async,
)
from ._follow import Output, follow_to_end, print_outcome

if TYPE_CHECKING:
    import taskloom

__all__ = ("register",)

ArgsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="ARGS",
        help="The task's inputs as key=value (JSON for non-text inputs); for an agent, the prompt.",
        show_default=False,
    ),
]
InputOption = Annotated[
    Path | None,
    typer.Option("--input", "-i", help="A JSON file of inputs (key=value pairs override it)."),
]


def register(app: typer.Typer) -> None:
    """Add the commands of this module to `app`."""
    app.command(
        epilog="Examples:\n\n\b\n"
        "  taskloom run myapp.tasks:summarise path=notes.txt words=50\n"
        "  taskloom run myapp.tasks:summarise --input inputs.json\n"
        "  taskloom run myapp.tasks:assistant 'What is the weather in Oslo?'\n"
        "  taskloom run myapp.tasks:summarise path=notes.txt --json | jq .result"
    )(run)
    app.command(
        epilog="Examples:\n\n\b\n"
        "  taskloom submit myapp.tasks:summarise path=a.txt --priority 5\n"
        "  taskloom submit myapp.tasks:report --delay 3600\n"
        "  taskloom submit myapp.tasks:report --at 2026-12-01T08:00 --idempotency-key dec-report"
    )(submit)
    app.command(
        epilog="Examples:\n\n\b\n"
        "  taskloom watch 3f2a9c...            (Ctrl-C stops watching, not the task)\n"
        "  taskloom watch 3f2a9c... --after 12\n"
        "  taskloom watch 3f2a9c... --until-input; [ $? = 7 ] && taskloom respond 3f2a9c... yes"
    )(watch)
    app.command(
        epilog="Examples:\n\n\b\n"
        "  taskloom demo\n"
        "  taskloom demo --city Oslo --json\n"
        "  OPENAI_API_KEY=sk-... taskloom demo   (an OpenAI-compatible endpoint)"
    )(demo)


def run(
    target: Annotated[str, typer.Argument(metavar="APP:TASK", help="module:task_or_agent")],
    args: ArgsArgument = None,
    input_file: InputOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Tasks this process's worker performs at once.")
    ] = 4,
) -> None:
    """Run a task in the foreground with a live view; print its typed result.

    Ctrl-C cancels the task. Exit code: 0 completed, 1 failed, 3 cancelled, 4 expired,
    5 rejected, 2 bad input, 6 store unavailable.
    """
    code = run_async(_run)(target, args or [], input_file, store, as_json, concurrency)
    raise typer.Exit(code)


async def _run(
    target: str,
    args: list[str],
    input_file: Path | None,
    store: str | None,
    as_json: bool,
    concurrency: int,
) -> int:
    import taskloom

    found = load_target(target, need_attribute=True)
    inputs = _inputs(found, args, input_file)
    async with taskloom.open(store or default_store(), concurrency=concurrency) as rt:
        rt.register(found)
        task = await _submit(rt, found, inputs, {})
        if not as_json:
            typer.echo(f"task {task.id} ({task.name}) in {rt.store.url}")
        output: Output = "quiet" if as_json else "live" if sys.stdout.isatty() else "lines"
        ended = await follow_to_end(rt, task, output=output, cancel_on_interrupt=True)
        return print_outcome(ended, as_json=as_json)


def _inputs(found: Any, args: list[str], input_file: Path | None) -> dict[str, Any] | str:
    """A task function's inputs, or an agent's prompt (checked before the store is opened)."""
    import taskloom

    if isinstance(found, taskloom.TaskFunction):
        return parse_inputs(cast(Any, found), args, input_file)
    if input_file is not None:
        die("an agent takes a prompt, not --input; give the prompt as arguments")
    prompt = " ".join(args).strip()
    if not prompt:
        die(f"say what {found.name!r} should do: taskloom run APP:AGENT 'the prompt'")
    return prompt


async def _submit(
    rt: taskloom.Runtime, found: Any, inputs: dict[str, Any] | str, schedule: dict[str, Any]
) -> taskloom.Task[Any]:
    if isinstance(inputs, str):
        return await rt.submit(found, inputs, **schedule)
    task_function: Any = found
    return await task_function.submit(runtime=rt, **inputs, **schedule)


def submit(
    target: Annotated[str, typer.Argument(metavar="APP:TASK", help="module:task_or_agent")],
    args: ArgsArgument = None,
    input_file: InputOption = None,
    at: Annotated[
        str | None,
        typer.Option(
            help="Start no earlier than this time: ISO 8601, e.g. 2026-12-01T08:00 (local"
            " time) or 2026-12-01T08:00+02:00.",
            show_default=False,
        ),
    ] = None,
    delay: Annotated[
        float | None, typer.Option(min=0, help="Start no earlier than this many seconds from now.")
    ] = None,
    priority: Annotated[int, typer.Option(help="Higher starts first among due tasks.")] = 0,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting the same key again returns the same task.")
    ] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Store a task for the workers and print its id at once (a worker performs it)."""
    run_async(_submit_only)(
        target, args or [], input_file, at, delay, priority, idempotency_key, store, as_json
    )


async def _submit_only(
    target: str,
    args: list[str],
    input_file: Path | None,
    at: str | None,
    delay: float | None,
    priority: int,
    idempotency_key: str | None,
    store: str | None,
    as_json: bool,
) -> None:
    import taskloom

    from ._view import record_json

    if at is not None and delay is not None:
        die("give --at or --delay, not both")
    found = load_target(target, need_attribute=True)
    inputs = _inputs(found, args, input_file)
    schedule = {
        "at": _moment(at),
        "delay": delay,
        "priority": priority,
        "idempotency_key": idempotency_key,
    }
    async with taskloom.open(store or default_store(), concurrency=0) as rt:
        task = await _submit(rt, found, inputs, schedule)
        if as_json:
            emit_json(record_json(task))
        else:
            typer.echo(task.id)


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        die(
            f"--at takes an ISO 8601 date/time such as 2026-12-01T08:00 (local time) or"
            f" 2026-12-01T08:00+02:00, not {text!r}; for a time from now use --delay SECONDS"
        )
    return moment if moment.tzinfo is not None else moment.astimezone()


def watch(
    task_id: Annotated[str, typer.Argument(help="The task's id.")],
    after: Annotated[
        int, typer.Option(min=0, help="Show only events after this sequence number.")
    ] = 0,
    until_input: Annotated[
        bool, typer.Option(help="Stop when the task asks for input (exit code 7).")
    ] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Follow a task live, from any process, until it ends; exit with how it ended.

    Ctrl-C stops watching (the task goes on); run again with --after N to resume. With
    --json, each event is a JSON line as it happens, then the task's record.
    """
    code = run_async(_watch)(task_id, after, until_input, store, as_json)
    raise typer.Exit(code)


async def _watch(
    task_id: str, after: int, until_input: bool, store: str | None, as_json: bool
) -> int:
    import taskloom

    async with taskloom.open(existing_store(store or default_store()), concurrency=0) as rt:
        task = await rt.get(task_id)
        output: Output = "json" if as_json else "live" if sys.stdout.isatty() else "lines"
        ended = await follow_to_end(
            rt,
            task,
            after=after,
            output=output,
            cancel_on_interrupt=False,
            until_input=until_input,
        )
        if not ended.state.terminal and not until_input:
            return 0  # stopped watching; the task goes on
        return print_outcome(ended, as_json=as_json)


def demo(
    city: Annotated[str, typer.Option(help="The city to report on.")] = "Lisbon",
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """The main job: an agent with a tool reports the weather as a typed result, offline.

    It runs SmolLM2 locally, or any OpenAI-compatible endpoint when OPENAI_API_KEY or
    OPENAI_BASE_URL is set (TASKLOOM_MODEL=openai:<name> picks the model).
    """
    from ._demo import run_demo

    live = not as_json and sys.stdout.isatty()
    code = run_async(run_demo)(city, store or default_store(), as_json, live)
    raise typer.Exit(code)
