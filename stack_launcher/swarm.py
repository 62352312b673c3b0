"""The docker swarm, stack, secret, service and node command lines, built as data, and run.

The one module that spells them (tests/test_structure.py holds it to that), as compose.py
is for compose. Values never reach argv: a secret's value goes to `docker secret create
NAME -` on stdin, and `docker stack deploy` reads the values its stack file interpolates
from its environment, which holds nothing else but what the docker CLI itself needs.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .errors import BAD_CONFIG, DOCKER_UNAVAILABLE, LauncherError
from .process import Result, Timeout, run_captured

STACK_LABEL = "com.docker.stack.namespace"  # set by `docker stack deploy` on what it creates
SECRET_STACK_LABEL = "start-services.stack"
SECRET_KEY_LABEL = "start-services.key"
TIMEOUT = 60.0

# What the docker CLI needs from the user's shell to find and talk to the engine. Only the
# shell's own values pass; an exported key of these names never steers the CLI.
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy",
              "all_proxy")
CLI_VARS = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "XDG_RUNTIME_DIR", "DOCKER_HOST", "DOCKER_CONTEXT",
            "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "DOCKER_API_VERSION") + PROXY_VARS


def steers_cli(key: str) -> bool:
    """Would this variable change how the docker CLI itself behaves (which engine, which
    credentials, which proxy)?"""
    return key.startswith("DOCKER_") or key in PROXY_VARS


def cli_env(shell: Mapping[str, str]) -> dict[str, str]:
    return {k: shell[k] for k in CLI_VARS if k in shell}


def deploy_env(shell: Mapping[str, str], values: Mapping[str, str], keys: frozenset[str]) -> dict[str, str]:
    """`docker stack deploy`'s environment: the CLI's own variables from the shell, plus only
    the keys the stack file interpolates (PATH, HOME and LANG stay the shell's, as compose's
    "the shell wins" rule gives them). A key that would steer the CLI is refused."""
    env = cli_env(shell)
    for key in sorted(keys):
        if key in env:
            continue
        if steers_cli(key):
            raise LauncherError(f"the stack file interpolates {key}, which would also change how the docker CLI "
                                "reaches the engine", BAD_CONFIG, f"rename {key} in the compose file")
        if key in values:
            env[key] = values[key]
    return env


# -- the command lines -------------------------------------------------------------------------

def info_argv() -> list[str]:
    return ["docker", "info", "--format", "{{json .Swarm}}"]


def secret_create_argv(stack: str, key: str, name: str) -> list[str]:
    """The value follows on stdin (`-`); the labels name the stack and the key, never the value."""
    return ["docker", "secret", "create", "--label", f"{SECRET_STACK_LABEL}={stack}",
            "--label", f"{SECRET_KEY_LABEL}={key}", name, "-"]


def secret_ls_argv(stack: str) -> list[str]:
    return ["docker", "secret", "ls", "--filter", f"label={SECRET_STACK_LABEL}={stack}", "--format", "{{json .}}"]


def inspect_argv(kind: str, ids: Sequence[str]) -> list[str]:
    """`docker secret|service|node inspect` of these ids, as one JSON array."""
    return ["docker", kind, "inspect", *ids]


def secret_rm_argv(names: Sequence[str]) -> list[str]:
    return ["docker", "secret", "rm", *names]


def stack_deploy_argv(stack_file: Path, stack: str) -> list[str]:
    # --prune: services a profile change dropped go. --resolve-image never: no registry is
    # asked, and a service whose image did not change is not updated for a digest.
    return ["docker", "stack", "deploy", "--prune", "--resolve-image", "never", "-c", str(stack_file), stack]


def stack_rm_argv(stack: str) -> list[str]:
    return ["docker", "stack", "rm", stack]


def service_ls_argv(stack: str) -> list[str]:
    return ["docker", "service", "ls", "--filter", f"label={STACK_LABEL}={stack}", "--format", "{{json .}}"]


def service_ps_argv(service: str) -> list[str]:
    return ["docker", "service", "ps", "--no-trunc", "--format", "{{json .}}", service]


def containers_argv(stack: str) -> list[str]:
    return ["docker", "ps", "--all", "--quiet", "--filter", f"label={STACK_LABEL}={stack}"]


def node_ls_argv() -> list[str]:
    return ["docker", "node", "ls", "--format", "{{json .}}"]


# -- running them -------------------------------------------------------------------------------

def run(argv: Sequence[str], shell: Mapping[str, str], stdin: bytes | None = None, timeout: float = TIMEOUT,
        env: Mapping[str, str] | None = None) -> Result:
    """Run a docker command whose output is data (raw: the caller masks what it shows)."""
    try:
        return run_captured(argv, cli_env(shell) if env is None else env, timeout, stdin_bytes=stdin)
    except FileNotFoundError:
        raise LauncherError("Docker is not installed: the `docker` command is not on PATH", DOCKER_UNAVAILABLE,
                            "install Docker Engine") from None
    except Timeout as exc:
        raise LauncherError(f"`{' '.join(argv[:3])}` gave {exc}", DOCKER_UNAVAILABLE,
                            "check that the Docker engine answers (`docker info`)") from None


def _lines(text: str) -> list[dict]:
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


Mask = Callable[[str], str]  # the run's Masker.mask: every text from docker passes it before it is shown


def _checked(result: Result, what: str, mask: Mask) -> Result:
    # stderr only: stdout is data (`service inspect` prints each service's Env, values and all).
    if result.returncode != 0:
        raise LauncherError(f"{what} failed: {first_line(mask(result.stderr))}", DOCKER_UNAVAILABLE)
    return result


def first_line(text: str) -> str:
    """The first non-blank line, cut to 300 characters: of text already masked (a value
    cut first would no longer match the masker)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else "no message"


