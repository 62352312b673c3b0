"""The docker compose command, built as data, run with masked output, its failures named.

Docker/Compose presence is not probed before a launch (each probe costs 50 ms or more);
a failed compose call is diagnosed from its own output instead.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from .errors import BAD_CONFIG, DOCKER_UNAVAILABLE, LauncherError
from .masking import Masker
from .output import Output
from .process import run_streamed


@dataclass(frozen=True)
class Target:
    """Which compose project a command acts on, and with which files."""

    project_dir: Path
    project_name: str
    files: tuple[Path, ...]
    env_files: tuple[Path, ...]
    profile: str | None

    def args(self) -> list[str]:
        argv = ["docker", "compose", "-p", self.project_name, "--project-directory", str(self.project_dir)]
        for path in self.files:
            argv += ["-f", str(path)]
        for path in self.env_files:  # later files win; compose skips the implicit .env once one is given
            argv += ["--env-file", str(path)]
        if self.profile:
            argv += ["--profile", self.profile]
        return argv


def up_argv(target: Target, wait: bool = False) -> list[str]:
    argv = target.args() + ["--progress", "plain", "up", "-d"]
    return argv + ["--wait"] if wait else argv


def down_argv(project_name: str, project_dir: Path) -> list[str]:
    # By project name only, no files: compose interpolates every loaded file, so `down`
    # with the files would need every secret. Without files it removes every container
    # of the project whatever profile or override started it; volumes are kept.
    return ["docker", "compose", "-p", project_name, "--project-directory", str(project_dir),
            "--progress", "plain", "down", "--remove-orphans"]


def compose_env(shell: Mapping[str, str], profile: str | None) -> dict[str, str]:
    env = dict(shell)
    if profile is None:
        env["COMPOSE_PROFILES"] = ""  # `--profile none`: beat a COMPOSE_PROFILES in an env file
    else:
        env.pop("COMPOSE_PROFILES", None)
    return env


def display(argv: Sequence[str]) -> str:
    """A command as the user could paste it (never holds a value: argv has none)."""
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


@dataclass(frozen=True)
class Outcome:
    code: int
    tail: tuple[str, ...]  # the last lines, masked, for diagnosis

    def missing_variables(self) -> list[str]:
        found = []
        for line in self.tail:
            m = re.search(r"required variable (\S+) is missing a value", line)
            if m and m.group(1) not in found:
                found.append(m.group(1))
        return found


def run(argv: Sequence[str], env: Mapping[str, str], masker: Masker, out: Output, cwd: Path) -> Outcome:
    tail: deque[str] = deque(maxlen=60)

    def relay(chunk: str) -> None:
        for line in masker.feed(chunk):
            tail.append(line)
            out.relay(line)

    try:
        code = run_streamed(argv, env, relay, cwd=str(cwd))
    except FileNotFoundError:
        raise LauncherError(
            "Docker is not installed: the `docker` command is not on PATH",
            DOCKER_UNAVAILABLE, "install Docker Engine (Linux) or Docker Desktop, with Compose v2",
        ) from None
    finally:
        for line in masker.flush():
            tail.append(line)
            out.relay(line)
    outcome = Outcome(code, tuple(tail))
    if code != 0:
        diagnose(outcome)
    return outcome


def diagnose(outcome: Outcome) -> None:
    """Turn compose's failure into our exit code when it is about the engine or an env file."""
    text = "\n".join(outcome.tail)
    if re.search(r"'compose' is not a docker command|unknown shorthand flag: 'p'|unknown flag: --project-directory", text):
        raise LauncherError("Docker Compose v2 is not installed (`docker compose` is unknown to the docker CLI)",
                            DOCKER_UNAVAILABLE, "install the Compose v2 plugin (docker-compose-plugin, or Docker Desktop)")
    if re.search(r"Cannot connect to the Docker daemon|error during connect|docker daemon is not running|"
                 r"permission denied while trying to connect to the Docker daemon", text):
        raise LauncherError("the Docker engine is not reachable", DOCKER_UNAVAILABLE,
                            "start Docker (systemctl start docker, or open Docker Desktop) and check you may use it")
    m = re.search(r"failed to read (.+?): line (\d+): (.+)", text)
    if m:
        raise LauncherError(f"docker compose cannot load {m.group(1)}, line {m.group(2)}: {m.group(3)}", BAD_CONFIG,
                            "fix that line (see docs/troubleshooting.md on quoting)")
    m = re.search(r"couldn't find env file: (.+)", text)
    if m:
        raise LauncherError(f"env file not found: {m.group(1).strip()}", BAD_CONFIG)
    m = re.search(r"unterminated quoted value", text)
    if m:
        raise LauncherError("docker compose cannot load an env file: unterminated quoted value", BAD_CONFIG,
                            "close the quote (see docs/troubleshooting.md on quoting)")
