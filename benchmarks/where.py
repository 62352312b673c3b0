"""Where the launcher's time goes.

Three views, each from the same kind of project the ratios are measured on:

* `trace_runs`: the launcher under traced_launch.py, which times its subprocesses and its
  functions (typer's command building, click's parsing, settings and python-dotenv, the
  catalog, the masker, the export's parse/read/diff/render/write, the git check) and every
  import. `breakdown` splits a run's wall time into parts that add up to it.
* `python -X importtime`: each module's own import time, charged to the package that needed
  it (`inspect` under click.core is click's), at start-up and lazily during the command.
* alternatives, taking turns: the cost of importing argparse, click, typer, rich,
  python-dotenv and fcntl (the lock), and the interpreter's teardown of those packages at exit.
"""
from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path
from typing import Any

from .commands import run, run_on_terminal
from .project import Project, secret_values
from .timing import interleave
from support.processes import LAUNCHER, minimal_env  # noqa: E402

# The launcher's own functions, in the order a launch runs them; times are self times
# (without nested probes, imports and subprocesses), so they never overlap.
CPU_PROBES = (
    "typer: build the click command",
    "click: parse the arguments",
    "typer: format the help",
    "head start: take the lock, park the export",
    "settings: resolve",
    "python-dotenv: parse .env",
    "keys: classify",
    "catalog: parse .env.example",
    "masker: add values",
    "export: parse and validate the JSON",
    "last export: read back",
    "last export: diff",
    "export: render",
    "export: write (0600, fsync, rename)",
    "git: could git commit the export?",
    "init-only warnings",
)
OVERLAPPING = "masker: mask the relayed output"  # runs while compose runs: inside its time
HIDDEN = "↳ of the rows above, done while `infisical export` ran (counted twice, so taken off)"
WAIT = "waiting for a subprocess's output"  # traced_launch.WAIT
EXIT = "exit: after the launcher's last line (interpreter shutdown)"
REST = "everything else (the launcher's other lines, output, the lock)"
PACKAGE_ALIASES = {"markdown_it": "rich", "mdurl": "rich", "pygments": "rich", "shellingham": "typer",
                   "annotated_doc": "typer", "typing_extensions": "typer"}


