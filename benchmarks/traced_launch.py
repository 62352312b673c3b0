"""Run start_services.py as usual, recording where its time goes.

    BENCH_TRACE_FILE=/tmp/trace.json python benchmarks/traced_launch.py [launcher args...]

Writes one JSON document to $BENCH_TRACE_FILE, every time from time.perf_counter() (on
Linux CLOCK_MONOTONIC, so comparable with the caller's):

    {"start": s,        # this wrapper began running start_services.py
     "main": s | null,  # stack_launcher.cli.main was called: the imports at start-up are done
     "end": s,
     "calls": [{"argv": [...], "start": s, "end": s}, ...],  # each subprocess, Popen to reaped
     "probes": {label: {"where": [...], "ms": total, "self_ms": total, "count": n, "first": s}}}

The probe "import" times every module load (importlib's _find_and_load) and lists each
outermost one as [start, self ms, module] in "spans"; "main" is stack_launcher.cli.main itself.

A probe times functions of the launcher, typer or click: "ms" inclusive of what they call
(a nested call under the same label counted once), "self_ms" without the time spent in
other probes nested in them or in the subprocesses they ran (so self times never overlap). The launcher's functions are named by
function, not by file: `*:load_catalog` is load_catalog in whichever stack_launcher module
defines it, so the probes survive the code moving around; a probe that finds nothing is
simply absent from the trace. Each function is wrapped the moment its module finishes
loading, before anything can import it by name, and nothing is imported early, so import
costs stay where they are.
"""
from __future__ import annotations

import functools
import json
import os
import runpy
import subprocess
import sys
import time
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# (label, where...): "module:qualname"; module "*" is any stack_launcher module.
PROBES: tuple[tuple[str, ...], ...] = (
    ("main", "stack_launcher.cli:main"),
    ("typer: build the click command", "typer.main:get_command"),
    ("click: parse the arguments", "click.core:Command.make_context"),
    ("typer: format the help", "typer.core:TyperGroup.format_help", "typer.core:TyperCommand.format_help"),
    ("head start: take the lock, park the export", "stack_launcher.head_start:begin"),
    ("settings: resolve", "stack_launcher.settings:resolve"),
    ("python-dotenv: parse .env", "*:read_dotenv", "*:parse_dotenv"),
    ("keys: classify", "*:classify"),
    ("catalog: parse .env.example", "*:load_catalog", "*:parse_catalog"),
    ("masker: add values", "*:Masker.add"),
    ("masker: mask the relayed output", "*:Masker.feed", "*:Masker.flush"),
    ("export: `infisical export`, parsed", "*:fetch"),
    ("export: parse and validate the JSON", "*:parse_export"),
    ("last export: read back", "*:read_exported"),
    ("last export: diff", "*:diff_secrets"),
    ("export: render", "stack_launcher.envfile:render"),
    ("export: write (0600, fsync, rename)", "*:write_private"),
    ("git: could git commit the export?", "*:warn_if_committable"),
    ("init-only warnings", "*:warnings_for"),
    ("compose: `up -d`, output relayed", "*:run_streamed"),
    # When the launcher begins to wait for a child it started earlier (the export starts
    # first, and the launcher works on while the CLI talks to the server): spans kept.
    ("waiting for a subprocess's output", "stack_launcher.process:Running.result"),
)
IMPORT = "import"
WAIT = "waiting for a subprocess's output"
SPANS = ("import", WAIT)  # the probes whose every call is listed as [start, self ms, first argument]


calls: list[dict] = []
probes: dict[str, dict] = {}
_depth: dict[str, int] = {}
_stack: list[dict] = []  # the probes running now, innermost last: {"start": s, "nested": s}
_wanted = {where.split(":")[0] for probe in PROBES for where in probe[1:]} - {"*"}


class TracedPopen(subprocess.Popen):
    def __init__(self, args, *rest, **kwargs):
        self._trace = {"argv": [str(a) for a in args] if isinstance(args, (list, tuple)) else [str(args)],
                       "start": time.perf_counter(), "end": None}
        self._frame = _stack[-1] if _stack else None  # the probe that ran it is not charged for its time
        calls.append(self._trace)
        super().__init__(args, *rest, **kwargs)
        self._trace["pid"] = self.pid

    def _ended(self) -> None:
        if self.returncode is not None and self._trace["end"] is None:
            self._trace["end"] = time.perf_counter()
            if self._frame is not None and any(f is self._frame for f in _stack):
                self._frame["nested"] += self._trace["end"] - self._trace["start"]

    def wait(self, timeout=None):
        try:
            return super().wait(timeout)
        finally:
            self._ended()

    def communicate(self, input=None, timeout=None):
        try:
            return super().communicate(input, timeout)
        finally:
            self._ended()


