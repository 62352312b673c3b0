"""`setup`: from a fresh clone to secrets served by Infisical, with no clicks.

Every step first checks whether its result exists, so a re-run continues where a failed run
stopped and a finished setup is a no-op:
    .env (init) -> local Infisical healthy -> instance bootstrapped (admin password written to
    .env first) -> project -> machine identity `start-services` with Universal Auth -> client
    secret -> project membership -> login + export proven -> three keys written to .env ->
    migrate --apply.
The instance-admin token that bootstrap returns is never returned again: it is kept in a
0600, git-ignored `.infisical-setup-token` until setup completes, then deleted. It, the admin
password and the client secret travel only in HTTP bodies and headers and in the CLI's
environment, and are masked in everything shown.
"""
from __future__ import annotations

import json
import re
from urllib.parse import urlsplit
from dataclasses import dataclass
from pathlib import Path

from . import bootstrap, infisical_api, infisical_source
from .envfile import backup_copy, refuse_symlink, with_keys, write_private
from .errors import BAD_CONFIG, FAILED, INFISICAL_UNAVAILABLE, OK, USAGE, LauncherError
from .generate import generate
from .infisical_api import Api, ApiError
from .masking import Masker
from .output import Output
from .secret import Secret
from .secrets_source import request_for
from .settings import Settings

TOKEN_FILE = ".infisical-setup-token"
ADMIN_PASSWORD = "INFISICAL_ADMIN_PASSWORD"
CLIENT_ID, CLIENT_SECRET = infisical_source.CLIENT_ID, infisical_source.CLIENT_SECRET
PROJECT_ID = "INFISICAL_PROJECT_ID"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MANUAL = "docs/setup.md (\"By hand\")"


@dataclass(frozen=True)
class Options:
    admin_email: str | None
    organization: str | None
    remote: bool
    start_timeout: float


def check_email(email: str | None) -> None:
    """Before any call: a malformed address is a usage error, not a half-made instance."""
    if email is not None and not EMAIL.fullmatch(email.strip()):
        raise LauncherError(f"--admin-email {email!r} is not an email address", USAGE,
                            "give the address the admin logs in with, e.g. --admin-email you@example.com")


