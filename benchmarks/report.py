"""The goals, the machine, and the report (docs/benchmarks.md).

Every goal is a ratio of two ways measured in the same run, taking turns; a goal is met when
the ratio of their medians is at most its bound (below it, for the cold start).
"""
from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

from . import REPO_ROOT
from .where import EXIT, HIDDEN, OVERLAPPING, REST
from support.processes import minimal_env  # noqa: E402

SECTIONS = (
    "## Goals",
    "## 1. Re-runs against the raw calls",
    "## 2. Help",
    "## 3. Many secrets",
    "## 4. Cold start",
    "## 5. Where the time goes",
)
COMMAND = "python -m benchmarks"


@dataclass(frozen=True)
class Goal:
    key: str
    what: Callable[[dict[str, Any]], str]
    bound: float
    pick: Callable[[dict[str, Any]], dict[str, Any]]  # the comparison summary: a, b, a_ms, b_ms, ratio
    strict: bool = False  # met when ratio < bound rather than <=
    added: bool = False  # not one of the four goals: the same bound where a user meets it


GOALS = (
    Goal("noop", lambda r: "no-op re-run (nothing changed) / the raw calls", 1.5, lambda r: r["launch"]["noop"]),
    Goal("noop_terminal", lambda r: "no-op re-run on a terminal / the raw calls", 1.5,
         lambda r: r["launch"]["noop"]["terminal"], added=True),
    Goal("rotation", lambda r: "rotation re-run (one secret changed) / the raw calls", 1.15,
         lambda r: r["launch"]["rotation"]),
    Goal("rotation_terminal", lambda r: "rotation re-run on a terminal (live view, summary) / the raw calls", 1.15,
         lambda r: r["launch"]["rotation"]["terminal"], added=True),
    Goal("help", lambda r: "`--help` / `python -c 'import typer'`", 1.2, lambda r: r["help"]["piped"]),
    Goal("help_terminal", lambda r: "`--help` on a terminal / `python -c 'import typer'`", 1.2,
         lambda r: r["help"]["terminal"], added=True),
    Goal("scale", lambda r: f"{r['scale'][-1]['secrets']:,} secrets: no-op re-run / the raw calls", 1.5,
         lambda r: r["scale"][-1]),
    Goal("local_infisical", lambda r: "local Infisical running: no-op re-run / the raw calls", 1.5,
         lambda r: r["coldstart"]["warm"], added=True),
    Goal("cold_start", lambda r: "cold start, health-gated / `up -d` + fixed sleep", 1.0,
         lambda r: r["coldstart"]["vs_sleep"], strict=True, added=True),
)


def num(value: float) -> str:
    """A number of milliseconds as it reads best."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    goals = []
    for goal in GOALS:
        c = goal.pick(results)
        met = c["ratio"] < goal.bound if goal.strict else c["ratio"] <= goal.bound
        goals.append({"key": goal.key, "goal": goal.what(results) + (" †" if goal.added else ""),
                      "bound": goal.bound, "ratio": c["ratio"],
                      "round_ratios": c["round_ratios"], "a_ms": c["a_ms"], "b_ms": c["b_ms"], "met": met,
                      # what A must lose (or may gain) to sit exactly on the bound
                      "over_bound_ms": round(c["a_ms"] - goal.bound * c["b_ms"], 1)})
    return goals


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What must hold whatever the machine: containers recreated."""
    noop, rotation = results["launch"]["noop"]["recreated"], results["launch"]["rotation"]["recreated"]
    return [
        {"check": "no-op: the launcher recreates no container", "seen": noop["launcher"] + noop["terminal"],
         "met": all(n == 0 for n in noop["launcher"] + noop["terminal"])},
        {"check": "rotation: the launcher recreates exactly the one container",
         "seen": rotation["launcher"] + rotation["terminal"],
         "met": all(n == 1 for n in rotation["launcher"] + rotation["terminal"])},
        {"check": "rotation: down + up recreates every container", "seen": rotation["down_up"],
         "met": all(n == results["launch"]["services"] for n in rotation["down_up"])},
    ]


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def out(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, cwd=REPO_ROOT, env=minimal_env(), capture_output=True, text=True,
                                  timeout=30, stdin=subprocess.DEVNULL).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    changed = out(["git", "status", "--porcelain", "--", "stack_launcher", "start_services.py"])
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "docker_engine": out(["docker", "version", "--format", "{{.Server.Version}}"]),
        "storage_driver": out(["docker", "info", "--format", "{{.Driver}}"]),
        "compose": out(["docker", "compose", "version", "--short"]),
        "python": platform.python_version(),
        "packages": ", ".join(f"{p} {version(p)}" for p in ("typer", "click", "rich", "python-dotenv")),
        "commit": (out(["git", "rev-parse", "--short", "HEAD"]) or "?")
        + (" with uncommitted changes to the launcher" if changed else ""),
    }


