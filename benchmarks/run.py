#!/usr/bin/env python3
"""Benchmarks: the launcher's own cost, and the cost of a re-run, measured side by side.

What issue 5 asks, in five sections:
  1. start-up: `--help` and `--dry-run` against a bare `python -c pass`, and `-X importtime`;
  2. export scale: 10 / 1,000 / 10,000 secrets through the stand-in Infisical CLI;
  3. a re-run after rotating one secret: the launcher, the raw calls by hand, down + up;
  4. a re-run with nothing changed: the launcher against the raw calls;
  5. a cold start with the health-gated local Infisical against a fixed sleep.

It needs what the test suite needs: a Docker engine with Compose v2, the local image
busybox-test:local (built on demand), and the stand-in Infisical CLI; their helpers in
tests/support/ are reused here. From the repository root:

    python benchmarks/run.py              # full run: prints the tables, writes docs/benchmarks.md
    python benchmarks/run.py --quick      # small sizes, one repeat, writes nothing (the test runs this)
    python benchmarks/run.py --repeats 9 --output /tmp/bench.md --json /tmp/bench.json

Each figure is the median of several runs. Each comparison is made in the same run, the
ways compared taking turns round by round so that drift in the engine hits all of them,
and a difference is the median of the per-round differences. Section 4 also runs the
launcher under benchmarks/traced_launch.py, which records its subprocesses, to split its
wall time into theirs and its own.

Options: --quick, --repeats N, --sizes 10,1000,10000, --services N, --output PATH, --json PATH.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from secrets import token_hex
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT))

from stack_launcher import envfile, infisical_source, launch  # noqa: E402
from stack_launcher.masking import Masker  # noqa: E402
from support.docker_stack import (  # noqa: E402
    PROJECT_LABEL, SERVICE_LABEL, EngineUnavailable, Stack, busybox_service, ensure_test_image, probe_engine,
)
from support.infisical_server import DEFAULT_PROJECT, DEFAULT_TOKEN, FakeInfisical  # noqa: E402
from support.processes import LAUNCHER, STAND_IN_BIN, minimal_env  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks.md"
TRACED_LAUNCH = Path(__file__).resolve().parent / "traced_launch.py"
BUDGET_MS = 150  # what the launcher may add to the calls it makes
HELP_BUDGET_MS = 300
IMPORT_PACKAGES = ("stack_launcher", "typer", "pydantic", "rich", "dotenv", "filelock", "importlib")
SECTIONS = (
    "## 1. Start-up",
    "## 2. Export scale",
    "## 3. Re-run after a rotation",
    "## 4. Re-run with nothing changed",
    "## 5. Cold start",
    "## Goals",
)


class BenchmarkError(Exception):
    """A measurement could not be made (a command failed): its numbers would mean nothing."""


@dataclass(frozen=True)
class Config:
    repeats: int  # rounds of each docker measurement
    startup_repeats: int  # runs of each cheap start-up measurement
    sizes: tuple[int, ...]  # secrets in the export-scale section
    services: int  # busybox services in the re-run sections
    secrets: int  # secrets in Infisical in the re-run sections (the first `services` are used)
    healthy_after: float  # seconds the stand-in Infisical takes to answer /api/status
    fixed_sleep: float  # seconds the old way sleeps instead of waiting for health
    quick: bool


FULL = dict(repeats=5, startup_repeats=20, sizes=(10, 1_000, 10_000), services=10, secrets=30,
            healthy_after=3.0, fixed_sleep=10.0)
QUICK = dict(repeats=1, startup_repeats=2, sizes=(10, 100), services=3, secrets=5,
             healthy_after=1.0, fixed_sleep=2.0)


# ---------------------------------------------------------------------------- measuring

def median(values: list[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def run(argv: list[str], *, cwd: Path | str, env: dict[str, str], check: bool = True,
        timeout: float = 600) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run to completion with stdin closed and both streams captured: (seconds, result)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, encoding="utf-8", errors="replace", timeout=timeout)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise BenchmarkError(f"`{shlex.join(argv)}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return elapsed, proc


def run_on_terminal(argv: list[str], *, cwd: Path | str, env: dict[str, str]) -> tuple[float, str]:
    """Run with stdout and stderr on a pseudo-terminal, as a user at a shell would: (seconds, output)."""
    master, slave = os.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    code = proc.wait()
    elapsed = time.perf_counter() - start
    os.close(master)
    output = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    if code != 0:
        raise BenchmarkError(f"`{shlex.join(argv)}` on a terminal exited {code}:\n{output}")
    return elapsed, output


def in_process(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of `fn()` over `repeats` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return median(times), result


@dataclass(frozen=True)
class Import:
    """One module in `-X importtime`: its cumulative time and what imported it."""

    cumulative_ms: float
    depth: int
    under: str  # the depth-0 import that brought it in ("" for a depth-0 one)
    packages_above: frozenset[str]  # the top-level packages of all its importers


def import_times(stderr: str) -> dict[str, Import]:
    """Parse `-X importtime` lines. Python prints a module after everything it imports,
    one indent deeper; read backwards, each line's importers are the shallower lines above."""
    entries = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line.strip("\r"))
        if m:
            entries.append((m.group(3), len(m.group(2)) // 2, int(m.group(1)) / 1000))
    found: dict[str, Import] = {}
    importers: list[tuple[int, str]] = []
    for name, depth, cumulative in reversed(entries):
        while importers and importers[-1][0] >= depth:
            importers.pop()
        found.setdefault(name, Import(cumulative, depth, importers[0][1] if importers else "",
                                      frozenset(n.split(".")[0] for _, n in importers)))
        importers.append((depth, name))
    return found


def package_ms(imports: dict[str, Import], package: str) -> float:
    """Everything importing `package` cost, what it imports included, each module counted once."""
    return sum(i.cumulative_ms for name, i in imports.items()
               if name.split(".")[0] == package and package not in i.packages_above)


# ---------------------------------------------------------------------------- the projects

def secret_values(count: int, seed: int) -> dict[str, str]:
    """`count` secrets, names SECRET_00000...; every tenth value holds what needs escaping."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    width = max(2, len(str(count - 1)))
    values = {}
    for i in range(count):
        value = "".join(rng.choice(alphabet) for _ in range(32))
        if i % 10 == 9:
            value = f'{value[:8]}$"\'\\ #{value[8:16]}\n{value[16:]}'
        values[f"SECRET_{i:0{width}d}"] = value
    return values


def secret_key(index: int, count: int) -> str:
    return f"SECRET_{index:0{max(2, len(str(count - 1)))}d}"


class Project:
    """A throw-away compose project of busybox services, the fake Infisical behind the
    stand-in CLI, and a `.env` naming both; removed by `down()`.

    Service svcNN uses SECRET_NN and nothing else, so a rotated secret concerns one service.
    """

    def __init__(self, root: Path, services: int, secrets: dict[str, str], dotenv_extra: str = "") -> None:
        self.stack = Stack(root / "stack", name="bench" + token_hex(4))
        self.name = self.stack.name
        self.dir = self.stack.dir
        self.server = FakeInfisical(root / "server")
        self.server.set_secrets(secrets)
        self.secret_count = len(secrets)
        self.services = [f"svc{i:02d}" for i in range(services)]
        self.stack.write_compose({
            name: {"environment": {"SECRET": f"${{{key}:?{key} is not set}}"}}
            for name, key in ((s, secret_key(i, len(secrets))) for i, s in enumerate(self.services))
        })
        self.stack.write_env(f"COMPOSE_PROJECT_NAME={self.name}\nINFISICAL_TOKEN={DEFAULT_TOKEN}\n"
                             f"INFISICAL_PROJECT_ID={DEFAULT_PROJECT}\n{dotenv_extra}")
        self._git_init()
        self.env = dict(self.server.env)  # the stand-in first on PATH, like the tests
        self.cli = shutil.which("infisical", path=self.env["PATH"]) or str(STAND_IN_BIN / "infisical")
        self.output = self.dir / ".env.infisical"
        self.compose_up_argv = self._compose_up_argv()
        self.last_raw_parts: dict[str, float] = {}

    def _git_init(self) -> None:
        """A git checkout, as a user's clone is: the launcher asks git whether the export is ignored."""
        (self.dir / ".gitignore").write_text((REPO_ROOT / ".gitignore").read_text(encoding="utf-8"), encoding="utf-8")
        if shutil.which("git"):
            subprocess.run(["git", "init", "-q", str(self.dir)], capture_output=True, check=False)

    # -- the launcher ----------------------------------------------------------------------
    def launcher(self, *args: str) -> float:
        """`python start_services.py *args`; checks that it exported fresh from Infisical."""
        elapsed, proc = run([sys.executable, str(LAUNCHER), *args], cwd=self.dir, env=self.env)
        if "from Infisical" not in proc.stderr:
            raise BenchmarkError(f"the launcher did not export from Infisical:\n{proc.stderr}")
        return elapsed

    def _compose_up_argv(self) -> list[str]:
        """The exact `docker compose ... up -d` the launcher runs, from its own --dry-run."""
        _, proc = run([sys.executable, str(LAUNCHER), "--dry-run"], cwd=self.dir, env=self.env)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("Command: ")), None)
        if line is None:
            raise BenchmarkError(f"--dry-run printed no `Command:` line:\n{proc.stdout}")
        return shlex.split(line.removeprefix("Command: "))

    # -- the raw calls the launcher wraps, by hand -----------------------------------------
    def export_argv(self, domain: str | None = None) -> list[str]:
        argv = [self.cli, "export", "--format=json", "--env=dev", "--path=/", f"--projectId={DEFAULT_PROJECT}"]
        return argv + [f"--domain={domain}"] if domain else argv

    def export_by_hand(self, domain: str | None = None) -> str:
        _, proc = run(self.export_argv(domain), cwd=self.dir, env={**self.env, "INFISICAL_TOKEN": DEFAULT_TOKEN})
        return proc.stdout

    def write_by_hand(self, exported: str) -> None:
        """The export as a dotenv file compose reads back exactly: the least any launcher must do."""
        def quote(v: str) -> str:
            return v.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("\n", "\\n").replace("\r", "\\r")

        pairs = json.loads(exported) or []
        self.output.write_text("".join(f'{p["key"]}="{quote(p["value"])}"\n' for p in pairs), encoding="utf-8")

    def compose(self, argv: list[str]) -> None:
        run(argv, cwd=self.dir, env=self.env)

    def raw_rerun(self, domain: str | None = None) -> float:
        """`infisical export`, write the file, `docker compose ... up -d`: the limit.
        The time of each part is left in `last_raw_parts`."""
        start = time.perf_counter()
        self.write_by_hand(self.export_by_hand(domain))
        exported = time.perf_counter()
        self.compose(self.compose_up_argv)
        end = time.perf_counter()
        self.last_raw_parts = {"infisical export + write": exported - start, "docker compose up": end - exported}
        return end - start

    def traced_launcher(self) -> tuple[float, list[dict[str, Any]]]:
        """The launcher under benchmarks/traced_launch.py: (wall seconds, its subprocess calls)."""
        trace = self.dir.parent / "trace.json"
        env = {**self.env, "BENCH_TRACE_FILE": str(trace)}
        start = time.perf_counter()
        _, proc = run([sys.executable, str(TRACED_LAUNCH)], cwd=self.dir, env=env)
        wall = time.perf_counter() - start
        if "from Infisical" not in proc.stderr:
            raise BenchmarkError(f"the launcher did not export from Infisical:\n{proc.stderr}")
        calls = json.loads(trace.read_text(encoding="utf-8"))["calls"]
        for call in calls:
            call["start"] -= start
            call["end"] -= start
        return wall, calls

    def down_then_up(self) -> float:
        """The old way: export, write, `docker compose down`, then `up -d` (every container restarts)."""
        argv = self.compose_up_argv
        base = argv[: argv.index("up")]
        start = time.perf_counter()
        self.write_by_hand(self.export_by_hand())
        self.compose(base + ["down"])
        self.compose(argv)
        return time.perf_counter() - start

    # -- state -----------------------------------------------------------------------------
    def rotate(self, index: int) -> None:
        key = secret_key(index, self.secret_count)
        self.server.set_secrets({key: "rotated-" + token_hex(12)}, replace=False)

    def container_ids(self) -> dict[str, str]:
        """service -> id of its running container."""
        _, proc = run(["docker", "ps", "--no-trunc", "--filter", f"label={PROJECT_LABEL}={self.name}",
                       "--format", f'{{{{.Label "{SERVICE_LABEL}"}}}} {{{{.ID}}}}'], cwd="/", env=minimal_env())
        return dict(line.split() for line in proc.stdout.splitlines() if line.strip())

    def down(self) -> None:
        for name in (self.name, f"{self.name}-infisical"):
            try:
                Stack(self.dir, name=name).down()  # compose down -v --remove-orphans -t 0, then leftovers
            except Exception as exc:  # noqa: BLE001  (clean-up must go on for the other project)
                print(f"warning: clean-up of {name} failed: {exc}", file=sys.stderr)


