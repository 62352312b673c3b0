"""The real stack, started from a copy of this project (tests/test_real_stack.py).

Two ways to run the same scenario:

- busybox (CI): the copy's compose files are rewritten so every service runs the local image
  busybox-test:local, sleeping, with a trivial healthcheck and no published port. The
  rewrite is generated from `docker compose config --format json` of the real files, so it
  follows them: a new service, volume, dependency or secret shows up without editing this file.
- real (REAL_STACK=1, a machine that can pull): the copy is left as it is.

Everything here talks to Docker directly (`docker inspect`, `docker volume ls`), never
through the launcher, so the checks do not trust the code they check.
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping

from .docker_stack import PROJECT_LABEL, SERVICE_LABEL, TEST_IMAGE
from .processes import REPO_ROOT, minimal_env

BASE_FILE = "docker-compose.yml"
PRIVATE_OVERRIDE = "docker-compose.override.private.yml"
INFISICAL_FILE = "infisical/docker-compose.yml"
# The service of infisical/docker-compose.yml that serves the API (the others are its database
# and cache); in the busybox copy it answers GET /api/status with busybox httpd, on the
# container port the real file publishes (this one when it publishes none).
INFISICAL_API_SERVICE = "infisical"
INFISICAL_CONTAINER_PORT = 8080
# A file whose existence makes a "held" busybox service healthy (see busybox_override).
READY_FLAG = "/tmp/ready"

# Files copied when the project is not a git checkout (an sdist, an exported tree).
_FALLBACK_FILES = ("start_services.py", "stack_launcher", BASE_FILE, PRIVATE_OVERRIDE,
                   "docker-compose.override.public.yml", "infisical", "Caddyfile", ".env.example",
                   ".gitignore", "pyproject.toml")


# ------------------------------------------------------------------------------ the copy


def copy_project(dest: Path, source: Path = REPO_ROOT) -> Path:
    """Copy the project's tracked files (as they are in the working tree) into `dest`.

    Untracked files (a developer's .env, .env.infisical, a venv) stay behind: the copy is
    what a fresh clone holds."""
    dest.mkdir(parents=True, exist_ok=True)
    listed = subprocess.run(["git", "-C", str(source), "ls-files", "-z"], capture_output=True,
                            env=minimal_env(), stdin=subprocess.DEVNULL, timeout=60)
    if listed.returncode == 0 and listed.stdout:
        names = [n for n in listed.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    else:
        names = [n for n in _FALLBACK_FILES if (source / n).exists()]
    for name in names:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        elif src.is_file():  # a tracked file deleted in the working tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file written by `init` (unquoted values only).

    Deliberately not the launcher's reader: the checks must not share the code they check.
    A quoted value raises instead of being read half right."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path.name}:{number}: not KEY=value")
        if value[:1] in ("'", '"'):
            raise ValueError(f"{path.name}:{number}: {key} is quoted; this reader only knows init's unquoted values")
        values[key.strip()] = value
    return values


def set_env_values(path: Path, updates: Mapping[str, str]) -> None:
    """Set KEY=value in an env file: the existing line is replaced, a new key appended.
    The file keeps its mode (init writes 0600)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    left = dict(updates)
    for i, line in enumerate(lines):
        key = line.partition("=")[0].strip()
        if not line.lstrip().startswith("#") and key in left:
            lines[i] = f"{key}={left.pop(key)}"
    lines += [f"{k}={v}" for k, v in left.items()]
    mode = path.stat().st_mode
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(mode)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# ------------------------------------------------------------------------------ compose's model


def compose_model(project_dir: Path, files: Iterable[str], *, env_files: Iterable[str] = (),
                  profiles: Iterable[str] = ("*",), interpolate: bool = False) -> dict[str, Any]:
    """`docker compose config --format json` of `files` in `project_dir`.

    interpolate=False (`--no-interpolate`) keeps every `${VAR...}` as written, so it needs no
    env file and shows which variable each setting takes. profiles=("*",): every service."""
    cmd = ["docker", "compose", "-p", "model", "--project-directory", str(project_dir)]
    for name in files:
        cmd += ["-f", str(project_dir / name)]
    for name in env_files:
        cmd += ["--env-file", str(project_dir / name)]
    for profile in profiles:
        cmd += ["--profile", profile]
    cmd += ["config", "--format", "json"] + ([] if interpolate else ["--no-interpolate"])
    result = subprocess.run(cmd, capture_output=True, text=True, env=minimal_env(), cwd=str(project_dir),
                            stdin=subprocess.DEVNULL, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"docker compose config failed:\n{result.stderr}")
    return json.loads(result.stdout)


def _tagged(tag: str, value: Any) -> str:
    """A YAML value with a compose merge tag (`!reset`, `!override`). JSON is YAML flow syntax."""
    return f"!{tag} {json.dumps(value)}"


TRIVIAL_HEALTHCHECK = {"test": ["CMD", "true"], "interval": "1s", "timeout": "5s", "retries": 30}
HELD_HEALTHCHECK = {"test": ["CMD", "test", "-e", READY_FLAG], "interval": "1s", "timeout": "5s", "retries": 100000}
# Keys that ask the host for hardware busybox does not need (the GPU profiles' Ollama).
_HARDWARE_KEYS = {"devices": [], "deploy": None}


def busybox_override(model: Mapping[str, Any], held: Iterable[str] = ()) -> str:
    """An override file (YAML text) that turns every service of `model` into busybox.

    For each service: image busybox-test:local, `sleep 3600` under docker-init (so `down` is
    immediate), the entrypoint reset, no published port (`ports: !reset []`), no device or
    GPU reservation. A service with a healthcheck gets `true` every second instead (`held`
    services get `test -e /tmp/ready`: unhealthy until the test creates that file). Kept
    as they are: environment (so the secrets flow exactly as in the real stack), volumes,
    depends_on and its conditions, profiles, networks and aliases, user, restart.
    Needs compose >= 2.24 for `!reset`/`!override`."""
    held = set(held)
    unknown = held - set(model["services"])
    if unknown:
        raise ValueError(f"held services not in the model: {sorted(unknown)}")
    lines = ["# Generated by tests/support/real_stack.py (busybox_override) from",
             "# `docker compose config` of the real compose files. Do not edit.",
             "services:"]
    for name in sorted(model["services"]):
        service = model["services"][name]
        lines += [f"  {json.dumps(name)}:",
                  f"    image: {json.dumps(TEST_IMAGE)}",
                  "    init: true",
                  f"    entrypoint: {_tagged('reset', None)}",
                  f"    command: {json.dumps(['sleep', '3600'])}",
                  f"    ports: {_tagged('reset', [])}"]
        if service.get("healthcheck") and not service["healthcheck"].get("disable"):
            check = HELD_HEALTHCHECK if name in held else TRIVIAL_HEALTHCHECK
            lines.append(f"    healthcheck: {_tagged('override', check)}")
        for key, empty in _HARDWARE_KEYS.items():
            if key in service:
                lines.append(f"    {key}: {_tagged('reset', empty)}")
    return "\n".join(lines) + "\n"


def busybox_infisical(model: Mapping[str, Any], port: int) -> str:
    """A whole compose file (JSON text) standing in for infisical/docker-compose.yml.

    The launcher takes that file alone (no override can be added), so the stand-in is the
    real file's model with every service on busybox: `infisical` serves GET /api/status with
    busybox httpd and publishes it on 127.0.0.1:`port` (not 8010), its healthcheck asks that
    URL; the others sleep with a trivial healthcheck. Environment (the INFISICAL_* bootstrap
    secrets as `${VAR:?}`), volumes and depends_on are the real file's."""
    services: dict[str, Any] = {}
    for name, real in model["services"].items():
        service = {k: v for k, v in real.items()
                   if k in ("environment", "volumes", "depends_on", "restart", "networks")}
        service.update(image=TEST_IMAGE, init=True)
        if name == INFISICAL_API_SERVICE:
            # the container port the real file publishes (8010 -> 8080), so URLs stay the same
            target = next((int(p["target"]) for p in real.get("ports") or []), INFISICAL_CONTAINER_PORT)
            service["command"] = ["sh", "-c", "mkdir -p /www/api && echo '{\"date\":\"busybox\"}' > /www/api/status "
                                              f"&& exec httpd -f -p {target} -h /www"]
            service["ports"] = [f"127.0.0.1:{port}:{target}"]
            service["healthcheck"] = {"test": ["CMD", "wget", "-q", "-O", "/dev/null",
                                               f"http://127.0.0.1:{target}/api/status"],
                                      "interval": "1s", "timeout": "5s", "retries": 60}
        else:
            service["command"] = ["sleep", "3600"]
            if real.get("healthcheck"):
                service["healthcheck"] = dict(TRIVIAL_HEALTHCHECK)
        services[name] = service
    if INFISICAL_API_SERVICE not in services:
        raise AssertionError(f"{INFISICAL_FILE} has no service {INFISICAL_API_SERVICE!r}")
    # Volume and network names without `name:` (config prints them with its own project prefix).
    document = {"services": services, "volumes": {v: {} for v in model.get("volumes") or {}}}
    return "# Generated by tests/support/real_stack.py (busybox_infisical). Do not edit.\n" + \
        json.dumps(document, indent=2) + "\n"


# ------------------------------------------------------------------------------ what uses a variable


def _references(key: str) -> re.Pattern[str]:
    # ${KEY}, ${KEY:-x}, ${KEY-x}, ${KEY:?x}, ${KEY?x}, ${KEY:+x}, ${KEY+x} or $KEY; never $$KEY
    # (an escaped `$`: the container's own shell reads that, not compose).
    name = re.escape(key)
    return re.compile(r"(?<!\$)(?:\$\$)*\$(?:\{" + name + r"(?:[:?+\-}])|" + name + r"(?![A-Za-z0-9_]))")


def takes(config: Any, key: str) -> bool:
    """Does a piece of uninterpolated configuration (a value, a service) take `${key}`?"""
    return _references(key).search(json.dumps(config)) is not None


def services_using(model: Mapping[str, Any], key: str, services: Iterable[str] | None = None) -> set[str]:
    """Services of an uninterpolated model whose configuration takes `${key}` anywhere
    (environment, command, healthcheck, ...): what compose's config hash covers."""
    names = model["services"] if services is None else services
    return {name for name in names if takes(model["services"][name], key)}


_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(template: str, values: Mapping[str, str]) -> str:
    """Compose's interpolation for the forms the stack uses: $$, $VAR, ${VAR}, ${VAR:-d},
    ${VAR-d}, ${VAR:?err}, ${VAR?err}. A form it does not know raises (no silent guess)."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3)
        value = values.get(name)
        if op is None:
            return value or ""
        if op in (":-", "-"):
            return value if (value if op == ":-" else value is not None) else arg
        if (op == ":?" and not value) or (op == "?" and value is None):
            raise KeyError(f"{name} is required ({arg})")
        return value
    result = _VAR.sub(one, template)
    if "${" in _VAR.sub("", template):
        raise ValueError(f"an interpolation form this helper does not know: {template!r}")
    return result


def expected_environment(model: Mapping[str, Any], service: str, values: Mapping[str, str]) -> dict[str, str]:
    """The environment the compose file maps for `service`, interpolated from `values`."""
    environment = model["services"][service].get("environment") or {}
    return {k: interpolate(v if v is not None else "", values) for k, v in environment.items()}


def environment_mismatches(expected: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """Names (never values) of the variables whose container value is not the expected one."""
    return sorted(k for k, v in expected.items() if actual.get(k) != v)


# ------------------------------------------------------------------------------ the engine


def _docker(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, env=minimal_env(),
                            stdin=subprocess.DEVNULL, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def project_containers(project: str, all: bool = False) -> dict[str, dict[str, Any]]:
    """container id -> `docker inspect` of each container of a compose project."""
    ids = _docker("ps", "-q", "--no-trunc", *(["-a"] if all else []),
                  "--filter", f"label={PROJECT_LABEL}={project}").split()
    if not ids:
        return {}
    return {row["Id"]: row for row in json.loads(_docker("inspect", *ids))}


def service_of(container: Mapping[str, Any]) -> str:
    return container["Config"]["Labels"][SERVICE_LABEL]


def container_ids(project: str) -> dict[str, str]:
    """service -> id of its running container (AssertionError when a service has two)."""
    found: dict[str, str] = {}
    for cid, row in project_containers(project).items():
        service = service_of(row)
        assert service not in found, f"{project}: two running containers of {service}"
        found[service] = cid
    return found


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    return dict(pair.partition("=")[::2] for pair in container["Config"]["Env"] or [])


def health_states(project: str) -> dict[str, str]:
    """service -> health status ("healthy", "starting", "unhealthy") of each container that
    has a healthcheck; a container that is not running counts as its state ("exited")."""
    states = {}
    for row in project_containers(project, all=True).values():
        health = row["State"].get("Health")
        test = (row["Config"].get("Healthcheck") or {}).get("Test")
        if health is None and test in (None, [], ["NONE"]):
            continue  # no healthcheck
        running = row["State"]["Status"] == "running"
        states[service_of(row)] = (health or {}).get("Status", "none") if running else row["State"]["Status"]
    return states


def wait_healthy(project: str, timeout: float, ignore: Iterable[str] = (), poll: float = 1.0) -> dict[str, str]:
    """Wait until every container of `project` with a healthcheck is healthy; returns the
    states. AssertionError naming each one that is not (and its last check's output)."""
    ignore = set(ignore)
    deadline = time.monotonic() + timeout
    while True:
        states = health_states(project)
        waiting = {s: h for s, h in states.items() if h != "healthy" and s not in ignore}
        if states and not waiting:
            return states
        if time.monotonic() >= deadline:
            break
        time.sleep(poll)
    if not states:
        raise AssertionError(f"{project}: no container with a healthcheck is running")
    details = []
    for row in project_containers(project, all=True).values():
        service = service_of(row)
        if service in waiting:
            log = (row["State"].get("Health") or {}).get("Log") or []
            last = log[-1]["Output"].strip().splitlines()[-1:] if log and log[-1].get("Output") else []
            details.append(f"  {service}: {waiting[service]}" + (f" (last check: {last[0][:200]})" if last else ""))
    raise AssertionError(f"{project}: not healthy after {timeout:g} s:\n" + "\n".join(sorted(details)))


def assert_recreated_exactly(before: Mapping[str, str], after: Mapping[str, str], expected: set[str]) -> None:
    """Exactly the services in `expected` got a new container; every other one kept its own."""
    assert set(before) == set(after), f"services before {sorted(before)} and after {sorted(after)} differ"
    recreated = {s for s in before if before[s] != after[s]}
    assert recreated == expected, (f"recreated {sorted(recreated)}, expected exactly {sorted(expected)} "
                                   f"(unexpected: {sorted(recreated - expected)}, "
                                   f"not recreated: {sorted(expected - recreated)})")


def project_volumes(project: str) -> set[str]:
    return set(_docker("volume", "ls", "-q", "--filter", f"label={PROJECT_LABEL}={project}").split())


def volumes_of(model: Mapping[str, Any], services: Iterable[str], project: str) -> set[str]:
    """The named volumes (as the engine names them: `<project>_<volume>`) that `services` mount."""
    names = set()
    for service in services:
        for mount in model["services"][service].get("volumes") or []:
            if mount.get("type") == "volume" and mount.get("source"):
                names.add(f"{project}_{mount['source']}")
    return names


def published_ports(container: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(host ip, host port) of every port the container publishes."""
    bindings = (container.get("HostConfig") or {}).get("PortBindings") or {}
    return [(b.get("HostIp", ""), b.get("HostPort", "")) for port in bindings.values() for b in port or []]


def model_host_ports(model: Mapping[str, Any], services: Iterable[str]) -> set[int]:
    """Host ports an uninterpolated model publishes for `services` (literal numbers only)."""
    ports = set()
    for service in services:
        for port in model["services"][service].get("ports") or []:
            published = str(port.get("published") or "")
            if published.isdigit():
                ports.add(int(published))
    return ports


def pull(images: Iterable[str], timeout: float) -> dict[str, str]:
    """`docker pull` each image; image -> the last line of its error, for those that fail."""
    failed = {}
    for image in sorted(set(images)):
        try:
            result = subprocess.run(["docker", "pull", "--quiet", image], capture_output=True, text=True,
                                    env=minimal_env(), stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            failed[image] = f"not pulled within {timeout:g} s"
            continue
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            failed[image] = lines[-1] if lines else f"exit {result.returncode}"
    return failed


def http_status(url: str, timeout: float = 5) -> int | str:
    """The HTTP status of GET `url`, or the reason there was none."""
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError) as exc:
        return f"no answer: {exc}"


def remove_project(project: str) -> None:
    """Remove every container, volume and network of a project, by label (no files needed)."""
    env = minimal_env()
    subprocess.run(["docker", "compose", "-p", project, "down", "-v", "--remove-orphans", "--timeout", "0"],
                   capture_output=True, env=env, cwd="/", stdin=subprocess.DEVNULL, timeout=300)
    label = f"label={PROJECT_LABEL}={project}"
    for kind, remove in (("ps -aq", ["rm", "-f", "-v"]), ("volume ls -q", ["volume", "rm", "-f"]),
                         ("network ls -q", ["network", "rm"])):
        listed = subprocess.run(["docker", *kind.split(), "--filter", label], capture_output=True, text=True,
                                env=env, stdin=subprocess.DEVNULL, timeout=60).stdout.split()
        if listed:
            subprocess.run(["docker", *remove, *listed], capture_output=True, env=env,
                           stdin=subprocess.DEVNULL, timeout=300)
