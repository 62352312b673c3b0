"""The stack file for `--target swarm`, rendered from compose's own model; it holds no value.

`docker stack deploy` ignores compose profiles and rejects some compose keys, so the
launcher renders the stack file itself from `docker compose config --no-interpolate`
(which needs no secret, and with Compose 2.40 lists every profile's services): only the
chosen profile's services, each compose feature that Swarm ignores or rejects mapped or
dropped on purpose (docs/swarm.md lists them). Values stay `${KEY}` references; the
launcher hands them to `docker stack deploy` in its environment, or as Docker secrets.

Pure functions only: no subprocess, no file.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from .keys import referenced_variables

STACK_FILE_VERSION = "3.8"  # the newest schema Engine 20.10's stack loader knows

# Images whose entrypoint reads `<VAR>_FILE` for these VARs, from each image's own source
# (docs/swarm.md cites each line). Keyed by the image's repository, tag and registry
# host left off. An image or variable not listed keeps its value in the environment.
FILE_ENV_SUPPORT: Mapping[str, frozenset[str]] = {
    # docker-library/postgres docker-entrypoint.sh: `file_env` for these four.
    "postgres": frozenset({"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "POSTGRES_INITDB_ARGS"}),
    # n8n's @n8n/config `readEnv`: `<ENV>_FILE` for every `@Env` variable (read when the
    # plain one is unset).
    "n8nio/n8n": frozenset({"DB_POSTGRESDB_DATABASE", "DB_POSTGRESDB_USER", "DB_POSTGRESDB_PASSWORD",
                            "DB_POSTGRESDB_HOST", "N8N_ENCRYPTION_KEY", "N8N_USER_MANAGEMENT_JWT_SECRET"}),
    # neo4j's docker-entrypoint.sh from 5.24.0 ("EXTRACT SECRETS FROM FILES"): any `X_FILE`
    # fills X; the stack pins 5.26.7.
    "neo4j": frozenset({"NEO4J_AUTH"}),
    # minio's cmd/common-main.go `loadEnvVarsFromFiles`: MINIO_ROOT_USER_FILE and
    # MINIO_ROOT_PASSWORD_FILE, an absolute path or a name under /run/secrets.
    "minio/minio": frozenset({"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}),
    # ClickHouse reads CLICKHOUSE_PASSWORD_FILE since 24.1, but a password set that way is
    # reported to fail at login (ClickHouse/ClickHouse#85926, open): not mapped.
}
# A service may declare more in its own compose file, for an image the table does not know:
# `x-file-env: [VAR, ...]`.
FILE_ENV_EXTENSION = "x-file-env"

# Service keys the stack loader rejects or Swarm ignores: dropped (docs/swarm.md says why).
DROPPED_SERVICE_KEYS = ("profiles", "container_name", "pull_policy", "build", "platform", "mem_limit",
                        "memswap_limit", "cpus", "cpu_shares", "runtime", "gpus", "links", FILE_ENV_EXTENSION)
DROPPED_TOP_LEVEL_KEYS = ("name", "include", "models")

SECRET_NAME_MAX = 64
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
# `${KEY}` or `${KEY:?message}` / `${KEY?message}`: the value is exactly KEY's value.
_EXACT_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?\?[^}]*)?\}")
_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)((:?)([-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def image_repository(image: str) -> str:
    """`docker.io/library/postgres:16.9-alpine@sha256:..` -> `postgres`; `n8nio/n8n:1.9` -> `n8nio/n8n`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rfind(":")]
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]  # a registry host
    if len(parts) == 2 and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts)


def file_env_vars(service: Mapping) -> frozenset[str]:
    """The VARs this service's image reads from `<VAR>_FILE`."""
    known = FILE_ENV_SUPPORT.get(image_repository(str(service.get("image") or "")), frozenset())
    declared = service.get(FILE_ENV_EXTENSION) or []
    return known | frozenset(str(v) for v in declared if isinstance(v, str))


def environment_map(environment, defined: frozenset[str] | None = None) -> dict:
    """A service's `environment` as a dict, whichever form compose printed it in.

    `docker compose config --no-interpolate` keeps the list form as written: `KEY=VALUE`
    (split at the first `=`, as compose does), or a bare `KEY`. A bare `KEY` (and `KEY:` with
    no value in the dict form) means, in compose, KEY's value from the env files or the shell:
    it becomes `${KEY}`, so that the stack loader takes it from the environment the launcher
    gives `docker stack deploy` (which holds only the keys the stack file interpolates; a bare
    entry left as it is would be filled from nothing). `defined`: the keys that have a value
    in this deploy; a bare entry for any other is left out, as compose leaves it unset (as
    `${KEY}` the container would get it set, and empty)."""
    if isinstance(environment, dict):
        pairs = list(environment.items())
    elif isinstance(environment, list):
        pairs = [(str(item).partition("=")[0], str(item).partition("=")[2] if "=" in str(item) else None)
                 for item in environment]
    else:
        return {}
    return {str(var): "${" + str(var) + "}" if value is None else value for var, value in pairs
            if var and not (value is None and defined is not None and str(var) not in defined)}


