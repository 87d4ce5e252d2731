"""The live view in a real terminal: `taskloom run` in a tmux pane, read as a person reads it.

Each test starts `python -m taskloom run ...` in a detached tmux session of 160 x 40 on a
private tmux server, captures the pane during the run and after it, and asserts on what is
on the screen: the live panel (state, step, tool calls, tokens, cost, elapsed), then the
final panel, the summary and the result, which stay after the command exits. Ctrl-C, typed
into the pane, cancels the task.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli._proc import APP, Pane, have_tmux, stored

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_tmux(), reason="needs tmux"),
]


@pytest.fixture
def panes(tmp_path: Path) -> Iterator[list[Pane]]:
    started: list[Pane] = []
    try:
        yield started
    finally:
        for pane in started:
            pane.close()


def _run(tmp_path: Path, panes: list[Pane], url: str, *args: str) -> Pane:
    pane = Pane([sys.executable, "-m", "taskloom", "run", *args, "--store", url])
    panes.append(pane)
    return pane


def _panel(screen: str) -> dict[str, str]:
    """The rows of the live panel on the screen (the last one drawn): label -> value."""
    rows: dict[str, str] = {}
    for line in screen.splitlines():
        found = re.match(r"^(task|state|step|tool calls|tokens|cost|elapsed) {2,}(\S.*?)\s*$", line)
        if found:
            rows[found.group(1)] = found.group(2)
    return rows


def _task_id(screen: str) -> str:
    found = re.search(r"^task ([0-9a-f]{32}) \(", screen, re.MULTILINE)
    assert found, screen
    return found.group(1)


def test_the_live_view_shows_the_run_as_it_goes_and_the_result_stays(
    tmp_path: Path, panes: list[Pane], url: str
) -> None:
    pane = _run(tmp_path, panes, url, f"{APP}:survey", "steps=2", "pause=1")

    # mid-run: the first reading is in, the second under way
    during = pane.wait_screen(
        lambda s: _panel(s).get("tool calls") == "1" and 'station": 2' in _panel(s)["step"]
    )
    panel = _panel(during)
    task_id = _task_id(during)
    assert panel["task"] == f"survey {task_id}"
    assert panel["state"] == "working"
    assert panel["step"] == 'tool measure({"station": 2, "pause": 1.0})'
    assert panel["tokens"] == "2400 in, 600 out"
    assert panel["cost"] == "$0.000720"
    assert re.fullmatch(r"\d+\.\d\ds", panel["elapsed"])
    assert "Ctrl-C cancels the task" in during
    assert 'tool measure({"station": 1, "pause": 1.0}) -> station 1: 21.5 C' in during
    assert pane.exit_code() is None

    # after: the final panel, the summary and the typed result stay on the screen
    assert pane.wait_exit() == 0
    after = pane.screen()
    panel = _panel(after)
    assert panel["state"] == "completed" and panel["step"] == "ended"
    assert panel["tool calls"] == "2" and panel["tokens"] == "3600 in, 900 out"
    assert panel["cost"] == "$0.001080"
    assert "Ctrl-C cancels the task" not in after
    assert f"survey {task_id}: completed · model calls 3 · tool calls 2" in after
    assert 'result: {\n  "readings": [\n    "station 1: 21.5 C",\n    "station 2: 21.5 C"' in after
    assert after.count("state       ") == 1  # one panel, redrawn in place: not a trail of them
    assert stored(url, task_id).state.value == "completed"


def test_ctrl_c_in_the_terminal_cancels_the_task_and_says_so(
    tmp_path: Path, panes: list[Pane], url: str
) -> None:
    pane = _run(tmp_path, panes, url, f"{APP}:survey", "steps=3", "pause=30")
    during = pane.wait_screen(lambda s: _panel(s).get("step", "").startswith("tool measure("))
    task_id = _task_id(during)
    assert _panel(during)["state"] == "working"

    pane.keys("C-c")
    assert pane.wait_exit() == 3
    after = pane.screen()
    assert "Ctrl-C: cancelling the task..." in after
    assert "cancelled: cancelled from the terminal (Ctrl-C)" in after
    assert _panel(after)["state"] == "cancelled"
    assert f"survey {task_id}: cancelled (cancelled from the terminal (Ctrl-C))" in after
    task = stored(url, task_id)
    assert (task.state.value, task.reason) == ("cancelled", "cancelled from the terminal (Ctrl-C)")