@dataclass(frozen=True)
class SwarmState:
    node_state: str  # "active", "inactive", "pending", "error", "locked"
    manager: bool


def state(shell: Mapping[str, str], mask: Mask) -> SwarmState:
    result = run(info_argv(), shell, timeout=20)
    if result.returncode != 0:
        raise LauncherError(f"the Docker engine is not reachable: {first_line(mask(result.stderr))}",
                            DOCKER_UNAVAILABLE,
                            "start Docker and check you may use it (`docker info`)")
    try:
        swarm = json.loads(result.stdout)
    except ValueError:
        swarm = {}
    return SwarmState(str(swarm.get("LocalNodeState") or "inactive"), bool(swarm.get("ControlAvailable")))


def require_manager(shell: Mapping[str, str], mask: Mask) -> None:
    """`--target swarm` deploys through a manager: exit 4 with the fix otherwise."""
    found = state(shell, mask)
    if found.node_state == "active" and found.manager:
        return
    if found.node_state == "locked":
        # A locked manager (autolock, after a restart) is still in the swarm: `swarm init`
        # would fail ("already part of a swarm"); the unlock key opens it.
        raise LauncherError("this Docker engine's swarm is locked (autolock is on and the engine restarted)",
                            DOCKER_UNAVAILABLE,
                            "unlock it with `docker swarm unlock` and the unlock key (`docker swarm unlock-key` "
                            "on another manager shows it)")
    if found.node_state == "active":
        raise LauncherError("this Docker engine is a swarm worker, not a manager: `docker stack deploy` needs a "
                            "manager", DOCKER_UNAVAILABLE,
                            "run the launcher on a manager node (`docker node ls` there), or promote this one "
                            "(`docker node promote`)")
    raise LauncherError(f"this Docker engine is not in swarm mode (swarm state: {found.node_state})",
                        DOCKER_UNAVAILABLE,
                        "make it a swarm manager with `docker swarm init` (see docs/swarm.md), "
                        "or run on a manager of your swarm; or leave out --target swarm")


@dataclass(frozen=True)
class DeployedSecret:
    id: str
    name: str
    key: str
    created: str  # RFC 3339 with nanoseconds, as the engine prints it


_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")
_NEWEST = (datetime.max.replace(tzinfo=timezone.utc), 0)


def created_order(created: str) -> tuple[datetime, int]:
    """A sort key in time order. Not the string: a fraction's digits vary (the engine drops
    trailing zeros, so `...:05Z` sorts after `...:05.5Z`) and so may the zone. One that does
    not parse sorts as the newest, which the cleanup keeps."""
    m = _TIMESTAMP.fullmatch(created.strip())
    if not m:
        return _NEWEST
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        when = datetime.fromisoformat(m.group(1) + zone).astimezone(timezone.utc)
    except ValueError:
        return _NEWEST
    return when, int((m.group(2) or "0")[:9].ljust(9, "0"))


def secrets(stack: str, shell: Mapping[str, str], mask: Mask) -> list[DeployedSecret]:
    """Every Docker secret this launcher made for the stack, oldest first."""
    rows = _lines(_checked(run(secret_ls_argv(stack), shell), "`docker secret ls`", mask).stdout)
    if not rows:
        return []
    found = []
    for item in _inspect("secret", [str(r["ID"]) for r in rows], shell, mask):
        labels = (item.get("Spec") or {}).get("Labels") or {}
        found.append(DeployedSecret(str(item.get("ID")), str((item.get("Spec") or {}).get("Name")),
                                    str(labels.get(SECRET_KEY_LABEL, "")), str(item.get("CreatedAt", ""))))
    return sorted(found, key=lambda s: (created_order(s.created), s.name))


