"""The journal: a task's own event log, read back so that a resumed agent run replays it.

There is no journal table. A task's journal is its `model_called` and `tool_called` events
(each with a `step` key and a fingerprint `fp`), the `tool_started` events written before an
`at_most_once` tool runs, and its `input_required`/`resumed` pairs. Each was committed before
the loop used the result, so after a crash the loop runs again from the start and every step
it finds here is replayed, not executed: the model is not asked again, a tool does not run
again, a human is not asked again. A fresh run reads nothing and replays nothing.

Fingerprints are sha256 of canonical JSON (sorted keys, compact), the same in every process
and Python run (no `hash()`, no `id()`, no set ordering). A step whose request differs from
the journaled one ends the task `nondeterminism`: the agent changed under it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import timedelta
from typing import Any, Literal, cast

from .._asking import PastAsk
from .._json import dumps
from .._record import now_ms
from ..events import (
    Event,
    ModelCalled,
    ModelRetried,
    TaskInputRequired,
    TaskResumed,
    ToolCalled,
    ToolStarted,
)
from ..models import (
    AssistantMessage,
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    OutputSpec,
    RequestUsage,
    SystemMessage,
    ToolCall,
    UserMessage,
)
from ..task import Task
from ..tools import Tool
from ..usage import Usage
from ._limits import Limits

__all__ = (
    "Journal",
    "OutcomeAnswer",
    "Prints",
    "Stop",
    "UnknownOutcome",
    "canonical_arguments",
    "changed",
    "load_journal",
    "model_fp",
    "response_of",
    "tool_fp",
    "unknown_outcome",
)

UnknownOutcome = Literal["ask", "fail"]
"""What a resumed run does about an `at_most_once` tool call that a crash cut off: ask a
human whether it took effect, or fail the task (`outcome_unknown`)."""


class Stop(Exception):
    """End the task `failed` with `reason`.

    A limit, the loop guard, a guardrail, a changed agent or an unknown outcome stops it.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class OutcomeAnswer:
    """A human's answer about an `at_most_once` tool call cut off by a crash: did it happen?

    When it did, `result` (or "done, as a human confirmed") is shown to the model as the
    call's result; when it did not, the call runs now.
    """

    happened: bool
    """Whether the call took effect."""
    result: str = ""
    """What the call gave, as the model should see it."""