def _read_token_file(path: Path) -> tuple[str, Secret] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["organization_id"]), Secret(str(data["token"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise LauncherError(f"{path.name} is unreadable; the admin token it held cannot be had again", BAD_CONFIG,
                            f"finish by hand: {MANUAL}") from None


def _works(settings: Settings, masker: Masker, credentials: dict[str, Secret], project_id: str) -> str | None:
    """Can the launcher log in and export with these? None if so, else why not."""
    request = request_for(settings)
    request = infisical_source.Request(request.environment, request.path, project_id, request.api_url,
                                       request.timeout, request.cwd, credentials)
    shell = {k: v for k, v in settings.shell.items()
             if k not in (*infisical_source.TOKEN_VARS, CLIENT_ID, CLIENT_SECRET, PROJECT_ID)}
    try:
        infisical_source.fetch(request, shell, masker, allow_empty=True)
    except infisical_source.Unavailable as exc:
        return str(exc)
    return None


def _write_env(settings: Settings, values: dict[str, str], out: Output) -> None:
    """Set these keys in .env, never another: a verified 0600 backup, then an atomic rewrite."""
    text = settings.env_file.read_bytes().decode("utf-8")
    saved = backup_copy(settings.env_file, text)
    write_private(settings.env_file, with_keys(text, values))
    out.detail(f"{settings.env_file.name}: set {', '.join(values)} (backup {saved.name})")


def setup(settings: Settings, out: Output, options: Options) -> int:
    from .keys import classify
    from .prepare import seed_masker

    check_email(options.admin_email)
    if not options.remote and not settings.infisical_is_local:
        where = settings.api_url or "Infisical Cloud (no INFISICAL_DOMAIN / INFISICAL_API_URL)"
        raise LauncherError(f"{settings.api_url_var or 'the Infisical CLI'} points at {where}, not this project's "
                            "local Infisical: setup bootstraps only an instance it runs", BAD_CONFIG,
                            "set INFISICAL_API_URL=http://localhost:8010 in .env, or pass --remote to set up "
                            "that instance (it must be fresh, or you must have its admin token file)")
    refuse_symlink(settings.env_file, "setup")
    if infisical_source.cli_path() is None:  # checked first: every credential made would be wasted
        raise LauncherError("the Infisical CLI is not on PATH; setup proves the new machine identity with it",
                            INFISICAL_UNAVAILABLE, "install the Infisical CLI "
                            "(https://infisical.com/docs/cli/overview), then run setup again")
    if urlsplit(settings.api_url).scheme not in ("http", "https") or not urlsplit(settings.api_url).hostname:
        raise LauncherError(f"{settings.api_url_var or 'INFISICAL_API_URL'} is not an http(s) URL", BAD_CONFIG,
                            "set INFISICAL_API_URL=http://localhost:8010 in .env")
    masker = seed_masker(settings, classify(settings))
    env = settings.dotenv
    if "INFISICAL_TOKEN" in settings.credentials:
        out.warn("INFISICAL_TOKEN is set; at launch it wins over the machine identity setup makes "
                 "(remove it from .env and your shell to use the machine identity)")
    credentials = {k: settings.credentials[k] for k in (CLIENT_ID, CLIENT_SECRET) if k in settings.credentials}
    token_path = settings.project_dir / TOKEN_FILE

    if bootstrap.applies(settings):
        reason = bootstrap.ensure_up(settings, out, masker, options.start_timeout)
        if reason:
            raise LauncherError(f"the local Infisical is not available: {reason}", INFISICAL_UNAVAILABLE)

    if len(credentials) == 2 and env.get(PROJECT_ID) and not token_path.exists():
        why = _works(settings, masker, credentials, env[PROJECT_ID])
        if why is None:
            out.success("Already set up: the machine identity in .env logs in and exports. Nothing changed.")
            return OK
        out.warn(f"the credentials in .env do not work ({why}); setting up again")

    api = Api(settings.api_url)
    held = _read_token_file(token_path)
    try:
        if held is None:
            held = _bootstrap(settings, api, masker, options, token_path, out)
        organization_id, token = held
        masker.add([token.reveal()])
        api = api.with_token(token)
        return _finish_setup(settings, api, organization_id, masker, token_path, out)
    except ApiError as exc:
        raise LauncherError(f"setup stopped at '{exc.step}': {masker.mask(str(exc).split(': ', 1)[1])}", FAILED,
                            "fix the cause and run setup again: it continues from what exists") from None


def _bootstrap(settings: Settings, api: Api, masker: Masker, options: Options, token_path: Path,
               out: Output) -> tuple[str, Secret]:
    if infisical_api.initialized(api):
        raise LauncherError(
            "Infisical is already bootstrapped, and neither working credentials in .env nor the admin token "
            f"file ({TOKEN_FILE}) are here; its admin token cannot be had again", INFISICAL_UNAVAILABLE,
            f"log in to Infisical as its admin and create the machine identity by hand: {MANUAL}")
    if not options.admin_email:
        raise LauncherError("--admin-email is required to bootstrap a fresh Infisical", USAGE,
                            "python start_services.py setup --admin-email you@example.com")
    password = settings.dotenv.get(ADMIN_PASSWORD)
    if not password:
        password = generate("password:32")
        _write_env(settings, {ADMIN_PASSWORD: password}, out)  # before the call: never an admin without it
        out.info(f"Wrote {ADMIN_PASSWORD} to {settings.env_file.name} (mode 0600, after a backup).")
    masker.add([password])
    organization = options.organization or settings.project_name
    result = infisical_api.bootstrap(api, options.admin_email.strip(), Secret(password), organization)
    masker.add([result.token.reveal()])
    write_private(token_path, json.dumps({"organization_id": result.organization_id,
                                          "token": result.token.reveal()}) + "\n")
    out.info(f"Bootstrapped Infisical: admin {options.admin_email.strip()}, organization {organization}.")
    return result.organization_id, result.token


def _finish_setup(settings: Settings, api: Api, organization_id: str, masker: Masker, token_path: Path,
                  out: Output) -> int:
    done: list[str] = []
    name = settings.project_name
    project_id = infisical_api.find_project(api, name)
    if project_id is None:
        project_id = infisical_api.create_project(api, name)
        done.append(f"project {name}")
    identity_id = infisical_api.find_identity(api, organization_id)
    if identity_id is None:
        identity_id = infisical_api.create_identity(api, organization_id)
        done.append(f"machine identity {infisical_api.IDENTITY_NAME}")
    client_id = infisical_api.universal_auth_client_id(api, identity_id)
    if client_id is None:
        client_id = infisical_api.attach_universal_auth(api, identity_id)
        done.append("Universal Auth")
    if not infisical_api.is_member(api, project_id, identity_id):
        infisical_api.add_member(api, project_id, identity_id)
        done.append(f"membership ({infisical_api.PROJECT_ROLE})")
    # A client secret is shown once: reuse the one in .env if it belongs to this client id
    # and works, else make a new one.
    secret = settings.credentials.get(CLIENT_SECRET)
    credentials = {CLIENT_ID: Secret(client_id), CLIENT_SECRET: secret} if secret else {}
    if not credentials or settings.dotenv.get(CLIENT_ID) != client_id or \
            _works(settings, masker, credentials, project_id) is not None:
        secret = infisical_api.create_client_secret(api, identity_id)
        masker.add([secret.reveal()])
        credentials = {CLIENT_ID: Secret(client_id), CLIENT_SECRET: secret}
        done.append("client secret")
    why = _works(settings, masker, credentials, project_id)
    if why is not None:
        raise LauncherError(f"the new machine identity cannot export yet: {why}; .env is unchanged", FAILED,
                            "run setup again; it continues from what exists")
    _write_env(settings, {PROJECT_ID: project_id, CLIENT_ID: client_id, CLIENT_SECRET: secret.reveal()}, out)
    try:
        token_path.unlink()
    except FileNotFoundError:
        pass
    out.success(f"Infisical is set up ({', '.join(done) or 'everything existed'}): {PROJECT_ID}, {CLIENT_ID} and "
                f"{CLIENT_SECRET} written to {settings.env_file.name}.")
    return OK
