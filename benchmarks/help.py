"""`start_services.py --help` against `python -c 'import typer'`, taking turns.

Help needs typer and little else, so the goal is that it costs hardly more than importing
typer. Measured piped (as in a script or CI) and on a pseudo-terminal (as a user sees it,
where typer renders its help with rich); `python -c pass` is the floor for both.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .commands import run, run_on_terminal
from .timing import interleave
from support.processes import LAUNCHER, minimal_env  # noqa: E402


def run_section(cfg, root: Path) -> dict[str, Any]:
    cwd = root / "help"
    cwd.mkdir(parents=True, exist_ok=True)
    env = minimal_env()
    terminal_env = {**env, "TERM": "xterm-256color"}
    python = [sys.executable]
    ways = {
        "help": lambda: run(python + [str(LAUNCHER), "--help"], cwd=cwd, env=env),
        "import_typer": lambda: run(python + ["-c", "import typer"], cwd=cwd, env=env),
        "help_terminal": lambda: run_on_terminal(python + [str(LAUNCHER), "--help"], cwd=cwd, env=terminal_env),
        "bare": lambda: run(python + ["-c", "pass"], cwd=cwd, env=env),
    }
    comparison = interleave(ways, cfg.startup_rounds, warmup=1)
    return {
        "piped": comparison.summary("help", "import_typer"),
        "terminal": comparison.summary("help_terminal", "import_typer"),
        "median_ms": comparison.as_dict()["median_ms"],
    }
