"""The crash tests' audit: each task's journal (its events) against the ledger of what ran.

A step is journaled at the epoch of the claim in force when its event was written: the
epoch of the last `recovered` event before it, else 1 (the first claim). A ledger `start`
of that step at a later epoch is a journaled step executed again; one at an earlier epoch
was in flight when its worker died (or lost its lease) and was run again before it was
journaled, which model calls and pure and idempotent tools may be.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import taskloom
from taskloom import Event, ModelCalled, TaskRecovered, ToolCalled
from tests.durable._harness import events_of, read_ledger

__all__ = ("Audit", "audit", "check")


@dataclass(kw_only=True)
class Audit:
    """What the journal and the ledger say about a set of tasks (see `audit`)."""

    tasks: int = 0
    outcomes: Counter[str] = field(default_factory=Counter[str])
    """`completed`, `failed/outcome_unknown`, ... per task."""
    recoveries: int = 0
    """`recovered` events after a lost lease."""
    releases: int = 0
    """`recovered` events after a clean release."""
    journaled: Counter[str] = field(default_factory=Counter[str])
    """Journaled steps, by kind (`model`, `tool`)."""
    executions: Counter[str] = field(default_factory=Counter[str])
    """Ledger `start` lines, by kind (`model`, `tool`)."""
    rerun_in_flight: int = 0
    """Executions of a step at an epoch before the one that journaled it: in flight at a crash
    (or by a worker whose lease ended), then run again: allowed for model calls and for pure
    and idempotent tools."""
    reexecuted: list[tuple[str, str, int, int]] = field(
        default_factory=list[tuple[str, str, int, int]]
    )
    """`(task, step, journaled at epoch, executed at epoch)`: a journaled step run again."""
    twice_in_one_epoch: list[tuple[str, str, int]] = field(
        default_factory=list[tuple[str, str, int]]
    )
    """`(task, step, epoch)`: one claim ran a step twice."""
    journaled_twice: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    """`(task, step)`: a step whose result was written to the journal twice."""
    duplicate_sends: list[str] = field(default_factory=list[str])
    """Tasks whose `at_most_once` tool started more than once."""
    completed_without_one_send: list[str] = field(default_factory=list[str])
    """Completed order tasks whose `send` did not start exactly once."""
    bad_epochs: list[tuple[str, int, int]] = field(default_factory=list[tuple[str, int, int]])
    """`(task, recovered.epoch, expected)`: a claim's epoch that is not one more than before."""

    def summary(self) -> str:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return (
            f"tasks {self.tasks}: {outcomes}; recoveries {self.recoveries}, releases"
            f" {self.releases}; journaled steps {dict(self.journaled)}; executions"
            f" {dict(self.executions)}; re-run after being in flight {self.rerun_in_flight};"
            f" journaled steps executed again {len(self.reexecuted)}; duplicate at_most_once"
            f" effects {len(self.duplicate_sends)}"
        )


def _journal(events: Iterable[Event], audit: Audit, task_id: str) -> dict[str, int]:
    """Each journaled step's epoch: that of the claim in force when it was written.

    `tool_started` events are not results (an `at_most_once` call about to run): skipped.
    """
    epoch, claims = 1, 1
    journal: dict[str, int] = {}
    for event in events:
        if isinstance(event, TaskRecovered):
            claims += 1
            if event.epoch != claims:
                audit.bad_epochs.append((task_id, event.epoch, claims))
            epoch = event.epoch
            if event.released:
                audit.releases += 1
            else:
                audit.recoveries += 1
        elif isinstance(event, ModelCalled | ToolCalled):
            if event.step in journal:
                audit.journaled_twice.append((task_id, event.step))
            journal.setdefault(event.step, epoch)
            audit.journaled["model" if isinstance(event, ModelCalled) else "tool"] += 1
    return journal


def _ledger_starts(ledger: Path, audit: Audit) -> dict[str, dict[str, list[int]]]:
    """The epochs at which each task's steps started, from the ledger (`send` counted apart)."""
    starts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list[int]))
    for line in read_ledger(ledger):
        if line.phase == "start":
            starts[line.task][line.step].append(line.epoch)
            audit.executions["model" if line.what == "model" else "tool"] += 1
            if line.what == "send":
                starts[line.task]["send"].append(line.epoch)
    return starts


def _compare(
    audit: Audit, task_id: str, journal: dict[str, int], ran: dict[str, list[int]]
) -> None:
    """Compare one task's journal with what the ledger says ran."""
    for step, epoch in journal.items():
        for ran_at in ran.get(step, []):
            if ran_at > epoch:
                audit.reexecuted.append((task_id, step, epoch, ran_at))
            elif ran_at < epoch:
                audit.rerun_in_flight += 1
    for step, epochs in ran.items():
        if step != "send":
            twice = [e for e, c in Counter(epochs).items() if c > 1]
            audit.twice_in_one_epoch.extend((task_id, step, e) for e in twice)
    if len(ran.get("send", [])) > 1:
        audit.duplicate_sends.append(task_id)


async def audit(rt: taskloom.Runtime, ids: Collection[str], ledger: Path) -> Audit:
    """Check every task's journal (its events) against the ledger of what actually ran.

    A step is journaled at the epoch of the claim in force when its event was written: the
    epoch of the last `recovered` event before it, else 1 (the first claim). An execution
    of that step (a ledger `start`) at a later epoch is a journaled step executed again.
    """
    result = Audit(tasks=len(ids))
    starts = _ledger_starts(ledger, result)
    for task_id in ids:
        rec = await rt.store.get(task_id)
        if rec is None:
            result.outcomes["lost"] += 1
            continue
        state = rec.state.value
        result.outcomes[state if state != "failed" else f"failed/{rec.reason}"] += 1
        journal = _journal(await events_of(rt, task_id), result, task_id)
        ran = starts.get(task_id, {})
        _compare(result, task_id, journal, ran)
        sends = len(ran.get("send", []))
        if state == "completed" and sends != 1 and rec.name.startswith("order"):
            result.completed_without_one_send.append(task_id)
    return result


def check(audit: Audit, *, allowed: Collection[str]) -> None:
    """Assert the crash test's claims; every list must be empty."""
    assert audit.outcomes["lost"] == 0, f"{audit.outcomes['lost']} tasks lost"
    unexpected = {k: v for k, v in audit.outcomes.items() if k not in allowed}
    assert not unexpected, f"tasks ended otherwise than {sorted(allowed)}: {unexpected}"
    assert not audit.reexecuted, f"journaled steps executed again: {audit.reexecuted[:10]}"
    assert not audit.duplicate_sends, f"at_most_once ran twice: {audit.duplicate_sends[:10]}"
    assert not audit.journaled_twice, f"steps journaled twice: {audit.journaled_twice[:10]}"
    assert not audit.twice_in_one_epoch, f"run twice by one claim: {audit.twice_in_one_epoch[:10]}"
    assert not audit.completed_without_one_send, (
        f"completed without exactly one send: {audit.completed_without_one_send[:10]}"
    )
    assert not audit.bad_epochs, f"claims whose epoch did not go up by one: {audit.bad_epochs[:10]}"