def _read_in_container(var: str, svc: Mapping) -> bool:
    """Does the service's own command, entrypoint, healthcheck (any field but its
    environment) read VAR from its environment (`$$VAR`, `$${VAR}`: a `$` the container's
    shell expands)? Such a VAR keeps its plain value: with only `<VAR>_FILE` set, that
    command would see it empty (the stack's postgres healthcheck reads `$$POSTGRES_USER`)."""
    rest = json.dumps({k: v for k, v in svc.items() if k not in ("environment", FILE_ENV_EXTENSION)})
    return re.search(r"\$\$\{?" + re.escape(var) + r"(?![A-Za-z0-9_])", rest) is not None


def exact_reference(value) -> str | None:
    """KEY when `value` is exactly `${KEY}` (or its required form `${KEY:?msg}`), else None."""
    if not isinstance(value, str):
        return None
    m = _EXACT_REFERENCE.fullmatch(value)
    return m.group(1) if m else None


def secret_name(stack: str, key: str, value: str, name_key: bytes) -> str:
    """The Docker secret's name for this stack, key and value: at most 64 characters from
    `[A-Za-z0-9-_.]`. It ends in an HMAC of stack, key and value (keyed by a bootstrap
    secret, so that listing secrets does not let anyone test guesses of a weak value the
    way a plain sha256 would); the HMAC covers the key, so two keys that shorten or
    sanitise to the same text still get different names."""
    mac = hmac.new(name_key, b"\0".join(s.encode("utf-8") for s in (stack, key, value)), hashlib.sha256)
    suffix = mac.hexdigest()[:24]
    stack_part = _NAME_CHARS.sub("-", stack)[:16].strip("-_.") or "stack"
    room = SECRET_NAME_MAX - len(stack_part) - len(suffix) - 2
    key_part = _NAME_CHARS.sub("-", key)[:room].strip("-_.") or "key"
    return f"{stack_part}_{key_part}_{suffix}"


def active(service: Mapping, profiles: tuple[str, ...]) -> bool:
    """Compose's rule: a service without profiles always runs; one with profiles only when
    one of them is chosen."""
    own = service.get("profiles") or []
    return not own or "*" in profiles or any(p in own for p in profiles)


def restart_policy(restart: str) -> dict:
    """Compose's `restart` as Swarm's `deploy.restart_policy` (Swarm ignores `restart`)."""
    if restart in ("no", ""):
        return {"condition": "none"}
    if restart.startswith("on-failure"):
        policy: dict = {"condition": "on-failure"}
        _, _, attempts = restart.partition(":")
        if attempts.strip().isdigit():
            policy["max_attempts"] = int(attempts)
        return policy
    return {"condition": "any"}  # always, unless-stopped: Swarm has no "stopped by hand"


@dataclass
class Rendered:
    stack: dict  # the stack file as data (JSON is valid YAML)
    services: list[str]
    interpolated: frozenset[str]  # the keys the stack file still interpolates
    file_keys: dict[str, set[str]] = field(default_factory=dict)  # key -> services reading it as a file
    constraints: dict[str, list[str]] = field(default_factory=dict)  # service -> node labels it needs
    notes: list[str] = field(default_factory=list)  # what was dropped or changed, for the user


def volume_label(stack: str, volume: str) -> str:
    """The node label a service with this named volume is placed by."""
    return f"{stack}.volume.{volume}"


def render(model: Mapping, stack: str, profiles: tuple[str, ...], secret_names: Mapping[str, str],
           defined: frozenset[str] | None = None) -> Rendered:
    """`model`: `docker compose config --no-interpolate --format json`. `secret_names`:
    key -> Docker secret name for every key that may be mapped to `<VAR>_FILE`; a key not
    in it stays in the environment. `defined`: the keys with a value (environment_map)."""
    model = copy.deepcopy(dict(model))
    project = str(model.get("name") or stack)
    notes: list[str] = []
    chosen = {name: svc for name, svc in (model.get("services") or {}).items() if active(svc, profiles)}
    file_keys: dict[str, set[str]] = {}
    constraints: dict[str, list[str]] = {}
    services = {}
    for name, svc in sorted(chosen.items()):
        services[name], labels = _service(name, svc, chosen, stack, secret_names, file_keys, notes, defined)
        if labels:
            constraints[name] = labels
    # `x-*` sections only hold anchors, which compose has already expanded where they are
    # used; left in, the stack file would interpolate (and so be handed) their keys too.
    top = {k: v for k, v in model.items()
           if k not in DROPPED_TOP_LEVEL_KEYS and k != "services" and not str(k).startswith("x-")}
    top["version"] = STACK_FILE_VERSION
    top["services"] = services
    for section in ("networks", "volumes"):
        # Compose names them `<project>_<key>`; the stack namespaces them the same way, so a
        # name compose made up is dropped (one from the user is kept).
        for key, spec in list((top.get(section) or {}).items()):
            if isinstance(spec, dict) and spec.get("name") == f"{project}_{key}":
                spec.pop("name")
                top[section][key] = spec or None
    used = sorted({source for svc in services.values() for ref in svc.get("secrets") or []
                   if isinstance(ref, dict) and (source := ref.get("source")) in secret_names.values()})
    if used:
        top.setdefault("secrets", {})
        for secret in used:
            top["secrets"][secret] = {"external": True, "name": secret}
    interpolated = referenced_variables(json.dumps(top))
    return Rendered(top, sorted(services), interpolated, file_keys, constraints, notes)


