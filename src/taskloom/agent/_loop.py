"""The agent loop: model call, tool dispatch, output validation, guardrails and limits.

`run_loop` drives one task that is already entered (`working`) to its output. It writes
the transcript as events (`model_called`, `tool_called`, `guardrail_checked`,
`output_rejected`, `model_retried`) and ends the task honestly when a limit, the loop guard,
a guardrail or an invalid output stops it: `failed` with that reason, never `completed`.
The caller completes the task with the returned output.

The transcript is also the journal (see `_journal`): a resumed run replays the model and
tool steps it finds there instead of executing them again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .._asking import ASK_SCOPE, INPUT_TIMEOUT, PAUSABLE, AskScope
from .._json import dumps
from ..errors import ModelError, TaskEndedError, ToolError
from ..models import (
    AssistantMessage,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from ..task import Task
from ..tools import Tool, ToolArgumentsError, result_text
from ..usage import Usage, price
from ._guardrails import Guardrail, guardrail_name, judge
from ._journal import (
    Journal,
    Prints,
    Stop,
    canonical_arguments,
    changed,
    load_journal,
    response_of,
    tool_fp,
    unknown_outcome,
)
from ._limits import Limits
from ._output import OutputInvalid, OutputType

if TYPE_CHECKING:
    from ._agent import Agent

__all__ = ("Approval", "ToolCallCheck", "charge_parent", "inherit_limits", "run_loop")

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallCheck:
    """What a tool guardrail is shown: the tool's name and its validated arguments."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    """A human's answer to "may this tool call run?"."""

    approved: bool
    reason: str = ""


@dataclass(slots=True, kw_only=True)
class _Run:
    agent: Agent
    task: Task
    output: OutputType[Any]
    limits: Limits
    on_token: Callable[[str], None] | None
    deadline: asyncio.Timeout | None = None
    journal: Journal = field(default_factory=Journal)
    usage: Usage = field(default_factory=Usage)
    retries_used: int = 0
    failures: Counter[tuple[str, str]] = field(default_factory=Counter[tuple[str, str]])


_CURRENT_RUN: ContextVar[_Run | None] = ContextVar("taskloom_agent_run", default=None)


def inherit_limits(limits: Limits) -> Limits:
    """A child task's limits: its own, but no more than what its parent run has left."""
    parent = _CURRENT_RUN.get()
    if parent is None:
        return limits
    left = parent.limits
    used = parent.usage
    loop = asyncio.get_running_loop()
    when = parent.deadline.when() if parent.deadline is not None else None
    seconds = limits.deadline_seconds if when is None else when - loop.time()
    return replace(
        limits,
        max_tokens=max(1, min(limits.max_tokens, left.max_tokens - used.total_tokens)),
        max_cost_usd=max(1e-9, min(limits.max_cost_usd, left.max_cost_usd - used.cost_usd)),
        max_tool_calls=max(1, min(limits.max_tool_calls, left.max_tool_calls - used.tool_calls)),
        deadline_seconds=max(1e-3, min(limits.deadline_seconds, seconds)),
    )


def charge_parent(usage: Usage) -> None:
    """Add what a child task used to its parent run's usage."""
    parent = _CURRENT_RUN.get()
    if parent is not None:
        parent.usage = parent.usage + usage


async def run_loop(
    agent: Agent,
    task: Task,
    prompt: str,
    *,
    output: OutputType[T],
    limits: Limits,
    on_token: Callable[[str], None] | None = None,
    resumed: bool = False,
) -> T:
    """Drive `task` to its output, or end it honestly and raise why.

    `resumed=True`: the task ran before (another worker took it over); its journal is read
    and replayed, and the deadline counts the time it has already worked.

    Raises:
        TaskFailedError: a limit, the loop guard, a guardrail, invalid output or a changed
            agent (`nondeterminism`) ended it.
        TaskExpiredError: the deadline passed (or a human did not answer in time).
    """
    journal = await load_journal(task) if resumed else Journal()
    # a resumed task has worked some of its time already (waiting for answers aside)
    deadline = asyncio.timeout(journal.time_left(limits.deadline_seconds))
    run = _Run(
        agent=agent,
        task=task,
        output=output,
        limits=limits,
        on_token=on_token,
        deadline=deadline,
        journal=journal,
        retries_used=journal.retries,
    )
    try:
        async with deadline:
            tokens = (
                PAUSABLE.set((*PAUSABLE.get(), deadline)),
                INPUT_TIMEOUT.set(limits.input_timeout_seconds),
                _CURRENT_RUN.set(run),
                ASK_SCOPE.set(AskScope(task_id=task.id, past=journal.asks)),
            )
            try:
                return await _drive(run, prompt)
            finally:
                ASK_SCOPE.reset(tokens[3])
                _CURRENT_RUN.reset(tokens[2])
                INPUT_TIMEOUT.reset(tokens[1])
                PAUSABLE.reset(tokens[0])
    except TimeoutError:
        if not deadline.expired():
            raise  # a timeout of something inside, not the work's deadline
        await task.expire("deadline")
        raise task._ended_error() from None  # pyright: ignore[reportPrivateUsage] -- same package
    except Stop as stop:
        await task.fail(str(stop), reason=stop.reason)
        raise task._ended_error() from None  # pyright: ignore[reportPrivateUsage] -- same package


