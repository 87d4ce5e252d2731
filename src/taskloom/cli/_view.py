"""How tasks look in a terminal: event lines, the live status panel, records and tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import RenderableType

    import taskloom

__all__ = ("Follow", "cost_of", "event_json", "event_line", "record_json", "when")


def when(moment: datetime | None) -> str:
    """A local time, to the second; `-` for none."""
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _cost(usage: taskloom.Usage) -> str:
    if usage.requests == 0:
        return "$0"
    return f"${usage.cost_usd:.6f}" if usage.priced else "unpriced"


def event_line(event: taskloom.Event) -> str:  # noqa: C901 -- one case per kind of event
    """One event as a line a person reads."""
    import taskloom

    match event:
        case taskloom.ModelCalled():
            calls = ", ".join(f"{c['name']}({c['arguments']})" for c in event.tool_calls)
            what = f"asks for {calls}" if calls else f"answers {event.text[:80]!r}"
            cost = "unpriced" if event.cost_usd is None else f"${event.cost_usd:.6f}"
            return (
                f"turn {event.turn}: {event.model} {what}"
                f"  [{event.input_tokens}+{event.output_tokens} tokens, {cost},"
                f" {event.duration_ms} ms]"
            )
        case taskloom.ToolCalled():
            outcome = event.result if event.error is None else f"error: {event.error}"
            return f"tool {event.name}({event.arguments}) -> {str(outcome)[:120]}"
        case taskloom.ToolStarted():
            return f"tool {event.name}({event.arguments}) starting (at most once)"
        case taskloom.TaskProgressed():
            return f"progress {event.progress}"
        case taskloom.TaskInputRequired():
            request: Any = event.request
            prompt = (
                cast(dict[str, Any], request).get("prompt") if isinstance(request, dict) else ""
            )
            return f"input required: {prompt}"
        case taskloom.TaskResumed():
            return "resumed" + (" (question withdrawn)" if event.withdrawn else " with an answer")
        case taskloom.TaskRecovered():
            how = "released by" if event.released else "lease ended; taken over by"
            return f"recovered ({how} {event.worker}, epoch {event.epoch})"
        case taskloom.TaskStarted():
            return "started" + (f" on {event.worker}" if event.worker else "")
        case taskloom.TaskFailed():
            return f"failed ({event.reason}): {event.message}"
        case taskloom.TaskCancelled() | taskloom.TaskRejected():
            return f"{event.kind}" + (f": {event.reason}" if event.reason else "")
        case taskloom.TaskExpired():
            return f"expired ({event.reason})"
        case taskloom.ModelRetried():
            return f"model retry {event.attempt} in {event.delay_s:.1f}s: {event.error}"
        case taskloom.OutputRejected():
            return f"answer rejected: {event.error[:100]}"
        case taskloom.GuardrailChecked():
            return f"guardrail {event.name} ({event.stage}): {event.verdict}"
        case _:
            return event.kind


class Follow:
    """What the live view shows of a task while it runs, updated from its events."""

    def __init__(self, task: taskloom.Task[Any], *, hint: str = "", after: int = 0) -> None:
        self.task_id = task.id
        self.created = task.created_at
        self.hint = hint
        """What Ctrl-C does, shown while the task has not ended."""
        self.name = task.name
        self.state = task.state.value
        self.step = "waiting for a worker" if self.state == "submitted" else "-"
        self.turns = 0
        self.tool_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0
        self.priced = True
        self.ended_at: datetime | None = task.ended_at
        self.last_seq = 0
        self._asked_during = "-"
        self._counted = 0
        """Events up to this `seq` are in the counts already (when not shown from the start)."""
        if after > 0:
            usage = task.usage
            self.tool_calls, self.cost, self.priced = usage.tool_calls, usage.cost_usd, usage.priced
            self.input_tokens, self.output_tokens = usage.input_tokens, usage.output_tokens
            self._counted = task.last_seq

    def see(self, event: taskloom.Event) -> None:
        """Take one event into account."""
        import taskloom

        self.last_seq = event.seq
        match event:
            case taskloom.TaskStarted():
                self.state, self.step = "working", "model turn 1"
            case taskloom.TaskRecovered():
                self.step = f"resumed by {event.worker}"
            case taskloom.ModelCalled():
                self.turns = event.turn
                if event.seq > self._counted:
                    self.input_tokens += event.input_tokens
                    self.output_tokens += event.output_tokens
                    self.priced = self.priced and event.cost_usd is not None
                    self.cost += event.cost_usd or 0.0
                calls = ", ".join(f"{c['name']}({c['arguments']})" for c in event.tool_calls)
                if len(calls) > 70:
                    calls = calls[:69] + "…"
                self.step = f"tool {calls}" if calls else "checking the answer"
            case taskloom.ToolCalled():
                if event.seq > self._counted:
                    self.tool_calls += 1
                self.step = f"model turn {self.turns + 1}"
            case taskloom.TaskInputRequired():
                self.state, self._asked_during = "input_required", self.step
                self.step = f"waiting for an answer: taskloom respond {self.task_id} ANSWER"
            case taskloom.TaskResumed():
                self.state, self.step = "working", self._asked_during
            case _ if event.kind in ("completed", "failed", "cancelled", "expired", "rejected"):
                self.state, self.step, self.ended_at = event.kind, "ended", event.at
            case _:
                pass

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def since_created(self, moment: datetime) -> str:
        """When `moment` was, after the task was created: `12.34s`, `3m05s`, `2h03m`."""
        seconds = max(0.0, (moment - self.created).total_seconds())
        if seconds < 100:
            return f"{seconds:.2f}s"
        minutes, secs = divmod(int(seconds), 60)
        if minutes < 100:
            return f"{minutes}m{secs:02d}s"
        return f"{minutes // 60}h{minutes % 60:02d}m"

    def cost_text(self) -> str:
        return f"${self.cost:.6f}" if self.priced else "unpriced"

    def panel(self) -> RenderableType:
        """The live panel."""
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("task", f"{self.name} {self.task_id}")
        table.add_row("state", self.state)
        table.add_row("step", self.step)
        table.add_row("tool calls", str(self.tool_calls))
        table.add_row("tokens", f"{self.input_tokens} in, {self.output_tokens} out")
        table.add_row("cost", self.cost_text())
        table.add_row("elapsed", self.since_created(self.ended_at or datetime.now(UTC)))
        if self.hint and not self.ended:
            table.add_row("", self.hint, style="dim")
        return table


def record_json(task: taskloom.Task[Any]) -> dict[str, Any]:
    """A task's record as JSON-ready data."""
    usage = task.usage
    error = task.error
    return {
        "id": task.id,
        "name": task.name,
        "state": task.state.value,
        "reason": task.reason,
        "owner": task.owner,
        "parent_id": task.parent_id,
        "payload": task.payload,
        "progress": dict(task.current_progress),
        "result": task.output,
        "error": None if error is None else {"type": error.type, "message": error.message},
        "created_at": task.created_at.isoformat(),
        "started_at": None if task.started_at is None else task.started_at.isoformat(),
        "ended_at": None if task.ended_at is None else task.ended_at.isoformat(),
        "scheduled_at": None if task.scheduled_at is None else task.scheduled_at.isoformat(),
        "expires_at": None if task.expires_at is None else task.expires_at.isoformat(),
        "priority": task.priority,
        "idempotency_key": task.idempotency_key,
        "worker": task.worker,
        "epoch": task.epoch,
        "recoveries": task.recoveries,
        "retry_of": task.retry_of,
        "last_seq": task.last_seq,
        "usage": {
            "requests": usage.requests,
            "tool_calls": usage.tool_calls,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cost_usd": usage.cost_usd,
            "priced": usage.priced,
        },
    }


def cost_of(usage: taskloom.Usage) -> str:
    """A task's cost as text."""
    return _cost(usage)


def event_json(event: taskloom.Event) -> dict[str, Any]:
    """One event as JSON-ready data: `seq`, `at`, `kind` and its payload fields."""
    from taskloom.events import event_data

    return {"seq": event.seq, "at": event.at.isoformat(), "kind": event.kind, **event_data(event)}
