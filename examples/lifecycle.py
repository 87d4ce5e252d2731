"""The task lifecycle on the embedded SQLite store, end to end.

Three support tickets are summarised concurrently, each as a task with live progress; a
fourth is cancelled from outside while it works and a fifth runs past its time to live.
A follower prints every event as it is written, then the tasks are listed from the store.

    python examples/lifecycle.py [--store sqlite:///taskloom-demo.db]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import taskloom

TICKETS = [
    {
        "id": "T-101",
        "text": "The export button does nothing on Safari when the report has more than"
        " ten thousand rows; Chrome works.",
    },
    {
        "id": "T-102",
        "text": "Please add a dark theme to the dashboard; the white background is hard"
        " on the eyes during night shifts.",
    },
    {
        "id": "T-103",
        "text": "Invoices for March were emailed twice to every customer in the EU"
        " region, some of whom paid twice.",
    },
    {
        "id": "T-104",
        "text": "Bulk import of users from CSV times out after five minutes for files"
        " with more than fifty thousand lines.",
    },
    {
        "id": "T-105",
        "text": "Search results ignore accents, so 'cafe' does not find 'café' in"
        " product names or descriptions.",
    },
]


async def summarise(task: taskloom.Task, ticket: dict[str, str], pace: float) -> None:
    """Read a ticket a few words at a time, reporting progress, then record a summary."""
    words = ticket["text"].split()
    for read in range(4, len(words) + 4, 4):
        await asyncio.sleep(pace)
        await task.progress({"words_read": min(read, len(words)), "words": len(words)})
    summary = " ".join(words[:7]) + " ..."
    await task.complete({"ticket": ticket["id"], "summary": summary, "words": len(words)})


async def follow(rt: taskloom.Runtime, task_id: str, label: str, started: float) -> None:
    """Print every event of one task as it is written, until the task ends."""
    async for event in rt.events(task_id):
        detail = ""
        if isinstance(event, taskloom.TaskProgressed):
            detail = f"{event.progress['words_read']}/{event.progress['words']} words"
        elif isinstance(event, taskloom.TaskCompleted):
            detail = str(event.result["summary"])
        elif isinstance(event, taskloom.TaskCancelled | taskloom.TaskExpired):
            detail = event.reason
        elapsed = time.perf_counter() - started
        print(f"{elapsed:6.2f}s  {label}  #{event.seq:<2} {event.kind:<11} {detail}")


async def run_one(
    rt: taskloom.Runtime, ticket: dict[str, str], *, ttl: float, pace: float, started: float
) -> taskloom.Task:
    """Run one ticket's task while a follower prints its events."""
    job = rt.task("summarise-ticket", owner="demo", payload=ticket, ttl_seconds=ttl)

    async def work() -> None:
        try:
            async with job as task:
                await summarise(task, ticket, pace)
        except taskloom.TaskEndedError:
            pass  # cancelled or expired: the follower prints how

    async with asyncio.TaskGroup() as group:
        group.create_task(work())
        await asyncio.sleep(0.01)  # the record exists once the block is entered
        group.create_task(follow(rt, job.id, ticket["id"], started))
    return await rt.get(job.id)


async def main(store: str) -> None:
    """Run five ticket tasks, cancel one, let one expire, then list them."""
    started = time.perf_counter()
    async with taskloom.open(store) as rt:
        print(f"store: {rt.store.url}\n")
        plans = [
            (TICKETS[0], 30.0, 0.05),
            (TICKETS[1], 30.0, 0.07),
            (TICKETS[2], 30.0, 0.04),
            (TICKETS[3], 30.0, 0.15),  # cancelled from outside below
            (TICKETS[4], 0.4, 0.2),  # too slow for its time to live
        ]
        runs = [
            asyncio.create_task(run_one(rt, t, ttl=ttl, pace=pace, started=started))
            for t, ttl, pace in plans
        ]
        await asyncio.sleep(0.45)
        page = await rt.list(state="working", owner="demo")
        victim = next(t for t in page.tasks if t.payload["id"] == "T-104")
        await rt.cancel(victim.id, reason="duplicate of T-099")
        tasks = await asyncio.gather(*runs)

        print("\nrecords in the store:")
        print(f"  {'ticket':<7} {'state':<10} {'reason':<18} {'events':>6}  result")
        for task in tasks:
            result = task.output["summary"] if task.output else ""
            print(
                f"  {task.payload['id']:<7} {task.state.value:<10} {task.reason or '':<18}"
                f" {task.last_seq:>6}  {result}"
            )
        total = len((await rt.list(owner="demo", limit=1000)).tasks)
        print(
            f"\n{total} demo tasks stored in total (run again to add more);"
            f" done in {time.perf_counter() - started:.2f}s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", default="sqlite:///taskloom-demo.db")
    asyncio.run(main(parser.parse_args().store))
