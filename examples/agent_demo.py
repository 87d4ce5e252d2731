"""The main job: a real agent task on the embedded defaults.

An agent with one tool answers "what is the weather in <city>?" as a typed `Report`. The
task is stored in SQLite (`taskloom-demo.db`); its events print live as they are written.
By default the model is SmolLM2-135M running offline (`local:smollm2`); with
`OPENAI_API_KEY` or `OPENAI_BASE_URL` set, the same command uses that endpoint instead
(`TASKLOOM_MODEL=openai:<name>` picks the model).

    python examples/agent_demo.py [--city Lisbon] [--store sqlite:///taskloom-demo.db]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from pydantic import BaseModel

import taskloom
from taskloom.agent import Agent
from taskloom.models import default_model

# a small offline table, so the demo needs no network
_OBSERVATIONS = {
    "lisbon": (19.5, "sunny, light wind from the north"),
    "paris": (12.0, "overcast, drizzle in the afternoon"),
    "oslo": (-3.5, "snow showers"),
    "nairobi": (24.0, "partly cloudy"),
}


def lookup_weather(city: str) -> str:
    """Look up the current weather observation for a city.

    Args:
        city: The city's name, for example "Lisbon".
    """
    temp, conditions = _OBSERVATIONS.get(city.strip().lower(), (15.0, "no data, assume mild"))
    return f"{city}: {temp} C, {conditions}"


class Report(BaseModel):
    """A short weather report."""

    city: str
    temp_c: float
    conditions: str


def show(event: taskloom.Event, started: float) -> None:
    """Print one event as a line of the live view."""
    at = f"{time.perf_counter() - started:6.2f}s"
    match event:
        case taskloom.ModelCalled():
            calls = ", ".join(f"{c['name']}({c['arguments']})" for c in event.tool_calls)
            what = f"asks for {calls}" if calls else f"answers {event.text[:70]!r}"
            cost = "unpriced" if event.cost_usd is None else f"${event.cost_usd:.6f}"
            print(
                f"{at}  turn {event.turn}: {event.model} {what}"
                f"  [{event.input_tokens}+{event.output_tokens} tokens, {cost},"
                f" {event.duration_ms} ms]"
            )
        case taskloom.ToolCalled():
            outcome = event.result if event.error is None else f"error: {event.error}"
            print(f"{at}  tool {event.name}({event.arguments}) -> {outcome}")
        case taskloom.OutputRejected():
            print(f"{at}  answer rejected ({event.error[:80]})")
        case _:
            print(f"{at}  {event.kind}")


async def main(city: str, store: str) -> None:
    """Submit the task, follow its events, print the typed result."""
    agent = Agent(
        default_model(),
        name="weather",
        instructions=(
            "You report the weather. Call lookup_weather for the city first, then answer with"
            " the city, its temperature in Celsius and the conditions from the lookup."
        ),
        tools=[lookup_weather],
    )
    started = time.perf_counter()
    async with taskloom.open(store) as rt:
        print(f"model: {agent.model.name}   store: {rt.store.url}")
        task = await rt.submit(agent, f"What is the weather in {city}?", output_type=Report)
        print(f"task {task.id}")
        async for event in task.events():
            show(event, started)
        try:
            report = await task.result()
        except taskloom.TaskEndedError as exc:
            print(f"\nthe task ended {exc.state}: {exc}")
            raise SystemExit(1) from None
        final = await rt.get(task.id)
        usage = final.usage
        print(f"\nresult: {report!r}")
        print(
            f"usage: {usage.requests} model calls, {usage.tool_calls} tool calls,"
            f" {usage.input_tokens}+{usage.output_tokens} tokens,"
            f" cost {'unpriced (local model)' if not usage.priced else f'${usage.cost_usd:.6f}'}"
        )
    await agent.model.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--city", default="Lisbon")
    parser.add_argument("--store", default="sqlite:///taskloom-demo.db")
    options = parser.parse_args()
    asyncio.run(main(options.city, options.store))
