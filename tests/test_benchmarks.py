"""The benchmarks (`python -m benchmarks`) still run and report every ratio.

Not a timed test: it runs `--quick` (small sizes, one round each) and checks that the report
has every section, every goal with both sides measured and a ratio, the machine, and a
breakdown whose parts come from the traced launcher; never that a goal is met.
"""
from __future__ import annotations

import json
import subprocess
import sys

from support.docker_stack import PROJECT_LABEL
from support.processes import REPO_ROOT, minimal_env

# The goals the issue states (benchmarks/report.py may add more).
GOALS = {"noop", "rotation", "help", "scale"}


def projects_under(folder) -> list[str]:
    """Compose projects with a container whose project folder is under `folder`: this run's
    own, whatever other benchmark runs share the engine."""
    fmt = f'{{{{.Label "{PROJECT_LABEL}"}}}} {{{{.Label "{PROJECT_LABEL}.working_dir"}}}}'
    lines = subprocess.run(["docker", "ps", "-a", "--format", fmt], capture_output=True, text=True,
                           env=minimal_env()).stdout.splitlines()
    return sorted({line.split(" ", 1)[0] for line in lines if f" {folder}" in line})


def test_the_quick_benchmark_reports_every_ratio(engine, tmp_path):
    report, numbers = tmp_path / "benchmarks.md", tmp_path / "benchmarks.json"
    scratch = tmp_path / "scratch"  # the benchmark's temp folder, so its projects can be told apart
    scratch.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(report), "--json", str(numbers)],
        cwd=REPO_ROOT, env=minimal_env(TMPDIR=str(scratch)), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert projects_under(scratch) == [], "the benchmarks left compose projects behind"

    data = json.loads(numbers.read_text(encoding="utf-8"))
    document = report.read_text(encoding="utf-8")
    for heading in data["sections"]:
        assert heading in result.stdout and heading in document
    assert "python -m benchmarks" in document  # how to re-run
    assert "## Machine" in document and "cores" in document and "Compose" in document

    goals = {goal["key"]: goal for goal in data["goals"]}
    assert GOALS <= set(goals)
    for goal in goals.values():
        assert goal["a_ms"] > 0 and goal["b_ms"] > 0
        assert abs(goal["ratio"] - goal["a_ms"] / goal["b_ms"]) < 0.01  # A / B of medians, as stated
        assert isinstance(goal["met"], bool)
        assert f"×{goal['ratio']:.2f}" in document
    # Not timings: what the launcher did to the containers, each round.
    assert all(check["met"] for check in data["checks"]), data["checks"]

    # The breakdown comes from the traced launcher: its subprocesses and its functions were seen.
    parts = data["launch"]["noop"]["breakdown"]["parts"]
    assert any("infisical export" in label for label in parts) and any("docker compose up" in label for label in parts)
    assert abs(sum(parts.values()) - data["launch"]["noop"]["breakdown"]["wall_ms"]) < 1.0
    assert data["launch"]["noop"]["breakdown"]["probes"]["typer: build the click command"]["count"] >= 1
    assert data["where"]["imports"]["rerun"]["packages"]["startup"].get("stack_launcher", 0) > 0