async def _drive(run: _Run, prompt: str) -> Any:
    agent = run.agent
    await _check_all(run, agent.input_guardrails, prompt, stage="input")
    messages: list[Message] = []
    if agent.instructions:
        messages.append(SystemMessage(content=agent.instructions))
    messages.append(UserMessage(content=prompt))
    tools = tuple(agent.tools.values())
    definitions = tuple(t.definition() for t in tools)
    prints = Prints(tools, run.output.spec, agent.settings)
    rejected = 0
    for turn in range(1, run.limits.max_turns + 1):
        request = ModelRequest(
            messages=tuple(messages),
            tools=definitions,
            output=run.output.spec,
            settings=agent.settings,
        )
        response = await _call_model(run, request, turn, prints.of(messages))
        messages.append(AssistantMessage(text=response.text, tool_calls=response.tool_calls))
        if response.tool_calls:
            messages.extend(await _run_tools(run, response.tool_calls, turn))
            continue
        try:
            if response.finish_reason == "length":
                raise OutputInvalid(
                    "the answer was cut off at the output token limit; answer again, briefly"
                )
            value = run.output.parse(response.text)
            await _check_all(run, agent.output_guardrails, value, stage="output")
            return value
        except (OutputInvalid, _RetryOutput) as problem:
            rejected += 1
            await _note(run, "output_rejected", {"attempt": rejected, "error": str(problem)})
            if rejected > agent.output_retries:
                raise Stop(
                    "output_invalid",
                    f"the answer still did not fit after {agent.output_retries} retries: {problem}",
                ) from None
            messages.append(UserMessage(content=f"Your answer was not accepted: {problem}"))
    raise Stop("max_turns", f"no final answer within {run.limits.max_turns} turns")


class _RetryOutput(Exception):
    """An output guardrail asked the model to try again."""


async def _judged(run: _Run, guardrail: Guardrail, value: Any, stage: str) -> tuple[str, str, str]:
    """Run one guardrail and record its verdict; return the verdict, reason and name."""
    verdict, reason = await judge(guardrail, value)
    name = guardrail_name(guardrail)
    await _note(
        run,
        "guardrail_checked",
        {"name": name, "stage": stage, "verdict": verdict, "reason": reason},
    )
    return verdict, reason, name


async def _note(run: _Run, kind: str, data: dict[str, Any]) -> None:
    """Write a note that is not a journal step; a replaying run wrote it before."""
    if not run.journal.replaying:
        await run.task._note(kind, data)  # pyright: ignore[reportPrivateUsage] -- same package


async def _check_all(run: _Run, guardrails: Sequence[Guardrail], value: Any, *, stage: str) -> None:
    for guardrail in guardrails:
        verdict, reason, name = await _judged(run, guardrail, value, stage)
        if verdict == "block" or (verdict == "retry" and stage == "input"):
            raise Stop("guardrail", f"the {stage} guardrail {name!r} blocked it: {reason}")
        if verdict == "retry":
            raise _RetryOutput(f"{reason} (guardrail {name!r})")