@dataclass(slots=True, kw_only=True)
class Journal:
    """The steps of a task's earlier runs, by step key; each is taken once as it is replayed."""

    models: dict[str, ModelCalled] = field(default_factory=dict[str, ModelCalled])
    """`model_called` events by step (`m1`, `m2`, ...)."""
    tools: dict[str, ToolCalled] = field(default_factory=dict[str, ToolCalled])
    """`tool_called` events by step (`t1.0`, ...)."""
    in_flight: dict[str, ToolStarted] = field(default_factory=dict[str, ToolStarted])
    """`tool_started` events without their `tool_called`: calls cut off by a crash."""
    asks: dict[str, PastAsk] = field(default_factory=dict[str, PastAsk])
    """Questions answered, or still open, by key (`t2.0/1`, `ask1`)."""
    retries: int = 0
    """Model calls retried so far (they count against `Limits.task_retries`)."""
    waited_ms: int = 0
    """Time spent `input_required` (it does not count against the deadline)."""
    waiting_since_ms: int | None = None
    """When the open question was asked, if the task waits for an answer."""
    usage: Usage | None = None
    """The task's stored usage, settled once every step is replayed (see `settle`)."""
    started_ms: int | None = None
    """When the task started, for a journal read from its log."""

    @property
    def replaying(self) -> bool:
        """Whether journaled steps remain to replay (the loop then writes no other notes)."""
        return bool(self.models or self.tools or self.in_flight or self.asks)

    def take_model(self, step: str) -> ModelCalled | None:
        return self.models.pop(step, None)

    def take_tool(self, step: str) -> ToolCalled | None:
        """The ended call of `step`; what was asked during it is replayed with it."""
        called = self.tools.pop(step, None)
        if called is not None:
            self.in_flight.pop(step, None)
            prefix = f"{step}/"
            for key in [k for k in self.asks if k.startswith(prefix)]:
                del self.asks[key]
        return called

    def take_started(self, step: str) -> ToolStarted | None:
        return self.in_flight.pop(step, None)

    def forget(self) -> None:
        """Drop what is left: a step the journal does not hold was executed.

        Entries left then belong to a path this run did not take.
        """
        self.models.clear()
        self.tools.clear()
        self.in_flight.clear()
        self.asks.clear()

    def time_left(self, deadline_seconds: float) -> float:
        """What is left of `deadline_seconds` once the time the task has worked is taken.

        The task has worked since it started, except while it waited for answers; a fresh
        run (no journal read) has worked no time yet.
        """
        if self.started_ms is None:
            return deadline_seconds
        now = now_ms()
        waited = self.waited_ms
        if self.waiting_since_ms is not None:
            waited += now - self.waiting_since_ms
        worked = max(0, now - self.started_ms - waited) / 1000
        return max(0.0, deadline_seconds - worked)

    def settle(self, usage: Usage) -> Usage:
        """`usage`, or the task's stored usage if more, once the last step is replayed.

        The stored usage also holds what sub-agent tasks charged to this one, which a
        replayed tool result does not bring back.
        """
        stored = self.usage
        if stored is None or self.replaying:
            return usage
        self.usage = None
        return Usage(
            requests=max(usage.requests, stored.requests),
            tool_calls=max(usage.tool_calls, stored.tool_calls),
            input_tokens=max(usage.input_tokens, stored.input_tokens),
            output_tokens=max(usage.output_tokens, stored.output_tokens),
            cost_usd=max(usage.cost_usd, stored.cost_usd),
            priced=usage.priced and stored.priced,
        )

    @classmethod
    def of(
        cls, events: Iterable[Event], *, usage: Usage | None = None, started_ms: int | None = None
    ) -> Journal:
        """The journal in a task's events (in `seq` order)."""
        journal = cls(usage=usage, started_ms=started_ms)
        started: dict[str, ToolStarted] = {}
        asking: tuple[str, TaskInputRequired] | None = None
        for event in events:
            if isinstance(event, ModelCalled):
                if event.step:
                    journal.models[event.step] = event
            elif isinstance(event, ToolCalled):
                if event.step:
                    journal.tools[event.step] = event
            elif isinstance(event, ToolStarted):
                if event.step:
                    started[event.step] = event
            elif isinstance(event, ModelRetried):
                journal.retries += 1
            elif isinstance(event, TaskInputRequired):
                asking = _asked(journal, event)
            elif isinstance(event, TaskResumed):
                _answered(journal, event, asking)
                asking = None
        journal.in_flight = {k: v for k, v in started.items() if k not in journal.tools}
        return journal


def _asked(journal: Journal, event: TaskInputRequired) -> tuple[str, TaskInputRequired] | None:
    at = _ms(event)
    journal.waiting_since_ms = at
    request: Any = event.request
    step: Any = cast(dict[str, Any], request).get("step") if isinstance(request, dict) else None
    if not isinstance(step, str) or not step:
        return None
    journal.asks[step] = PastAsk(seq=event.seq, at_ms=at)  # open until its answer comes
    return step, event


def _answered(
    journal: Journal, event: TaskResumed, asking: tuple[str, TaskInputRequired] | None
) -> None:
    if journal.waiting_since_ms is not None:
        journal.waited_ms += max(0, _ms(event) - journal.waiting_since_ms)
        journal.waiting_since_ms = None
    if asking is None:
        return
    step, request = asking
    if event.withdrawn:
        journal.asks.pop(step, None)  # taken back unanswered: asked again when reached
    else:
        journal.asks[step] = PastAsk(
            seq=request.seq, at_ms=_ms(request), answered=True, answer=event.answer
        )


