"""`taskloom worker APP`: through its entry point and as a real process."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import taskloom
from taskloom.cli import app

_APP = '''
import json
from pydantic import BaseModel
import taskloom
from taskloom.models.scripted import FunctionModel, reply


class Greeting(BaseModel):
    text: str


def _answer(request):
    return reply(json.dumps({"text": "hello " + request.messages[-1].content}))


greeter = taskloom.Agent(name="greeter", model=FunctionModel(_answer))


@greeter.task
async def greet(name: str) -> Greeting:
    """Greet someone by name."""
'''


def test_an_app_that_cannot_be_imported_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["worker", "no_such_module_here", "--store", "memory://"])
    assert result.exit_code == 2
    assert "cannot import the app 'no_such_module_here'" in result.output


def test_worker_help_shows_the_options_and_an_example() -> None:
    result = CliRunner().invoke(app, ["worker", "--help"])
    assert result.exit_code == 0
    for word in ("--store", "--concurrency", "--lease", "--grace", "APP", "Examples"):
        assert word in result.output


@pytest.mark.slow
async def test_a_worker_process_performs_tasks_and_drains_on_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "greeting_app.py").write_text(textwrap.dedent(_APP))
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    module = importlib.import_module("greeting_app")
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    async with taskloom.open(url, concurrency=0, poll_interval=0.02) as client:
        first = await module.greet.submit(name="Ada", runtime=client)
        second = await client.submit(module.greeter, "Grace", output_type=module.Greeting)
        log = (tmp_path / "worker.log").open("w")
        worker = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "taskloom", "worker", "greeting_app", "--store", url],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
        )
        with worker, log:
            try:
                assert worker.stdout is not None
                line = await asyncio.to_thread(worker.stdout.readline)
                assert line.startswith("worker ") and line.strip().endswith(" ready")
                async with asyncio.timeout(30):
                    assert (await first.result()).text == "hello " + _prompt_of(first)
                    assert (await second.result()).text == "hello Grace"
                worker.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(worker.wait, 30)
            finally:
                if worker.poll() is None:
                    worker.kill()
        assert code == 0, (tmp_path / "worker.log").read_text()
        done = await client.get(first.id)
        assert done.worker == line.split()[1]


def _prompt_of(task: taskloom.Task) -> str:
    # a task function's prompt is its docstring and its inputs as JSON
    return 'Greet someone by name.\n\nInputs (JSON): {"name":"Ada"}'
