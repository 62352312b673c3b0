"""The local Infisical: its own compose project, brought up and waited for before export.

It is a separate project (`<project>-infisical`), not `include:`d, because compose
interpolates every loaded service on every command: the AI services' `${VAR:?}` would
fail while their secrets still sit inside Infisical. Health comes from compose's own
`up -d --wait`, never from a fixed sleep; on a healthy Infisical that is one quick check.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlparse

from . import compose
from .masking import Masker
from .output import Output
from .settings import SecretsMode, Settings

COMPOSE_FILE = Path("infisical") / "docker-compose.yml"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def applies(settings: Settings) -> bool:
    """Start the local Infisical only when the launch would talk to it."""
    if settings.mode in (SecretsMode.skip, SecretsMode.offline):
        return False
    if not (settings.project_dir / COMPOSE_FILE).is_file() or not settings.api_url:
        return False  # no local stack, or the CLI's own domain (its login) applies
    return urlparse(settings.api_url).hostname in LOCAL_HOSTS


def target(settings: Settings) -> compose.Target:
    return compose.Target(settings.project_dir, settings.infisical_project_name,
                          (settings.project_dir / COMPOSE_FILE,), (settings.env_file,), None)


def ensure_up(settings: Settings, out: Output, masker: Masker, timeout: float) -> str | None:
    """Bring the local Infisical up and wait until healthy; the reason it failed, or None."""
    if is_running(settings):
        out.detail(f"Local Infisical ({settings.infisical_project_name}) is already healthy.")
        return None  # one `docker ps` (~50 ms) instead of `up --wait` (~600 ms) on every launch
    argv = target(settings).args() + ["--progress", "plain", "up", "-d", "--wait", "--wait-timeout", str(int(timeout))]
    out.detail(f"$ {compose.display(argv)}")
    lines: list[str] = []
    status = out.status(f"Starting the local Infisical ({settings.infisical_project_name}), waiting until healthy...")
    with status:
        try:
            proc = subprocess.run(argv, env=compose.compose_env(settings.shell, None), cwd=settings.project_dir,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=timeout + 30)
        except FileNotFoundError:
            return "Docker is not installed (the `docker` command is not on PATH)"
        except subprocess.TimeoutExpired:
            return f"the local Infisical was not healthy within {timeout:g} s"
    lines = [l for l in masker.mask(proc.stdout.decode("utf-8", "replace")).splitlines() if l.strip()]
    for line in lines:
        out.detail(line)
    # Compose v2.40 exits 0 when --wait-timeout runs out with a container still starting,
    # so health is read back rather than trusted from the exit code.
    if proc.returncode == 0 and is_running(settings):
        return None
    compose.diagnose(compose.Outcome(proc.returncode, tuple(lines)))  # engine/env file problems stop here
    unhealthy = next((l.strip() for l in lines if "unhealthy" in l.lower() or "timeout" in l.lower()), "")
    detail = f" ({unhealthy})" if unhealthy else (f" ({lines[-1].strip()})" if lines else "")
    return f"the local Infisical did not become healthy within {timeout:g} s{detail}"


def is_running(settings: Settings) -> bool:
    """Is every container of the local Infisical up, and none unhealthy or starting? (Starts nothing.)"""
    try:
        proc = subprocess.run(
            ["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={settings.infisical_project_name}",
             "--format", "{{.Status}}"],
            capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    states = [l for l in proc.stdout.splitlines() if l.strip()]
    return (proc.returncode == 0 and bool(states)
            and all(s.startswith("Up") and "unhealthy" not in s and "starting" not in s for s in states))