def _ms(event: Event) -> int:
    return round(event.at.timestamp() * 1000)


async def load_journal(task: Task) -> Journal:
    """Read the journal of `task` from its store (the whole event log, in pages)."""
    events = await task._host.history(task.id)  # pyright: ignore[reportPrivateUsage] -- the handle's runtime
    started = task._rec.started_ms or task._rec.created_ms  # pyright: ignore[reportPrivateUsage] -- same package
    return Journal.of(events, usage=task.usage, started_ms=started)


def response_of(called: ModelCalled) -> ModelResponse:
    """The model's answer as the journal kept it."""
    return ModelResponse(
        text=called.text,
        tool_calls=tuple(
            ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"])
            for c in called.tool_calls
        ),
        usage=RequestUsage(
            input_tokens=called.input_tokens,
            output_tokens=called.output_tokens,
            cache_read_tokens=called.cache_read_tokens,
            cache_write_tokens=called.cache_write_tokens,
        ),
        finish_reason=called.finish_reason,  # pyright: ignore[reportArgumentType] -- written by the loop
        model_name=called.model_name,
    )


async def unknown_outcome(
    task: Task,
    policy: UnknownOutcome,
    tool: Tool,
    arguments: dict[str, Any],
    step: str,
    limits: Limits,
) -> str | None:
    """An `at_most_once` call was cut off by a crash: it may or may not have taken effect.

    Returns:
        The result to show the model, or `None` when the call did not happen (run it now).

    Raises:
        Stop: the policy is `"fail"` (reason `outcome_unknown`).
    """
    shown = dumps(arguments)
    if policy == "fail":
        raise Stop(
            "outcome_unknown",
            f"the call {tool.name}({shown}) (step {step!r}) was in flight when the task's"
            f" worker stopped, and {tool.name!r} is at_most_once: it is not run again without"
            " knowing whether it took effect (Agent(unknown_outcome='ask') asks a human)",
        )
    answer: OutcomeAnswer = await task.ask(
        f"The call {tool.name}({shown}) was cut off when the worker running this task"
        " stopped. Did it take effect?",
        answer_type=OutcomeAnswer,
        kind="question",
        details={"tool": tool.name, "arguments": json.loads(shown), "step": step},
        input_timeout=timedelta(seconds=limits.input_timeout_seconds),
    )
    if not answer.happened:
        return None
    return answer.result or "done, as a human confirmed"


def changed(step: str) -> str:
    """The message of a `nondeterminism` failure at `step`."""
    return (
        f"step {step!r} differs from the task's journal: the agent (its instructions, tools,"
        " output type or settings) or its inputs changed since the task started, so its"
        " earlier steps cannot be replayed; run it as a new task"
    )


def model_fp(request: ModelRequest) -> str:
    """The fingerprint of a model request: its messages, tools, output and settings.

    Not the model's name: a resumed task may switch models. It is the sha256 of one line of
    canonical JSON for the tools, output and settings, then one per message; `Prints`
    computes the same value as the conversation grows.
    """
    sha = hashlib.sha256(_line([request.tools, request.output, request.settings]))
    for message in request.messages:
        sha.update(_message_line(message))
    return sha.hexdigest()[:16]


class Prints:
    """The fingerprints of one run's model requests (`model_fp`), each message read once.

    The loop only appends to its conversation, so each request extends the one before.
    """

    __slots__ = ("_seen", "_sha")

    def __init__(self, tools: tuple[Tool, ...], output: OutputSpec | None, settings: ModelSettings):
        self._sha = hashlib.sha256(_static_line(tools, output, settings))
        self._seen = 0

    def of(self, messages: Sequence[Message]) -> str:
        """The fingerprint of the request made of `messages` and this run's tools."""
        sha = self._sha
        for message in messages[self._seen :]:
            sha.update(_message_line(message))
        self._seen = len(messages)
        return sha.copy().hexdigest()[:16]


