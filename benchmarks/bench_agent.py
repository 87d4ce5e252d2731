"""Benchmark W1: a typed agent task with one tool call, on a scripted model, no network.

Turn 1 calls `lookup(city: str) -> str`; turn 2 answers `Weather(city: str, temp_c: float)`.
Prints µs per task, sequential and 1,000 concurrent, in memory and on SQLite (FULL and
NORMAL). Issue targets: <= 50 µs in memory, <= 400 µs durable.

    python benchmarks/bench_agent.py [--n 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel

import taskloom
from taskloom.agent import Agent
from taskloom.models import FunctionModel, ModelRequest, ModelResponse, ToolCall


class Weather(BaseModel):
    city: str
    temp_c: float


def lookup(city: str) -> str:
    """Look up the current temperature of a city.

    Args:
        city: The city's name.
    """
    return f"{city}: 21.5 C"


_CALL = ToolCall(id="c1", name="lookup", arguments='{"city": "Paris"}')
_TURN1 = ModelResponse(tool_calls=(_CALL,), finish_reason="tool_calls", model_name="scripted")
_TURN2 = ModelResponse(text='{"city": "Paris", "temp_c": 21.5}', model_name="scripted")


def script(request: ModelRequest) -> ModelResponse:
    # stateless: answer by where the conversation is
    return _TURN2 if request.messages[-1].role == "tool" else _TURN1


AGENT = Agent(FunctionModel(script), name="w1", tools=[lookup])


async def measure(url: str, n: int, concurrent: bool) -> float:
    async with taskloom.open(url) as rt:
        for _ in range(50):
            await AGENT.run("Weather in Paris?", output_type=Weather, runtime=rt)
        started = time.perf_counter()
        if concurrent:
            await asyncio.gather(
                *(AGENT.run("Weather in Paris?", output_type=Weather, runtime=rt) for _ in range(n))
            )
        else:
            for _ in range(n):
                await AGENT.run("Weather in Paris?", output_type=Weather, runtime=rt)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stores = [
            ("memory", "memory://", "<= 50 us"),
            ("sqlite FULL", f"sqlite:///{Path(tmp) / 'full.db'}", "<= 400 us"),
            ("sqlite NORMAL", f"sqlite:///{Path(tmp) / 'normal.db'}?synchronous=normal", "-"),
        ]
        print(f"W1: typed task, one tool call, scripted model; median of {args.repeat} runs")
        print(f"{'store':<14} {'mode':<11} {'tasks':>6} {'total s':>8} {'us/task':>9}  target")
        for label, url, target in stores:
            for concurrent in (False, True):
                runs = [asyncio.run(measure(url, args.n, concurrent)) for _ in range(args.repeat)]
                total = statistics.median(runs)
                mode = "concurrent" if concurrent else "sequential"
                print(
                    f"{label:<14} {mode:<11} {args.n:>6} {total:>8.3f}"
                    f" {total / args.n * 1e6:>9.1f}  {target}"
                )


if __name__ == "__main__":
    main()
