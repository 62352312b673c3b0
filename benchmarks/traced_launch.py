"""Run start_services.py as usual, recording when each of its subprocesses ran.

    BENCH_TRACE_FILE=/tmp/trace.json python benchmarks/traced_launch.py [launcher args...]

Writes {"calls": [{"argv": [...], "start": s, "end": s}, ...]} to $BENCH_TRACE_FILE, the
times from time.perf_counter(), which on Linux is CLOCK_MONOTONIC and so comparable with
the caller's. A call runs from its Popen until `wait`/`communicate` sees it exit. The
caller subtracts these from the launch's wall time: what is left is the launcher's own.
"""
from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
calls: list[dict] = []


class TracedPopen(subprocess.Popen):
    def __init__(self, args, *rest, **kwargs):
        self._trace = {"argv": [str(a) for a in args] if isinstance(args, (list, tuple)) else [str(args)],
                       "start": time.perf_counter(), "end": None}
        calls.append(self._trace)
        super().__init__(args, *rest, **kwargs)

    def _ended(self) -> None:
        if self.returncode is not None and self._trace["end"] is None:
            self._trace["end"] = time.perf_counter()

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


def write_trace() -> None:
    end = time.perf_counter()
    for call in calls:
        call["end"] = call["end"] or end
    Path(os.environ["BENCH_TRACE_FILE"]).write_text(json.dumps({"calls": calls}), encoding="utf-8")


if __name__ == "__main__":
    subprocess.Popen = TracedPopen  # subprocess.run and every caller look the name up at call time
    sys.path.insert(0, str(REPO_ROOT))
    launcher = REPO_ROOT / "start_services.py"
    sys.argv = [str(launcher), *sys.argv[1:]]
    try:
        runpy.run_path(str(launcher), run_name="__main__")
    finally:
        write_trace()
