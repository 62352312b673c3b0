"""Every subprocess runs through here: stdin closed, timeouts that kill the whole group.

The Infisical CLI can spawn children (its interactive login, a pager) that hold our pipes
open after the CLI itself is killed; killing only the CLI would leave us blocked on them,
so on POSIX each captured call gets its own session and a timeout kills the whole group.
"""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

POSIX = os.name == "posix"


class Timeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g} s")
        self.seconds = seconds


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        if POSIX:
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # Windows: no process groups to signal; /T takes the child tree along
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True)
    except (ProcessLookupError, PermissionError, OSError):
        pass
    try:
        proc.kill()
    except OSError:
        pass


def run_captured(argv: Sequence[str], env: Mapping[str, str], timeout: float, cwd: str | None = None) -> Result:
    """Run to completion and capture both streams (raises FileNotFoundError, Timeout)."""
    kwargs: dict = {"start_new_session": True} if POSIX else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(env), cwd=cwd, **kwargs,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        raise Timeout(timeout) from None
    except BaseException:  # Ctrl-C: don't leave the CLI behind
        _kill_group(proc)
        raise
    return Result(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def run_streamed(argv: Sequence[str], env: Mapping[str, str], on_output: Callable[[str], None], cwd: str | None = None) -> int:
    """Run, handing each chunk of merged stdout/stderr (a line at a time) to `on_output`.

    The child stays in our process group so that a Ctrl-C at the terminal reaches it as
    it would without us; a SIGINT sent to us alone is forwarded. Returns the exit code.
    """
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(env), cwd=cwd,
    )
    try:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            on_output(raw.decode("utf-8", "replace"))
        return proc.wait()
    except KeyboardInterrupt:
        try:
            proc.send_signal(signal.SIGINT)  # Windows: ValueError; the console already sent Ctrl-C
            proc.wait(timeout=15)
        except (subprocess.TimeoutExpired, OSError, ValueError):
            proc.kill()
        raise
