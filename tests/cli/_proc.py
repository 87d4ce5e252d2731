"""Helpers for the CLI tests: `taskloom` as a child process, in a tmux pane, or in-process.

A `Child` is `python -m taskloom ...` started from the project's root with `PYTHONPATH` set
(so `tests.cli.app` imports), its stdout and stderr in files (nothing can fill a pipe and
stall it). A `Pane` is a command in a detached tmux session of a fixed size, on a private
tmux server (`tmux -L <unique socket>`), with `remain-on-exit` so that what the person saw
stays after the command ends. Every wait has a time limit and fails with what the process
wrote, so a broken CLI fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

import taskloom
from taskloom.cli import app

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.cli.app"
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/x"


def env() -> dict[str, str]:
    """The environment of a child: this one, with the project on `PYTHONPATH`."""
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""),
        "PYTHONUNBUFFERED": "1",
        "TASKLOOM_LOG_LEVEL": "WARNING",
    }


def wait_until(check: Callable[[], bool], explain: Callable[[], str], within: float = 30) -> None:
    """Poll `check` until it is true; past `within` seconds, fail with `explain()`."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not so within {within} s:\n{explain()}")
        time.sleep(0.02)


# -- in-process --------------------------------------------------------------------------------


def cli(*args: str) -> Result:
    """`taskloom ARGS...` through the entry point, in this process."""
    return CliRunner().invoke(app, list(args))


def run_json(url: str, *args: str) -> dict[str, Any]:
    """`taskloom run ARGS... --json`: the final record."""
    result = cli("run", *args, "--store", url, "--json")
    return json.loads(result.stdout)


def submit(url: str, *args: str) -> str:
    """`taskloom submit ARGS...`: the new task's id."""
    result = cli("submit", *args, "--store", url)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def stored(url: str, task_id: str) -> taskloom.Task[Any]:
    """The task's record, read through the Python API."""

    async def get() -> taskloom.Task[Any]:
        async with taskloom.open(url, concurrency=0) as rt:
            return await rt.get(task_id)

    return asyncio.run(get())


@contextmanager
def worker_thread(url: str) -> Generator[None]:
    """A worker for `tests.cli.app`, on its own event loop in a thread of this process."""
    from tests.cli import app as test_app

    ready = threading.Event()
    loop: list[asyncio.AbstractEventLoop] = []
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        loop.append(asyncio.get_running_loop())
        async with taskloom.open(url, concurrency=4, poll_interval=0.02) as rt:
            rt.register(test_app)
            ready.set()
            await stop[0].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the worker thread did not start"
    try:
        yield
    finally:
        loop[0].call_soon_threadsafe(stop[0].set)
        thread.join(30)


# -- child processes ---------------------------------------------------------------------------


@dataclass(eq=False)
class Child:
    """`python -m taskloom ARGS...` in a process of its own."""

    args: list[str]
    folder: Path
    name: str
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "taskloom", *self.args],
                cwd=ROOT,
                env=env(),
                stdout=out,
                stderr=err,
            )

    @property
    def out_path(self) -> Path:
        return self.folder / f"{self.name}.out"

    @property
    def err_path(self) -> Path:
        return self.folder / f"{self.name}.err"

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def describe(self) -> str:
        code = self.proc.poll()
        state = "running" if code is None else f"exited {code}"
        return f"taskloom {' '.join(self.args)} ({state})\nstdout:\n{self.out}\nstderr:\n{self.err}"

    def wait_for(self, text: str, within: float = 30) -> None:
        """Wait until its stdout shows `text`."""
        wait_until(lambda: text in self.out, self.describe, within)

    def wait(self, within: float = 30) -> int:
        """Wait for it to exit; its exit code."""
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not exit within {within} s:\n{self.describe()}") from None

    def stop(self) -> None:
        """Terminate it if it still runs (SIGTERM, then SIGKILL), and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Children:
    """The children of one test, stopped when it ends."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Child] = []

    def start(self, *args: str, name: str) -> Child:
        child = Child(list(args), self.folder, name)
        self.started.append(child)
        return child

    def run(self, *args: str, name: str, within: float = 30) -> tuple[int, str, str]:
        """Run one to its end: exit code, stdout, stderr."""
        child = self.start(*args, name=name)
        return child.wait(within), child.out, child.err

    def stop(self) -> None:
        for child in self.started:
            child.stop()

    def report(self) -> str:
        return "\n\n".join(c.describe() for c in self.started)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- tmux ----------------------------------------------------------------------------------------


def have_tmux() -> bool:
    return shutil.which("tmux") is not None


class Pane:
    """A command in a detached tmux session, `width` x `height`, on a private tmux server.

    The command runs under `sh`, which then prints `[exit N]` and waits, so that the screen
    stays as the command left it (tmux 3.3's `remain-on-exit` does not always get to know
    the exit status of a pane's process).
    """

    def __init__(self, command: list[str], *, width: int = 160, height: int = 40) -> None:
        self.socket = f"taskloom-test-{uuid.uuid4().hex[:10]}"
        self.session = "cli"
        # `trap : INT`: a Ctrl-C for the command does not end the shell (the command itself
        # gets the default handling, as from an interactive shell)
        script = f'trap : INT; {shlex.join(command)}; echo "[exit $?]"; sleep 600'
        self._tmux(
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            self.session,
            "-x",
            str(width),
            "-y",
            str(height),
            "-c",
            str(ROOT),
            f"exec sh -c {shlex.quote(script)}",
        )

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(  # the server, started by the first call, takes this env
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=env(),
        )
        if done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args[:3])}... failed: {done.stderr}")
        return done.stdout

    def screen(self) -> str:
        """What the pane shows now, and what scrolled off it."""
        return self._tmux("capture-pane", "-p", "-S", "-", "-t", self.session)

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.session, *keys)

    def exit_code(self) -> int | None:
        """The command's exit code once it has ended, else None."""
        found = self._EXIT.search(self.screen())
        return int(found.group(1)) if found else None

    def wait_screen(self, check: Callable[[str], bool], within: float = 30) -> str:
        """Wait until the screen passes `check`; return it."""
        seen = [""]

        def passes() -> bool:
            seen[0] = self.screen()
            return check(seen[0])

        wait_until(passes, lambda: seen[0], within)
        return seen[0]

    def wait_exit(self, within: float = 30) -> int:
        """Wait until the command has ended; its exit code."""
        screen = self.wait_screen(lambda s: self._EXIT.search(s) is not None, within)
        found = self._EXIT.search(screen)
        assert found is not None
        return int(found.group(1))

    _EXIT = re.compile(r"^\[exit (\d+)\]$", re.MULTILINE)

    def close(self) -> None:
        """Kill the tmux server, and remove its socket file (tmux 3.3 leaves it)."""
        found = subprocess.run(
            ["tmux", "-L", self.socket, "display-message", "-p", "#{socket_path}"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)
        if found:
            Path(found).unlink(missing_ok=True)
