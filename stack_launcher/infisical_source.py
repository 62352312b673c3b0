"""Secrets from the Infisical CLI: `infisical export --format=json`, validated.

Every way this can fail raises Unavailable with a one-line reason for the user; the caller
decides between falling back and stopping. Tokens travel in the CLI's environment, never
in argv (argv is visible to every user through `ps`).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from typing import Mapping

from .envfile import VALID_KEY, Source
from .masking import Masker
from .process import Running, Timeout, start_captured
from .secret import Secret

# The CLI reads these as an access token (reference: token precedence). It also reads a
# bare TOKEN, which is too often someone else's: the launcher drops it from the CLI's env.
TOKEN_VARS = ("INFISICAL_UNIVERSAL_AUTH_ACCESS_TOKEN", "INFISICAL_TOKEN")
DROPPED_VARS = ("TOKEN",)
# What the CLI prints on stderr when it serves its cached copy instead of a fresh fetch
# (util/secrets.go; reference: "Its own offline cache").
CACHED_COPY = "serving secrets from last successful fetch"
CLIENT_ID, CLIENT_SECRET = "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET"


class Unavailable(Exception):
    """Infisical could not be had; the message says why in one line, masked."""


@dataclass(frozen=True)
class Request:
    """What to export and how to reach it: all non-secret except `credentials`."""

    environment: str
    path: str
    project_id: str
    api_url: str
    timeout: float
    cwd: str
    # INFISICAL_TOKEN / machine identity client id and secret, from the shell or .env.
    credentials: Mapping[str, Secret] = field(default_factory=dict)

    @property
    def source(self) -> Source:
        return Source(self.project_id, self.environment, self.path)


@dataclass(frozen=True)
class Export:
    secrets: dict[str, Secret]
    warnings: list[str]


def cli_path() -> str | None:
    return shutil.which("infisical")


@dataclass(frozen=True)
class Auth:
    """How the launcher authenticates to Infisical; names only, never values."""

    method: str  # "token" | "machine identity" | "user session" | "incomplete machine identity"
    source: str  # e.g. "INFISICAL_TOKEN from .env"


def auth_method(credentials: Mapping[str, Secret], shell: Mapping[str, str], env_file_name: str) -> Auth:
    """The order `connect` follows: a token, else a machine identity, else the CLI's own login."""
    def origin(name: str) -> str:
        return "the shell" if shell.get(name) else env_file_name

    for var in TOKEN_VARS:
        if shell.get(var) or var in credentials:
            return Auth("token", f"{var} from {origin(var)}")
    has_id, has_secret = CLIENT_ID in credentials, CLIENT_SECRET in credentials
    if has_id and has_secret:
        return Auth("machine identity", f"{CLIENT_ID} and {CLIENT_SECRET} from {origin(CLIENT_SECRET)}")
    if has_id or has_secret:
        present, absent = (CLIENT_ID, CLIENT_SECRET) if has_id else (CLIENT_SECRET, CLIENT_ID)
        return Auth("incomplete machine identity", f"{present} is set but {absent} is not")
    return Auth("user session", "no token and no machine identity: the CLI's own login")


def cli_env(base: Mapping[str, str], request: Request) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in DROPPED_VARS}
    for name, secret in request.credentials.items():
        env[name] = secret.reveal()
    if request.project_id:
        env.setdefault("INFISICAL_PROJECT_ID", request.project_id)
    # Commands without JSON output or --silent (secrets set/delete) otherwise ask GitHub
    # for a newer CLI first, with an 8 s timeout, on every call.
    env["INFISICAL_DISABLE_UPDATE_CHECK"] = "true"
    return env


def first_line(stderr: str, masker: Masker) -> str:
    """The CLI's most telling stderr line (its 401/404 blocks put it on `Message:`)."""
    lines = [l.strip() for l in masker.mask(stderr).splitlines() if l.strip()]
    for line in lines:
        if line.startswith(("Message:", "Response Code:")) and "Message:" in stderr:
            code = next((l for l in lines if l.startswith("Response Code:")), "")
            msg = next((l for l in lines if l.startswith("Message:")), "")
            return f"{code.removeprefix('Response Code: ')}: {msg.removeprefix('Message: ')}".strip(": ")
    for line in lines:
        if line.lower().startswith("error"):
            return line
    return lines[0] if lines else "no message"


