"""`taskloom demo`: the README's main job, a real agent task on the embedded defaults.

An agent with one tool answers "what is the weather in <city>?" as a typed `Report`, on
SmolLM2-135M running offline (or the OpenAI-compatible endpoint the environment names), and
the task is stored in the embedded SQLite file, performed by this process's worker.
"""

from __future__ import annotations

import typer
from pydantic import BaseModel

import taskloom
from taskloom.models import default_model

from ._follow import follow_to_end, print_outcome

__all__ = ("Report", "lookup_weather", "run_demo")

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


async def run_demo(city: str, store: str, as_json: bool, live: bool) -> int:
    """Submit the demo task, follow it live, print the typed result; return the exit code."""
    agent = taskloom.Agent(
        default_model(),
        name="weather",
        instructions=(
            "You report the weather. Call lookup_weather for the city first, then answer with"
            " the city, its temperature in Celsius and the conditions from the lookup."
        ),
        tools=[lookup_weather],
    )
    try:
        async with taskloom.open(store) as rt:
            if not as_json:
                typer.echo(f"model: {agent.model.name}   store: {rt.store.url}")
            task = await rt.submit(agent, f"What is the weather in {city}?", output_type=Report)
            if not as_json:
                typer.echo(f"task {task.id}")
            output = "quiet" if as_json else "live" if live else "lines"
            ended = await follow_to_end(rt, task, output=output, cancel_on_interrupt=True)
            return print_outcome(ended, as_json=as_json)
    finally:
        await agent.model.close()