def recreated(before: dict[str, str], after: dict[str, str]) -> int:
    """Services whose running container is not the one that ran before."""
    return sum(1 for service in before.keys() | after.keys() if before.get(service) != after.get(service))


# ---------------------------------------------------------------------------- 1. start-up

def bench_startup(cfg: Config, root: Path) -> dict[str, Any]:
    project = Project(root / "startup", services=1, secrets=secret_values(10, seed=1))
    python = [sys.executable]
    launcher = [sys.executable, str(LAUNCHER)]
    terminal_env = {**project.env, "TERM": "xterm-256color"}
    import_cli = f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); import stack_launcher.cli"
    ways: dict[str, Callable[[], float]] = {
        "bare": lambda: run(python + ["-c", "pass"], cwd=project.dir, env=project.env)[0],
        "import_cli": lambda: run(python + ["-c", import_cli], cwd=project.dir, env=project.env)[0],
        "help": lambda: run(launcher + ["--help"], cwd=project.dir, env=project.env)[0],
        "help_terminal": lambda: run_on_terminal(launcher + ["--help"], cwd=project.dir, env=terminal_env)[0],
        "dry_run_alone": lambda: run(launcher + ["--dry-run", "--skip-infisical"], cwd=project.dir, env=project.env)[0],
        "dry_run": lambda: run(launcher + ["--dry-run"], cwd=project.dir, env=project.env)[0],
        "dry_run_terminal": lambda: run_on_terminal(launcher + ["--dry-run"], cwd=project.dir, env=terminal_env)[0],
        "export": lambda: run(project.export_argv(), cwd=project.dir,
                              env={**project.env, "INFISICAL_TOKEN": DEFAULT_TOKEN})[0],
    }
    for way in ways.values():  # warm the page cache and the .pyc files
        way()
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(cfg.startup_repeats):
        for name, way in ways.items():
            times[name].append(way())
    result = {name: ms(median(values)) for name, values in times.items()}
    result["dry_run_minus_export"] = ms(median([d - e for d, e in zip(times["dry_run"], times["export"])]))
    result["dry_run_terminal_minus_export"] = ms(median([d - e for d, e in zip(times["dry_run_terminal"], times["export"])]))
    result["import_cli_minus_bare"] = ms(median([i - b for i, b in zip(times["import_cli"], times["bare"])]))
    result["dry_run_alone_minus_bare"] = ms(median([d - b for d, b in zip(times["dry_run_alone"], times["bare"])]))
    result["help_minus_bare"] = ms(median([h - b for h, b in zip(times["help"], times["bare"])]))
    result["imports"] = startup_imports(cfg, project, terminal_env)
    return result