def _service(name: str, svc: dict, chosen: Mapping, stack: str, secret_names: Mapping[str, str],
             file_keys: dict[str, set[str]], notes: list[str],
             defined: frozenset[str] | None) -> tuple[dict, list[str]]:
    readable = file_env_vars(svc)
    out = {k: v for k, v in svc.items() if k not in DROPPED_SERVICE_KEYS}
    deploy = dict(out.get("deploy") or {})
    if "restart" in out:
        deploy.setdefault("restart_policy", restart_policy(str(out.pop("restart"))))
    depends = out.pop("depends_on", None)
    if depends:  # Swarm starts every service at once; the list form is accepted, then ignored
        out["depends_on"] = sorted(d for d in depends if d in chosen)
        if not out["depends_on"]:
            out.pop("depends_on")
    env_files = out.pop("env_file", None)
    if env_files:
        # Compose prints the long form ({path, required}); the stack loader takes paths, and
        # reads each file itself (compose resolved them to absolute paths).
        paths = [str(f.get("path")) if isinstance(f, dict) else str(f) for f in env_files
                 if not (isinstance(f, dict) and f.get("required") is False and not os.path.exists(str(f.get("path"))))]
        if paths:
            out["env_file"] = paths
    resources = deploy.get("resources") or {}
    if (resources.get("reservations") or {}).pop("devices", None) is not None:
        notes.append(f"{name}: deploy.resources.reservations.devices dropped (Swarm cannot reserve a GPU that "
                     "way; place it on a GPU node by a node label, docs/swarm.md)")
    health = out.get("healthcheck")
    if isinstance(health, dict) and health.pop("start_interval", None) is not None:
        notes.append(f"{name}: healthcheck start_interval dropped (the stack file format has none)")
    ports, unpublished = [], []
    for port in out.pop("ports", None) or []:
        if isinstance(port, dict):
            port = dict(port)
            if port.pop("host_ip", None) not in (None, "", "0.0.0.0", "::"):
                # Swarm publishes on every interface of every node: a port compose bound to
                # one address (127.0.0.1 in the private environment) would be opened wide.
                unpublished.append(str(port.get("published") or port.get("target")))
                continue
            if isinstance(port.get("published"), str) and port["published"].isdigit():
                port["published"] = int(port["published"])
        ports.append(port)
    if ports:
        out["ports"] = ports
    if unpublished:
        notes.append(f"{name}: port {', '.join(unpublished)} not published (compose binds it to one address; "
                     "Swarm would publish it on every interface of every node)")
    labels: list[str] = []
    volumes = []
    for volume in out.get("volumes") or []:
        if isinstance(volume, dict):
            volume = dict(volume)
            if isinstance(volume.get("bind"), dict):
                volume["bind"].pop("create_host_path", None)
                if not volume["bind"]:
                    volume.pop("bind")
            if volume.get("volume") == {}:
                volume.pop("volume")
            if volume.get("type") == "volume" and volume.get("source"):
                labels.append(volume_label(stack, str(volume["source"])))
        volumes.append(volume)
    if volumes:
        out["volumes"] = volumes
    if labels:
        placement = dict(deploy.get("placement") or {})
        placement["constraints"] = list(placement.get("constraints") or []) + [
            f"node.labels.{label} == true" for label in labels]
        deploy["placement"] = placement
    if deploy:
        out["deploy"] = deploy
    if "environment" in out:
        env = {}
        secrets = list(out.get("secrets") or [])
        for var, value in environment_map(out["environment"], defined).items():
            key = exact_reference(value)
            if key and var in readable and key in secret_names and not _read_in_container(var, svc):
                env[f"{var}_FILE"] = f"/run/secrets/{key}"
                if not any(isinstance(s, dict) and s.get("target") == key for s in secrets):
                    secrets.append({"source": secret_names[key], "target": key})
                file_keys.setdefault(key, set()).add(name)
            else:
                env[var] = value
        out["environment"] = env
        if secrets:
            out["secrets"] = secrets
    return out, labels


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """`${KEY}`, `${KEY:-default}`, `${KEY-default}`, `${KEY:?msg}`, `$KEY` and `$$` as the
    stack loader reads them; for `plan`'s comparison only (the deploy itself interpolates)."""
    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        key = m.group(1) or m.group(6)
        found = values.get(key)
        if m.group(2):
            colon, op, word = m.group(3), m.group(4), m.group(5)
            missing = found is None or (colon and found == "")
            if op == "-":
                return interpolate(word, values) if missing else found
            if op == "+":
                return "" if missing else interpolate(word, values)
        return found or ""

    return _REFERENCE.sub(one, text)
