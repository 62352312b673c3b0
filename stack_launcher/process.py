"""Every subprocess runs through here: stdin closed, a timeout, the whole group killed.

One runner gives every call the same guarantees:
- stdin is closed, so a program that would prompt (the Infisical CLI's login) fails at once;
- each child gets its own process group (session on POSIX): a timeout, or a signal to us,
  reaches every process it started (the CLI can leave children holding our pipes open);
- SIGINT, SIGTERM and SIGHUP sent to us are forwarded to the child, which gets up to
  GRACE seconds to stop before its group is killed; the signal then surfaces here as
  KeyboardInterrupt or Terminated, so the caller's `finally` blocks clean up;
- output is decoded as UTF-8 (bad bytes replaced) and every relayed line passes through a
  masker before anyone sees it.
No other module imports subprocess (a test fails if one does).
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from .errors import Terminated

POSIX = os.name == "posix"
GRACE = 15.0  # seconds a signalled child gets to stop before its group is killed


class Timeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g} s")
        self.seconds = seconds


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into Terminated in the main thread (SIGINT already raises
    KeyboardInterrupt). POSIX-only for SIGHUP; Windows has SIGTERM only by name."""
    def raise_terminated(signum, _frame):
        raise Terminated(signum)

    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None and threading.current_thread() is threading.main_thread():
            try:
                signal.signal(signum, raise_terminated)
            except (OSError, ValueError):
                pass


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def _group_kwargs() -> dict:
    if POSIX:
        return {"start_new_session": True}
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        if POSIX:
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # Windows: no process groups to signal; /T takes the child tree along
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        proc.kill()
    except OSError:
        pass


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        if POSIX:
            os.killpg(proc.pid, signum)
        else:  # a new process group does not get the console's Ctrl-C: send Ctrl-Break
            proc.send_signal(getattr(signal, "CTRL_BREAK_EVENT", signal.SIGTERM))
    except (OSError, ValueError):
        pass


def _forward(proc: subprocess.Popen, signum: int) -> None:
    """Pass our signal on to the child's group, wait up to GRACE s, then kill the group."""
    _signal_group(proc, signum)
    try:
        proc.wait(timeout=GRACE)
    except subprocess.TimeoutExpired:
        pass
    except BaseException:  # a second Ctrl-C while waiting: stop waiting
        pass
    _kill_group(proc)


def _signal_number(exc: BaseException) -> int:
    return exc.signum if isinstance(exc, Terminated) else signal.SIGINT


