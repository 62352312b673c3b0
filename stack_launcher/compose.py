"""The docker compose command, built as data, run with masked output, its failures named.

Docker/Compose presence is not probed before a launch (each probe costs 50 ms or more);
a failed compose call is diagnosed from its own output instead.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from .errors import BAD_CONFIG, DOCKER_UNAVAILABLE, FAILED, LauncherError
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

    def up(self, progress: str = "plain") -> list[str]:
        """Start or update in the background. `progress`: "plain" (lines, off a terminal) or
        "json" (one event a line, for the live view); both are read line by line and masked.
        `--progress` is a flag of `docker compose` itself, before `up` (Compose >= 2.19;
        the json mode >= 2.29, see `progress_unsupported`)."""
        return self.args() + ["--progress", progress, "up", "-d"]

    def up_wait(self, timeout: float, progress: str = "plain") -> list[str]:
        """Start and wait until healthy (Compose >= 2.17 for --wait-timeout)."""
        return self.up(progress) + ["--wait", "--wait-timeout", str(max(1, int(timeout)))]

    def dry_run_up(self) -> list[str]:
        """Compose's own plan of `up -d`, one JSON event a line (>= 2.29); changes nothing."""
        return self.args(dry_run=True) + ["--progress", "json", "up", "-d"]

    def config_json(self, interpolate: bool = True) -> list[str]:
        """The resolved model, every value interpolated (`$` shows as `$$`); without
        interpolation it needs no secret (Compose 2.40 then lists every profile's services)."""
        return self.args() + ["config"] + ([] if interpolate else ["--no-interpolate"]) + ["--format", "json"]

    def pull_missing(self, progress: str = "plain") -> list[str]:
        """Pull the images not present yet, with compose's progress; no health limit applies."""
        return self.args() + ["--progress", progress, "pull", "--policy", "missing"]

    # -- single services (backup and restore of the local Infisical) ---------------------------

    def exec_argv(self, service: str, command: Sequence[str], stdin: bool = True) -> list[str]:
        """Run `command` in the service's running container, no TTY (output is data, and
        binary-safe); with `stdin` the caller's stdin is handed on (a dump to restore)."""
        return self.args() + ["exec", "-T"] + ([] if stdin else ["--interactive=false"]) + [service, *command]

    def up_services(self, services: Sequence[str], wait_timeout: float) -> list[str]:
        """Start these services alone (and what they depend on) and wait until healthy."""
        return self.up() + ["--wait", "--wait-timeout", str(max(1, int(wait_timeout))), *services]

    def stop(self, services: Sequence[str]) -> list[str]:
        """Stop these services' containers; they and their volumes stay."""
        return self.args() + ["--progress", "plain", "stop", *services]

    def remove(self, services: Sequence[str]) -> list[str]:
        """Stop and remove these services' containers (named volumes stay)."""
        return self.args() + ["--progress", "plain", "rm", "--stop", "--force", *services]

    def ps_json(self, services: Sequence[str] = ()) -> list[str]:
        """Every container of these services, running or not, as JSON (one object a line
        from Compose 2.21; one array before)."""
        return self.args() + ["ps", "--all", "--format", "json", *services]

    def down_volumes(self) -> list[str]:
        """Remove the project's containers, networks AND its volumes: only for a scratch
        project this tool created itself (`restore --verify`), never for the user's."""
        return self.args() + ["--progress", "plain", "down", "--volumes", "--remove-orphans"]


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


def progress_unsupported(outcome: "Outcome") -> bool:
    """Did compose refuse `--progress json`? Compose before 2.29 knows the flag but not the
    value, and says so before it touches anything (docker/compose cmd/compose/compose.go:
    `unsupported --progress value %q`), so the same command in plain mode is safe to run."""
    return any('unsupported --progress value "json"' in line for line in outcome.tail)


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


class EventSink(Protocol):
    """Where a `--progress json` run's output goes instead of the terminal (live.py)."""

    def event(self, event: dict[str, Any]) -> None: ...

    def line(self, text: str) -> None: ...

    def flush(self) -> None: ...