# the tools, output and settings of an agent seldom change: their line is kept (by the
# identity of the output spec, which is held so that its id cannot be reused)
_STATIC: dict[tuple[Any, ...], tuple[OutputSpec | None, bytes]] = {}


def _static_line(
    tools: tuple[Tool, ...], output: OutputSpec | None, settings: ModelSettings
) -> bytes:
    try:
        key = (tools, id(output), settings)
        kept = _STATIC.get(key)
    except TypeError:  # a tool whose function cannot be hashed: nothing to keep
        return _line([tuple(t.definition() for t in tools), output, settings])
    if kept is None or kept[0] is not output:
        if len(_STATIC) >= 256:
            _STATIC.clear()
        line = _line([tuple(t.definition() for t in tools), output, settings])
        kept = _STATIC[key] = (output, line)
    return kept[1]


def tool_fp(name: str, arguments: str) -> str:
    """The fingerprint of a tool call: the tool's name and its canonical arguments."""
    line = _flat([name, canonical_arguments(arguments)])
    return hashlib.sha256(_utf8(line)).hexdigest()[:16]


def canonical_arguments(arguments: str) -> str:
    """The arguments' JSON with sorted keys, or the text itself when it is not JSON."""
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
    return _sorted(value) if _SORTED is not None else _ENCODER.encode(value)


def _line(value: Any) -> bytes:
    """Canonical JSON (sorted keys, compact), as one line."""
    return _utf8(_ENCODER.encode(value) + "\n")


def _message_line(message: Message) -> bytes:
    """A message's fields as one line of JSON, in a fixed order.

    A list of its fields is quicker to write than a dict made by `_plain`, and this runs
    for every message of every run.
    """
    parts: list[Any]
    if isinstance(message, UserMessage | SystemMessage):
        parts = [message.role, message.content]
    elif isinstance(message, AssistantMessage):
        calls = [[c.id, c.name, c.arguments] for c in message.tool_calls]
        parts = [message.role, message.text, calls]
    else:
        parts = [message.role, message.call_id, message.name, message.content, message.is_error]
    return _utf8(_flat(parts) + "\n")


def _utf8(text: str) -> bytes:
    # a lone surrogate (JSON may escape one) is kept as its code, not refused
    return text.encode("utf-8", "surrogatepass")


_FIELDS: dict[type[Any], tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """A dataclass as a dict of its fields; any other mapping as a dict."""
    if is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        names = _FIELDS.get(cls)
        if names is None:
            names = _FIELDS[cls] = tuple(f.name for f in fields(value))
        return {name: getattr(value, name) for name in names}
    if isinstance(value, Mapping):
        return dict(cast(Mapping[str, Any], value))
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain
)


# `JSONEncoder.encode` builds a C encoder on every call; these are built once (as in
# `taskloom._json`), for what runs each turn: lists of scalars, and parsed JSON, which
# holds no cycles and nothing to convert
def _c_encoder(*, sort_keys: bool) -> Any:
    make: Any = getattr(json.encoder, "c_make_encoder", None)  # private; always in CPython
    if make is None:  # pragma: no cover -- CPython has it
        return None
    return make(None, None, json.encoder.encode_basestring, None, ":", ",", sort_keys, False, True)


_FLAT = _c_encoder(sort_keys=False)
_SORTED = _c_encoder(sort_keys=True)


def _flat(value: list[Any]) -> str:
    """Compact JSON of a list of scalars (and lists of them)."""
    if _FLAT is None:  # pragma: no cover -- CPython has the C encoder
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return "".join(_FLAT(value, 0))


def _sorted(value: Any) -> str:
    """Canonical JSON of a parsed JSON value."""
    return "".join(_SORTED(value, 0))
