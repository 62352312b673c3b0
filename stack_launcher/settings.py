"""Settings resolved in one place: flag > shell environment > `.env` > default.

`.env` is read into a dict and never loaded into os.environ: compose treats shell
variables as beating every env file, so loading it would let `.env` beat `.env.infisical`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Mapping

from .envfile import read_dotenv
from .errors import BAD_CONFIG, LauncherError
from .secret import Secret

DEFAULT_PROJECT_NAME = "localai"
CREDENTIAL_VARS = ("INFISICAL_TOKEN", "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET")


class Profile(str, Enum):
    cpu = "cpu"
    gpu_nvidia = "gpu-nvidia"
    gpu_amd = "gpu-amd"
    none = "none"


class Environment(str, Enum):
    private = "private"
    public = "public"


class SecretsMode(str, Enum):
    fresh = "fresh"  # export, fall back when it fails
    require = "require"  # export or fail
    skip = "skip"  # `.env` only
    offline = "offline"  # the last good export only


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
    api_url: str
    timeout: float
    dotenv: Mapping[str, str] = field(repr=False)
    credentials: Mapping[str, Secret] = field(repr=False)
    shell: Mapping[str, str] = field(repr=False)

    @property
    def infisical_project_name(self) -> str:
        return f"{self.project_name}-infisical"


def _pick(flag: str | None, name: str, shell: Mapping[str, str], dotenv: Mapping[str, str], default: str) -> str:
    if flag not in (None, ""):
        return str(flag)
    if shell.get(name):
        return shell[name]
    if dotenv.get(name):
        return dotenv[name]
    return default


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
    root = (project_dir or Path.cwd()).resolve()
    env_path = root / env_file
    dotenv = read_dotenv(env_path)
    compose_files = tuple(root / f for f in (files or ["docker-compose.yml"]))
    override = root / f"docker-compose.override.{environment}.yml"
    default_env = _infisical_json_env(root) or "dev"
    credentials = {
        name: Secret(value)
        for name in CREDENTIAL_VARS
        if (value := shell.get(name) or dotenv.get(name))
    }
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
        api_url=_pick(None, "INFISICAL_API_URL", shell, dotenv, ""),
        timeout=timeout,
        dotenv=dotenv,
        credentials=credentials,
        shell=shell,
    )


def require_dotenv(settings: Settings) -> None:
    if not settings.env_file.is_file():
        raise LauncherError(
            f"no {settings.env_file.name} in {settings.project_dir}", BAD_CONFIG,
            "run `python start_services.py init` to write one from .env.example",
        )
