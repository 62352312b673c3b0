"""`doctor`: every check a launch depends on, each a pass/fail line with the fix.

Checks never print a value: they name keys, files and versions. Everything they show also
passes through the masker of the known secret values, as a last line of defence. The slow
probes (docker, compose, the Infisical CLI, the server, git) run concurrently, each with
stdin closed and a timeout; a missing program is a failed check, never a traceback.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

from . import compose, engine, gitcheck
from .envfile import Header, read_exported, read_header
from .errors import BAD_CONFIG, FAILED, OK
from .infisical_source import (
    CLIENT_ID,
    CLIENT_SECRET,
    Auth,
    auth_method,
    cli_env,
    first_line,
)
from .keys import Classes
from .masking import Masker
from .output import Output
from .process import Timeout, run_captured
from .secrets_source import humanize_age, request_for
from .settings import DEFAULT_MAX_STALE, Settings, parse_duration

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"

# What the launcher asks of Compose, and the release that brought it (docker/docs,
# content/manuals/compose/releases/release-notes.md). `up` and `down` need the first
# three; `plan` needs the last two.
COMPOSE_FEATURES = (
    ((2, 17, 0), "up --wait-timeout (starting the local Infisical)", "up"),
    ((2, 19, 0), "--progress as a top-level flag (up, down)", "up"),
    ((2, 18, 0), "--dry-run (plan)", "plan"),
    ((2, 29, 0), "--progress json (plan)", "plan"),
)
COMPOSE_MINIMUM = max(version for version, _, _ in COMPOSE_FEATURES)

PROBE_TIMEOUT = 10.0  # seconds for each docker / infisical / git call
HTTP_TIMEOUT = 3.0  # seconds for GET /api/status
MAX_AGE = parse_duration(DEFAULT_MAX_STALE)  # what `up` uses without --max-stale

INSTALL_CLI = ("install the Infisical CLI (https://infisical.com/docs/cli/overview: "
               "`npm install -g @infisical/cli`, `brew install infisical/get-cli/infisical`, ...) "
               "and make sure it is on PATH")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass | fail | warn | skip
    detail: str
    fix: str = ""


# ------------------------------------------------------------------------------ helpers

def _which(program: str, shell: Mapping[str, str]) -> str | None:
    return shutil.which(program, path=shell.get("PATH", os.defpath))


def _origin(name: str, settings: Settings) -> str:
    """Where a variable comes from, as the launcher reads it (shell beats .env)."""
    return "the shell" if settings.shell.get(name) else settings.env_file.name


def _version_tuple(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def _dotted(version: Sequence[int]) -> str:
    return ".".join(str(part) for part in version)


def _run(argv: list[str], env: Mapping[str, str], cwd: Path | None = None, timeout: float = PROBE_TIMEOUT):
    return run_captured(argv, env, timeout, cwd=str(cwd) if cwd else None)


def _workspace_file(project_dir: Path) -> dict:
    """`.infisical.json` as the CLI finds it: in the working directory or a parent."""
    for folder in (project_dir, *project_dir.parents):
        candidate = folder / ".infisical.json"
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _holds(names: Sequence[str]) -> str:
    return "holds" if len(names) == 1 else "hold"


def _names(keys: Sequence[str], limit: int = 12) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


# ------------------------------------------------------------------------------ docker

def check_engine(settings: Settings) -> Check:
    name = "docker-engine"
    docker = _which("docker", settings.shell)
    if docker is None:
        return Check(name, FAIL, "the `docker` command is not on PATH",
                     "install Docker Engine (Linux) or Docker Desktop, with the Compose v2 plugin")
    try:
        # `{{json .}}`, not `json`: Debian 12's CLI (20.10) prints the word "json" for the latter.
        result = _run([docker, "version", "--format", "{{json .}}"], settings.shell)
    except Timeout as exc:
        return Check(name, FAIL, f"`docker version` gave {exc}: the engine does not answer",
                     "restart Docker (systemctl restart docker, or restart Docker Desktop)")
    except OSError as exc:
        return Check(name, FAIL, f"cannot run docker: {exc.strerror or exc.__class__.__name__}",
                     "reinstall Docker, or check the permissions of the `docker` command")
    server = None
    try:
        server = (json.loads(result.stdout) or {}).get("Server")
    except (ValueError, AttributeError):
        pass
    if result.returncode == 0 and isinstance(server, dict):
        version = server.get("Version", "?")
        api = server.get("ApiVersion")
        return Check(name, PASS, f"Docker Engine {version} reachable" + (f" (API {api})" if api else ""))
    reason = first_line(result.stderr, Masker())
    if "permission denied" in reason.lower():
        fix = ("let your user use Docker: `sudo usermod -aG docker $USER`, then log in again "
               "(or run with sudo)")
    else:
        fix = "start Docker (systemctl start docker, or open Docker Desktop); check DOCKER_HOST and `docker context ls`"
    return Check(name, FAIL, f"the Docker engine is not reachable: {reason}", fix)


def check_swarm(settings: Settings, masker: Masker) -> Check:
    """`--target swarm`: the engine must be a swarm manager, and `.env` must key the secrets'
    names (by the rule `up` applies: swarm_launch.name_key, so the two never disagree)."""
    from . import swarm
    from .errors import LauncherError
    from .swarm_launch import name_key

    name = "swarm"
    try:
        swarm.require_manager(settings.shell, masker.mask)
        nodes = swarm.node_labels(settings.shell, masker.mask)
        name_key(settings)
    except LauncherError as exc:
        return Check(name, FAIL, exc.message, exc.hint)
    return Check(name, PASS, f"this engine is a swarm manager; {_plural(len(nodes), 'node')} ready and active")


def check_compose(settings: Settings) -> Check:
    name = "docker-compose"
    need = (f"{_dotted(COMPOSE_MINIMUM)} or later; "
            + ", ".join(f"{what} came in {_dotted(v)}" for v, what, _ in sorted(COMPOSE_FEATURES)))
    docker = _which("docker", settings.shell)
    if docker is None:
        return Check(name, FAIL, "the `docker` command is not on PATH, so neither is `docker compose`",
                     "install Docker Engine with the Compose v2 plugin, or Docker Desktop")
    try:
        result = _run([docker, *compose.version_argv()[1:]], settings.shell)
    except Timeout as exc:
        return Check(name, FAIL, f"`docker compose version` gave {exc}", "reinstall the Compose v2 plugin")
    except OSError as exc:
        return Check(name, FAIL, f"cannot run docker: {exc.strerror or exc.__class__.__name__}",
                     "reinstall Docker")
    version = _version_tuple(result.stdout) if result.returncode == 0 else None
    if version is None:
        return Check(name, FAIL, f"Compose v2 is not installed (`docker compose` fails: "
                     f"{first_line(result.stderr or result.stdout, Masker())})",
                     "install the Compose v2 plugin (package docker-compose-plugin, or Docker Desktop); "
                     "the old `docker-compose` v1 is not enough")
    shown = f"Compose {_dotted(version)}"
    if version[0] < 2:
        return Check(name, FAIL, f"{shown} is Compose v1", f"install the Compose v2 plugin, {need}")
    missing = [(v, what, used_by) for v, what, used_by in COMPOSE_FEATURES if version < v]
    if any(used_by == "up" for _, _, used_by in missing):
        return Check(name, FAIL, f"{shown} lacks " + ", ".join(what for _, what, _ in missing),
                     f"upgrade Docker Compose to {need}")
    if missing:
        return Check(name, WARN, f"{shown} runs `up`, but `plan` needs " + ", ".join(what for _, what, _ in missing),
                     f"upgrade Docker Compose to {_dotted(COMPOSE_MINIMUM)} or later")
    return Check(name, PASS, f"{shown} (the launcher needs >= {_dotted(COMPOSE_MINIMUM)})")


# ------------------------------------------------------------------------------ infisical

def check_cli(settings: Settings, cli: str | None) -> Check:
    name = "infisical-cli"
    if cli is None:
        return Check(name, FAIL, "the Infisical CLI (`infisical`) is not on PATH", INSTALL_CLI)
    try:
        result = _run([cli, "--version"], settings.shell, settings.project_dir)
    except Timeout as exc:
        return Check(name, FAIL, f"`infisical --version` gave {exc}", INSTALL_CLI)
    except OSError as exc:
        return Check(name, FAIL, f"cannot run {cli}: {exc.strerror or exc.__class__.__name__}", INSTALL_CLI)
    m = re.search(r"version\s+v?(\d+\.\d+\.\d+\S*)", result.stdout)
    if result.returncode != 0 or m is None:
        return Check(name, FAIL, f"`infisical --version` failed (exit {result.returncode})", INSTALL_CLI)
    return Check(name, PASS, f"Infisical CLI {m.group(1)} at {cli}")


def check_auth(settings: Settings, cli: str | None, auth: Auth, masker: Masker) -> Check:
    name = "infisical-auth"
    env_name = settings.env_file.name
    alternatives = (f"set {CLIENT_ID} and {CLIENT_SECRET} (a machine identity) or INFISICAL_TOKEN in {env_name}, "
                    "or log in with `infisical login`")
    if auth.method == "incomplete machine identity":
        return Check(name, FAIL, auth.source, f"set both {CLIENT_ID} and {CLIENT_SECRET} in {env_name}")
    if auth.method == "token":
        return Check(name, PASS, f"token: {auth.source} (checked only by an export)")
    if cli is None:
        return Check(name, SKIP, f"{auth.method} ({auth.source}): cannot be checked without the Infisical CLI",
                     "install the Infisical CLI (see infisical-cli)")
    domain = [f"--domain={settings.api_url}"] if settings.api_url else []
    if auth.method == "machine identity":
        # The same login the launch does; its stdout (the access token) is dropped unread.
        argv = [cli, "login", "--method=universal-auth", "--silent", "--plain", *domain]
        what = "machine identity login"
    else:
        argv = [cli, "login", "status", "--json", *domain]  # exits 1 when not logged in
        what = "`infisical login status`"
    try:
        result = _run(argv, cli_env(settings.shell, request_for(settings)), settings.project_dir, min(settings.timeout, PROBE_TIMEOUT))
    except Timeout as exc:
        return Check(name, FAIL, f"{auth.method}: {what} gave {exc}",
                     "check that the Infisical server answers (see infisical-server)")
    except OSError as exc:
        return Check(name, FAIL, f"cannot run {cli}: {exc.strerror or exc.__class__.__name__}", INSTALL_CLI)
    if auth.method == "machine identity":
        if result.returncode == 0 and result.stdout.strip():
            return Check(name, PASS, f"machine identity logs in ({auth.source})")
        return Check(name, FAIL, f"machine identity login failed (exit {result.returncode}): "
                     f"{first_line(result.stderr, masker)}",
                     f"check {CLIENT_ID} and {CLIENT_SECRET} in {env_name} (Organization > Access Control > "
                     "Identities) and that the server answers")
    if result.returncode == 0:
        who = ""
        try:
            data = json.loads(result.stdout)
            if isinstance(data, dict) and isinstance(data.get("email"), str) and data["email"]:
                who = f" as {data['email']}"
        except ValueError:
            pass
        return Check(name, PASS, f"user session: logged in{who}")
    return Check(name, FAIL, "no token, no machine identity, and no user session (`infisical login status` "
                 f"exit {result.returncode})", alternatives)


def check_setup(settings: Settings, auth: Auth) -> Check:
    """Has `setup` been done: a machine identity and a project in .env, no half-done run?"""
    from .setup import TOKEN_FILE

    name = "setup"
    if (settings.project_dir / TOKEN_FILE).exists():
        return Check(name, WARN, f"a setup run stopped before the end ({TOKEN_FILE} holds its admin token)",
                     "run `python start_services.py setup` again: it continues from what exists")
    missing = [key for key in (CLIENT_ID, CLIENT_SECRET) if key not in settings.credentials]
    if not settings.project_id:
        missing.append("INFISICAL_PROJECT_ID")
    if auth.method == "token" and settings.project_id:
        return Check(name, PASS, "a token and a project id are set (setup is not needed)")
    if not missing:
        return Check(name, PASS, "machine identity and project id are in " + settings.env_file.name)
    return Check(name, WARN, f"not set up: {', '.join(missing)} missing (the stack starts from .env alone)",
                 "python start_services.py setup --admin-email you@example.com")


def check_project(settings: Settings, auth: Auth) -> Check:
    name = "infisical-project"
    where = f"environment '{settings.infisical_env}', path '{settings.infisical_path}'"
    if settings.project_id:
        origin = _origin("INFISICAL_PROJECT_ID", settings) if (
            settings.shell.get("INFISICAL_PROJECT_ID") or settings.dotenv.get("INFISICAL_PROJECT_ID")) else "--project-id"
        return Check(name, PASS, f"project {settings.project_id} (INFISICAL_PROJECT_ID from {origin}), {where}")
    workspace = _workspace_file(settings.project_dir).get("workspaceId")
    fix = (f"set INFISICAL_PROJECT_ID=<id> in {settings.env_file.name} "
           "(Infisical: Project settings > Project ID)")
    if workspace and auth.method == "user session":
        return Check(name, PASS, f"project {workspace} (.infisical.json workspaceId), {where}")
    if workspace:
        return Check(name, FAIL, f"a {auth.method} needs INFISICAL_PROJECT_ID; .infisical.json's "
                     "workspaceId serves user sessions only", fix)
    return Check(name, FAIL, "no project id: INFISICAL_PROJECT_ID is not set and there is no .infisical.json",
                 fix + (", or run `infisical init`" if auth.method == "user session" else ""))


def _domain(settings: Settings) -> tuple[str, str]:
    """(the domain the CLI would use, where it is set); ("", "") for Infisical Cloud."""
    if settings.api_url:
        return settings.api_url, settings.api_url_var
    domain = _workspace_file(settings.project_dir).get("domain")
    if isinstance(domain, str) and domain:
        return domain, ".infisical.json domain"
    return "", ""


def status_url(domain: str) -> str:
    """`<domain>/api/status`; the CLI appends /api to a domain that lacks it."""
    base = domain.rstrip("/")
    if base.endswith("/api"):
        base = base[: -len("/api")]
    return base + "/api/status"


def _display_url(url: str) -> str:
    """The URL without user:password@, query or fragment."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _proxies(host: str, shell: Mapping[str, str]) -> dict[str, str]:
    """The proxies the CLI would use, from the user's shell (not this process's environment,
    which tests and wrappers may differ in); none for loopback or a NO_PROXY match."""
    if host in {"localhost", "127.0.0.1", "::1"}:
        return {}
    no_proxy = shell.get("no_proxy") or shell.get("NO_PROXY") or ""
    for entry in (e.strip().lstrip(".") for e in no_proxy.split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return {}
    proxies = {}
    for scheme in ("http", "https"):
        value = shell.get(f"{scheme}_proxy") or shell.get(f"{scheme.upper()}_PROXY")
        if value:
            proxies[scheme] = value
    return proxies


def check_server(settings: Settings) -> Check:
    name = "infisical-server"
    domain, origin = _domain(settings)
    if not domain:
        return Check(name, SKIP, "INFISICAL_API_URL is not set: the CLI uses Infisical Cloud (not probed)",
                     f"set INFISICAL_API_URL in {settings.env_file.name} for a self-hosted Infisical")
    try:
        url = status_url(domain)
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return Check(name, FAIL, f"{origin} is not a URL", f"set {origin} to e.g. http://localhost:8010")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Check(name, FAIL, f"{origin} is not an http(s) URL", f"set {origin} to e.g. http://localhost:8010")
    shown = _display_url(url)
    if settings.infisical_is_local:
        fix = (f"start the local Infisical: `python start_services.py up` starts it first, or "
               f"`docker compose -p {settings.infisical_project_name} -f infisical/docker-compose.yml "
               f"--env-file {settings.env_file.name} up -d --wait`")
    else:
        fix = f"check {origin} and that the Infisical server is up and reachable from here"
    request = urllib.request.Request(url, headers={"User-Agent": "start_services-doctor"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(_proxies(parts.hostname, settings.shell)))
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT) as response:
            code = response.status
    except urllib.error.HTTPError as exc:
        return Check(name, FAIL, f"{shown} answered HTTP {exc.code}", fix)
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = getattr(reason, "strerror", None) or str(reason)
        return Check(name, FAIL, f"no answer from {shown}: {text}", fix)
    except (OSError, ValueError) as exc:  # timeouts, resets, bad URLs
        text = "no answer within {:g} s".format(HTTP_TIMEOUT) if "timed out" in str(exc) else exc.__class__.__name__
        return Check(name, FAIL, f"no answer from {shown}: {text}", fix)
    if code != 200:
        return Check(name, FAIL, f"{shown} answered HTTP {code}", fix)
    return Check(name, PASS, f"{shown} answers ({origin})")


# ------------------------------------------------------------------------------ env files

def check_env_file(settings: Settings) -> Check:
    name = "env-file"
    if settings.env_file.is_file():
        return Check(name, PASS, f"{settings.env_file.name} present ({len(settings.dotenv)} keys)")
    return Check(name, FAIL, f"no {settings.env_file.name} in {settings.env_file.parent}",
                 "run `python start_services.py init` to write one from .env.example")


def check_catalog(classes: Classes) -> Check:
    name = "env-example"
    if classes.problem:
        return Check(name, FAIL, classes.problem, "fix .env.example (docs/env-example-format.md), or restore it with git")
    return Check(name, PASS, f".env.example catalogs {len(classes.entries)} keys")


def check_placeholders(settings: Settings, classes: Classes) -> Check:
    """Secret and bootstrap keys left as .env.example has them: its non-empty default, or
    empty where init would have generated a value. A key the export sets is fine: compose
    takes .env.infisical's value over .env's."""
    name = "placeholders"
    if not settings.env_file.is_file():
        return Check(name, SKIP, f"no {settings.env_file.name}")
    if classes.problem:
        return Check(name, SKIP, "no usable .env.example (see env-example)")
    exported = set(read_exported(settings.output))
    left = []
    for key, entry in classes.entries.items():
        if not entry.sensitive or key not in settings.dotenv or key in exported:
            continue
        value = settings.dotenv[key]
        if (entry.default and value == entry.default) or (not value and entry.fmt):
            left.append(key)
    if not left:
        return Check(name, PASS, "no secret left as .env.example has it")
    return Check(name, FAIL, f"left as .env.example has them (empty or the example value): {_names(left)}",
                 "run `python start_services.py init` (it fills empty values and changes nothing that is set), "
                 f"or set them in {settings.env_file.name}")


def check_secrets_in_dotenv(settings: Settings, classes: Classes) -> Check:
    """Secrets that `migrate` would move (the same classifier decides)."""
    name = "secrets-in-env-file"
    if not settings.env_file.is_file():
        return Check(name, SKIP, f"no {settings.env_file.name}")
    if classes.problem:
        return Check(name, SKIP, "no usable .env.example (see env-example): migrate would refuse to judge")
    found = [key for key, value in settings.dotenv.items() if classes.movable(key, value)]
    if not found:
        return Check(name, PASS, f"no secret (bootstrap ones aside) in {settings.env_file.name}")
    return Check(name, FAIL, f"{_plural(len(found), 'secret')} still in {settings.env_file.name}: {_names(found)}",
                 "move them into Infisical: `python start_services.py migrate` (a dry run), then "
                 "`python start_services.py migrate --apply`")


def check_short_secrets(settings: Settings, classes: Classes) -> Check:
    """Secrets shorter than the masking length are never masked (they would blank out
    ordinary words), and are weak anyway."""
    from .masking import MIN_LENGTH

    name = "short-secrets"
    short = [key for key, value in settings.dotenv.items() if value and classes.masked(key) and len(value) < MIN_LENGTH]
    short += [key for key, secret in read_exported(settings.output).items() if 0 < len(secret) < MIN_LENGTH]
    short = sorted(set(short))
    if not short:
        return Check(name, PASS, f"every secret has at least {MIN_LENGTH} characters")
    return Check(name, WARN, f"shorter than {MIN_LENGTH} characters, so never masked in output and easy to guess: "
                 f"{_names(short)}", "replace them with long random values (`python start_services.py init` "
                 "generates them for keys that are empty)")


def check_temp_files(settings: Settings) -> Check:
    from .envfile import temp_files

    name = "temp-files"
    left = [p.name for path in (settings.env_file, settings.output) for p in temp_files(path)]
    if not left:
        return Check(name, PASS, "no temp file left by an interrupted write")
    return Check(name, WARN, f"left by an interrupted write (they may hold secrets): {_names(left)}",
                 "the next `up`, `init` or `migrate` removes them; or delete them yourself")


def published(spec) -> list[tuple[str, int, str]]:
    """(host ip, host port, protocol) of one `ports:` entry as `config --no-interpolate`
    lists it; a port spelled with a variable, or none published, gives nothing."""
    if isinstance(spec, dict):
        ip, ports, proto = str(spec.get("host_ip") or ""), str(spec.get("published") or ""), str(spec.get("protocol") or "tcp")
    else:
        text, _, proto = str(spec).partition("/")
        parts = text.rsplit(":", 2) if text.count(":") <= 2 or "]" not in text else [
            text[: text.rindex("]") + 1], *text[text.rindex("]") + 2:].split(":")]
        if len(parts) < 2:
            return []
        ip, ports = (parts[0] if len(parts) == 3 else ""), parts[-2]
        proto = proto or "tcp"
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", ports)
    if not m:
        return []
    first, last = int(m.group(1)), int(m.group(2) or m.group(1))
    return [(ip.strip("[]"), port, proto) for port in range(first, min(last, first + 100) + 1)]


def _port_free(ip: str, port: int, proto: str) -> bool | None:
    """Can this machine bind it now? None when we may not ask (a privileged port)."""
    import socket

    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    try:
        with socket.socket(family, kind) as sock:
            if os.name == "posix":  # ignore TIME_WAIT; on Windows this flag would steal the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
    except PermissionError:
        return None
    except OSError:
        return False
    return True


def check_ports(settings: Settings) -> Check:
    """The host ports the chosen profile and environment publish, and the local Infisical's:
    free, or held by this project's own containers."""
    name = "ports"
    files = tuple(f for f in settings.compose_files_with_override if f.is_file())
    if not files:
        return Check(name, SKIP, "no compose file")
    wanted: list[tuple[str, str, int, str]] = []
    targets = [(compose.Target(settings.project_dir, settings.project_name, files, ()), settings.profile)]
    if settings.infisical_is_local:
        targets.append((compose.Target(settings.project_dir, settings.infisical_project_name,
                                       (settings.infisical_compose_file,), ()), None))
    for target, profile in targets:
        result = compose.capture(target.config_json(interpolate=False), settings.shell, settings.project_dir, 30)
        if result.returncode != 0:
            return Check(name, SKIP, f"docker compose cannot read {target.files[0].name}: "
                         f"{first_line(compose.redact(result.stderr), Masker())}")
        for service, spec in (json.loads(result.stdout).get("services") or {}).items():
            profiles = spec.get("profiles") or []
            if profiles and profile not in profiles:
                continue
            wanted += [(service, *port) for entry in spec.get("ports") or [] for port in published(entry)]
    ours: set[tuple[int, str]] = set()
    for project in (settings.project_name, settings.infisical_project_name):
        try:
            ours |= engine.published_ports(project, settings.shell)
        except engine.Unanswered:
            pass
    taken, unchecked = [], []
    for service, ip, port, proto in wanted:
        if (port, proto) in ours:
            continue
        free = _port_free(ip, port, proto)
        if free is False:
            taken.append(f"{service} {ip + ':' if ip else ''}{port}{'/' + proto if proto != 'tcp' else ''}")
        elif free is None:
            unchecked.append(str(port))
    profile = f"profile {settings.profile or 'none'}, {settings.environment}"
    if taken:
        return Check(name, FAIL, f"already in use ({profile}): {_names(taken)}",
                     "stop what holds them (`ss -ltnup`, `docker ps`), or change the host port in "
                     f"docker-compose.override.{settings.environment}.yml")
    note = f"; {', '.join(unchecked)} not checked (privileged ports need root)" if unchecked else ""
    return Check(name, PASS, f"{len(wanted)} published ports free or this project's own ({profile}){note}")


def _private_mode(name: str, path: Path, holds: str, absent: str) -> Check:
    """Is a file that holds secrets private to its owner (POSIX modes)?"""
    if os.name != "posix":
        return Check(name, SKIP, "file modes are POSIX-only: on Windows the file inherits its folder's ACL")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return Check(name, SKIP, absent)
    except OSError as exc:
        return Check(name, FAIL, f"cannot read {path.name}: {exc.strerror}", f"check the permissions of {path}")
    if mode & 0o077:
        return Check(name, FAIL, f"{path.name} is mode {mode:04o}: other users (group or world) can read {holds}",
                     f"chmod 600 {path.name}")
    return Check(name, PASS, f"{path.name} is mode {mode:04o}")


def check_env_mode(settings: Settings) -> Check:
    """.env holds Infisical's keys, the admin password and the machine identity's secret."""
    return _private_mode("env-mode", settings.env_file, "Infisical's keys and credentials",
                         f"no {settings.env_file.name}")


def check_export_mode(settings: Settings) -> Check:
    return _private_mode("export-mode", settings.output, "its secrets",
                         f"no {settings.output.name} yet (`up` writes it, mode 0600)")


def _where(project: str, environment: str, path: str) -> str:
    return f"project '{project or '(none)'}', environment '{environment}', path '{path}'"


def check_export_age(settings: Settings, now: datetime | None = None) -> Check:
    name = "export-age"
    path = settings.output
    if not path.exists():
        return Check(name, SKIP, f"no {path.name} yet")
    header: Header | None = read_header(path)
    if header is None:
        return Check(name, WARN, f"{path.name} has no header naming its source: the launcher did not write it, "
                     "so it is never used as the last good export",
                     "delete it; `python start_services.py up` writes a new one")
    source = header.source
    current = (settings.project_id, settings.infisical_env, settings.infisical_path)
    source_fields = (source.project, source.environment, source.path)
    if source_fields != current:
        return Check(name, WARN, f"{path.name} came from {_where(*source_fields)}, not from the current "
                     f"{_where(*current)}: it is never used as the last good export",
                     "run `python start_services.py up` with Infisical reachable to export again")
    if header.exported_at is None:
        return Check(name, WARN, f"{path.name} does not say when it was exported",
                     "run `python start_services.py up` with Infisical reachable to export again")
    age = (now or datetime.now(timezone.utc)) - header.exported_at
    if age > MAX_AGE:
        return Check(name, WARN, f"{path.name} is {humanize_age(age)} old, older than the default --max-stale "
                     f"{humanize_age(MAX_AGE)}: a launch without Infisical will not use it",
                     "run `python start_services.py up` with Infisical reachable to export again")
    return Check(name, PASS, f"{path.name} exported {humanize_age(age)} ago")


def check_git(settings: Settings) -> Check:
    name = "git-ignore"
    git = _which("git", settings.shell)
    if git is None:
        return Check(name, SKIP, "git is not installed: nothing to commit the secret files to")
    files = [settings.env_file, settings.output]
    states = {}
    try:
        for path in files:
            if path.parent.is_dir():
                states[path] = gitcheck.state(path, settings.shell, git) if path.exists() else None
    except (Timeout, OSError) as exc:
        return Check(name, SKIP, f"git did not answer ({exc.__class__.__name__})")
    if not any(state for state in states.values()):
        return Check(name, SKIP, f"{settings.project_dir} is not in a git work tree")
    tracked = [p.name for p, s in states.items() if s == gitcheck.TRACKED]
    exposed = [p.name for p, s in states.items() if s == gitcheck.EXPOSED]
    if tracked:
        return Check(name, FAIL, f"git tracks {' and '.join(tracked)}, which {_holds(tracked)} secrets",
                     f"`git rm --cached {' '.join(tracked)}`, add {'it' if len(tracked) == 1 else 'them'} to "
                     ".gitignore, and rotate the secrets that were committed")
    if exposed:
        return Check(name, FAIL, f".gitignore does not cover {' and '.join(exposed)}, which {_holds(exposed)} secrets",
                     f"add {' and '.join(exposed)} to .gitignore")
    return Check(name, PASS, f"git ignores {' and '.join(p.name for p in states)}")


def check_shadowing(settings: Settings) -> Check:
    """Keys of .env / .env.infisical that the shell exports with another value: compose
    takes the shell's over both files."""
    name = "shell-shadowing"
    from .keys import shadowed_keys

    shadowed = shadowed_keys(settings, read_exported(settings.output))
    if not shadowed:
        return Check(name, PASS, f"no shell variable overrides a key of {settings.env_file.name} "
                     f"or {settings.output.name}")
    return Check(name, FAIL, f"your shell exports {_names(shadowed)}: docker compose would use the shell's value "
                 f"over {settings.env_file.name} and {settings.output.name}",
                 "unset " + " ".join(shadowed) + " (and remove the export from your shell profile)")


# ------------------------------------------------------------------------------ running

def _guarded(name: str, probe: Callable[[], Check]) -> Callable[[], Check]:
    """A bug in one check must not hide the others, nor print a traceback (locals may hold
    values): it becomes a failed check naming the exception type only."""
    def run() -> Check:
        try:
            return probe()
        except Exception as exc:  # noqa: BLE001
            return Check(name, FAIL, f"doctor could not run this check ({exc.__class__.__name__})",
                         "report this as a bug in the launcher")
    return run


def collect(settings: Settings, swarm_target: bool = False) -> list[Check]:
    """Every check, in a fixed order; the slow ones run concurrently."""
    from .keys import classify
    from .prepare import seed_masker

    classes = classify(settings)
    masker = seed_masker(settings, classes)
    cli = _which("infisical", settings.shell)
    auth = auth_method(settings.credentials, settings.shell, settings.env_file.name)
    probes: list[tuple[str, Callable[[], Check]]] = [
        ("docker-engine", lambda: check_engine(settings)),
        ("docker-compose", lambda: check_compose(settings)),
        ("infisical-cli", lambda: check_cli(settings, cli)),
        ("infisical-auth", lambda: check_auth(settings, cli, auth, masker)),
        ("infisical-project", lambda: check_project(settings, auth)),
        ("setup", lambda: check_setup(settings, auth)),
        ("infisical-server", lambda: check_server(settings)),
        ("env-file", lambda: check_env_file(settings)),
        ("env-example", lambda: check_catalog(classes)),
        ("placeholders", lambda: check_placeholders(settings, classes)),
        ("secrets-in-env-file", lambda: check_secrets_in_dotenv(settings, classes)),
        ("short-secrets", lambda: check_short_secrets(settings, classes)),
        ("temp-files", lambda: check_temp_files(settings)),
        ("ports", lambda: check_ports(settings)),
        ("env-mode", lambda: check_env_mode(settings)),
        ("export-mode", lambda: check_export_mode(settings)),
        ("export-age", lambda: check_export_age(settings)),
        ("git-ignore", lambda: check_git(settings)),
        ("shell-shadowing", lambda: check_shadowing(settings)),
    ] + ([("swarm", lambda: check_swarm(settings, masker))] if swarm_target else [])
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        futures = [pool.submit(_guarded(name, probe)) for name, probe in probes]
        checks = [future.result() for future in futures]
    return [Check(c.name, c.status, masker.mask(c.detail), masker.mask(c.fix)) for c in checks]


LABELS = {PASS: "PASS", FAIL: "FAIL", WARN: "WARN", SKIP: "SKIP"}


def render_text(checks: list[Check]) -> list[str]:
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        lines.append(f"{LABELS[check.status]}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status != PASS:
            lines.append(f"      {'':<{width}}  fix: {check.fix}")
    counts = {status: sum(c.status == status for c in checks) for status in LABELS}
    lines.append(f"{len(checks)} checks: {counts[PASS]} passed, {counts[FAIL]} failed, "
                 f"{_plural(counts[WARN], 'warning')}, {counts[SKIP]} skipped.")
    return lines


def run_doctor(settings: Settings, out: Output, as_json: bool = False, swarm_target: bool = False) -> int:
    """Run every check; print lines (or one JSON document) on stdout. 1 when any check
    failed; 6 when .env.example cannot be used (nothing can be judged without it)."""
    checks = collect(settings, swarm_target)
    ok = not any(c.status == FAIL for c in checks)
    catalog_broken = any(c.name == "env-example" and c.status == FAIL for c in checks)
    if as_json:
        out.result(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2))
    elif out.fancy and sys.stdout.isatty():
        show_table(checks)
    else:
        for line in render_text(checks):
            out.result(line)
    return BAD_CONFIG if catalog_broken else (OK if ok else FAILED)


STYLES = {PASS: "green", FAIL: "bold red", WARN: "yellow", SKIP: "dim"}


def verdict(checks: list[Check]) -> tuple[str, str]:
    """One line that says whether a launch can go ahead, and its colour."""
    counts = {status: sum(c.status == status for c in checks) for status in LABELS}
    tally = (f"{len(checks)} checks: {counts[PASS]} passed, {counts[FAIL]} failed, "
             f"{_plural(counts[WARN], 'warning')}, {counts[SKIP]} skipped")
    failed = [c.name for c in checks if c.status == FAIL]
    if failed:
        return f"Not ready to launch: fix {', '.join(failed)} ({tally}).", "bold red"
    if counts[WARN]:
        return f"Ready to launch, with {_plural(counts[WARN], 'warning')} ({tally}).", "yellow"
    return f"Ready to launch ({tally}).", "bold green"


def show_table(checks: list[Check]) -> None:
    """On a terminal: one coloured table (status, check, what was found and the fix) and
    the verdict; stdout, like the plain lines. Text objects, not markup: a detail may hold
    brackets."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="doctor", title_justify="left")
    for column in ("status", "check", "found"):
        table.add_column(column)
    for check in checks:
        found = Text(check.detail)
        if check.fix and check.status != PASS:
            found.append(f"\nfix: {check.fix}", style="italic")
        table.add_row(Text(LABELS[check.status], style=STYLES[check.status]), check.name, found)
    console = Console(highlight=False)
    console.print(table)
    line, style = verdict(checks)
    console.print(Text(line, style=style))