def median(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else 0.0


# ------------------------------------------------------------------ traced launches

def call_label(argv: list[str]) -> str:
    program = Path(argv[0]).name
    words = [a for a in argv[1:] if not a.startswith("-")]
    if program == "docker" and words[:1] == ["compose"]:
        return "docker compose " + next((a for a in ("up", "down", "ps") if a in argv), "")
    return f"{program} {words[0]}" if words else program


def covered(calls: list[dict[str, Any]]) -> float:
    """Seconds during which at least one subprocess ran (overlapping calls counted once)."""
    total, reach = 0.0, float("-inf")
    for call in sorted(calls, key=lambda c: c["start"]):
        start, end = max(call["start"], reach), call["end"]
        if end > start:
            total += end - start
        reach = max(reach, end)
    return total


def parts_of(trace: dict[str, Any]) -> dict[str, float]:
    """One traced run's wall time (ms) in parts that add up to it."""
    probes = trace["probes"]
    wall = trace["wall"] * 1000
    main = trace["main"] if trace["main"] is not None else trace["end"]
    spans = probes.get("import", {}).get("spans", [])
    startup_imports = sum(ms for start, ms, *_ in spans if start - 1e-9 < main)
    parts = {
        "Python start-up (before start_services.py's first line)": trace["start"] * 1000,
        "start_services.py before the launcher (its checks)": (main - trace["start"]) * 1000 - startup_imports,
        "imports at start-up (the head start's, then stack_launcher.cli: typer, click, ...)": startup_imports,
        "imports during the command (lazy)": sum(ms for start, ms, *_ in spans if start - 1e-9 >= main),
    }
    for label in CPU_PROBES:
        if probes.get(label, {}).get("count"):
            parts[label] = probes[label]["self_ms"]
    # A child that runs beside an earlier one (git, docker ps: started while `infisical export`
    # runs) is charged only the time the earlier ones did not already cover.
    reach = float("-inf")
    for call in sorted(trace["calls"], key=lambda c: c["start"]):
        label = f"`{call_label(call['argv'])}` (subprocess)"
        parts[label] = parts.get(label, 0.0) + max(0.0, call["end"] - max(call["start"], reach)) * 1000
        reach = max(reach, call["end"])
    hidden = hidden_behind_export(trace)
    if hidden:
        parts[HIDDEN] = -hidden
    parts[EXIT] = wall - trace["end"] * 1000
    parts[REST] = wall - sum(parts.values())
    return parts


def hidden_behind_export(trace: dict[str, Any]) -> float:
    """ms of the launcher's own work (rows above) done while `infisical export` ran: from the
    export's start to the launcher's first wait for its output."""
    waits = trace["probes"].get(WAIT, {}).get("spans", [])
    hidden = 0.0
    for call in trace["calls"]:
        if call_label(call["argv"]) != "infisical export":
            continue
        began = min((w[0] for w in waits if w[2] == call.get("pid") and call["start"] <= w[0] <= call["end"]),
                    default=call["start"])
        hidden += (began - call["start"]) * 1000
    return hidden


def lazy_imports(trace: dict[str, Any]) -> dict[str, float]:
    """The outermost imports during the command (ms each, what they import included)."""
    main = trace["main"] if trace["main"] is not None else trace["end"]
    found: dict[str, float] = {}
    for start, ms, name in trace["probes"].get("import", {}).get("spans", []):
        if start - 1e-9 >= main:
            found[name] = found.get(name, 0.0) + ms
    return found


def breakdown(traces: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over traced runs: wall, each part, the launcher's own time, the probes' times."""
    runs = [parts_of(t) for t in traces]
    labels = [label for label in dict.fromkeys(label for r in runs for label in r) if label not in (EXIT, REST, HIDDEN)]
    labels += [HIDDEN, EXIT, REST] if any(HIDDEN in r for r in runs) else [EXIT, REST]
    lazy = [lazy_imports(t) for t in traces]
    probes = {label: {"where": traces[0]["probes"][label]["where"],
                      "ms": median([t["probes"][label]["ms"] for t in traces]),
                      "self_ms": median([t["probes"][label]["self_ms"] for t in traces]),
                      "count": statistics.median([t["probes"][label]["count"] for t in traces])}
              for label in traces[0]["probes"] if label != "import"}
    return {
        "runs": len(traces),
        "wall_ms": median([t["wall"] * 1000 for t in traces]),
        "subprocesses_ms": median([covered(t["calls"]) * 1000 for t in traces]),
        "own_ms": median([(t["wall"] - covered(t["calls"])) * 1000 for t in traces]),
        "parts": {label: median([r.get(label, 0.0) for r in runs]) for label in labels},
        "overlapping": {OVERLAPPING: probes.get(OVERLAPPING, {}).get("self_ms", 0.0)},
        "lazy_imports": {name: median([found.get(name, 0.0) for found in lazy])
                         for name in dict.fromkeys(n for found in lazy for n in found)},
        "probes": probes,
    }


def trace_runs(project: Project, runs: int, *args: str) -> dict[str, Any]:
    """`runs` traced launches of `project` (nothing changed), broken down."""
    return breakdown([project.traced(*args) for _ in range(runs)])


# ------------------------------------------------------------------ python -X importtime

def import_entries(stderr: str) -> list[tuple[str, int, float, float]]:
    """(module, depth, self ms, cumulative ms) per `-X importtime` line, in print order."""
    entries = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line.strip("\r"))
        if m:
            entries.append((m.group(4), len(m.group(3)) // 2, int(m.group(1)) / 1000, int(m.group(2)) / 1000))
    return entries


def package_of(module: str) -> str | None:
    """The third-party or launcher package a module belongs to; None for the standard library."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top.startswith("_"):
        return None
    return PACKAGE_ALIASES.get(top, top)


def attribute(stderr: str) -> dict[str, Any]:
    """Self times charged to the innermost non-stdlib package that imported each module.

    Python prints a module after everything it imports, one indent deeper; so each depth-0
    line closes a block. The blocks before the launcher's first module are Python's own
    start-up (site, the editable install's finder); those up to stack_launcher.cli are the
    launcher's start-up imports; the rest are lazy imports during the command."""
    entries = import_entries(stderr)
    blocks: list[list[tuple[str, int, float, float]]] = [[]]
    for entry in entries:
        blocks[-1].append(entry)
        if entry[1] == 0:
            blocks.append([])
    phase, result = "python", {"python": {}, "startup": {}, "lazy": {}}
    modules: dict[str, dict[str, Any]] = {}
    for block in blocks:
        if not block:
            continue
        head = block[-1][0]
        if phase == "python" and head.startswith("stack_launcher"):
            phase = "startup"
        owners: list[tuple[int, str | None]] = []  # (depth, package) of the importers, innermost last
        for name, depth, self_ms, cumulative in reversed(block):
            while owners and owners[-1][0] >= depth:
                owners.pop()
            own = package_of(name)
            charged = own or next((p for _, p in reversed(owners) if p), None) or "stack_launcher"
            if phase == "python":
                charged = "python start-up (site, .pth files)"
            result[phase][charged] = result[phase].get(charged, 0.0) + self_ms
            owners.append((depth, own))
            modules.setdefault(name, {"phase": phase, "cumulative_ms": cumulative, "depth": depth})
        if phase == "startup" and head == "stack_launcher.cli":
            phase = "lazy"
    return {"packages": result, "modules": modules,
            "total_ms": {p: round(sum(v.values()), 1) for p, v in result.items()}}


def importtime_runs(project: Project, runs: int) -> dict[str, Any]:
    """`-X importtime` of a re-run (piped) and of `--help` (piped and on a terminal)."""
    launcher = [sys.executable, "-X", "importtime", str(LAUNCHER)]
    terminal_env = {**project.env, "TERM": "xterm-256color"}
    views: dict[str, list[dict[str, Any]]] = {"rerun": [], "help": [], "help_terminal": []}
    for _ in range(runs):
        views["rerun"].append(attribute(run(launcher, cwd=project.dir, env=project.env)[1].stderr))
        views["help"].append(attribute(run(launcher + ["--help"], cwd=project.dir, env=project.env)[1].stderr))
        views["help_terminal"].append(attribute(run_on_terminal(launcher + ["--help"], cwd=project.dir,
                                                                env=terminal_env)[1]))
    summary = {}
    for view, samples in views.items():
        phases: dict[str, dict[str, float]] = {}
        for phase in ("python", "startup", "lazy"):
            packages = set().union(*(s["packages"][phase] for s in samples))
            phases[phase] = {p: median([s["packages"][phase].get(p, 0.0) for s in samples]) for p in packages}
        names = set().union(*(s["modules"] for s in samples))
        modules = {n: {"phase": next(s["modules"][n]["phase"] for s in samples if n in s["modules"]),
                       "depth": next(s["modules"][n]["depth"] for s in samples if n in s["modules"]),
                       "cumulative_ms": median([s["modules"][n]["cumulative_ms"] if n in s["modules"] else 0.0
                                                for s in samples])}
                   for n in names}
        summary[view] = {"packages": phases, "modules": modules,
                         "total_ms": {p: median([s["total_ms"][p] for s in samples]) for p in phases}}
    return summary


# ------------------------------------------------------------------ alternatives

def alternatives(project: Project, rounds: int) -> dict[str, Any]:
    """What replacements would cost, taking turns: each import on top of `python -c pass`, and
    the interpreter's teardown of the launcher's packages (a normal exit against os._exit)."""
    packages = "import typer, click, dotenv"
    codes = {
        "bare": "pass",
        "argparse": "import argparse",
        "click": "import click",
        "typer": "import typer",
        "rich": "import rich.console",
        "dotenv": "import dotenv",
        "fcntl": "import fcntl",
        "exit": packages,
        "os_exit": packages + "; import os, sys; sys.stdout.flush(); os._exit(0)",
    }
    env = minimal_env()
    ways = {name: (lambda code=code: run([sys.executable, "-c", code], cwd=project.dir, env=env))
            for name, code in codes.items()}
    medians = interleave(ways, rounds).as_dict()["median_ms"]
    return {
        "bare_ms": medians["bare"],
        "import_ms": {k: round(medians[k] - medians["bare"], 1) for k in codes if k not in ("bare", "exit", "os_exit")},
        "teardown": {"packages": packages, "exit_ms": medians["exit"], "os_exit_ms": medians["os_exit"]},
    }


def run_section(cfg, root: Path) -> dict[str, Any]:
    project = Project(root / "where", services=1, secrets=secret_values(10, seed=7))
    try:
        project.learn_calls()
        project.launcher()
        return {"imports": importtime_runs(project, cfg.trace_runs),
                "alternatives": alternatives(project, cfg.startup_rounds)}
    finally:
        project.down()
