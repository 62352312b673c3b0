"""Benchmarks: what the launcher costs, as ratios to the raw calls it wraps, measured side by side.

    python -m benchmarks            # full run (a few minutes): prints the tables, writes docs/benchmarks.md
    python -m benchmarks --quick    # small sizes, one round: proves the script works (tests/test_benchmarks.py)

`python benchmarks/run.py` is the same entry point. One module per concern:

    timing.py        the one timing helper: ways taking turns round by round, medians and their ratio
    commands.py      running a command (piped or on a pseudo-terminal) and timing it
    project.py       a throw-away compose project of busybox services behind the stand-in Infisical CLI
    launch.py        re-runs with nothing changed and after a rotation, against the raw calls
    help.py          `--help` against `python -c 'import typer'`
    scale.py         a re-run with 10,000 secrets against the raw calls
    coldstart.py     a cold start with the local Infisical, health-gated, against a fixed sleep
    where.py         where the launcher's time goes: imports, typer and click, its functions, git
    traced_launch.py the launcher with its subprocesses and functions timed (run by where.py)
    report.py        the goals, the machine, and docs/benchmarks.md
    main.py          options and the order of the sections

Needs what the test suite needs: a Docker engine with Compose v2, the image busybox-test:local
(built on demand) and the stand-in Infisical CLI, whose helpers in tests/support/ it reuses.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent

# tests/support/ holds the stand-in Infisical and the compose helpers (imported as `support.*`).
for _path in (str(REPO_ROOT / "tests"), str(REPO_ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