def _timed(label: str, where: str, fn):
    stat = probes.setdefault(label, {"where": [], "ms": 0.0, "self_ms": 0.0, "count": 0, "first": None})
    stat["where"].append(where)
    if label in SPANS:
        stat.setdefault("spans", [])

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _depth.get(label):
            return fn(*args, **kwargs)
        _depth[label] = 1
        frame = {"start": time.perf_counter(), "nested": 0.0}
        stat["first"] = frame["start"] if stat["first"] is None else stat["first"]  # set now: it may never return
        _stack.append(frame)
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - frame["start"]
            _stack.pop()
            if _stack:
                _stack[-1]["nested"] += elapsed
            own = max(0.0, elapsed - frame["nested"])  # a probe running during a subprocess overlaps it
            stat["ms"] += elapsed * 1000
            stat["self_ms"] += own * 1000
            stat["count"] += 1
            if "spans" in stat:
                # For a wait: the pid of the child waited for (Running._proc), to match its call.
                pid = getattr(getattr(args[0], "_proc", None), "pid", None) if args else None
                stat["spans"].append([frame["start"], own * 1000, pid if pid is not None else
                                      (str(args[0]) if args else "")])
            _depth[label] = 0

    return wrapper


def _probe_imports() -> None:
    """Every import that loads a module, as the probe "import" (with each one's start and self ms)."""
    bootstrap = sys.modules.get("_frozen_importlib")
    find_and_load = getattr(bootstrap, "_find_and_load", None)
    if isinstance(find_and_load, types.FunctionType):
        bootstrap._find_and_load = _timed(IMPORT, "importlib._bootstrap:_find_and_load", find_and_load)


def _patch(module: types.ModuleType) -> None:
    name = module.__name__
    for label, *places in PROBES:
        for place in places:
            mod, qualname = place.split(":")
            if mod != name and not (mod == "*" and name.startswith("stack_launcher")):
                continue
            *owners, attr = qualname.split(".")
            owner = module
            for part in owners:
                owner = getattr(owner, part, None)
            fn = owner.__dict__.get(attr) if owner is not None and hasattr(owner, "__dict__") else None
            if not isinstance(fn, types.FunctionType) or fn.__module__ != name:
                continue  # absent here, or only imported here (patched where it is defined)
            setattr(owner, attr, _timed(label, f"{name}:{qualname}", fn))


class PatchOnLoad:
    """A meta path finder that lets the usual finders find a module, then patches it once executed."""

    def find_spec(self, fullname, path, target=None):
        if not (fullname.startswith("stack_launcher") or fullname in _wanted):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            original = loader.exec_module

            def exec_module(module, _original=original):
                _original(module)
                _patch(module)

            loader.exec_module = exec_module
        return spec


def write_trace(start: float) -> None:
    end = time.perf_counter()
    for call in calls:
        call["end"] = call["end"] or end
    main = probes.get("main")
    trace = {"start": start, "main": main["first"] if main else None, "end": end, "calls": calls, "probes": probes}
    Path(os.environ["BENCH_TRACE_FILE"]).write_text(json.dumps(trace), encoding="utf-8")


def _exit_now(code: int = 0, _real_exit=os._exit) -> None:
    """os._exit skips every `finally`: write the trace first (a launcher may exit this way)."""
    write_trace(began)
    _real_exit(code)


if __name__ == "__main__":
    subprocess.Popen = TracedPopen  # subprocess.run and every caller look the name up at call time
    os._exit = _exit_now
    sys.meta_path.insert(0, PatchOnLoad())
    _probe_imports()
    sys.path[0] = str(REPO_ROOT)  # as when start_services.py runs itself: its folder, not benchmarks/
    launcher = REPO_ROOT / "start_services.py"
    sys.argv = [str(launcher), *sys.argv[1:]]
    began = time.perf_counter()
    try:
        runpy.run_path(str(launcher), run_name="__main__")
    finally:
        write_trace(began)
