# pyright: reportReturnType=false
"""The app of `batch_workers.py`: support-ticket triage, run by `taskloom worker batch_app`.

`triage(ticket, customer, text)` is an agent task: the agent looks the customer's plan up
with the tool `customer_plan`, then answers a typed `Triage` (category and priority).

The model is chosen by `BATCH_MODEL`:

- `scripted` (the default): a `FunctionModel`, plain Python rules standing in for a model,
  with 50-150 ms of made-up latency per call. It keeps 500 tasks down to seconds, so the
  batch shows the runtime (claims, leases, takeover after a kill), not a model's speed.
- `real`: `taskloom.models.default_model()`, SmolLM2-135M offline (about 1 s a call on two
  cores, and the model is shared by the tasks of one process), or the OpenAI-compatible
  endpoint that `OPENAI_BASE_URL`/`OPENAI_API_KEY` name. SmolLM2 calls the tool, but
  tends to answer the first category and priority it is offered: the point is that the
  same app runs unchanged, not the quality of a 135M-parameter model's triage.

Run a worker by hand (from the examples folder, which holds this module):
`python -m taskloom worker batch_app --store sqlite:///tasks.db`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from typing import Literal

from pydantic import BaseModel

import taskloom
from taskloom import tool
from taskloom.models import (
    FunctionModel,
    ModelRequest,
    ModelResponse,
    RequestUsage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
    default_model,
)

TEMPLATES = (
    "I was charged twice for my subscription this month.",
    "The export to CSV crashes with an error on large reports.",
    "Please add single sign-on with our identity provider.",
    "I cannot log in since I changed my email address.",
    "Our whole team sees 'service down' since this morning.",
    "Can I get an invoice with our VAT number on it?",
    "The dashboard is very slow to load charts.",
    "How do I add a second admin to our account?",
)


def ticket(n: int) -> dict[str, object]:
    """The inputs of ticket number `n` (made up, the same every time)."""
    return {"ticket": n, "customer": f"c-{n % 50:03d}", "text": TEMPLATES[n % len(TEMPLATES)]}


class Triage(BaseModel):
    """Where a ticket goes."""

    ticket: int
    category: Literal["billing", "bug", "account", "feature"]
    priority: Literal["low", "normal", "high"]


@tool(effect="pure")
async def customer_plan(customer: str) -> str:
    """Look up a customer's plan: free, pro or enterprise.

    Args:
        customer: The customer's id, like c-042.
    """
    await asyncio.sleep(0.01)  # a database look-up
    number = int(customer.rsplit("-", 1)[-1]) if customer[-1:].isdigit() else 1
    return "enterprise" if number % 10 == 0 else "pro" if number % 3 == 0 else "free"


_KEYWORDS = {
    "billing": ("charged", "invoice", "refund", "vat"),
    "account": ("log in", "admin", "password"),
    "bug": ("crash", "error", "slow", "down"),
}


async def rules(request: ModelRequest) -> ModelResponse:
    """The scripted model: turn 1 asks for the customer's plan, turn 2 answers."""
    await asyncio.sleep(random.uniform(0.05, 0.15))  # a model's latency, shortened
    prompt = next(m.content for m in request.messages if isinstance(m, UserMessage))
    inputs = json.loads(prompt.split("Inputs (JSON): ", 1)[1])  # how a task function asks
    plans = [m.content for m in request.messages if isinstance(m, ToolResultMessage)]
    usage = RequestUsage(input_tokens=120, output_tokens=20)
    if not plans:
        arguments = json.dumps({"customer": inputs["customer"]})
        call = ToolCall(id="call_1", name="customer_plan", arguments=arguments)
        return ModelResponse(tool_calls=(call,), usage=usage, finish_reason="tool_calls")
    text = inputs["text"].lower()
    category = next((c for c, words in _KEYWORDS.items() if any(w in text for w in words)), None)
    urgent = plans[-1] == "enterprise" or "down" in text
    answer = Triage(
        ticket=inputs["ticket"],
        category=category or "feature",
        priority="high" if urgent else "normal" if plans[-1] == "pro" else "low",
    )
    return ModelResponse(text=answer.model_dump_json(), usage=usage)


MODEL = os.environ.get("BATCH_MODEL", "scripted")

triager = taskloom.Agent(
    FunctionModel(rules, name="triage-rules") if MODEL == "scripted" else default_model(),
    name="triager",
    instructions="Call customer_plan for the customer, then classify the ticket. Priority:"
    " high for enterprise customers or an outage, normal for pro, else low.",
    tools=[customer_plan],
)


@triager.task
async def triage(ticket: int, customer: str, text: str) -> Triage:
    """Triage this support ticket."""