async def _call_model(run: _Run, request: ModelRequest, turn: int, fp: str) -> ModelResponse:
    step = f"m{turn}"
    journal = run.journal
    called = journal.take_model(step)
    if called is not None:
        if called.fp != fp:
            raise Stop("nondeterminism", changed(step))
        run.usage = journal.settle(
            run.usage.add_request(called.input_tokens, called.output_tokens, called.cost_usd)
        )
        _check_budget(run)
        return response_of(called)
    run.usage = journal.settle(run.usage)
    journal.forget()  # anything left belongs to a path this run does not take
    model: Model = run.agent.model
    limits = run.limits
    attempt = 0
    while True:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limits.model_timeout_seconds):
                response = await model.request(request, on_text=run.on_token)
        except (ModelError, TimeoutError) as exc:
            error = (
                exc
                if isinstance(exc, ModelError)
                else ModelError(
                    f"{model.name} did not answer within {limits.model_timeout_seconds}s",
                    model=model.name,
                    retryable=True,
                )
            )
            attempt += 1
            run.retries_used += 1
            delay = _retry_delay(error, attempt, limits)
            if (
                not error.retryable
                or attempt > limits.model_retries
                or run.retries_used > limits.task_retries
                or delay is None
            ):
                if error is exc:
                    raise
                raise error from exc
            await _note(
                run,
                "model_retried",
                {"turn": turn, "attempt": attempt, "error": str(error), "delay_s": delay},
            )
            await asyncio.sleep(delay)
            continue
        used = response.usage
        model_name = response.model_name or model.model_name
        cost = price(
            model.provider,
            model_name,
            input_tokens=used.input_tokens,
            output_tokens=used.output_tokens,
            cache_read_tokens=used.cache_read_tokens,
            cache_write_tokens=used.cache_write_tokens,
        )
        run.usage = run.usage.add_request(used.input_tokens, used.output_tokens, cost)
        await run.task._note(  # pyright: ignore[reportPrivateUsage] -- same package
            "model_called",
            {
                "turn": turn,
                "model": model.name,
                "text": response.text,
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments}
                    for c in response.tool_calls
                ],
                "finish_reason": response.finish_reason,
                "input_tokens": used.input_tokens,
                "output_tokens": used.output_tokens,
                "cost_usd": cost,
                "duration_ms": int((time.perf_counter() - started) * 1000),
                "step": step,
                "fp": fp,
                "model_name": model_name,
                "cache_read_tokens": used.cache_read_tokens,
                "cache_write_tokens": used.cache_write_tokens,
            },
            usage=run.usage.to_json(),
        )
        _check_budget(run)
        return response


def _retry_delay(error: ModelError, attempt: int, limits: Limits) -> float | None:
    """Seconds to wait before the next attempt, or `None` when the provider asks too much."""
    if error.retry_after is not None:
        wait = error.retry_after.total_seconds()
        return None if wait > limits.max_retry_wait_seconds else max(wait, 0.0)
    return min(0.5 * 2 ** (attempt - 1), limits.max_retry_wait_seconds)


def _check_budget(run: _Run) -> None:
    usage, limits = run.usage, run.limits
    if usage.total_tokens > limits.max_tokens:
        raise Stop(
            "max_tokens", f"used {usage.total_tokens} tokens, over max_tokens={limits.max_tokens}"
        )
    if usage.cost_usd > limits.max_cost_usd:
        raise Stop("budget", f"cost ${usage.cost_usd:.4f}, over max_cost_usd={limits.max_cost_usd}")


async def _run_tools(run: _Run, calls: Sequence[ToolCall], turn: int) -> list[ToolResultMessage]:
    if run.usage.tool_calls + len(calls) > run.limits.max_tool_calls:
        raise Stop(
            "max_tool_calls",
            f"the model asked for {len(calls)} more tool calls, over"
            f" max_tool_calls={run.limits.max_tool_calls}",
        )
    run.usage = run.usage.add_tool_calls(len(calls))
    try:
        async with asyncio.TaskGroup() as group:
            running = [group.create_task(_run_tool(run, c, turn, i)) for i, c in enumerate(calls)]
    except BaseExceptionGroup as failed:
        # the first failure ends the turn; the group has already stopped the other calls
        raise failed.exceptions[0] from None
    results = [r.result() for r in running]
    _check_budget(run)  # sub-agent tasks run as tools may have spent the budget
    for call, result in zip(calls, results, strict=True):
        if result.is_error:
            key = (call.name, canonical_arguments(call.arguments))
            run.failures[key] += 1
            if run.failures[key] >= run.limits.loop_threshold:
                raise Stop(
                    "loop",
                    f"the same failing call {call.name}({call.arguments}) was made"
                    f" {run.failures[key]} times: {result.content}",
                )
    return list(results)