def load() -> list[float]:
    """The 1-minute load average now, as a list to extend (empty where there is none)."""
    try:
        return [round(os.getloadavg()[0], 2)]
    except (OSError, AttributeError):
        return []


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def ratio_cell(c: dict[str, Any]) -> str:
    low, high = c["round_ratios"]
    return f"×{c['ratio']:.2f} (rounds {low:.2f}–{high:.2f})"


# ------------------------------------------------------------------ sections

def render_goals(results: dict[str, Any]) -> list[str]:
    lines = [SECTIONS[0], "",
             "Each ratio is median A / median B, both measured in this run, taking turns; \"rounds\" is the "
             "range of A / B within single rounds. \"Over the bound\" is what A would have to lose (negative: "
             "may gain) to sit exactly on the bound.", ""]
    lines += table(["goal (A / B)", "bound", "A ms", "B ms", "ratio", "met", "over the bound"], [
        [g["goal"], f"{'<' if g['key'] == 'cold_start' else '≤'} {g['bound']:g}", num(g["a_ms"]), num(g["b_ms"]),
         f"×{g['ratio']:.2f} ({g['round_ratios'][0]:.2f}–{g['round_ratios'][1]:.2f})",
         "yes" if g["met"] else "**no**", f"{g['over_bound_ms']:+,.0f} ms"]
        for g in results["goals"]])
    lines[-1:] = ["† Beyond the issue's four goals: the same bounds where a user meets them (a terminal, a local "
                  "Infisical), and what the health gate is for.", ""]
    lines += table(["check (not timed)", "per round", "met"],
                   [[c["check"], c["seen"], "yes" if c["met"] else "**no**"] for c in results["checks"]])
    return lines


def render_launch(results: dict[str, Any]) -> list[str]:
    launch = results["launch"]
    noop, rot = launch["noop"], launch["rotation"]
    lines = [SECTIONS[1], "",
             f"{launch['services']} busybox services, each using one of {launch['secrets']} secrets; the stack "
             "already up. Raw calls: the launcher's own `infisical export` and `docker compose ... up -d`, run by "
             f"hand, with the export written to the file in between. Rotation: before each way, {rot['rotated']} "
             "(used by one service) is rotated in the stand-in Infisical. Recreated: containers whose id "
             "changed, per round.", ""]
    lines += table(["re-run", "launcher ms", "raw calls ms", "launcher / raw", "recreated (launcher, raw)"], [
        ["nothing changed", num(noop["a_ms"]), num(noop["b_ms"]), ratio_cell(noop),
         f"{noop['recreated']['launcher']}, {noop['recreated']['raw']}"],
        ["nothing changed, the launcher on a terminal", num(noop["terminal"]["a_ms"]), num(noop["terminal"]["b_ms"]),
         ratio_cell(noop["terminal"]), f"{noop['recreated']['terminal']}"],
        ["one secret rotated", num(rot["a_ms"]), num(rot["b_ms"]), ratio_cell(rot),
         f"{rot['recreated']['launcher']}, {rot['recreated']['raw']}"],
        ["one secret rotated, the launcher on a terminal", num(rot["terminal"]["a_ms"]), num(rot["terminal"]["b_ms"]),
         ratio_cell(rot["terminal"]), f"{rot['recreated']['terminal']}"],
    ])
    lines += [f"The old way after a rotation, `docker compose down` then `up -d`: {num(rot['down_up_ms'])} ms, "
              f"×{rot['down_up_over_launcher']:.2f} the launcher, recreating {rot['recreated']['down_up']} "
              "containers per round.", ""]
    return lines


def render_help(results: dict[str, Any]) -> list[str]:
    h = results["help"]
    m = h["median_ms"]
    lines = [SECTIONS[2], "",
             f"Median of {h['piped']['rounds']} rounds each, taking turns. Terminal: stdout and stderr on a "
             "pseudo-terminal, where typer renders the help with rich.", ""]
    lines += table(["command", "ms", "/ `import typer`"], [
        ["`python -c pass`", num(m["bare"]), ""],
        ["`python -c 'import typer'`", num(m["import_typer"]), ""],
        ["`start_services.py --help`", num(m["help"]), ratio_cell(h["piped"])],
        ["`start_services.py --help` (terminal)", num(m["help_terminal"]), ratio_cell(h["terminal"])],
    ])
    return lines