def startup_imports(cfg: Config, project: Project, terminal_env: dict[str, str]) -> dict[str, Any]:
    """Median cumulative import time per module, on a terminal (where colour brings rich in)."""
    runs = {"help": [], "dry_run": [], "dry_run_piped": []}
    launcher = [sys.executable, "-X", "importtime", str(LAUNCHER)]
    for _ in range(min(cfg.startup_repeats, 7)):
        runs["help"].append(import_times(run_on_terminal(launcher + ["--help"], cwd=project.dir, env=terminal_env)[1]))
        runs["dry_run"].append(import_times(run_on_terminal(launcher + ["--dry-run"], cwd=project.dir, env=terminal_env)[1]))
        runs["dry_run_piped"].append(import_times(run(launcher + ["--dry-run"], cwd=project.dir, env=project.env)[1].stderr))

    def summary(samples: list[dict[str, Import]]) -> dict[str, Any]:
        names = set().union(*samples)
        modules = {n: median([s[n].cumulative_ms if n in s else 0.0 for s in samples]) for n in names}
        where = {n: next(s[n].under for s in samples if n in s) for n in names}
        total = median([sum(i.cumulative_ms for i in s.values() if i.depth == 0) for s in samples])
        packages = {p: round(median([package_ms(s, p) for s in samples]), 1) for p in IMPORT_PACKAGES}
        return {"total_ms": round(total, 1), "packages": packages,
                "modules": {n: [round(ms_, 1), where[n]] for n, ms_ in modules.items()}}

    return {name: summary(samples) for name, samples in runs.items()}


# ---------------------------------------------------------------------------- 2. export scale

