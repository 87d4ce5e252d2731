"""Extract typed invoices from a folder of text files: one durable agent task per file.

Each `.txt` file becomes an agent task submitted to the embedded SQLite store; this
process's worker performs them and the script prints their events as they happen. The
agent answers with an `Invoice` (a pydantic model), and the results are written to a JSON
file and a CSV file. A `check` column names the fields whose value does not appear word for
word in the document: a small model can make things up, so look at those rows.

    .venv/bin/python examples/extract_records.py                 # the five bundled invoices
    .venv/bin/python examples/extract_records.py ~/inbox --out ~/inbox-invoices
    .venv/bin/python examples/extract_records.py --limit 2       # only the first two files

The model is `taskloom.models.default_model()`: SmolLM2-135M running offline, unless
`OPENAI_BASE_URL` or `OPENAI_API_KEY` names an OpenAI-compatible endpoint (`TASKLOOM_MODEL`
picks another model). On SmolLM2 a file takes about 1.5 s on two cores, and the bundled
invoices come out right. What makes a 135M-parameter model dependable here: the document
is in the prompt as it is, the instructions are short, the output is four flat text fields,
and `total` and `due_date` carry a pattern that the local model's grammar enforces as it
writes, so "1250.00 EUR" is copied whole instead of a number and a guessed currency.

The tasks stay in the store the `taskloom` command reads ($TASKLOOM_STORE, else
~/.local/share/taskloom/taskloom.db): `taskloom ls --name extract_invoice`, `taskloom show ID`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

import taskloom
from taskloom.models import default_model

HERE = Path(__file__).resolve().parent

INSTRUCTIONS = (
    "Copy fields from the invoice, exactly as written."
    " total: the amount and currency on the Total line, like 125.00 EUR."
)


class Invoice(BaseModel):
    """An invoice's fields, copied from the text."""

    invoice_number: str
    customer: str
    # the local model's grammar enforces these patterns while it writes; `[.]`, not `\.`,
    # because llama.cpp's JSON-schema converter cannot read an escaped dot
    total: str = Field(pattern=r"^[0-9]+[.][0-9]{2} [A-Z]{3}$")
    due_date: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def default_store() -> str:
    """The store the `taskloom` command uses: $TASKLOOM_STORE, else its file in ~/.local/share."""
    if os.environ.get("TASKLOOM_STORE"):
        return os.environ["TASKLOOM_STORE"]
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    (base / "taskloom").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{base / 'taskloom' / 'taskloom.db'}"


class Progress:
    """Prints each task's events as the worker writes them."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.ended = 0

    def watcher(self, file: str) -> Callable[[taskloom.Event], None]:
        """The `on_event` callback of the task for `file`."""

        def on_event(event: taskloom.Event) -> None:
            match event:
                case taskloom.TaskStarted():
                    print(f"      {file}: started")
                case taskloom.ModelCalled():
                    tokens = f"{event.input_tokens}+{event.output_tokens} tokens"
                    print(f"      {file}: the model answered ({tokens})")
                case taskloom.OutputRejected():
                    print(f"      {file}: the answer did not fit, asked again: {event.error[:80]}")
                case taskloom.TaskCompleted():
                    self.ended += 1
                    fields = " · ".join(str(v) for v in dict(event.result).values())
                    print(f"[{self.ended}/{self.total}] {file}: {fields}")
                case taskloom.TaskFailed():
                    self.ended += 1
                    why = f"failed ({event.reason}): {event.message}"
                    print(f"[{self.ended}/{self.total}] {file}: {why[:160]}")
                case _:
                    pass

        return on_event


def row_of(path: Path, task: taskloom.Task[Invoice], invoice: Invoice | None) -> dict[str, Any]:
    """One line of the results: the fields, and which of them the document does not contain."""
    row: dict[str, Any] = {"file": path.name, "task_id": task.id, "state": task.state.value}
    if invoice is None:
        return row | {"check": task.error.message if task.error else task.reason or ""}
    text = path.read_text(encoding="utf-8")
    amount, currency = invoice.total.split(" ")
    unfound = [k for k, v in invoice.model_dump().items() if v not in text]
    return row | {
        "invoice_number": invoice.invoice_number,
        "customer": invoice.customer,
        "amount": amount,
        "currency": currency,
        "due_date": invoice.due_date,
        "check": " ".join(unfound),
    }


def write_results(rows: list[dict[str, Any]], out: Path) -> None:
    """Write the rows to OUT.json and OUT.csv."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    columns = ["file", "invoice_number", "customer", "amount", "currency", "due_date"]
    columns += ["check", "state", "task_id"]
    with out.with_suffix(".csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


async def extract(files: list[Path], store: str, out: Path) -> int:
    """Submit one task per file, wait for them all, write the results; return the exit code."""
    agent = taskloom.Agent(default_model(), name="invoice-extractor", instructions=INSTRUCTIONS)
    progress = Progress(len(files))
    try:
        async with taskloom.open(store) as rt:
            print(f"model {agent.model.name} · store {rt.store.url} · {len(files)} files")
            submitted: list[tuple[Path, taskloom.Task[Invoice]]] = []
            for path in files:  # all stored first; the worker performs them as it can
                task = await rt.submit(
                    agent,
                    f"The invoice:\n\n{path.read_text(encoding='utf-8')}",
                    output_type=Invoice,
                    name="extract_invoice",
                    payload={"file": str(path)},
                    on_event=progress.watcher(path.name),
                )
                submitted.append((path, task))
            rows: list[dict[str, Any]] = []
            for path, task in submitted:
                try:
                    invoice = await task.result()
                except taskloom.TaskEndedError:
                    invoice = None
                rows.append(row_of(path, await rt.get(task.id), invoice))
    finally:
        await agent.model.close()
    write_results(rows, out)
    done = sum(r["state"] == "completed" for r in rows)
    checks = sum(bool(r["check"]) for r in rows if r["state"] == "completed")
    print(f"{done} of {len(rows)} extracted, {checks} to check by hand")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.csv')}")
    return 0 if done == len(rows) else 1


def main() -> None:
    """Read the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "folder", nargs="?", type=Path, default=HERE / "data" / "invoices", help="*.txt files"
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N files")
    parser.add_argument("--store", default=None, help="store URL (default: the CLI's store)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "taskloom-examples" / "invoices",
        help="where to write OUT.json and OUT.csv",
    )
    args = parser.parse_args()
    files = sorted(args.folder.glob("*.txt"))[: args.limit]
    if not files:
        sys.exit(f"no .txt files in {args.folder}")
    sys.exit(asyncio.run(extract(files, args.store or default_store(), args.out)))


if __name__ == "__main__":
    main()
