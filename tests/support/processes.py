"""Running programs from tests: a minimal environment and the launcher as a subprocess."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
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


def minimal_env(**extra: str) -> dict[str, str]:
    """PATH, HOME, LANG (SYSTEMROOT on Windows, DOCKER_HOST & co. when set) from
    os.environ, plus `extra`."""
    env = {k: os.environ[k] for k in _BASE_VARS + _ENGINE_VARS if k in os.environ}
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
