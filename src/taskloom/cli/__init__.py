"""The `taskloom` command: run, submit, watch, inspect, cancel, answer and work.

```
taskloom run APP:TASK [key=value ...]     run in the foreground with a live view
taskloom submit APP:TASK [key=value ...]  store it for the workers; print its id
taskloom ls | show ID | watch ID | logs ID
taskloom cancel ID | respond ID ANSWER | retry ID
taskloom worker APP                       claim and perform submitted tasks
taskloom demo                             the README's main job
```

It uses only taskloom's public API, imported inside the commands, so that `--help` starts
fast. Every command takes `--store URL` (default `$TASKLOOM_STORE`, else the embedded
SQLite file `~/.local/share/taskloom/taskloom.db`) and `--json`.
"""

from __future__ import annotations

import typer

from . import _inspect, _run, _worker

__all__ = ("app", "main")

app = typer.Typer(
    name="taskloom",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Run, watch and operate tasks performed by AI agents.

    Exit codes: 0 completed (or done), 1 failed, 2 bad input, 3 cancelled, 4 expired,
    5 rejected, 6 store unavailable, 7 waiting for input.
    """


_run.register(app)
_inspect.register(app)
_worker.register(app)


def main() -> None:
    """The console script's entry point."""
    app()
