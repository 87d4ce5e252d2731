# pyright: reportReturnType=false
"""The app the durable tests' worker processes run: `taskloom worker tests.durable.app`.

Every agent here uses a `FunctionModel` that decides from the request alone (the turn is
the number of assistant messages so far plus one; the inputs are in the prompt), so a task
run again after a crash asks the same questions and gets the same answers. Tool results
depend only on their arguments and idempotency key, for the same reason.

The model and every tool write one line to a side-effect ledger when they start and when
they end (or are cancelled): the JSON of `{task, step, what, phase, epoch, pid, key, t}`,
appended with `O_APPEND` in one `os.write`, so lines of concurrent processes never mix and
a SIGKILL leaves whole lines. `step` is the journal key (`m{turn}` for the model,
`t{turn}.{index}` for a tool, from its idempotency key `{task_id}/{turn}/{index}`) and
`epoch` is the lease epoch the worker claimed the task at (`Task.epoch`).

Environment:
    TASKLOOM_LEDGER: the ledger file (no ledger when unset or empty).
    TASKLOOM_APP_SLEEP: `LOW,HIGH` seconds each step sleeps, drawn per task and step from a
        seeded generator (default `0.005,0.06`, so that kills land mid-step; `0,0` for speed).
    TASKLOOM_APP_VARIANT: `v2` declares the agent `shop` with its tools in another order
        (a changed agent, for the nondeterminism test); default `v1`.

Agents and tasks:
    `order(n, pause_step, pause_s, pause_epoch)` (agent `shop`, `unknown_outcome="fail"`):
        turn 1 calls `lookup` (pure) and `charge` (idempotent), turn 2 `send`
        (at_most_once), turn 3 answers a `Receipt`. The step named `pause_step` (`m2`,
        `t1.0`...) sleeps `pause_s` more, only at epoch `pause_epoch` (0: at every epoch).
    `order_ask(...)`: the same on agent `shop_ask` (`unknown_outcome="ask"`).
    `weather(city)` (agent `forecaster`): W1, one `lookup` then a typed `Weather`.
    `echo(n)` (agent `echoer`): one model call that answers at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from typing import Any

from pydantic import BaseModel

import taskloom
from taskloom import Agent, IdempotencyKey, Task, tool
from taskloom.models import (
    AssistantMessage,
    FunctionModel,
    ModelRequest,
    ModelResponse,
    RequestUsage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)

VARIANT = os.environ.get("TASKLOOM_APP_VARIANT", "v1")
_LOW, _HIGH = (float(x) for x in os.environ.get("TASKLOOM_APP_SLEEP", "0.005,0.06").split(","))
_INPUTS_MARK = "Inputs (JSON): "


class Receipt(BaseModel):
    """What an order task returns."""

    order: int
    item: str
    charge: str
    sent: str


class Weather(BaseModel):
    """What the W1 task returns."""

    city: str
    temp_c: float


class Echo(BaseModel):
    """What the echo task returns."""

    n: int


# -- the ledger ------------------------------------------------------------------------------


def ledger(task: str, step: str, what: str, phase: str, epoch: int, key: str = "") -> None:
    """Append one line to the ledger file, in one `write` (atomic among appenders)."""
    path = os.environ.get("TASKLOOM_LEDGER")
    if not path:
        return
    line = {
        "task": task,
        "step": step,
        "what": what,
        "phase": phase,
        "epoch": epoch,
        "pid": os.getpid(),
        "key": key,
        "t": time.time(),
    }
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


async def _step(task: Task | None, step: str, what: str, key: str, pause: float) -> None:
    """Ledger `start`, sleep (a seeded random time, plus `pause`), ledger `end`.

    A cancellation while asleep is written as phase `cancelled` and goes on.
    """
    task_id = task.id if task is not None else "?"
    epoch = task.epoch if task is not None else 0
    ledger(task_id, step, what, "start", epoch, key)
    seconds = random.Random(f"{task_id}/{step}").uniform(_LOW, _HIGH) + pause
    try:
        if seconds > 0:
            await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        ledger(task_id, step, what, "cancelled", epoch, key)
        raise
    ledger(task_id, step, what, "end", epoch, key)


def tool_step(key: str) -> str:
    """The journal key of a tool call from its idempotency key `{task_id}/{turn}/{index}`."""
    _, turn, index = key.rsplit("/", 2)
    return f"t{turn}.{index}"


def _pause(task: Task, pause: float, pause_epoch: int) -> float:
    return pause if pause_epoch in (0, task.epoch) else 0.0


# -- tools -----------------------------------------------------------------------------------


async def lookup(item: str, task: Task, key: IdempotencyKey, pause: float = 0, pe: int = 0) -> str:
    """Look an item up in the catalogue.

    Args:
        item: The item's name.
        task: The running task (injected).
        key: The call's idempotency key (injected).
        pause: Extra seconds to take.
        pe: The only epoch at which to take them (0: always).
    """
    await _step(task, tool_step(key), "lookup", key, _pause(task, pause, pe))
    return f"{item}: in stock"


async def charge(
    amount: int, task: Task, key: IdempotencyKey, pause: float = 0, pe: int = 0
) -> str:
    """Charge the customer (idempotent: the payment service deduplicates by key).

    Args:
        amount: Cents to charge.
        task: The running task (injected).
        key: The call's idempotency key (injected).
        pause: Extra seconds to take.
        pe: The only epoch at which to take them (0: always).
    """
    await _step(task, tool_step(key), "charge", key, _pause(task, pause, pe))
    return f"charged {amount} as {key}"


async def send(to: str, task: Task, key: IdempotencyKey, pause: float = 0, pe: int = 0) -> str:
    """Send the parcel: must never happen twice.

    Args:
        to: The customer.
        task: The running task (injected).
        key: The call's idempotency key (injected).
        pause: Extra seconds to take.
        pe: The only epoch at which to take them (0: always).
    """
    await _step(task, tool_step(key), "send", key, _pause(task, pause, pe))
    return f"sent to {to}"


LOOKUP = tool(lookup, effect="pure")
CHARGE = tool(charge, effect="idempotent")
SEND = tool(send, effect="at_most_once")
SHOP_TOOLS = [LOOKUP, CHARGE, SEND] if VARIANT != "v2" else [SEND, CHARGE, LOOKUP]


# -- the models ------------------------------------------------------------------------------


def _inputs(request: ModelRequest) -> dict[str, Any]:
    for message in request.messages:
        if isinstance(message, UserMessage) and _INPUTS_MARK in message.content:
            text = message.content.split(_INPUTS_MARK, 1)[1]
            return json.loads(text)
    return {}


def _turn(request: ModelRequest) -> int:
    return 1 + sum(isinstance(m, AssistantMessage) for m in request.messages)


def _results(request: ModelRequest) -> dict[str, str]:
    return {m.name: m.content for m in request.messages if isinstance(m, ToolResultMessage)}


def _calls(
    turn: int, inputs: dict[str, Any], calls: list[tuple[str, dict[str, Any]]]
) -> ModelResponse:
    made: list[ToolCall] = []
    for index, (name, arguments) in enumerate(calls):
        if inputs.get("pause_step") == f"t{turn}.{index}":
            arguments = {**arguments, "pause": inputs["pause_s"], "pe": inputs["pause_epoch"]}
        text = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
        made.append(ToolCall(id=f"call-{turn}-{index}", name=name, arguments=text))
    return ModelResponse(
        tool_calls=tuple(made), usage=_USAGE, finish_reason="tool_calls", model_name="scripted"
    )


def _answer(value: BaseModel) -> ModelResponse:
    return ModelResponse(text=value.model_dump_json(), usage=_USAGE, model_name="scripted")


_USAGE = RequestUsage(input_tokens=10, output_tokens=5)


async def _model_step(request: ModelRequest, inputs: dict[str, Any]) -> None:
    task = taskloom.current_task()
    turn = _turn(request)
    pause = 0.0
    if task is not None and inputs.get("pause_step") == f"m{turn}":
        pause = _pause(task, float(inputs["pause_s"]), int(inputs["pause_epoch"]))
    await _step(task, f"m{turn}", "model", "", pause)


async def shop_model(request: ModelRequest) -> ModelResponse:
    """Turn 1: lookup and charge; turn 2: send; turn 3: the receipt."""
    inputs = _inputs(request)
    await _model_step(request, inputs)
    turn, n = _turn(request), int(inputs["n"])
    if turn == 1:
        return _calls(
            turn, inputs, [("lookup", {"item": f"item-{n}"}), ("charge", {"amount": 100 * n})]
        )
    if turn == 2:
        return _calls(turn, inputs, [("send", {"to": f"customer-{n}"})])
    done = _results(request)
    return _answer(Receipt(order=n, item=done["lookup"], charge=done["charge"], sent=done["send"]))


def expected_receipt(task_id: str, n: int, *, sent: str | None = None) -> dict[str, Any]:
    """The result an `order` task completes with (`sent` as a human said, when asked)."""
    return {
        "order": n,
        "item": f"item-{n}: in stock",
        "charge": f"charged {100 * n} as {task_id}/1/1",
        "sent": f"sent to customer-{n}" if sent is None else sent,
    }


async def forecast_model(request: ModelRequest) -> ModelResponse:
    """W1: turn 1 looks the city up, turn 2 answers."""
    inputs = _inputs(request)
    await _model_step(request, inputs)
    if _turn(request) == 1:
        return _calls(1, inputs, [("lookup", {"item": inputs["city"]})])
    return _answer(Weather(city=inputs["city"], temp_c=21.5))


async def echo_model(request: ModelRequest) -> ModelResponse:
    """One call, answered at once."""
    inputs = _inputs(request)
    await _model_step(request, inputs)
    return _answer(Echo(n=int(inputs["n"])))


# -- agents and tasks ------------------------------------------------------------------------

shop = Agent(
    FunctionModel(shop_model, name="shop"),
    name="shop",
    instructions="Fulfil the order: look the item up, charge, send, then answer.",
    tools=SHOP_TOOLS,
    unknown_outcome="fail",
)
shop_ask = Agent(
    FunctionModel(shop_model, name="shop"),
    name="shop_ask",
    instructions="Fulfil the order: look the item up, charge, send, then answer.",
    tools=SHOP_TOOLS,
    unknown_outcome="ask",
)
forecaster = Agent(FunctionModel(forecast_model, name="w1"), name="forecaster", tools=[LOOKUP])
echoer = Agent(FunctionModel(echo_model, name="echo"), name="echoer")


@shop.task
async def order(
    n: int, pause_step: str = "", pause_s: float = 0.0, pause_epoch: int = 0
) -> Receipt:
    """Fulfil order number n."""


@shop_ask.task
async def order_ask(
    n: int, pause_step: str = "", pause_s: float = 0.0, pause_epoch: int = 0
) -> Receipt:
    """Fulfil order number n."""


@forecaster.task
async def weather(
    city: str, pause_step: str = "", pause_s: float = 0.0, pause_epoch: int = 0
) -> Weather:
    """Give the current weather for a city."""


@echoer.task
async def echo(n: int, pause_step: str = "", pause_s: float = 0.0, pause_epoch: int = 0) -> Echo:
    """Say the number back."""