# The `--progress json` events, one JSON object a line on stderr. Their fields are compose's
# `jsonMessage` (docker/compose pkg/progress/json.go in v2.x, cmd/display/json.go from v5):
# id, parent_id (a pulled layer's service), text, status, current, total, percent, tail,
# dry-run; an error the command ends with is {"error": true, "message": ...}. Which of text
# and status holds the word varies: v2.40 puts a container's "Creating" in status and a
# pull's "Pulling" in text (with the daemon's message in status on "Error"); see
# tests/support/events/ for real streams. Compose's own log lines (warnings) are JSON too in
# this mode (logrus' JSONFormatter: {"level": "warning", "msg": ..., "time": ...}).


def decode_event(line: str, masker: Masker) -> dict[str, Any] | None:
    """A line of `--progress json` output as an event, every string masked again and a
    rejected value cut off once decoded (JSON escapes hide a value from a text match);
    None when the line is not one (text printed outside the event stream, or broken JSON)."""
    import json

    if not line.lstrip().startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    return {k: redact(masker.mask(v)) if isinstance(v, str) else v for k, v in event.items()}


def event_text(event: Mapping[str, Any]) -> str:
    """An event as compose's plain progress prints it (` ghost Error <message>`), so the
    failure diagnosis below reads both modes alike."""
    if event.get("error"):
        return str(event.get("message", ""))
    if "msg" in event:  # a log line: in json mode compose's logger writes JSON too
        return f"{event.get('level', 'info')}: {event['msg']}"
    words = [str(event.get(k) or "") for k in ("id", "text", "status")]
    return " " + " ".join(w for w in words if w)


def run(argv: Sequence[str], env: Mapping[str, str], masker: Masker, out: Output, cwd: Path,
        timeout: float | None = None, quiet: bool = False, sink: EventSink | None = None) -> Outcome:
    """Run a compose command, relaying its output line by line, masked (only with --verbose
    when `quiet`). With a `sink` (argv asks for `--progress json`), each event goes to it,
    decoded and masked, and a line that is not an event is handed on as text: an
    unparseable stream degrades to relayed lines, never to a crash. Raises process.Timeout."""
    tail: deque[str] = deque(maxlen=60)
    show = out.detail if quiet else out.relay

    def take(line: str) -> None:
        event = decode_event(line, masker) if sink is not None else None
        if event is not None:
            text = event_text(event)
            tail.append(text)
            try:
                sink.event(event)
            except Exception:  # noqa: BLE001 - an event of a shape the view does not expect: drawing
                sink.line(text)  # must never stop compose (run_streamed kills it on an error here)
            return
        line = redact(line)
        tail.append(line)
        if sink is not None:
            sink.line(line)
        else:
            show(line)

    def relay(chunk: str) -> None:
        for line in masker.feed(chunk):
            take(line)

    try:
        code = run_streamed(argv, env, relay, cwd=str(cwd), timeout=timeout)
    except FileNotFoundError:
        raise _no_docker() from None
    finally:
        for line in masker.flush():
            take(line)
        if sink is not None:
            sink.flush()  # the lines a view batches for its next redraw, before anything else prints
    outcome = Outcome(code, tuple(tail))
    if code != 0:
        diagnose(outcome, argv[argv.index("-p") + 1] if "-p" in argv else "")
    return outcome


def image_of(target: Target, service: str, env: Mapping[str, str]) -> str | None:
    """The image a service runs, from the files alone (no secret needed); None if unknown."""
    import json

    try:
        result = capture(target.config_json(interpolate=False), env, target.project_dir, timeout=30)
        image = json.loads(result.stdout)["services"][service].get("image")
    except (LauncherError, ValueError, KeyError, TypeError):
        return None
    return image if isinstance(image, str) else None


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


# compose-go's template parser quotes the whole value it rejects (`Invalid template:
# "ab$$c${}..."`), in an escaped form no masker knows: cut it off.
INVALID_TEMPLATE = re.compile(r"(invalid template:?)\s*\S.*", re.IGNORECASE)


def redact(line: str) -> str:
    """A line of compose's output with a rejected value cut off: an env-file load error's
    quoted rest of line, or the template compose could not parse."""
    line = INVALID_TEMPLATE.sub(r"\1 (the value is not shown)", line)
    m = LOAD_ERROR.search(line)
    if not m:
        return line
    reason = m.group(3).split('"', 1)[0].split("'", 1)[0].rstrip()
    return line[: m.start(3)] + (reason or "cannot parse the line")


