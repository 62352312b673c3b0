"""What the stack's containers do after `up`: state, health, what `up` did to each, and the
URL a user opens. Read from compose itself (`docker compose ps --all --format json`), never
guessed; used for the summary on a terminal and for `--json`."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping

from . import compose
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
    """Service -> its container, from `ps --format json` (one object a line, or one array)."""
    text = text.strip()
    if not text:
        return {}
    try:
        rows = [json.loads(text)] if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:
        return {}
    flat = []
    for row in rows:
        flat.extend(row if isinstance(row, list) else [row])
    found: dict[str, Container] = {}
    for row in flat:
        if not isinstance(row, dict) or not row.get("Service"):
            continue
        urls = []
        for pub in row.get("Publishers") or ():
            port = pub.get("PublishedPort") or 0
            if not port or pub.get("Protocol", "tcp") != "tcp":
                continue
            host = str(pub.get("URL") or "")
            url = f"http://{'localhost' if host in LOCAL_HOSTS else host}:{port}"
            if url not in urls:
                urls.append(url)
        found[str(row["Service"])] = Container(str(row["Service"]), str(row.get("ID", "")), str(row.get("State", "")),
                                               str(row.get("Health", "")), tuple(urls))
    return found


def containers(target: compose.Target, env: Mapping[str, str]) -> dict[str, Container]:
    """The project's containers now; {} when compose cannot say (the summary is best effort)."""
    try:
        result = compose.capture(target.ps_json(), env, target.project_dir, timeout=60)
    except LauncherError:
        return {}
    return parse_ps(result.stdout) if result.returncode == 0 else {}


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
