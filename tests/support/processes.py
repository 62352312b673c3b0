"""Running programs from tests: a minimal environment and the launcher as a subprocess."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SUPPORT_DIR = Path(__file__).resolve().parent
STAND_IN_BIN = SUPPORT_DIR / "bin"
LAUNCHER = REPO_ROOT / "start_services.py"

# Only these are copied from the developer's environment, so a TOKEN or
# COMPOSE_FILE exported in their shell cannot change what a test sees. The DOCKER_*
# ones only say which engine to talk to; the tests and the launcher must reach the
# same engine that the engine fixture checked.
_BASE_VARS = ("PATH", "HOME", "LANG", "SYSTEMROOT")
_ENGINE_VARS = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")
# Set in the test process's environment while a test runs (conftest.py) and copied too, so
# every program a test starts carries it, even one started with cwd="/" or reparented to
# init: that is how a process left behind is found and pinned on its test.
MARKER_VAR = "STACK_LAUNCHER_TEST_MARKER"


def minimal_env(**extra: str) -> dict[str, str]:
    """PATH, HOME, LANG (SYSTEMROOT on Windows, DOCKER_HOST & co. and the test's marker
    when set) from os.environ, plus `extra`."""
    env = {k: os.environ[k] for k in _BASE_VARS + _ENGINE_VARS + (MARKER_VAR,) if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env.update(extra)
    return env


def prepend_path(env: dict[str, str], directory: Path | str) -> dict[str, str]:
    """Put `directory` first on env's PATH (in place) and return env."""
    env["PATH"] = os.pathsep.join([str(directory), env.get("PATH", os.defpath)])
    return env


class LauncherTimeout(AssertionError):
    """The launcher did not finish in time; it and its children were killed."""

    def __init__(self, args: list[str], timeout: float, stdout: str, stderr: str) -> None:
        super().__init__(
            f"launcher {args!r} still running after {timeout} s (killed)\n"
            f"--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        )
        self.stdout = stdout
        self.stderr = stderr


def run_launcher(
    args: list[str] | tuple[str, ...],
    cwd: Path | str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `python start_services.py *args` like a user would, with stdin closed.

    Returns the CompletedProcess (text stdout/stderr). On timeout the launcher's whole
    process group is killed and LauncherTimeout (an AssertionError) is raised.
    """
    cmd = [sys.executable, str(LAUNCHER), *args]
    proc = subprocess.Popen(
        cmd,
        cwd=str(cwd),
        env=minimal_env() if env is None else env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with _suppress_lookup():
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise LauncherTimeout(list(args), timeout, stdout, stderr) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is ProcessLookupError


# ------------------------------------------------------------------------------ left-behind processes


# The engine and everything it runs are never a test's leftovers, whatever their parents.
_DAEMONS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-proxy", "runc")
_PROC = Path("/proc")


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    start: str  # with pid: tells a process from a later one that reuses its pid
    state: str
    name: str
    args: str
    cwd: str = ""
    environ: bytes = b""
    pid_ns: str = ""

    @property
    def key(self) -> tuple[int, str]:
        return (self.pid, self.start)

    def describe(self) -> str:
        return f"pid {self.pid} (parent {self.ppid}): {self.args or self.name}" + (f" [cwd {self.cwd}]" if self.cwd else "")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def list_processes() -> dict[int, Process]:
    """Every process we can see: from /proc (Linux), else from POSIX `ps` (no cwd/environment)."""
    if (_PROC / "self" / "stat").exists():
        found = {}
        for entry in os.scandir(_PROC):
            if not entry.name.isdigit():
                continue
            folder = _PROC / entry.name
            stat = _read(folder / "stat").decode("utf-8", "replace")
            if not stat:
                continue  # gone meanwhile
            name, _, rest = stat.partition(" (")[2].rpartition(")")
            fields = rest.split()
            if len(fields) < 20:
                continue
            pid = int(entry.name)
            found[pid] = Process(
                pid=pid, ppid=int(fields[1]), start=fields[19], state=fields[0], name=name,
                args=_read(folder / "cmdline").replace(b"\0", b" ").decode("utf-8", "replace").strip(),
                cwd=_readlink(folder / "cwd"), environ=_read(folder / "environ"),
                pid_ns=_readlink(folder / "ns" / "pid"),
            )
        return found
    try:
        out = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "args="], capture_output=True,
                             text=True, timeout=30, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            args = parts[2] if len(parts) > 2 else ""
            if args.startswith("ps -A -o pid="):
                continue  # this very listing
            found[int(parts[0])] = Process(int(parts[0]), int(parts[1]), args, "", args.split(" ")[0], args)
    return found


def _ancestors(proc: Process, table: dict[int, Process]) -> list[Process]:
    chain, seen = [], {proc.pid}
    while proc.ppid in table and proc.ppid not in seen:
        proc = table[proc.ppid]
        seen.add(proc.pid)
        chain.append(proc)
    return chain


def _is_engine(proc: Process, table: dict[int, Process], own_ns: str) -> bool:
    if own_ns and proc.pid_ns and proc.pid_ns != own_ns:
        return True  # inside a container
    return any(p.name.startswith(_DAEMONS) or os.path.basename(p.args.split(" ")[0]).startswith(_DAEMONS)
               for p in [proc, *_ancestors(proc, table)])


def _mentions(text: str | bytes, folder: str) -> bool:
    """`text` names `folder` or a path inside it (not merely a sibling sharing its prefix)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    start = text.find(folder)
    while start != -1:
        end = start + len(folder)
        if end == len(text) or text[end] in "/\0 :\"'=\n":
            return True
        start = text.find(folder, end)
    return False


def processes_of_test(root_pid: int, folder: Path, marker: str) -> dict[tuple[int, str], tuple[Process, str]]:
    """Live processes that belong to a test: descendants of `root_pid` (the test process),
    and any process whose working directory, command line or environment names `folder`
    (the test's tmp_path) or whose environment carries `MARKER_VAR=marker`. Zombies (exited,
    not yet reaped), the engine and containers are left out. Maps Process.key to (process, why)."""
    table = list_processes()
    own_ns = table[root_pid].pid_ns if root_pid in table else ""
    paths = {str(folder), os.path.realpath(folder)}
    tag = f"{MARKER_VAR}={marker}".encode()
    found: dict[tuple[int, str], tuple[Process, str]] = {}
    for proc in table.values():
        if proc.pid == root_pid or proc.state in ("Z", "X", "x") or _is_engine(proc, table, own_ns):
            continue
        if any(p.pid == root_pid for p in _ancestors(proc, table)):
            why = "started by the test process"
        elif any(proc.cwd == p or proc.cwd.startswith(p + os.sep) for p in paths):
            why = "working directory in the test's tmp_path"
        elif tag in proc.environ.split(b"\0"):
            why = f"environment carries {MARKER_VAR}"
        elif any(_mentions(proc.args, p) or _mentions(proc.environ, p) for p in paths):
            why = "command line or environment names the test's tmp_path"
        else:
            continue
        found[proc.key] = (proc, why)
    return found


def kill_processes(procs: list[Process]) -> None:
    """SIGKILL each process that is still the one we saw (same pid and start time)."""
    table = list_processes()
    for proc in procs:
        now = table.get(proc.pid)
        if now is not None and now.start == proc.start:
            try:
                os.kill(proc.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
            except OSError:  # gone meanwhile, or not ours to kill
                pass
