"""Options, the order of the sections, and where the report goes."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import REPO_ROOT, coldstart, help, launch, report, scale, where
from .commands import BenchmarkError
from support.docker_stack import EngineUnavailable, ensure_test_image, probe_engine  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Config:
    rounds: int  # rounds of each docker comparison
    startup_rounds: int  # rounds of the cheap comparisons (help, imports, git)
    cold_rounds: int  # cold starts of each way
    trace_runs: int  # traced and -X importtime runs
    sizes: tuple[int, ...]  # secrets in the many-secrets section; the last is the goal's
    services: int  # busybox services in the re-run and cold-start sections
    secrets: int  # secrets in Infisical there (the first `services` are used)
    healthy_after: float  # seconds the stand-in Infisical takes to become healthy
    fixed_sleep: float  # seconds the old way sleeps instead of waiting for health
    quick: bool


FULL = dict(rounds=9, startup_rounds=21, cold_rounds=3, trace_runs=7, sizes=(10, 10_000), services=10, secrets=30,
            healthy_after=3.0, fixed_sleep=10.0)
QUICK = dict(rounds=1, startup_rounds=1, cold_rounds=1, trace_runs=1, sizes=(10, 100), services=2, secrets=4,
             healthy_after=0.5, fixed_sleep=2.0)

# (results key, module): the order they run in
SECTIONS = (("help", help), ("launch", launch), ("scale", scale), ("coldstart", coldstart), ("where", where))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of the launcher as ratios to the raw calls it wraps, measured side by side.")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one round: proves the script works (writes nothing unless --output)")
    parser.add_argument("--rounds", type=int, help="rounds of each docker comparison (default 9; 1 with --quick)")
    parser.add_argument("--output", type=Path,
                        help=f"the markdown report (default {DEFAULT_OUTPUT.relative_to(REPO_ROOT)}; none with --quick)")
    parser.add_argument("--json", type=Path, help="also write every number as JSON")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def config_from(args: argparse.Namespace) -> Config:
    base: dict[str, Any] = dict(QUICK if args.quick else FULL)
    if args.rounds:
        base["rounds"] = args.rounds
    return Config(quick=args.quick, **base)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    cfg = config_from(args)
    signal.signal(signal.SIGTERM, _interrupt)  # a CI timeout unwinds like Ctrl-C: every project is removed
    try:
        probe_engine()
        ensure_test_image()
    except EngineUnavailable as exc:
        print(f"error: no usable Docker engine: {exc}", file=sys.stderr)
        return 2

    results: dict[str, Any] = {"config": asdict(cfg), "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               "load": [], "sections": list(report.SECTIONS)}
    try:
        with tempfile.TemporaryDirectory(prefix="start-services-bench-") as tmp:
            for key, module in SECTIONS:
                print(f"... {key}", file=sys.stderr, flush=True)
                results["load"] += report.load()
                start = time.perf_counter()
                results[key] = module.run_section(cfg, Path(tmp))
                print(f"    {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the benchmark projects were removed", file=sys.stderr)
        return 130
    results["load"] += report.load()
    results["machine"] = report.machine()
    results["goals"] = report.evaluate(results)
    results["checks"] = report.checks(results)

    print("\n".join(report.render_results(results)))
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    command = " ".join([report.COMMAND, *(["--rounds", str(args.rounds)] if args.rounds else [])])
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report.render_document(results, command), encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0
