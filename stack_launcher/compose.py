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
from .process import Result, Timeout, run_captured, run_streamed


@dataclass(frozen=True)
class Target:
    """Which compose project a command acts on, and with which files.

    `profiles`: the `--profile` values; () for none at all, ("*",) for every profile."""

    project_dir: Path
    project_name: str
    files: tuple[Path, ...]
    env_files: tuple[Path, ...]
    profiles: tuple[str, ...] = ()

    def args(self, dry_run: bool = False) -> list[str]:
        argv = ["docker", "compose"] + (["--dry-run"] if dry_run else [])
        argv += ["-p", self.project_name, "--project-directory", str(self.project_dir)]
        for path in self.files:
            argv += ["-f", str(path)]
        for path in self.env_files:  # later files win; compose skips the implicit .env once one is given
            argv += ["--env-file", str(path)]
        for profile in self.profiles:
            argv += ["--profile", profile]
        return argv

    def up(self) -> list[str]:
        """Start or update in the background; plain progress, so every line can be masked."""
        return self.args() + ["--progress", "plain", "up", "-d"]

    def up_wait(self, timeout: float) -> list[str]:
        """Start and wait until healthy (Compose >= 2.17 for --wait-timeout)."""
        return self.up() + ["--wait", "--wait-timeout", str(max(1, int(timeout)))]

    def dry_run_up(self) -> list[str]:
        """Compose's own plan of `up -d`, one JSON event a line (>= 2.29); changes nothing."""
        return self.args(dry_run=True) + ["--progress", "json", "up", "-d"]

    def config_json(self) -> list[str]:
        """The resolved model, every value interpolated (`$` shows as `$$`)."""
        return self.args() + ["config", "--format", "json"]


def down_argv(project_name: str, project_dir: Path) -> list[str]:
    # By project name only, no files: compose interpolates every loaded file, so `down`
    # with the files would need every secret. Without files it removes every container
    # of the project whatever profile or override started it; volumes are kept.
    return ["docker", "compose", "-p", project_name, "--project-directory", str(project_dir),
            "--progress", "plain", "down", "--remove-orphans"]


def compose_env(shell: Mapping[str, str], profiles: tuple[str, ...]) -> dict[str, str]:
    env = dict(shell)
    if not profiles:
        env["COMPOSE_PROFILES"] = ""  # `--profile none`: beat a COMPOSE_PROFILES in an env file
    else:
        env.pop("COMPOSE_PROFILES", None)
    return env


def version_argv() -> list[str]:
    return ["docker", "compose", "version", "--short"]


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


def _no_docker() -> LauncherError:
    return LauncherError("Docker is not installed: the `docker` command is not on PATH", DOCKER_UNAVAILABLE,
                         "install Docker Engine (Linux) or Docker Desktop, with Compose v2")


def capture(argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 120) -> Result:
    """Run a compose command whose output is data (config, a dry run): raw, unmasked; the
    caller masks whatever it shows. LauncherError when docker is missing or does not answer."""
    try:
        return run_captured(argv, env, timeout, cwd=str(cwd))
    except FileNotFoundError:
        raise _no_docker() from None
    except Timeout as exc:
        raise LauncherError(f"docker compose gave {exc}", DOCKER_UNAVAILABLE,
                            "check that the Docker engine answers (`docker info`)") from None


def run(argv: Sequence[str], env: Mapping[str, str], masker: Masker, out: Output, cwd: Path,
        timeout: float | None = None, quiet: bool = False) -> Outcome:
    """Run a compose command, relaying its output line by line, masked (only with --verbose
    when `quiet`). Raises process.Timeout."""
    tail: deque[str] = deque(maxlen=60)
    show = out.detail if quiet else out.relay

    def relay(chunk: str) -> None:
        for line in masker.feed(chunk):
            line = redact(line)
            tail.append(line)
            show(line)

    try:
        code = run_streamed(argv, env, relay, cwd=str(cwd), timeout=timeout)
    except FileNotFoundError:
        raise _no_docker() from None
    finally:
        for line in masker.flush():
            line = redact(line)
            tail.append(line)
            show(line)
    outcome = Outcome(code, tuple(tail))
    if code != 0:
        diagnose(outcome)
    return outcome


# compose-go's dotenv parser: `failed to read FILE: line N: REASON`, where REASON may quote
# the rest of the line, value included (`unterminated quoted value "s3cr3t...`).
LOAD_ERROR = re.compile(r"failed to read (.+?): line (\d+): (.+)")


def load_error_message(m: re.Match) -> str:
    """File, line and key of an env-file line compose rejects; never the value."""
    path, line, reason = m.group(1), int(m.group(2)), m.group(3)
    reason = reason.split('"', 1)[0].split("'", 1)[0].strip() or "cannot parse the line"
    where = f"line {line}"
    if "unterminated" in reason:
        from .envfile import unterminated_quote

        try:
            found = unterminated_quote(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeError):
            found = None
        if found:
            where = f"line {found[0]}, {found[1]}"
    return f"docker compose cannot load {Path(path).name}: {where}: {reason}"


def redact(line: str) -> str:
    """A line of compose's output with an env-file load error's quoted value cut off."""
    m = LOAD_ERROR.search(line)
    if not m:
        return line
    reason = m.group(3).split('"', 1)[0].split("'", 1)[0].rstrip()
    return line[: m.start(3)] + (reason or "cannot parse the line")


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
    m = LOAD_ERROR.search(text)
    if m:
        raise LauncherError(load_error_message(m), BAD_CONFIG, "fix that line (see docs/troubleshooting.md on quoting)")
    m = re.search(r"couldn't find env file: (.+)", text)
    if m:
        raise LauncherError(f"env file not found: {m.group(1).strip()}", BAD_CONFIG)
    m = re.search(r"unterminated quoted value", text)
    if m:  # (a load error without its "failed to read" line)
        raise LauncherError("docker compose cannot load an env file: unterminated quoted value", BAD_CONFIG,
                            "close the quote (see docs/troubleshooting.md on quoting)")