class Running:
    """A child started by `start_captured`, its output not read yet: the caller works on while
    it runs, then takes `result()`, or `stop()`s it if the work fails. Until then it is in
    `_live`, so that `stop_all` reaches it whatever frame a signal lands in."""

    def __init__(self, proc: subprocess.Popen, timeout: float, stdin_bytes: bytes | None) -> None:
        self._proc = proc
        self._timeout = timeout
        self._stdin = stdin_bytes
        self._stopped = False

    def result(self) -> Result:
        """Wait for the end and capture both streams (raises Timeout). The timeout counts
        from this call: a child started early has had longer, never less."""
        if self._stopped:
            raise RuntimeError("result() of a child that was stopped")
        proc = self._proc
        try:
            out, err = proc.communicate(input=self._stdin, timeout=self._timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise Timeout(self._timeout) from None
        except BaseException as exc:
            self.stop(exc)
            raise
        finally:
            if proc.poll() is None:
                _kill_group(proc)
        _live.discard(self)
        return Result(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def stop(self, cause: BaseException | None = None) -> None:
        """End it without its result. A signal that reached us goes to every child still
        running (`stop_all`); anything else kills this one's group."""
        if isinstance(cause, (KeyboardInterrupt, Terminated)):
            stop_all(cause)
        else:
            _end([self], None)


_live: set[Running] = set()
_parked: dict[tuple, Running] = {}  # park()'s children by (argv, environment, folder); in _live too


def stop_all(cause: BaseException | None = None) -> None:
    """End every child started by `start_captured` and not collected: the run is stopping."""
    _parked.clear()
    _end(list(_live), _signal_number(cause) if isinstance(cause, (KeyboardInterrupt, Terminated)) else None)


def _end(children: list[Running], signum: int | None) -> None:
    """Close our ends of their pipes first (their output is not wanted: a child blocked on a
    full pipe must not hold up the grace period), pass the signal to every group at once,
    give them GRACE s together, then kill what is left and reap it."""
    for child in children:
        child._stopped = True
        _live.discard(child)
        for stream in (child._proc.stdin, child._proc.stdout, child._proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
    running = [c._proc for c in children if c._proc.poll() is None]
    if signum is not None and running:
        for proc in running:
            _signal_group(proc, signum)
        deadline = time.monotonic() + GRACE
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            except BaseException:  # a second Ctrl-C while waiting: stop waiting
                break
    for proc in running:
        _kill_group(proc)  # even when the leader is gone: what it started may still hold the group
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def start_captured(argv: Sequence[str], env: Mapping[str, str], timeout: float, cwd: str | None = None,
                   stdin_bytes: bytes | None = None) -> Running:
    """Start a child whose output `result()` captures later (raises FileNotFoundError).

    `stdin_bytes`: what the child reads on stdin (values that must not be in argv);
    without it stdin is closed. A child `park`ed with the very same argv, environment and
    folder is handed over instead of starting another."""
    if stdin_bytes is None and _parked:
        parked = _parked.pop(_parked_key(argv, env, cwd), None)
        if parked is not None and not parked._stopped:
            parked._timeout = timeout
            return parked
    running = Running(subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL if stdin_bytes is None else subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env), cwd=cwd, **_group_kwargs(),
    ), timeout, stdin_bytes)
    _live.add(running)  # in the same frame as Popen: no frame between where a signal could lose it
    return running


def park(argv: Sequence[str], env: Mapping[str, str], timeout: float, cwd: str | None = None) -> None:
    """Start a child now for a `start_captured` to come (head_start.py: the export begins
    before the command line is parsed). Only a call with the same argv, environment and
    folder takes it; one nobody takes is stopped with the rest (`stop_all`)."""
    _parked[_parked_key(argv, env, cwd)] = start_captured(argv, env, timeout, cwd)


def parked() -> list[list[str]]:
    """The argvs of the children parked and not taken yet."""
    return [list(key[0]) for key, child in _parked.items() if not child._stopped]


def _parked_key(argv: Sequence[str], env: Mapping[str, str], cwd: str | None) -> tuple:
    return tuple(argv), tuple(sorted(env.items())), cwd


def run_captured(argv: Sequence[str], env: Mapping[str, str], timeout: float, cwd: str | None = None,
                 stdin_bytes: bytes | None = None) -> Result:
    """Run to completion and capture both streams (raises FileNotFoundError, Timeout)."""
    return start_captured(argv, env, timeout, cwd, stdin_bytes).result()


def run_streamed(argv: Sequence[str], env: Mapping[str, str], on_output: Callable[[str], None],
                 cwd: str | None = None, timeout: float | None = None) -> int:
    """Run, handing each line of merged stdout/stderr, decoded, to `on_output`; the exit code.

    The child has its own process group; a Ctrl-C at the terminal reaches us and is
    forwarded. Raises Timeout (after killing the group) when `timeout` runs out."""
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(env), cwd=cwd, **_group_kwargs(),
    )
    timer = None
    expired = threading.Event()
    if timeout is not None:
        def expire() -> None:
            expired.set()
            _kill_group(proc)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
    try:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            on_output(raw.decode("utf-8", "replace"))
        code = proc.wait()
    except (KeyboardInterrupt, Terminated) as exc:
        _forward(proc, _signal_number(exc))
        raise
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        if timer is not None:
            timer.cancel()
        if proc.poll() is None:
            _kill_group(proc)
        if proc.stdout is not None:
            proc.stdout.close()
    if expired.is_set():
        raise Timeout(timeout or 0)
    return code