# A pull that failed: ` SERVICE Error <daemon's message>` (compose's plain progress), or the
# daemon's message alone.
PULL_ERROR = re.compile(r"^\s*(\S+)\s+Error\s+(.*)$", re.MULTILINE)
PULL_CAUSES = (
    (r"no such host|dial tcp|i/o timeout|connection refused|TLS handshake timeout|network is unreachable|"
     r"Client.Timeout", "registry unreachable"),
    (r"pull access denied|unauthorized|denied: |authentication required", "access denied"),
    (r"manifest unknown|not found|manifest for .* not found", "no such image or tag"),
    (r"toomanyrequests|rate limit", "the registry's rate limit"),
)
PORT_TAKEN = re.compile(r"(?:endpoint (\S+) .*?)?(?:Bind for (\S+?):(\d+) failed: port is already allocated|"
                        r"listen (?:tcp|udp)\d? (\S*?):(\d+): bind: address already in use)")


def pull_failure(text: str) -> tuple[str, str] | None:
    """(service, cause) of a failed pull in compose's output, or None."""
    m = PULL_ERROR.search(text)
    if not m or not re.search(r"registry|pull|manifest|dial tcp|no such host|denied|unauthorized|timeout", m.group(2),
                              re.IGNORECASE):
        return None
    cause = next((name for pattern, name in PULL_CAUSES if re.search(pattern, m.group(2), re.IGNORECASE)),
                 m.group(2).strip()[:120])
    return m.group(1), cause


def pull_error(service: str, cause: str, image: str | None) -> LauncherError:
    what = f"{image} (service {service})" if image else f"the image of service {service}"
    return LauncherError(f"cannot pull {what}: {cause}", FAILED,
                         "check the network and any proxy (HTTP_PROXY for the Docker daemon), "
                         "`docker login` for a private registry, and that the tag exists")


def port_conflict(text: str, project: str) -> LauncherError | None:
    m = PORT_TAKEN.search(text)
    if not m:
        return None
    container, host, port = m.group(1), m.group(2) or m.group(4) or "", m.group(3) or m.group(5)
    service = ""
    if container:
        found = re.fullmatch(rf"{re.escape(project)}[-_](.+)[-_]\d+", container)
        service = found.group(1) if found else container
    where = f"{host}:{port}" if host and host not in ("0.0.0.0", "") else f"port {port}"
    who = f"service {service} cannot publish {where}" if service else f"{where} cannot be published"
    return LauncherError(f"{who}: another program or container already uses it", BAD_CONFIG,
                         f"stop what holds it (`ss -ltnp 'sport = :{port}'`, `docker ps`), or change the host port "
                         f"{'of ' + service + ' ' if service else ''}in docker-compose.override.<environment>.yml "
                         "(infisical/docker-compose.yml for Infisical's 8010); "
                         "`python start_services.py doctor` checks every port first")


def diagnose(outcome: Outcome, project: str = "") -> None:
    """Turn compose's failure into our exit code when it is about the engine, an env file,
    a port another program holds, or an image that cannot be pulled."""
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
    if INVALID_TEMPLATE.search(text):
        raise LauncherError("docker compose cannot interpolate a value: an invalid template (`${}`, or a `${` "
                            "that never closes) in an env file or the compose file", BAD_CONFIG,
                            "write a literal $ as $$ (compose files) or \\$ in double quotes (.env); "
                            "see docs/troubleshooting.md on quoting")
    conflict = port_conflict(text, project)
    if conflict:
        raise conflict
    m = re.search(r"couldn't find env file: (.+)", text)
    if m:
        raise LauncherError(f"env file not found: {m.group(1).strip()}", BAD_CONFIG)
    m = re.search(r"unterminated quoted value", text)
    if m:  # (a load error without its "failed to read" line)
        raise LauncherError("docker compose cannot load an env file: unterminated quoted value", BAD_CONFIG,
                            "close the quote (see docs/troubleshooting.md on quoting)")
