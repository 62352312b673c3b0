"""Questions for the Docker engine itself (not compose): which volumes exist, how a
project's containers are doing. Each answers None, with no traceback, when Docker cannot
be asked; the caller decides what that means.
"""
from __future__ import annotations

from typing import Mapping

from .process import Timeout, run_captured

PROJECT_LABEL = "com.docker.compose.project"


class Unanswered(Exception):
    """Docker could not be asked; the message says why in one line."""


def _docker(args: list[str], env: Mapping[str, str] | None, timeout: float, docker: str = "docker") -> str:
    import os

    try:
        result = run_captured([docker, *args], env if env is not None else os.environ, timeout)
    except FileNotFoundError:
        raise Unanswered(f"{docker!r} not found on PATH") from None
    except Timeout as exc:
        raise Unanswered(f"`docker {args[0]}` gave {exc}") from None
    except OSError as exc:
        raise Unanswered(f"cannot run docker: {exc.strerror or exc.__class__.__name__}") from None
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        raise Unanswered(lines[0] if lines else f"`docker {args[0]}` exited {result.returncode}")
    return result.stdout


def volumes(env: Mapping[str, str] | None = None, timeout: float = 30, docker: str = "docker") -> set[str]:
    """Names of every volume; Unanswered when Docker cannot be asked."""
    out = _docker(["volume", "ls", "--quiet"], env, timeout, docker)
    return {line.strip() for line in out.splitlines() if line.strip()}


def project_states(project: str, env: Mapping[str, str] | None = None, timeout: float = 15) -> list[str]:
    """`docker ps` status of each container of a compose project ("Up 3 minutes (healthy)")."""
    out = _docker(["ps", "-a", "--filter", f"label={PROJECT_LABEL}={project}", "--format", "{{.Status}}"],
                  env, timeout)
    return [line for line in out.splitlines() if line.strip()]


# One line per container: what the summary after `up` shows (status.parse_ps reads it).
PS_FORMAT = '{{.ID}}\t{{.Label "com.docker.compose.service"}}\t{{.State}}\t{{.Status}}\t{{.Ports}}'


def ps_argv(project: str, docker: str = "docker") -> list[str]:
    """Every service container of a compose project, running or not (`docker compose run`'s
    one-off containers left out, as `docker compose ps` does). `docker ps` by label answers in
    ~10 ms where `docker compose ps` first loads the whole project (~80-120 ms a call)."""
    return [docker, "ps", "--all", "--no-trunc", "--filter", f"label={PROJECT_LABEL}={project}",
            "--filter", "label=com.docker.compose.oneoff=False", "--format", PS_FORMAT]


def project_containers(project: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> str:
    """`ps_argv`'s lines (PS_FORMAT); Unanswered when Docker cannot be asked."""
    return _docker(ps_argv(project)[1:], env, timeout)


def all_healthy(states: list[str]) -> bool:
    """Every container up, none unhealthy or still starting (and at least one)."""
    return bool(states) and all(s.startswith("Up") and "unhealthy" not in s and "starting" not in s for s in states)


def published_ports(project: str, env: Mapping[str, str] | None = None, timeout: float = 15) -> set[tuple[int, str]]:
    """(host port, protocol) that a project's running containers publish."""
    import re

    out = _docker(["ps", "--filter", f"label={PROJECT_LABEL}={project}", "--format", "{{.Ports}}"], env, timeout)
    found = set()
    for m in re.finditer(r":(\d+)(?:-(\d+))?->\d+(?:-\d+)?/(tcp|udp|sctp)", out):
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        found |= {(port, m.group(3)) for port in range(first, min(last, first + 1000) + 1)}
    return found
