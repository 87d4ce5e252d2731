# pyright: reportReturnType=false
"""Research a question in the team's notes, then publish a page only if a human approves.

Two durable agent tasks in the embedded SQLite store, performed by this process's worker:

1. `research`: an agent with the tool `search_notes(question)`, over the notes in
   examples/data/notes, answers with a typed `Brief` (a title and a summary).
2. `publish`: an agent with one tool, `publish_page(title, text)`, declared
   `@tool(requires_approval=True, effect="at_most_once")`. Before it runs, the task moves
   to `input_required` and waits for a human: answer y/n here, pass `--approve`/`--deny`,
   or answer from another terminal with `taskloom respond ID yes` (or `no`). Approved, the
   page is written to the wiki folder; denied, the model is told so and nothing is written.

    .venv/bin/python examples/research_with_approval.py
    .venv/bin/python examples/research_with_approval.py "Is the office moving?" --approve
    .venv/bin/python examples/research_with_approval.py --deny --wiki /tmp/wiki

The model is `taskloom.models.default_model()`: SmolLM2-135M running offline (about 6 s in
all on two cores), unless `OPENAI_BASE_URL` or `OPENAI_API_KEY` names an OpenAI-compatible
endpoint (`TASKLOOM_MODEL` picks another model). There are two tasks because the local
model calls one tool per task and then answers; a capable model could do it all in one.
SmolLM2's summaries are rough (it repeats itself, mixes notes up), which is what the
approval is for. Whether the page was published is read from the task's event log (its
`tool_called` event), not from the model's closing words: a 135M model may claim either.

The tasks use the store the `taskloom` command reads ($TASKLOOM_STORE, else
~/.local/share/taskloom/taskloom.db), so `taskloom respond`, `ls` and `show` find them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import tempfile
import threading
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field

import taskloom
from taskloom import tool
from taskloom.models import default_model

NOTES = Path(__file__).resolve().parent / "data" / "notes"
SKIP = frozenset("a an and are be do does for how in is it of on or should the to we what".split())
# bounded texts: a small model rambles, and the local model's grammar stops it at the bound
Short = Annotated[str, Field(max_length=60)]
Long = Annotated[str, Field(max_length=120)]


# no docstring: pydantic would show it to the model as the answer's description, and a
# 135M-parameter model copies such a sentence into its answer
class Brief(BaseModel):  # noqa: D101
    title: Short
    summary: Long


def default_store() -> str:
    """The store the `taskloom` command uses: $TASKLOOM_STORE, else its file in ~/.local/share."""
    if os.environ.get("TASKLOOM_STORE"):
        return os.environ["TASKLOOM_STORE"]
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    (base / "taskloom").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{base / 'taskloom' / 'taskloom.db'}"


def search_notes(question: str) -> str:
    """Search the team's notes; returns the best matches with their text.

    Args:
        question: The question, word for word.
    """
    stems = {w[:6] for w in re.findall(r"[a-z]+", question.lower()) if w not in SKIP}
    scored = []
    for path in sorted(NOTES.glob("*.md")):
        text = path.read_text(encoding="utf-8").strip()
        words = [w[:6] for w in re.findall(r"[a-z]+", text.lower())]
        score = sum(words.count(stem) for stem in stems)
        if score:
            scored.append((-score, path.stem, text))
    best = sorted(scored)[:2]
    return "\n\n".join(f"[{stem}]\n{text}" for _, stem, text in best) or "no notes match"


researcher = taskloom.Agent(
    default_model(),
    name="researcher",
    instructions="Call search_notes with the question, then write a short title and a summary"
    " of what the notes say.",
    tools=[search_notes],
)


@researcher.task
async def research(question: str) -> Brief:
    """Answer the question from the team's notes."""