async def _run_tool(run: _Run, call: ToolCall, turn: int, index: int) -> ToolResultMessage:
    step, fp = f"t{turn}.{index}", tool_fp(call.name, call.arguments)
    called = run.journal.take_tool(step)
    if called is not None:
        if called.fp != fp:
            raise Stop("nondeterminism", changed(step))
        run.usage = run.journal.settle(run.usage)
        return _message(call, called.result, called.error)
    tool = run.agent.tools.get(call.name)
    started = time.perf_counter()
    # questions asked during this call are journaled under its step
    token = ASK_SCOPE.set(AskScope(task_id=run.task.id, step=step, past=run.journal.asks))
    try:
        result, error = await _execute(run, tool, call, turn, index, step=step, fp=fp)
    finally:
        ASK_SCOPE.reset(token)
    run.usage = run.journal.settle(run.usage)
    await run.task._note(  # pyright: ignore[reportPrivateUsage] -- same package
        "tool_called",
        _call_data(
            call,
            step,
            fp,
            result=result,
            error=error,
            duration_ms=int((time.perf_counter() - started) * 1000),
            effect=tool.effect if tool is not None else "",
        ),
        usage=run.usage.to_json(),
    )
    return _message(call, result, error)


def _call_data(call: ToolCall, step: str, fp: str, **more: Any) -> dict[str, Any]:
    data = {"call_id": call.id, "name": call.name, "arguments": call.arguments, **more}
    return data | {"step": step, "fp": fp}


def _message(call: ToolCall, result: str | None, error: str | None) -> ToolResultMessage:
    if error is not None:
        return ToolResultMessage(call_id=call.id, name=call.name, content=error, is_error=True)
    return ToolResultMessage(call_id=call.id, name=call.name, content=result or "")


async def _execute(
    run: _Run, tool: Tool | None, call: ToolCall, turn: int, index: int, *, step: str, fp: str
) -> tuple[str | None, str | None]:
    """Run one tool call; return its result text, or the error the model is shown."""
    try:
        if tool is None:
            known = ", ".join(sorted(run.agent.tools)) or "none"
            raise _ToolRefused(f"there is no tool named {call.name!r}; the tools are: {known}")
        arguments = tool.validate(call.arguments)
        await _check_tool(run, tool, arguments)
        cut_off = run.journal.take_started(step)
        if tool.effect == "at_most_once":
            if cut_off is not None:
                outcome = await unknown_outcome(
                    run.task, run.agent.unknown_outcome, tool, arguments, step, run.limits
                )
                if outcome is not None:
                    return outcome, None
            await run.task._note("tool_started", _call_data(call, step, fp, effect=tool.effect))  # pyright: ignore[reportPrivateUsage] -- same package
        key = f"{run.task.id}/{turn}/{index}"
        timeout = tool.timeout or run.limits.tool_timeout_seconds
        limit = asyncio.timeout(timeout)
        try:
            async with limit:
                token = PAUSABLE.set((*PAUSABLE.get(), limit))  # a human's answer takes its time
                try:
                    value = await tool.call(arguments, task=run.task, idempotency_key=key)
                finally:
                    PAUSABLE.reset(token)
        except TimeoutError:
            if not limit.expired():
                raise
            raise _ToolRefused(f"the tool {tool.name!r} timed out after {timeout}s") from None
        return result_text(value), None
    except (ToolArgumentsError, _ToolRefused) as exc:
        return None, str(exc)
    except (ToolError, TaskEndedError, Stop):
        raise
    except Exception as exc:  # a tool's own failure is shown to the model, which may recover
        return None, f"{type(exc).__name__}: {exc}"


class _ToolRefused(Exception):
    """A tool call that did not run; the message is shown to the model."""


async def _check_tool(run: _Run, tool: Tool, arguments: dict[str, Any]) -> None:
    check = ToolCallCheck(name=tool.name, arguments=arguments)
    for guardrail in run.agent.tool_guardrails:
        verdict, reason, name = await _judged(run, guardrail, check, "tool")
        if verdict == "block":
            raise Stop("guardrail", f"the tool guardrail {name!r} blocked {tool.name}: {reason}")
        if verdict == "retry":
            raise _ToolRefused(f"this call was refused: {reason}")
    if tool.requires_approval:
        shown = dumps(arguments)
        answer = await run.task.ask(
            f"May the agent call {tool.name}({shown})?",
            answer_type=Approval,
            kind="approval",
            details={"tool": tool.name, "arguments": json.loads(shown)},
            input_timeout=timedelta(seconds=run.limits.input_timeout_seconds),
        )
        if not answer.approved:
            why = f": {answer.reason}" if answer.reason else ""
            raise _ToolRefused(f"a human did not approve this call{why}; do not try it again")