def render_scale(results: dict[str, Any]) -> list[str]:
    lines = [SECTIONS[3], "",
             "One service, nothing changed between runs, the number of secrets in Infisical growing.", ""]
    lines += table(["secrets", "export JSON", "launcher ms", "raw calls ms", "launcher − raw ms", "launcher / raw"], [
        [f"{r['secrets']:,}", f"{r['export_bytes'] / 1024:,.0f} KiB", num(r["a_ms"]), num(r["b_ms"]),
         num(r["a_ms"] - r["b_ms"]), ratio_cell(r)] for r in results["scale"]])
    return lines


def render_coldstart(results: dict[str, Any]) -> list[str]:
    c = results["coldstart"]
    lines = [SECTIONS[4], "",
             f"From nothing: a stand-in Infisical (busybox httpd, healthy after {c['healthy_after_s']:g} s) in "
             f"`infisical/docker-compose.yml`, then the {c['services']} services. The launcher waits for health "
             f"(`up -d --wait`); by hand the same gate, or `up -d` and a fixed `sleep {c['sleep_s']:g}`.", ""]
    lines += table(["way", "ms", "launcher / this"], [
        ["launcher", num(c["vs_sleep"]["a_ms"]), ""],
        ["by hand, `up -d --wait`", num(c["vs_wait_by_hand"]["b_ms"]), ratio_cell(c["vs_wait_by_hand"])],
        [f"by hand, `up -d`, `sleep {c['sleep_s']:g}`", num(c["vs_sleep"]["b_ms"]), ratio_cell(c["vs_sleep"])],
        ["then a no-op re-run, the local Infisical healthy", num(c["warm"]["a_ms"]),
         f"raw calls {num(c['warm']['b_ms'])} ms: {ratio_cell(c['warm'])}"],
    ])
    return lines


def render_where(results: dict[str, Any]) -> list[str]:
    noop = results["launch"]["noop"]
    scale = results["scale"]
    columns = [(f"no-op, {results['launch']['services']} services", noop["breakdown"])]
    columns += [(f"{r['secrets']:,} secrets, 1 service", r["breakdown"]) for r in scale]
    lines = [SECTIONS[5], "",
             "A re-run with nothing changed, under `benchmarks/traced_launch.py`: it times each subprocess, "
             "each import, and the launcher's functions (their own time, without what they call that is listed "
             "apart), so the parts add up to the wall time (medians of "
             f"{noop['breakdown']['runs']} runs; tracing adds a little).", ""]
    labels = [label for label in dict.fromkeys(label for _, b in columns for label in b["parts"])
              if label not in (EXIT, REST, HIDDEN)]
    labels += [label for label in (HIDDEN, EXIT, REST) if any(label in b["parts"] for _, b in columns)]
    rows = [["**wall**", *(f"**{num(b['wall_ms'])}**" for _, b in columns)]]
    rows += [[label, *(num(b["parts"][label]) if label in b["parts"] else "" for _, b in columns)]
             for label in labels]
    rows += [[f"↳ {OVERLAPPING} (inside the compose call)", *(num(b["overlapping"][OVERLAPPING]) for _, b in columns)],
             ["**the launcher's own** (outside subprocesses)", *(f"**{num(b['own_ms'])}**" for _, b in columns)],
             ["raw calls: `infisical export` + write, then `docker compose up`",
              f"{num(noop['raw_parts_ms']['infisical export + write'])} + {num(noop['raw_parts_ms']['docker compose up'])}",
              *("" for _ in scale)]]
    lines += table(["part (ms)", *(name for name, _ in columns)], rows)

    lazy = noop["breakdown"]["lazy_imports"]
    lines += ["The imports during the command (no-op re-run, traced; each with what it imports that was not "
              "loaded yet): " + ", ".join(f"`{n}` {num(v)}" for n, v in sorted(lazy.items(), key=lambda i: -i[1])
                                          if v >= 0.5) + " ms.", ""]

    imports = results["where"]["imports"]
    views = (("help", ("startup", "lazy"), "`--help`"), ("help_terminal", ("startup", "lazy"), "`--help` (terminal)"),
             ("rerun", ("startup",), "re-run: at start-up"), ("rerun", ("lazy",), "re-run: lazy"))

    def package_ms(view: str, phases: tuple[str, ...], package: str) -> float:
        return sum(imports[view]["packages"][phase].get(package, 0.0) for phase in phases)

    everything = {p for v, phases, _ in views for phase in phases for p in imports[v]["packages"][phase]}
    big = sorted((p for p in everything if max(package_ms(v, ph, p) for v, ph, _ in views) >= 0.5),
                 key=lambda p: -max(package_ms(v, ph, p) for v, ph, _ in views))
    lines += ["Import time by package (`python -X importtime`; each module's own time charged to the package "
              "that needed it, so `inspect` under `click.core` is click's; medians; importtime slows imports a "
              "little):", ""]
    rows = [["**all**", *(f"**{num(sum(package_ms(v, ph, p) for p in everything))}**" for v, ph, _ in views)]]
    rows += [[f"`{p}`", *(num(package_ms(v, ph, p)) for v, ph, _ in views)] for p in big]
    rows.append(["other packages (under 0.5 ms each)",
                 *(num(sum(package_ms(v, ph, p) for p in everything - set(big))) for v, ph, _ in views)])
    rows.append(["before any of it: Python's own start-up (site, .pth files)",
                 *(num(imports[v]["total_ms"]["python"]) for v, _, _ in views)])
    lines += table(["package", *(title for _, _, title in views)], rows)

    modules = imports["rerun"]["modules"]
    top = sorted(((n, m) for n, m in modules.items()
                  if m["phase"] != "python" and m["depth"] <= 1 and m["cumulative_ms"] >= 1.0),
                 key=lambda item: -item[1]["cumulative_ms"])[:16]
    lines += ["The largest imports of a re-run (cumulative, at depth 0 or 1):", ""]
    lines += table(["module", "when", "ms"], [[f"`{n}`", "start-up" if m["phase"] == "startup" else "lazy",
                                               num(m["cumulative_ms"])] for n, m in top])

    alt = results["where"]["alternatives"]
    teardown = alt["teardown"]
    lines += [f"What alternatives cost, taking turns: each import on top of `python -c pass` ({num(alt['bare_ms'])} ms), "
              f"and `python -c '{teardown['packages']}'` exiting normally against exiting through `os._exit` (no teardown).", ""]
    lines += table(["", "ms"], [[f"`import {'rich.console' if k == 'rich' else k}`", num(v)]
                                for k, v in alt["import_ms"].items()]
                   + [["teardown at exit (normal exit − `os._exit`)", num(teardown["exit_ms"] - teardown["os_exit_ms"])]])
    return lines