def bench_export_scale(cfg: Config, root: Path) -> list[dict[str, Any]]:
    rows = []
    for size in cfg.sizes:
        project = Project(root / f"scale-{size}", services=1, secrets=secret_values(size, seed=size))
        try:
            rows.append(export_scale_row(cfg, project, size))
        finally:
            project.down()
    return rows


def export_scale_row(cfg: Config, project: Project, size: int) -> dict[str, Any]:
    export_env = {**project.env, "INFISICAL_TOKEN": DEFAULT_TOKEN}
    run(project.export_argv(), cwd=project.dir, env=export_env)  # warm-up
    cli_times, stdout = [], ""
    for _ in range(cfg.repeats):
        elapsed, proc = run(project.export_argv(), cwd=project.dir, env=export_env)
        cli_times.append(elapsed)
        stdout = proc.stdout

    request = infisical_source.Request(environment="dev", path="/", project_id=DEFAULT_PROJECT, api_url="",
                                       timeout=30.0, cwd=str(project.dir))
    inner = max(cfg.repeats, 5)
    t_parse, export = in_process(lambda: infisical_source.parse_export(stdout, request), inner)
    if len(export.secrets) != size:
        raise BenchmarkError(f"parse_export kept {len(export.secrets)} of {size} secrets")
    t_render, text = in_process(lambda: envfile.render(export.secrets, request.source), inner)
    target = project.dir / "in-process.env"
    t_write, _ = in_process(lambda: envfile.write_private(target, text), inner)
    own = t_parse + t_render + t_write

    # The launcher's other work that grows with the secrets, on each run.
    t_diff, _ = in_process(lambda: launch.diff_secrets(envfile.read_exported(target), export.secrets), inner)

    def build_masker() -> Masker:
        re.purge()  # else re's cache hands back the pattern compiled last time; a launch compiles it afresh
        return Masker(s.reveal() for s in export.secrets.values())

    t_mask, masker = in_process(build_masker, inner)
    compose_lines = "".join(f" Container {project.name}-svc{i:02d}-1  Running\n" for i in range(10))
    t_feed, _ = in_process(lambda: (masker.feed(compose_lines), masker.flush()), inner)

    # End to end: the launcher's re-run (nothing changed) against the raw calls, one service.
    project.launcher()
    launcher_times, raw_times = [], []
    for _ in range(cfg.repeats):
        launcher_times.append(project.launcher())
        raw_times.append(project.raw_rerun())
    return {
        "secrets": size,
        "export_bytes": len(stdout.encode("utf-8")),
        "cli_ms": ms(median(cli_times)),
        "parse_ms": ms(t_parse),
        "render_ms": ms(t_render),
        "write_ms": ms(t_write),
        "own_ms": ms(own),
        "own_us_per_secret": round(own * 1e6 / size, 2),
        "read_diff_ms": ms(t_diff),
        "masker_ms": ms(t_mask),
        "mask_10_lines_ms": ms(t_feed),
        "launcher_rerun_ms": ms(median(launcher_times)),
        "raw_rerun_ms": ms(median(raw_times)),
        "launcher_minus_raw_ms": ms(median([l - r for l, r in zip(launcher_times, raw_times)])),
    }


# ---------------------------------------------------------------------------- 3 and 4. re-runs