def _start(cli: str, args: list[str], env: Mapping[str, str], request: Request) -> Running:
    try:
        return start_captured([cli, *args], env, request.timeout, cwd=request.cwd)
    except OSError as exc:
        raise Unavailable(f"could not run the Infisical CLI: {exc.strerror or exc}") from None


def _finish(running: Running, request: Request, masker: Masker, what: str):
    try:
        result = running.result()
    except Timeout as exc:
        raise Unavailable(f"`infisical {what}` gave {exc}; is the server at {request.api_url or 'the CLI domain'} reachable?") from None
    if result.returncode != 0:
        raise Unavailable(f"`infisical {what}` failed (exit {result.returncode}): {first_line(result.stderr, masker)}")
    return result


def _run(cli: str, args: list[str], env: Mapping[str, str], request: Request, masker: Masker, what: str):
    return _finish(_start(cli, args, env, request), request, masker, what)


def _login(cli: str, env: dict[str, str], request: Request, masker: Masker) -> Secret:
    args = ["login", "--method=universal-auth", "--silent", "--plain"]
    if request.api_url:
        args.append(f"--domain={request.api_url}")
    result = _run(cli, args, env, request, masker, "login (machine identity)")
    token = result.stdout.strip()
    if not token or "\n" in token:
        raise Unavailable("`infisical login` (machine identity) printed no token")
    return Secret(token)


def export_args(request: Request) -> list[str]:
    args = ["export", "--format=json", f"--env={request.environment}", f"--path={request.path}"]
    if request.project_id:
        args.append(f"--projectId={request.project_id}")
    if request.api_url:
        args.append(f"--domain={request.api_url}")
    return args


def connect(request: Request, base_env: Mapping[str, str], masker: Masker) -> tuple[str, dict[str, str]]:
    """The CLI's path and the environment to run it with, logged in when a machine identity is set."""
    cli = cli_path()
    if cli is None:
        raise Unavailable("the Infisical CLI is not on PATH (install it, or use --skip-infisical)")
    masker.add(s.reveal() for s in request.credentials.values())
    env = cli_env(base_env, request)
    has_token = any(env.get(name) for name in TOKEN_VARS)
    if not has_token and env.get(CLIENT_ID) and env.get(CLIENT_SECRET):
        token = _login(cli, env, request, masker)
        masker.add([token.reveal()])
        env["INFISICAL_TOKEN"] = token.reveal()
    return cli, env


def export_command(request: Request, base_env: Mapping[str, str], masker: Masker, *,
                   session: tuple[str, dict[str, str]] | None = None) -> tuple[list[str], dict[str, str]]:
    """The argv and environment the export runs with (raises Unavailable)."""
    cli, env = session or connect(request, base_env, masker)
    return [cli, *export_args(request)], env


def fetch(request: Request, base_env: Mapping[str, str], masker: Masker, *, allow_empty: bool = False,
          session: tuple[str, dict[str, str]] | None = None) -> Export:
    """Export the secrets of `request`, or raise Unavailable saying why."""
    return start_export(request, base_env, masker, session=session).collect(allow_empty=allow_empty)


def needs_login(request: Request, base_env: Mapping[str, str]) -> bool:
    """Will `connect` run `infisical login` first (a machine identity and no token)?"""
    env = cli_env(base_env, request)
    return not any(env.get(name) for name in TOKEN_VARS) and bool(env.get(CLIENT_ID) and env.get(CLIENT_SECRET))


class PendingExport:
    """`infisical export` under way: the caller goes on with its own work while the CLI talks
    to the server (most of a launch's wait), then `collect()`s. Nothing the CLI printed is
    read before `collect()`, so the masker only has to be complete by then."""

    def __init__(self, request: Request, masker: Masker, running: Running | None, problem: Unavailable | None) -> None:
        self._request, self._masker, self._running, self._problem = request, masker, running, problem

    def collect(self, allow_empty: bool = False) -> Export:
        """The validated export, or Unavailable saying why."""
        if self._problem is not None:
            raise self._problem
        assert self._running is not None
        result = _finish(self._running, self._request, self._masker, "export")
        if CACHED_COPY in result.stderr:
            # Exit 0, but the CLI's own encrypted copy of its last fetch, of unknown age: the
            # server is not reachable, and our own fallback (with --max-stale) decides instead.
            raise Unavailable("the Infisical server is unreachable (the CLI offered its own cached copy of the "
                              "last fetch, which is not used)")
        return parse_export(result.stdout, self._request, allow_empty=allow_empty)

    def cancel(self, cause: BaseException | None = None) -> None:
        """Not needed after all (or the run is stopping): end the CLI and its children."""
        if self._running is not None:
            self._running.stop(cause)


