"""What the stack's containers do after `up`: state, health, what `up` did to each, and the
URL a user opens. Read from the engine (`docker ps` by the project's label, engine.ps_argv),
never guessed; used for the summary on a terminal and for `--json`."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Mapping

from . import compose, engine
from .errors import LauncherError

# `public`: Caddy serves these services on the host name their variable names (Caddyfile).
PUBLIC_HOSTNAMES = {"n8n": "N8N_HOSTNAME", "open-webui": "WEBUI_HOSTNAME", "langfuse-web": "LANGFUSE_HOSTNAME",
                    "searxng": "SEARXNG_HOSTNAME"}
LOCAL_HOSTS = {"", "0.0.0.0", "::", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class Container:
    service: str
    ident: str
    state: str
    health: str
    urls: tuple[str, ...] = ()


@dataclass
class ServiceReport:
    name: str
    action: str  # created / recreated / unchanged (up); create / recreate / untouched (plan)
    state: str = ""
    health: str = ""
    urls: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # changed keys the service uses

    def as_dict(self) -> dict:
        return {"name": self.name, "action": self.action, "state": self.state, "health": self.health,
                "urls": list(self.urls), "changed_keys": list(self.keys)}


def parse_ps(text: str) -> dict[str, Container]:
    """Service -> its container, from `engine.ps_argv`'s lines (engine.PS_FORMAT)."""
    found: dict[str, Container] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 5 or not fields[1]:
            continue
        ident, service, state, status, ports = fields
        found[service] = Container(service, ident, state, _health(status), _urls(ports))
    return found


def _health(status: str) -> str:
    """The health the engine appends to a container's status ("Up 3 minutes (healthy)")."""
    for marker, health in (("(healthy)", "healthy"), ("(unhealthy)", "unhealthy"), ("(health: starting)", "starting")):
        if marker in status:
            return health
    return ""


_PUBLISHED = re.compile(r"^(.*):(\d+)(?:-(\d+))?->\d+(?:-\d+)?/(\w+)$")


def _urls(ports: str) -> tuple[str, ...]:
    """http URLs of the TCP ports the engine publishes ("127.0.0.1:5678->5678/tcp, :::80->80/tcp")."""
    urls: list[str] = []
    for entry in ports.split(", "):
        match = _PUBLISHED.match(entry.strip())
        if not match or match.group(4) != "tcp":
            continue
        host = match.group(1).removeprefix("[").removesuffix("]")  # Docker CLI 27.3+: `[::]:80->80/tcp`
        first = int(match.group(2))
        last = min(int(match.group(3) or first), first + 99)
        shown = "localhost" if host in LOCAL_HOSTS else (f"[{host}]" if ":" in host else host)
        for port in range(first, last + 1):
            url = f"http://{shown}:{port}"
            if url not in urls:
                urls.append(url)
    return tuple(urls)


def containers(project: str, env: Mapping[str, str]) -> dict[str, Container]:
    """The project's containers now; {} when Docker cannot say (the summary is best effort)."""
    try:
        return parse_ps(engine.project_containers(project, env))
    except engine.Unanswered:
        return {}


def public_urls(service: str, variables: Mapping[str, str]) -> list[str]:
    name = PUBLIC_HOSTNAMES.get(service)
    host = variables.get(name, "") if name else ""
    return [f"https://{host}"] if host else []


def after_up(before: dict[str, Container], after: dict[str, Container], environment: str,
             variables: Mapping[str, str]) -> list[ServiceReport]:
    """Each service `up` left a container for: created, recreated (a new id) or unchanged."""
    reports = []
    for name in sorted(after):
        now, old = after[name], before.get(name)
        action = "created" if old is None else ("recreated" if old.ident != now.ident else "unchanged")
        urls = public_urls(name, variables) if environment == "public" else []
        reports.append(ServiceReport(name, action, now.state, now.health, urls or list(now.urls)))
    return reports


def variables_used(target: compose.Target, env: Mapping[str, str]) -> dict[str, set[str]]:
    """Service -> the variables its definition interpolates (`${NAME}`, `$NAME`), read from
    the files without interpolation (no secret needed); {} when compose cannot say."""
    import re

    try:
        result = compose.capture(target.config_json(interpolate=False), env, target.project_dir, timeout=60)
        services = json.loads(result.stdout)["services"]
    except (LauncherError, ValueError, KeyError, TypeError):
        return {}
    used = {}
    for name, definition in services.items():
        text = json.dumps(definition).replace("$$", "")
        used[name] = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    return used