def publisher_for(wiki: Path) -> taskloom.TaskFunction[..., str]:
    """The task that publishes a page to `wiki`, only after a human approves."""

    @tool(requires_approval=True, effect="at_most_once")
    def publish_page(title: Short, text: Long) -> str:
        """Publish a page on the team wiki.

        Args:
            title: The page's title.
            text: The page's text.
        """
        wiki.mkdir(parents=True, exist_ok=True)
        page = wiki / (re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") + ".md")
        page.write_text(f"# {title}\n\n{text}\n", encoding="utf-8")
        return f"published as {page}"

    publisher = taskloom.Agent(
        default_model(),
        name="publisher",
        instructions="Call publish_page with the title and text, then say what happened.",
        tools=[publish_page],
    )

    @publisher.task
    async def publish(title: str, text: str) -> Short:
        """Publish this page on the wiki."""

    return publish


def show_tools(event: taskloom.Event) -> None:
    """Print the tool calls of a task as they happen."""
    if isinstance(event, taskloom.ToolCalled):
        outcome = event.result if event.error is None else f"error: {event.error}"
        print(f"  {event.name}({event.arguments}) -> {' '.join(outcome.split())[:100]}")


async def read_line() -> str:
    """A line from stdin ("" at its end), read in a daemon thread that never blocks exit."""
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        text = sys.stdin.readline()
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(lambda: line.done() or line.set_result(text))

    threading.Thread(target=read, daemon=True).start()
    return await line


async def decide(rt: taskloom.Runtime, task_id: str, decision: bool | None) -> None:
    """Answer the approval: from `--approve`/`--deny`, else from the terminal."""
    if decision is None:
        print(f"  answer here, or in another terminal: taskloom respond {task_id} yes (or no)")
    while decision is None:
        print("  approve? [y/n] ", end="", flush=True)
        text = (await read_line()).strip().lower()
        if not text:  # no terminal (or end of input): wait for an answer from elsewhere
            print("\n  no input here: waiting for the answer from another terminal")
            await asyncio.Event().wait()  # cancelled when the answer comes
        if not sys.stdin.isatty():
            print(text)  # what a terminal would have echoed
        decision = {"y": True, "yes": True, "n": False, "no": False}.get(text)
    with contextlib.suppress(taskloom.InvalidTransitionError):  # answered elsewhere first
        await rt.respond(task_id, decision)


async def follow_publish(rt: taskloom.Runtime, task_id: str, decision: bool | None) -> str:
    """Follow the publish task to its end, answering its question; return what happened."""
    outcome = "the agent did not call publish_page"
    async with asyncio.TaskGroup() as group:
        answering: asyncio.Task[None] | None = None
        async for event in rt.events(task_id):
            match event:
                case taskloom.TaskInputRequired(request={"details": details}):
                    print(f"\ntask {task_id} asks: may the agent call {details['tool']} with")
                    for name, value in details["arguments"].items():
                        print(f"    {name}: {value}")
                    answering = group.create_task(decide(rt, task_id, decision))
                case taskloom.TaskResumed(answer=answer):
                    if answering is not None and not answering.done():
                        answering.cancel()  # someone answered from another terminal
                    print(f"  answer: {'approved' if answer['approved'] else 'denied'}")
                case taskloom.ToolCalled(name="publish_page"):
                    outcome = event.result or f"not published: {event.error}"
                case _:
                    pass
        if answering is not None:
            answering.cancel()  # the task ended (cancelled, expired) while a human thought
    return outcome


async def research_and_publish(question: str, decision: bool | None, store: str, wiki: Path) -> int:
    """Research, then publish with approval; return the exit code."""
    publish = publisher_for(wiki)
    try:
        async with taskloom.open(store) as rt:
            print(f"model {researcher.model.name} · store {rt.store.url}")
            task = await research.submit(question=question, runtime=rt, on_event=show_tools)
            print(f"research {task.id}: {question}")
            brief = await task.result()
            print(f"  title:   {brief.title}\n  summary: {brief.summary}")
            task = await publish.submit(title=brief.title, text=brief.summary, runtime=rt)
            print(f"publish {task.id}")
            outcome = await follow_publish(rt, task.id, decision)
            ended = await rt.get(task.id)
    except taskloom.TaskEndedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await researcher.model.close()
        await publish.agent.model.close()
    print(f"publish task {ended.state.value}: {outcome}")
    return 0 if ended.state is taskloom.TaskState.COMPLETED else 1


def main() -> None:
    """Read the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "question", nargs="?", default="Should the nightly batch run on spot instances?"
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--approve", action="store_const", const=True, dest="decision")
    choice.add_argument("--deny", action="store_const", const=False, dest="decision")
    parser.add_argument("--store", default=None, help="store URL (default: the CLI's store)")
    parser.add_argument(
        "--wiki", type=Path, default=Path(tempfile.gettempdir()) / "taskloom-examples" / "wiki"
    )
    args = parser.parse_args()
    store = args.store or default_store()
    sys.exit(asyncio.run(research_and_publish(args.question, args.decision, store, args.wiki)))


if __name__ == "__main__":
    main()
