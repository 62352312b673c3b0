"""The benchmark script (benchmarks/run.py) still runs and reports every section.

Not a timed test: it runs the script with small sizes and one repeat (`--quick`), and checks
the shape of what it reports and that the numbers are sane, never that they meet a goal.
"""
from __future__ import annotations

import json
import subprocess
import sys

from support.docker_stack import PROJECT_LABEL
from support.processes import REPO_ROOT, minimal_env

SCRIPT = REPO_ROOT / "benchmarks" / "run.py"
SECTIONS = (
    "## 1. Start-up",
    "## 2. Export scale",
    "## 3. Re-run after a rotation",
    "## 4. Re-run with nothing changed",
    "## 5. Cold start",
    "## Goals",
)


def bench_projects() -> list[str]:
    names = subprocess.run(["docker", "ps", "-a", "--format", f'{{{{.Label "{PROJECT_LABEL}"}}}}'],
                           capture_output=True, text=True, env=minimal_env()).stdout.split()
    return sorted(n for n in set(names) if n.startswith("bench"))


def test_the_benchmark_script_runs_with_small_sizes_and_reports_every_section(engine, tmp_path):
    report, numbers = tmp_path / "benchmarks.md", tmp_path / "benchmarks.json"
    before = bench_projects()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(report), "--json", str(numbers)],
        cwd=REPO_ROOT, env=minimal_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=170,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    document = report.read_text(encoding="utf-8")
    for heading in SECTIONS:
        assert heading in result.stdout
        assert heading in document
    assert "python benchmarks/run.py --quick" in document  # how to reproduce
    assert "## Machine" in document and "Compose" in document
    assert "| goal | measured | met |" in document

    data = json.loads(numbers.read_text(encoding="utf-8"))
    startup = data["startup"]
    assert 0 < startup["bare"] < startup["help"] < 5000
    assert 0 < startup["export"] < startup["dry_run"] < 10000
    assert startup["imports"]["dry_run"]["packages"]["stack_launcher"] > 0

    scale = data["export_scale"]
    assert [row["secrets"] for row in scale] == data["config"]["sizes"]
    for row in scale:
        assert row["cli_ms"] > 0 and row["own_ms"] > 0 and row["launcher_rerun_ms"] > row["own_ms"]
    assert scale[-1]["export_bytes"] > scale[0]["export_bytes"]

    services = data["config"]["services"]
    rotation = data["rotation"]
    assert rotation["recreated"] == {"launcher": [1], "raw": [1], "down_up": [services]}
    assert rotation["launcher_ms"] > 0 and rotation["raw_ms"] > 0 and rotation["down_up_ms"] > 0
    assert data["unchanged"]["recreated"] == {"launcher": [0], "raw": [0]}
    parts = data["unchanged"]["breakdown"]
    assert {"infisical export", "docker compose up"} <= set(parts["calls_ms"])
    assert 0 < parts["own_ms"] < parts["wall_ms"] and 0 < parts["subprocesses_ms"] < parts["wall_ms"]

    cold = data["cold_start"]
    assert cold["sleep_by_hand_s"] >= cold["sleep_s"]
    assert cold["launcher_s"] >= cold["healthy_after_s"]  # it waited for health, not less
    assert cold["wait_by_hand_s"] >= cold["healthy_after_s"]

    assert len(data["goals"]) >= 9 and all(isinstance(goal["met"], bool) for goal in data["goals"])
    assert bench_projects() == before, "the script left compose projects behind"