def bench_reruns(cfg: Config, root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    project = Project(root / "reruns", services=cfg.services, secrets=secret_values(cfg.secrets, seed=3))
    try:
        project.launcher()  # the stack is up; the rounds start from a steady state
        project.launcher()
        return bench_rotation(cfg, project), bench_unchanged(cfg, project)
    finally:
        project.down()


def bench_rotation(cfg: Config, project: Project) -> dict[str, Any]:
    """Rotate one secret before each way, so each has one change to apply."""
    ways = {"launcher": project.launcher, "raw": project.raw_rerun, "down_up": project.down_then_up}
    index = len(project.services) // 2
    times: dict[str, list[float]] = {w: [] for w in ways}
    counts: dict[str, list[int]] = {w: [] for w in ways}
    for _ in range(cfg.repeats):
        for name, way in ways.items():
            project.rotate(index)
            before = project.container_ids()
            times[name].append(way())
            counts[name].append(recreated(before, project.container_ids()))
    result = paired(times)
    result.update(services=len(project.services), rotated=secret_key(index, project.secret_count),
                  recreated={w: counts[w] for w in ways})
    result["down_up_over_launcher"] = round(median(times["down_up"]) / median(times["launcher"]), 2)
    return result


def bench_unchanged(cfg: Config, project: Project) -> dict[str, Any]:
    traces: list[tuple[float, list[dict[str, Any]]]] = []
    raw_parts: list[dict[str, float]] = []

    def traced() -> float:
        traces.append(project.traced_launcher())
        return traces[-1][0]

    def raw() -> float:
        elapsed = project.raw_rerun()
        raw_parts.append(project.last_raw_parts)
        return elapsed

    ways = {"launcher": project.launcher, "raw": raw, "traced": traced}
    project.launcher()  # the file again as the launcher writes it, after the by-hand writes
    times: dict[str, list[float]] = {w: [] for w in ways}
    counts: dict[str, list[int]] = {w: [] for w in ways}
    for _ in range(cfg.repeats):
        for name, way in ways.items():
            before = project.container_ids()
            times[name].append(way())
            counts[name].append(recreated(before, project.container_ids()))
    result = paired({w: times[w] for w in ("launcher", "raw")})
    result.update(services=len(project.services), recreated={w: counts[w] for w in ("launcher", "raw")})
    result["breakdown"] = breakdown(traces, raw_parts)
    result["extra_calls"] = launcher_extra_calls(cfg, project)
    return result


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


def breakdown(traces: list[tuple[float, list[dict[str, Any]]]], raw_parts: list[dict[str, float]]) -> dict[str, Any]:
    """Where a traced launcher re-run spends its time: each subprocess, and the rest (its own)."""
    per_call: dict[str, list[float]] = {}
    for _, calls in traces:
        for label in dict.fromkeys(call_label(c["argv"]) for c in calls):
            per_call.setdefault(label, []).append(sum(c["end"] - c["start"] for c in calls if call_label(c["argv"]) == label))
    first_call = [min((c["start"] for c in calls), default=wall) for wall, calls in traces]
    return {
        "wall_ms": ms(median([wall for wall, _ in traces])),
        "subprocesses_ms": ms(median([covered(calls) for _, calls in traces])),
        "own_ms": ms(median([wall - covered(calls) for wall, calls in traces])),
        "before_first_call_ms": ms(median(first_call)),
        "calls_ms": {label: ms(median(values)) for label, values in per_call.items()},
        "raw_ms": {label: ms(median([p[label] for p in raw_parts])) for label in raw_parts[0]},
    }


def paired(times: dict[str, list[float]]) -> dict[str, Any]:
    """Medians, and the launcher's paired difference and ratio against the raw calls."""
    result: dict[str, Any] = {f"{w}_ms": ms(median(t)) for w, t in times.items()}
    result["launcher_minus_raw_ms"] = ms(median([l - r for l, r in zip(times["launcher"], times["raw"])]))
    result["launcher_over_raw"] = round(median(times["launcher"]) / median(times["raw"]), 2)
    return result


def launcher_extra_calls(cfg: Config, project: Project) -> dict[str, float]:
    """Subprocesses the launcher runs that the raw calls do not, each timed alone."""
    name = project.output.name
    calls = {
        "git_ls_files": ["git", "ls-files", "--error-unmatch", name],
        "git_check_ignore": ["git", "check-ignore", "-q", name],
        "docker_ps_bootstrap_check": ["docker", "ps", "-a", "--filter",
                                      f"label={PROJECT_LABEL}={project.name}-infisical", "--format", "{{.Status}}"],
    }
    found = {}
    for label, argv in calls.items():
        if shutil.which(argv[0]) is None:
            continue
        samples = [run(argv, cwd=project.dir, env=project.env, check=False)[0] for _ in range(max(cfg.repeats, 5))]
        found[f"{label}_ms"] = ms(median(samples))
    return found


# ---------------------------------------------------------------------------- 5. cold start

def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_stand_in_infisical(project: Project, port: int, healthy_after: float) -> Path:
    """infisical/docker-compose.yml: busybox httpd answering /api/status after `healthy_after` s."""
    script = ("mkdir -p /www/api && echo '{\"message\":\"Ok\"}' > /www/api/status"
              f" && sleep {healthy_after:g} && exec httpd -f -p 8080 -h /www")
    model = {"services": {"infisical": busybox_service(
        command=["sh", "-c", script],
        ports=[f"127.0.0.1:{port}:8080"],
        # No start_interval: Debian's engine 20.10 rejects it.
        healthcheck={"test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/api/status"],
                     "interval": "500ms", "timeout": "2s", "retries": 120},
    )}}
    path = project.dir / "infisical" / "docker-compose.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
    return path


