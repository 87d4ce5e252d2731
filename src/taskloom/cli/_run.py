"""`taskloom run`, `submit`, `watch` and `demo`: starting tasks and following them."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from ._common import (
    JsonOption,
    StoreOption,
    default_store,
    die,
    emit_json,
    load_target,
    parse_inputs,
    run_async,
)
from ._follow import follow_to_end, print_outcome

__all__ = ("register",)

ArgsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[ARGS]...",
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
        epilog="Examples: taskloom run myapp.tasks:summarise path=notes.txt words=50;"
        " taskloom run myapp.tasks:agent 'What is the weather in Oslo?'"
    )(run)
    app.command(
        epilog="Examples: taskloom submit myapp.tasks:summarise path=a.txt --priority 5;"
        " taskloom submit myapp.tasks:report --at 2026-12-01T08:00 --idempotency-key dec-report"
    )(submit)
    app.command(epilog="Example: taskloom watch 3f2a9c... (Ctrl-C stops watching, not the task)")(
        watch
    )
    app.command()(demo)


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
    async with taskloom.open(store or default_store(), concurrency=concurrency) as rt:
        rt.register(found)
        task = await _submit(rt, found, args, input_file, {})
        if not as_json:
            typer.echo(f"task {task.id} ({task.name}) in {rt.store.url}")
        ended = await follow_to_end(
            rt, task, live=_live(as_json), quiet=as_json, cancel_on_interrupt=True
        )
        return print_outcome(ended, as_json=as_json)


def _live(as_json: bool) -> bool:
    return not as_json and sys.stdout.isatty()


async def _submit(
    rt: Any,
    found: Any,
    args: list[str],
    input_file: Path | None,
    schedule: dict[str, Any],
) -> Any:
    import taskloom

    if isinstance(found, taskloom.TaskFunction):
        task_function: Any = cast(Any, found)
        inputs = parse_inputs(task_function, args, input_file)
        return await task_function.submit(runtime=rt, **inputs, **schedule)
    if isinstance(found, taskloom.Agent):
        if input_file is not None:
            die("an agent takes a prompt, not --input; give the prompt as arguments")
        prompt = " ".join(args).strip()
        if not prompt:
            die(f"say what {found.name!r} should do: taskloom run APP:AGENT 'the prompt'")
        return await rt.submit(found, prompt, **schedule)
    die(f"{type(found).__name__} is not a task: give an @agent.task function or an Agent")


def submit(
    target: Annotated[str, typer.Argument(metavar="APP:TASK", help="module:task_or_agent")],
    args: ArgsArgument = None,
    input_file: InputOption = None,
    at: Annotated[
        datetime | None,
        typer.Option(help="Start no earlier than this time (ISO 8601; local time if no zone)."),
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
    at: datetime | None,
    delay: float | None,
    priority: int,
    idempotency_key: str | None,
    store: str | None,
    as_json: bool,
) -> None:
    import taskloom

    from ._view import record_json

    found = load_target(target, need_attribute=True)
    if at is not None and at.tzinfo is None:
        at = at.astimezone()  # a time without a zone is local time
    schedule = {"at": at, "delay": delay, "priority": priority, "idempotency_key": idempotency_key}
    async with taskloom.open(store or default_store(), concurrency=0) as rt:
        task = await _submit(rt, found, args, input_file, schedule)
        if as_json:
            emit_json(record_json(task))
        else:
            typer.echo(task.id)


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

    Ctrl-C stops watching (the task goes on); run again with --after N to resume.
    """
    code = run_async(_watch)(task_id, after, until_input, store, as_json)
    raise typer.Exit(code)


async def _watch(
    task_id: str, after: int, until_input: bool, store: str | None, as_json: bool
) -> int:
    import taskloom

    async with taskloom.open(store or default_store(), concurrency=0) as rt:
        task = await rt.get(task_id)
        ended = await follow_to_end(
            rt,
            task,
            after=after,
            live=_live(as_json),
            quiet=as_json,
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

    code = run_async(run_demo)(city, store or default_store(), as_json, _live(as_json))
    raise typer.Exit(code)