def create_secret(stack: str, key: str, name: str, value: str, shell: Mapping[str, str],
                  mask: Callable[[str], str]) -> None:
    result = run(secret_create_argv(stack, key, name), shell, stdin=value.encode("utf-8"))
    if result.returncode != 0 and "already exists" not in result.stderr:
        raise LauncherError(f"`docker secret create` for {key} failed: {first_line(mask(result.stderr))}",
                            DOCKER_UNAVAILABLE)


def remove_secrets(names: Sequence[str], shell: Mapping[str, str]) -> Result:
    return run(secret_rm_argv(names), shell)


def _inspect(kind: str, ids: Sequence[str], shell: Mapping[str, str], mask: Mask) -> list[dict]:
    if not ids:
        return []
    result = _checked(run(inspect_argv(kind, ids), shell), f"`docker {kind} inspect`", mask)
    try:
        items = json.loads(result.stdout)
    except ValueError:
        return []
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


@dataclass
class Service:
    name: str  # without the stack's prefix
    spec: dict = field(repr=False)
    update_state: str  # "", "updating", "completed", "paused", "rollback_started", ...
    replicas: int | None  # desired; None for a global service
    # The spec before the last update: what `docker service rollback` (or a failed update's
    # automatic rollback) returns to, Docker secrets and all.
    previous_spec: dict = field(default_factory=dict, repr=False)


def services(stack: str, shell: Mapping[str, str], mask: Mask) -> dict[str, Service]:
    """The stack's services as Swarm holds them, by their name in the stack file."""
    rows = _lines(_checked(run(service_ls_argv(stack), shell), "`docker service ls`", mask).stdout)
    found = {}
    for item in _inspect("service", [str(r["ID"]) for r in rows], shell, mask):
        spec = item.get("Spec") or {}
        full = str(spec.get("Name", ""))
        name = full[len(stack) + 1:] if full.startswith(stack + "_") else full
        mode = spec.get("Mode") or {}
        replicas = (mode.get("Replicated") or {}).get("Replicas") if "Replicated" in mode else None
        found[name] = Service(name, spec, str((item.get("UpdateStatus") or {}).get("State", "")), replicas,
                              item.get("PreviousSpec") or {})
    return found


@dataclass(frozen=True)
class Task:
    id: str
    desired: str  # "Running", "Shutdown", ...
    current: str  # "Running 3 seconds ago", "Starting ...", "Rejected ...", ...
    error: str


def tasks(stack: str, service: str, shell: Mapping[str, str]) -> list[Task]:
    """The service's tasks, newest first (as `docker service ps` lists them)."""
    result = run(service_ps_argv(f"{stack}_{service}"), shell)
    if result.returncode != 0:
        return []
    return [Task(str(r.get("ID", "")), str(r.get("DesiredState", "")), str(r.get("CurrentState", "")),
                 str(r.get("Error", ""))) for r in _lines(result.stdout)]


_REMOVE_FAILED = re.compile(r"Failed to remove (\w+) \S+: (.*?)(?=Failed to remove |$)", re.M)


def only_busy_networks(text: str) -> bool:
    """Did `docker stack rm` fail only on networks whose tasks were still stopping? It
    removes the services and at once the networks; swarmkit refuses a network a task still
    holds ("is in use by task", moby/moby#31068), and the next `docker stack rm` removes it.
    The CLI writes each failure without a newline, so they run together on one line."""
    failures = _REMOVE_FAILED.findall(text)
    return bool(failures) and all(kind == "network" and "in use by task" in why for kind, why in failures)


def containers(stack: str, shell: Mapping[str, str]) -> list[str]:
    """Ids of the stack's containers on this node, running or not."""
    result = run(containers_argv(stack), shell)
    return result.stdout.split() if result.returncode == 0 else []


def node_labels(shell: Mapping[str, str], mask: Mask) -> list[dict[str, str]]:
    """Each ready, active node's labels."""
    rows = _lines(_checked(run(node_ls_argv(), shell), "`docker node ls`", mask).stdout)
    found = []
    for item in _inspect("node", [str(r["ID"]) for r in rows], shell, mask):
        spec, status = item.get("Spec") or {}, item.get("Status") or {}
        if spec.get("Availability", "active") == "active" and status.get("State", "ready") == "ready":
            found.append(dict(spec.get("Labels") or {}))
    return found