def bench_cold_start(cfg: Config, root: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    project = Project(root / "cold", services=cfg.services, secrets=secret_values(cfg.secrets, seed=5),
                      dotenv_extra=f"INFISICAL_API_URL={url}\n")
    project.server.update(probe_domain=True)  # the stand-in CLI really asks <url>/api/status
    compose_file = write_stand_in_infisical(project, port, cfg.healthy_after)
    infisical = ["docker", "compose", "-p", f"{project.name}-infisical", "--project-directory", str(project.dir),
                 "-f", str(compose_file), "--env-file", str(project.dir / ".env"), "--progress", "plain", "up", "-d"]

    def by_hand(wait: bool) -> float:
        start = time.perf_counter()
        if wait:
            project.compose(infisical + ["--wait"])
        else:
            project.compose(infisical)
            time.sleep(cfg.fixed_sleep)
        project.write_by_hand(project.export_by_hand(url))
        project.compose(project.compose_up_argv)
        return time.perf_counter() - start

    ways = {"launcher": lambda: project.launcher(), "wait_by_hand": lambda: by_hand(True),
            "sleep_by_hand": lambda: by_hand(False)}
    times: dict[str, list[float]] = {w: [] for w in ways}
    warm: dict[str, list[float]] = {"launcher": [], "raw": []}
    try:
        for _ in range(cfg.repeats):
            for name, way in ways.items():
                project.down()
                times[name].append(way())
                if len(project.container_ids()) != len(project.services):
                    raise BenchmarkError(f"cold start ({name}) did not start every service")
                if name == "launcher":  # the local Infisical is healthy now: a warm re-run
                    warm["launcher"].append(project.launcher())
                    warm["raw"].append(project.raw_rerun(url))
    finally:
        project.down()
    result: dict[str, Any] = {f"{w}_s": round(median(t), 2) for w, t in times.items()}
    result.update(healthy_after_s=cfg.healthy_after, sleep_s=cfg.fixed_sleep, services=len(project.services))
    result["launcher_minus_wait_by_hand_ms"] = ms(median([l - r for l, r in zip(times["launcher"], times["wait_by_hand"])]))
    result["launcher_over_sleep"] = round(median(times["launcher"]) / median(times["sleep_by_hand"]), 2)
    result["warm"] = paired(warm)
    return result


# ---------------------------------------------------------------------------- the report

def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def out(argv: list[str]) -> str:
        try:
            return run(argv, cwd=REPO_ROOT, env=minimal_env(), check=False)[1].stdout.strip()
        except OSError:
            return "?"

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "docker_engine": out(["docker", "version", "--format", "{{.Server.Version}}"]),
        "storage_driver": out(["docker", "info", "--format", "{{.Driver}}"]),
        "compose": out(["docker", "compose", "version", "--short"]),
        "python": platform.python_version(),
        "packages": ", ".join(f"{p} {version(p)}" for p in ("typer", "pydantic", "rich", "filelock", "python-dotenv")),
        "commit": (out(["git", "rev-parse", "--short", "HEAD"]) or "?")
        + (" with uncommitted changes to the launcher"
           if out(["git", "status", "--porcelain", "--", "stack_launcher", "start_services.py"]) else ""),
    }


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def num(value: float) -> str:
    """A number of milliseconds or seconds as it reads best."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    s, scale, rot, same, cold = (results[k] for k in ("startup", "export_scale", "rotation", "unchanged", "cold_start"))
    biggest = scale[-1]
    growth = (scale[-1]["own_ms"] / scale[-2]["own_ms"], scale[-1]["secrets"] / scale[-2]["secrets"]) if len(scale) > 1 else (1, 1)
    return [
        {"goal": f"`--help` answers within {HELP_BUDGET_MS} ms",
         "measured": f"{num(s['help'])} ms (piped), {num(s['help_terminal'])} ms (terminal)",
         "met": max(s["help"], s["help_terminal"]) <= HELP_BUDGET_MS},
        {"goal": f"the launcher adds ≤ {BUDGET_MS} ms beyond the subprocesses it runs (re-run, traced)",
         "measured": f"{num(same['breakdown']['own_ms'])} ms", "met": same["breakdown"]["own_ms"] <= BUDGET_MS},
        {"goal": f"`--dry-run` adds ≤ {BUDGET_MS} ms to its `infisical export`",
         "measured": f"{num(s['dry_run_minus_export'])} ms (piped), {num(s['dry_run_terminal_minus_export'])} ms (terminal)",
         "met": max(s["dry_run_minus_export"], s["dry_run_terminal_minus_export"]) <= BUDGET_MS},
        {"goal": f"{biggest['secrets']:,} secrets parsed, validated and written well under a second",
         "measured": f"{num(biggest['own_ms'])} ms", "met": biggest["own_ms"] < 500},
        {"goal": "export handling grows linearly",
         "measured": f"×{growth[0]:.1f} time for ×{growth[1]:.0f} secrets", "met": growth[0] <= 1.5 * growth[1]},
        {"goal": "rotation: exactly one container recreated by the launcher",
         "measured": f"{rot['recreated']['launcher']} per round", "met": all(c == 1 for c in rot["recreated"]["launcher"])},
        {"goal": f"rotation: the launcher within {BUDGET_MS} ms of the raw calls",
         "measured": f"{num(rot['launcher_minus_raw_ms'])} ms", "met": rot["launcher_minus_raw_ms"] <= BUDGET_MS},
        {"goal": "nothing changed: no container recreated",
         "measured": f"{same['recreated']['launcher']} per round", "met": all(c == 0 for c in same["recreated"]["launcher"])},
        {"goal": f"nothing changed: the launcher within {BUDGET_MS} ms of the raw calls",
         "measured": f"{num(same['launcher_minus_raw_ms'])} ms", "met": same["launcher_minus_raw_ms"] <= BUDGET_MS},
        {"goal": f"{biggest['secrets']:,} secrets, nothing changed: the launcher within {BUDGET_MS} ms of the raw calls",
         "measured": f"{num(biggest['launcher_minus_raw_ms'])} ms", "met": biggest["launcher_minus_raw_ms"] <= BUDGET_MS},
        {"goal": "cold start: the health gate beats a fixed sleep",
         "measured": f"{cold['launcher_s']:.2f} s vs {cold['sleep_by_hand_s']:.2f} s",
         "met": cold["launcher_s"] < cold["sleep_by_hand_s"]},
        {"goal": f"local Infisical already healthy: the launcher within {BUDGET_MS} ms of the raw calls",
         "measured": f"{num(cold['warm']['launcher_minus_raw_ms'])} ms", "met": cold["warm"]["launcher_minus_raw_ms"] <= BUDGET_MS},
    ]


def render_results(results: dict[str, Any]) -> list[str]:
    cfg = results["config"]
    s = results["startup"]
    lines = [SECTIONS[0], "",
             f"Median of {cfg['startup_repeats']} runs each, taking turns. `--dry-run` runs one subprocess, "
             "`infisical export` (the stand-in, 10 secrets), timed alone in the same rounds; \"terminal\" runs "
             "with stdout and stderr on a pseudo-terminal, where the launcher colours its output.", ""]
    lines += table(["command", "wall ms", "beyond"], [
        ["`python -c pass`", num(s["bare"]), ""],
        ["`python -c 'import stack_launcher.cli'`", num(s["import_cli"]), f"{num(s['import_cli_minus_bare'])} ms over bare python"],
        ["`start_services.py --help`", num(s["help"]), f"{num(s['help_minus_bare'])} ms over bare python"],
        ["`start_services.py --help` (terminal)", num(s["help_terminal"]), ""],
        ["`start_services.py --dry-run --skip-infisical` (no subprocess at all)", num(s["dry_run_alone"]),
         f"{num(s['dry_run_alone_minus_bare'])} ms over bare python"],
        ["`infisical export --format=json` (stand-in)", num(s["export"]), ""],
        ["`start_services.py --dry-run`", num(s["dry_run"]), f"{num(s['dry_run_minus_export'])} ms over its export"],
        ["`start_services.py --dry-run` (terminal)", num(s["dry_run_terminal"]),
         f"{num(s['dry_run_terminal_minus_export'])} ms over its export"],
    ])
    imports = s["imports"]
    views = ("help", "dry_run", "dry_run_piped")
    headers = ["", "`--help` (terminal)", "`--dry-run` (terminal)", "`--dry-run` (piped)"]
    lines += ["Import time (`python -X importtime`, cumulative ms, median of runs; importtime itself slows "
              "imports down). By package: everything importing it cost, including what it imports.", ""]
    rows = [["**all imports**", *(num(imports[v]["total_ms"]) for v in views)]]
    rows += [[f"`{p}`", *(num(imports[v]["packages"][p]) for v in views)] for p in IMPORT_PACKAGES]
    lines += table(["package", *headers[1:]], rows)
    modules = {v: imports[v]["modules"] for v in views}
    names = sorted(set().union(*modules.values()), key=lambda n: -max(modules[v].get(n, [0])[0] for v in views))
    rows = []
    for name in names[:14]:
        under = next(modules[v][name][1] for v in views if name in modules[v])
        rows.append([f"`{name}`" + (f" (under `{under}`)" if under else ""),
                     *(num(modules[v][name][0]) if name in modules[v] else "" for v in views)])
    lines += ["The slowest single imports, at any depth:", ""]
    lines += table(["module", *headers[1:]], rows)

    lines += [SECTIONS[1], "",
              "The stand-in CLI's own time for `infisical export --format=json`; then the launcher's functions "
              "in-process on its output: `infisical_source.parse_export` (parse and validate), `envfile.render`, "
              "`envfile.write_private` (0600, fsync, rename).", ""]
    scale = results["export_scale"]
    lines += table(["secrets", "export JSON", "stand-in CLI ms", "parse ms", "render ms", "write ms",
                    "parse + render + write ms", "µs per secret"],
                   [[f"{r['secrets']:,}", f"{r['export_bytes'] / 1024:,.0f} KiB", num(r["cli_ms"]), num(r["parse_ms"]),
                     num(r["render_ms"]), num(r["write_ms"]), num(r["own_ms"]), f"{r['own_us_per_secret']:.1f}"]
                    for r in scale])
    lines += ["What else in a launch grows with the secrets, in-process: reading the last export back and "
              "diffing (`envfile.read_exported` + `launch.diff_secrets`), building the `Masker` from every value "
              "(one regex of all of them, compiled afresh in each launch), and masking ten lines of compose output "
              "with it. Then a re-run with nothing changed on a one-service stack, the launcher against the raw "
              "calls by hand.", ""]
    lines += table(["secrets", "read + diff ms", "Masker build ms", "mask 10 lines ms", "launcher re-run ms",
                    "raw re-run ms", "launcher − raw ms"],
                   [[f"{r['secrets']:,}", num(r["read_diff_ms"]), num(r["masker_ms"]), num(r["mask_10_lines_ms"]),
                     num(r["launcher_rerun_ms"]), num(r["raw_rerun_ms"]), num(r["launcher_minus_raw_ms"])]
                    for r in scale])

    rot = results["rotation"]
    lines += [SECTIONS[2], "",
              f"{rot['services']} busybox services, each using one secret of {cfg['secrets']}; before each way, "
              f"{rot['rotated']} (used by one service) is rotated in the stand-in Infisical. Raw: `infisical export "
              "--format=json`, the file written, the launcher's own `docker compose ... up -d`. Down + up: the same "
              "export and file, then `docker compose down` and `up -d`. Recreated: containers whose id changed, per round.", ""]
    lines += table(["way", "wall ms", "recreated", "vs launcher"], [
        ["launcher re-run", num(rot["launcher_ms"]), rot["recreated"]["launcher"], ""],
        ["raw calls by hand", num(rot["raw_ms"]), rot["recreated"]["raw"],
         f"launcher − raw {num(rot['launcher_minus_raw_ms'])} ms, ×{rot['launcher_over_raw']}"],
        ["down, then up -d", num(rot["down_up_ms"]), rot["recreated"]["down_up"], f"×{rot['down_up_over_launcher']} the launcher"],
    ])

    same = results["unchanged"]
    extra = same["extra_calls"]
    lines += [SECTIONS[3], "", f"The same {same['services']} services, nothing rotated.", ""]
    lines += table(["way", "wall ms", "recreated", "vs raw"], [
        ["launcher re-run", num(same["launcher_ms"]), same["recreated"]["launcher"],
         f"+{num(same['launcher_minus_raw_ms'])} ms, ×{same['launcher_over_raw']}"],
        ["raw calls by hand", num(same["raw_ms"]), same["recreated"]["raw"], ""],
    ])
    parts = same["breakdown"]
    lines += ["Where a launcher re-run's time goes: the launcher run under `benchmarks/traced_launch.py`, which "
              "records when each subprocess starts and is reaped; its own time is the wall time outside any "
              "subprocess (Python's start, imports, typer, its own work).", ""]
    rows = [["**wall**", num(parts["wall_ms"]), num(same["raw_ms"])],
            ["in subprocesses", num(parts["subprocesses_ms"]), ""]]
    rows += [[f"↳ `{label}`", num(value), ""] for label, value in parts["calls_ms"].items()]
    rows += [[f"↳ by hand: {label}", "", num(value)] for label, value in parts["raw_ms"].items()]
    rows += [["**the launcher's own**", f"**{num(parts['own_ms'])}**", ""],
             ["↳ of which before its first subprocess", num(parts["before_first_call_ms"]), ""]]
    lines += table(["", "launcher ms", "raw calls ms"], rows)
    lines += ["Subprocesses the launcher runs beyond the raw calls, each timed alone:", ""]
    lines += table(["call", "ms", "when"], [
        [label, num(extra[key]), when] for key, label, when in (
            ("git_ls_files_ms", "`git ls-files --error-unmatch .env.infisical`", "every run that writes the export"),
            ("git_check_ignore_ms", "`git check-ignore -q .env.infisical`", "the same, when git does not track it"),
            ("docker_ps_bootstrap_check_ms", "`docker ps -a --filter label=...-infisical`",
             "only with a local Infisical (section 5), before the export"),
        ) if key in extra
    ])

    cold = results["cold_start"]
    lines += [SECTIONS[4], "",
              f"Nothing running; a stand-in Infisical (busybox httpd, healthy after {cold['healthy_after_s']:g} s, "
              "healthcheck `wget` every 0.5 s) in `infisical/docker-compose.yml`, `INFISICAL_API_URL` in `.env`, and "
              f"the stand-in CLI really asking `/api/status`; then the {cold['services']} services. Launcher: its "
              "health-gated bootstrap (`up -d --wait`). By hand: the same gate without the launcher. Fixed sleep: "
              f"`up -d`, `sleep {cold['sleep_s']:g}`, then export and up.", ""]
    lines += table(["way", "wall s", "vs launcher"], [
        ["launcher (health-gated)", f"{cold['launcher_s']:.2f}", ""],
        ["by hand, `up -d --wait`", f"{cold['wait_by_hand_s']:.2f}", f"launcher − this {num(cold['launcher_minus_wait_by_hand_ms'])} ms"],
        [f"by hand, fixed `sleep {cold['sleep_s']:g}`", f"{cold['sleep_by_hand_s']:.2f}",
         f"launcher takes ×{cold['launcher_over_sleep']} of this"],
    ])
    warm = cold["warm"]
    lines += ["Then, with the local Infisical healthy, a re-run with nothing changed:", ""]
    lines += table(["way", "wall ms", "vs raw"], [
        ["launcher re-run (checks the local Infisical first)", num(warm["launcher_ms"]),
         f"+{num(warm['launcher_minus_raw_ms'])} ms, ×{warm['launcher_over_raw']}"],
        ["raw calls by hand (no check)", num(warm["raw_ms"]), ""],
    ])

    lines += [SECTIONS[5], ""]
    lines += table(["goal", "measured", "met"],
                   [[g["goal"], g["measured"], "yes" if g["met"] else "**no**"] for g in results["goals"]])
    return lines


def render_document(results: dict[str, Any], command: str) -> str:
    m = results["machine"]
    head = [
        "# Benchmarks",
        "",
        "<!-- Generated by benchmarks/run.py; edit the script, not this file. -->",
        "",
        "What the launcher costs on top of the `infisical` and `docker compose` calls it makes, and what a",
        "re-run costs (issue 5). Every figure is the median of several runs; every comparison was measured",
        "in the same run, the ways compared taking turns. The Infisical CLI is the test suite's stand-in",
        "(`tests/support/bin/infisical`, a Python script), so its own times are not the real CLI's.",
        "",
        "## How to reproduce",
        "",
        "On a machine with a Docker engine and Compose v2 (as for the test suite; the image",
        "`busybox-test:local` is built on demand), from the repository root:",
        "",
        "```sh",
        command,
        "```",
        "",
        "`--quick` runs small sizes once (what `tests/test_benchmarks.py` does); `--repeats N` sets the rounds;",
        "`--output PATH` and `--json PATH` say where to write.",
        "",
        "## Machine",
        "",
    ]
    head += table(["", ""], [
        ["CPU", f"{m['cpu']}, {m['cores']} cores"], ["OS", m["os"]],
        ["Docker engine", f"{m['docker_engine']} ({m['storage_driver']} storage)"], ["Compose", m["compose"]],
        ["Python", f"{m['python']} ({m['packages']})"], ["Commit", m["commit"]],
        ["Measured", results["when"]], ["Repeats", f"{results['config']['repeats']} rounds per docker measurement, "
                                                    f"{results['config']['startup_repeats']} per start-up measurement"],
    ])
    return "\n".join(head + render_results(results)).rstrip() + "\n"


# ---------------------------------------------------------------------------- main

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: checks the script runs")
    parser.add_argument("--repeats", type=int, help="rounds of each docker measurement (default 5; 1 with --quick)")
    parser.add_argument("--sizes", help="comma-separated export sizes (default 10,1000,10000)")
    parser.add_argument("--services", type=int, help="busybox services in the re-run sections (default 10)")
    parser.add_argument("--output", type=Path,
                        help=f"markdown report (default {DEFAULT_OUTPUT.relative_to(REPO_ROOT)}; none with --quick)")
    parser.add_argument("--json", type=Path, help="also write every number as JSON")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def config_from(args: argparse.Namespace) -> Config:
    base = dict(QUICK if args.quick else FULL)
    if args.repeats:
        base["repeats"] = args.repeats
        base["startup_repeats"] = max(base["startup_repeats"], args.repeats)
    if args.sizes:
        base["sizes"] = tuple(int(s) for s in args.sizes.split(","))
    if args.services:
        base["services"] = args.services
        base["secrets"] = max(base["secrets"], args.services)
    return Config(quick=args.quick, **base)


def measuring_options(argv: list[str]) -> list[str]:
    """The options that change what is measured (not where it is written), for "how to reproduce"."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--output", "--json"):
            skip = True
        elif not arg.startswith(("--output=", "--json=")):
            kept.append(arg)
    return kept


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    cfg = config_from(args)
    # A SIGTERM (a timeout in CI) unwinds like Ctrl-C, so every project is still removed.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        probe_engine()
        ensure_test_image()
    except EngineUnavailable as exc:
        print(f"error: no usable Docker engine: {exc}", file=sys.stderr)
        return 2

    sections = (("startup", bench_startup), ("export_scale", bench_export_scale), ("reruns", bench_reruns),
                ("cold_start", bench_cold_start))
    results: dict[str, Any] = {"config": asdict(cfg),
                               "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    try:
        with tempfile.TemporaryDirectory(prefix="start-services-bench-") as tmp:
            for name, bench in sections:
                print(f"... {name}", file=sys.stderr, flush=True)
                start = time.perf_counter()
                value = bench(cfg, Path(tmp))
                if name == "reruns":
                    results["rotation"], results["unchanged"] = value
                else:
                    results[name] = value
                print(f"    {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the benchmark projects were removed", file=sys.stderr)
        return 130
    results["machine"] = machine()
    results["goals"] = goals(results)

    print("\n".join(render_results(results)))
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    command = shlex.join(["python", "benchmarks/run.py", *measuring_options(argv)])
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(render_document(results, command), encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