def start_export(request: Request, base_env: Mapping[str, str], masker: Masker, *,
                 session: tuple[str, dict[str, str]] | None = None) -> PendingExport:
    """Start `infisical export`; a failure to start is kept and raised by `collect()`."""
    try:
        argv, env = export_command(request, base_env, masker, session=session)
        return PendingExport(request, masker, _start(argv[0], argv[1:], env, request), None)
    except Unavailable as exc:
        return PendingExport(request, masker, None, exc)


def _scope_args(request: Request) -> list[str]:
    return export_args(request)[2:]  # --env, --path, --projectId, --domain


def push(request: Request, session: tuple[str, dict[str, str]], masker: Masker, values: Mapping[str, Secret]) -> None:
    """`infisical secrets set --file` from a 0600 temp file: values never in argv.

    The file is YAML (push_file.render), the one format the CLI reads that can hold every
    value: its .env reader knows no escapes.
    """
    import os
    import tempfile

    from . import push_file

    cli, env = session
    try:
        text = push_file.render({key: secret.reveal() for key, secret in values.items()})
    except ValueError as exc:
        raise Unavailable(f"cannot write the push file: {exc}") from None
    folder = tempfile.mkdtemp(prefix="start-services-")
    path = os.path.join(folder, "secrets.yaml")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        _run(cli, ["secrets", "set", f"--file={path}", "--type=shared", *_scope_args(request)], env, request, masker,
             "secrets set")
    finally:
        for remove, target in ((os.unlink, path), (os.rmdir, folder)):
            try:
                remove(target)
            except OSError:
                pass


def delete(request: Request, session: tuple[str, dict[str, str]], masker: Masker, keys: list[str]) -> None:
    cli, env = session
    _run(cli, ["secrets", "delete", *keys, "--type=shared", *_scope_args(request)], env, request, masker, "secrets delete")


def _shown(key: str) -> str:
    """A rejected key as one printable line (it may hold a newline or controls)."""
    text = key.encode("unicode_escape", "backslashreplace").decode("ascii")
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def parse_export(stdout: str, request: Request, allow_empty: bool = False) -> Export:
    """Validate the CLI's JSON: an array of {key: str, value: str}; never echo a value."""
    try:
        data = json.loads(stdout)
    except RecursionError:
        raise Unavailable("`infisical export` printed JSON nested too deeply to be a list of secrets") from None
    except ValueError:
        first = stdout.strip().splitlines()[0][:60] if stdout.strip() else ""
        hint = " (it looks like a login prompt: run `infisical login` or set a machine identity)" if "login" in first.lower() else ""
        raise Unavailable(f"`infisical export` printed something other than JSON{hint}") from None
    if data is None:  # Go marshals an empty (nil) list as null
        data = []
    if not isinstance(data, list):
        raise Unavailable("`infisical export` returned JSON that is not a list of secrets")
    secrets: dict[str, Secret] = {}
    warnings: list[str] = []
    # json.loads makes a lone surrogate only from a `\uD800`-`\uDFFF` escape, or keeps one
    # that `stdout` already held (process.py decodes with replacement, so not from the CLI):
    # without either, no value needs the check.
    surrogates_possible = "\\ud" in stdout or "\\uD" in stdout or not stdout.isascii()
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not isinstance(item.get("value"), str):
            raise Unavailable(f"`infisical export` returned an entry without a string key and value (item {index})")
        key = item["key"]
        if not VALID_KEY.fullmatch(key):
            warnings.append(f"skipped Infisical key {_shown(key)}: docker compose does not accept that name")
            continue
        if surrogates_possible:
            try:
                item["value"].encode("utf-8")
            except UnicodeEncodeError:
                warnings.append(f"skipped Infisical key {key}: its value holds a lone surrogate, which no file can hold")
                continue
        if key in secrets:
            warnings.append(f"Infisical returned {key} twice (imports or folders); the last one wins")
        secrets[key] = Secret(item["value"])
    if not secrets and not allow_empty:
        raise Unavailable(
            f"Infisical returned no secrets for environment '{request.environment}', path '{request.path}'"
            " (check --infisical-env and --infisical-path)"
        )
    return Export(secrets, warnings)
