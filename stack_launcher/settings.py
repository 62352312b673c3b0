"""Settings resolved in one place: flag > shell environment > `.env` > default.

`.env` is read into a dict and never loaded into os.environ: compose treats shell
variables as beating every env file, so loading it would let `.env` beat `.env.infisical`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

from .choices import (  # noqa: F401
    DEFAULT_MAX_STALE,
    Environment,
    Profile,
    SecretsMode,
    parse_duration,
)
from .envfile import parse_dotenv, read_text
from .errors import BAD_CONFIG, LauncherError
from .secret import Secret

DEFAULT_PROJECT_NAME = "localai"
INFISICAL_COMPOSE_FILE = Path("infisical") / "docker-compose.yml"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Where the Infisical server is, in the CLI's order: INFISICAL_DOMAIN supersedes the older
# INFISICAL_API_URL (both read by the CLI; reference: infisical-cli.md).
DOMAIN_VARS = ("INFISICAL_DOMAIN", "INFISICAL_API_URL")
CREDENTIAL_VARS = ("INFISICAL_TOKEN", "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET")


@dataclass(frozen=True)
class Settings:
    project_dir: Path
    env_file: Path
    output: Path
    compose_files: tuple[Path, ...]
    override: Path | None
    project_name: str
    profile: str | None  # None: no profile at all
    environment: str
    mode: SecretsMode
    infisical_env: str
    infisical_path: str
    project_id: str
    api_url: str  # the Infisical server the CLI is pointed at; "" for the CLI's own default
    api_url_var: str  # which variable set it (INFISICAL_DOMAIN or INFISICAL_API_URL), "" if none
    timeout: float
    dotenv: Mapping[str, str] = field(repr=False)
    dotenv_text: str | None = field(repr=False)  # `.env` as read, once; None when it is absent
    credentials: Mapping[str, Secret] = field(repr=False)
    shell: Mapping[str, str] = field(repr=False)

    @property
    def infisical_project_name(self) -> str:
        return f"{self.project_name}-infisical"

    @property
    def infisical_compose_file(self) -> Path:
        return self.project_dir / INFISICAL_COMPOSE_FILE

    @property
    def infisical_is_local(self) -> bool:
        """Is the server this project's own Infisical (its compose file, on this machine)?"""
        if not self.api_url or not self.infisical_compose_file.is_file():
            return False
        try:
            return urlparse(self.api_url).hostname in LOCAL_HOSTS
        except ValueError:
            return False

    @property
    def compose_files_with_override(self) -> tuple[Path, ...]:
        return self.compose_files + ((self.override,) if self.override else ())

    @property
    def profiles(self) -> tuple[str, ...]:
        return (self.profile,) if self.profile else ()


def _pick(flag: str | None, name: str, shell: Mapping[str, str], dotenv: Mapping[str, str], default: str) -> str:
    if flag not in (None, ""):
        return str(flag)
    if shell.get(name):
        return shell[name]
    if dotenv.get(name):
        return dotenv[name]
    return default


def _domain(shell: Mapping[str, str], dotenv: Mapping[str, str]) -> tuple[str, str]:
    for name in DOMAIN_VARS:
        value = shell.get(name) or dotenv.get(name)
        if value:
            return value, name
    return "", ""


def _infisical_json_env(project_dir: Path) -> str | None:
    try:
        data = json.loads((project_dir / ".infisical.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("defaultEnvironment") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def resolve(
    *,
    project_dir: Path | None = None,
    env_file: str = ".env",
    output: str = ".env.infisical",
    files: list[str] | None = None,
    project_name: str | None = None,
    profile: str = "cpu",
    environment: str = "private",
    mode: SecretsMode = SecretsMode.fresh,
    infisical_env: str | None = None,
    infisical_path: str | None = None,
    project_id: str | None = None,
    timeout: float = 30.0,
    shell: Mapping[str, str] | None = None,
) -> Settings:
    shell = dict(os.environ if shell is None else shell)
    root = project_root(project_dir)
    env_path = root / env_file
    dotenv_text = read_text(env_path)
    dotenv = parse_dotenv(dotenv_text) if dotenv_text is not None else {}
    compose_files = tuple(root / f for f in (files or ["docker-compose.yml"]))
    override = root / f"docker-compose.override.{environment}.yml"
    default_env = _infisical_json_env(root) or "dev"
    credentials = {
        name: Secret(value)
        for name in CREDENTIAL_VARS
        if (value := shell.get(name) or dotenv.get(name))
    }
    api_url, api_url_var = _domain(shell, dotenv)
    _check_output(root / output, env_path, compose_files + ((override,) if override.is_file() else ()))
    return Settings(
        project_dir=root,
        env_file=env_path,
        output=root / output,
        compose_files=compose_files,
        override=override if override.is_file() else None,
        project_name=_pick(project_name, "COMPOSE_PROJECT_NAME", shell, dotenv, DEFAULT_PROJECT_NAME),
        profile=None if profile == Profile.none.value else profile,
        environment=environment,
        mode=mode,
        infisical_env=_pick(infisical_env, "INFISICAL_ENVIRONMENT", shell, dotenv, default_env),
        infisical_path=_pick(infisical_path, "INFISICAL_SECRET_PATH", shell, dotenv, "/"),
        project_id=_pick(project_id, "INFISICAL_PROJECT_ID", shell, dotenv, ""),
        api_url=api_url,
        api_url_var=api_url_var,
        timeout=timeout,
        dotenv=dotenv,
        dotenv_text=dotenv_text,
        credentials=credentials,
        shell=shell,
    )


def _check_output(output: Path, env_file: Path, compose_files: tuple[Path, ...]) -> None:
    """The export is rewritten on every run: it must never be a file the user keeps."""
    def same(a: Path, b: Path) -> bool:
        return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b)) or (
            a.exists() and b.exists() and os.path.samefile(a, b))

    if same(output, env_file):
        raise LauncherError(f"--output {output.name} is the env file itself; the export would overwrite it",
                            BAD_CONFIG, "leave --output at .env.infisical, or name a new file")
    root = env_file.parent
    kept = (*compose_files, root / ".env.example", root / INFISICAL_COMPOSE_FILE,
            *root.glob("docker-compose*.yml"), *root.glob("docker-compose*.yaml"))
    for path in kept:
        if same(output, path):
            raise LauncherError(f"--output {output.name} is a file of the project; the export would overwrite it",
                                BAD_CONFIG, "name a new file for --output")
    if output.is_dir():
        raise LauncherError(f"--output {output} is a directory, not a file", BAD_CONFIG,
                            "name a file for --output, or remove that folder")
    if output.parent.exists() and not output.parent.is_dir():
        raise LauncherError(f"--output {output}: {output.parent} is not a folder", BAD_CONFIG)


def project_root(project_dir: Path | None) -> Path:
    """The folder every relative path is relative to (the lock lives there)."""
    return (project_dir or Path.cwd()).resolve()


def require_dotenv(settings: Settings) -> None:
    if settings.dotenv_text is None:
        raise LauncherError(
            f"no {settings.env_file.name} in {settings.project_dir}", BAD_CONFIG,
            "run `python start_services.py init` to write one from .env.example",
        )