def render_results(results: dict[str, Any]) -> list[str]:
    return (render_goals(results) + render_launch(results) + render_help(results) + render_scale(results)
            + render_coldstart(results) + render_where(results))


def render_document(results: dict[str, Any], command: str) -> str:
    m, cfg = results["machine"], results["config"]
    head = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m benchmarks`; edit benchmarks/, not this file. -->",
        "",
        "What the launcher costs over the raw calls it wraps, as ratios: absolute milliseconds do not carry",
        "from one machine to another, so both sides of every ratio are measured in the same run, taking",
        "turns. The Infisical CLI is the test suite's stand-in (`tests/support/bin/infisical`, a Python",
        "script, slower than the real one), used by the launcher and the raw calls alike.",
        "",
        "## How to re-run",
        "",
        "From the repository root, on a machine with a Docker engine and Compose v2 (as for the tests; the",
        "image `busybox-test:local` is built on demand), with the project installed (`pip install -e '.[test]'`):",
        "",
        "```sh",
        command,
        "```",
        "",
        f"It takes a few minutes and rewrites this file. `{COMMAND} --quick` checks in under a minute that the script",
        "works (what `tests/test_benchmarks.py` runs; it writes nothing unless given `--output`); `--rounds N`,",
        "`--json PATH` and `--output PATH` are the other options.",
        "",
        "## Machine",
        "",
    ]
    head += table(["", ""], [
        ["CPU", f"{m['cpu']}, {m['cores']} cores"], ["OS", m["os"]],
        ["Docker engine", f"{m['docker_engine']} ({m['storage_driver']} storage)"], ["Compose", m["compose"]],
        ["Python", f"{m['python']} ({m['packages']})"], ["Commit", m["commit"]],
        ["Measured", results["when"] + (f"; load average (1 min) {min(results['load']):.1f} to "
                                         f"{max(results['load']):.1f} through the run" if results["load"] else "")],
        ["Rounds", f"{cfg['rounds']} per docker comparison, {cfg['startup_rounds']} for help, "
                   f"{cfg['cold_rounds']} cold starts, {cfg['trace_runs']} traced runs"],
    ])
    busiest = max(results["load"], default=0.0)
    if busiest > int(m["cores"]):
        head += [f"**A busy machine**: the load average reached {busiest:.1f} on {m['cores']} cores while this ran "
                 "(other work). Taking turns keeps the ratios fair, but they spread more from round to round; "
                 "re-run on a quiet machine before deciding on a close call.", ""]
    return "\n".join(head + render_results(results)).rstrip() + "\n"
