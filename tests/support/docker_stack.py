"""A real Docker engine and a throw-away compose project for tests."""
from __future__ import annotations

import json
import secrets as _random
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .processes import SUPPORT_DIR, minimal_env

TEST_IMAGE = "busybox-test:local"
BUILD_IMAGE_SCRIPT = SUPPORT_DIR / "build_test_image.sh"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class EngineUnavailable(Exception):
    pass


def _run(cmd: list[str], timeout: float = 60, check: bool = False,
         env: dict[str, str] | None = None, cwd: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                env=minimal_env() if env is None else env,
                                cwd=None if cwd is None else str(cwd), stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise EngineUnavailable(f"{cmd[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise EngineUnavailable(f"{' '.join(cmd)} did not answer within {timeout} s") from exc
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, cmd, result.stdout, result.stderr)
    return result


@dataclass(frozen=True)
class Engine:
    server_version: str
    compose_version: str


def probe_engine() -> Engine:
    """`docker info` and `docker compose version`, or EngineUnavailable saying why."""
    info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20)
    if info.returncode != 0 or not info.stdout.strip():
        raise EngineUnavailable(f"`docker info` failed: {(info.stderr or info.stdout).strip()}")
    compose = _run(["docker", "compose", "version", "--short"], timeout=20)
    if compose.returncode != 0:
        raise EngineUnavailable(f"`docker compose version` failed: {(compose.stderr or compose.stdout).strip()}")
    return Engine(info.stdout.strip(), compose.stdout.strip())


def ensure_test_image() -> None:
    if _run(["docker", "image", "inspect", TEST_IMAGE]).returncode == 0:
        return
    result = _run(["bash", str(BUILD_IMAGE_SCRIPT)], timeout=300)
    if result.returncode != 0:
        raise EngineUnavailable(f"building {TEST_IMAGE} failed:\n{result.stdout}{result.stderr}")


def busybox_service(**extra: Any) -> dict[str, Any]:
    """A service that starts at once and stops at once: busybox sleeping under docker-init."""
    service: dict[str, Any] = {"image": TEST_IMAGE, "init": True, "command": ["sleep", "3600"]}
    service.update(extra)
    return service


def env_list_to_dict(pairs: list[str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        result[key] = value
    return result


class Stack:
    """A compose project in a temp directory, with a unique project name.

    The compose file carries `name: <project>` so any `docker compose` run in `dir`
    (by the launcher or by the test) uses the same project.
    """

    def __init__(self, directory: Path, name: str | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name or "t" + _random.token_hex(5)
        # Base environment for docker commands; extend it rather than using os.environ.
        self.env: dict[str, str] = minimal_env()

    # -- files ------------------------------------------------------------------------
    def write_compose(
        self,
        services: dict[str, dict[str, Any]] | None = None,
        *,
        text: str | None = None,
        filename: str = "docker-compose.yml",
        **top_level: Any,
    ) -> Path:
        """Write the compose file. `services` maps a name to extra keys merged onto
        busybox_service(), e.g. {"app": {"environment": {"FOO": "${FOO}"}}}; default
        is one service "app". Or pass the whole file as `text` (add `name:` yourself
        or rely on the directory's name). Written as JSON, which is valid YAML."""
        path = self.dir / filename
        if text is not None:
            path.write_text(text, encoding="utf-8")
            return path
        services = {"app": {}} if services is None else services
        model: dict[str, Any] = {"name": self.name,
                                 "services": {n: busybox_service(**extra) for n, extra in services.items()}}
        model.update(top_level)
        path.write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
        return path

    def write_env(self, content: str | dict[str, str], name: str = ".env") -> Path:
        """Write an env file: raw text, or a dict written as KEY=value lines (unquoted)."""
        if isinstance(content, dict):
            content = "".join(f"{k}={v}\n" for k, v in content.items())
        path = self.dir / name
        path.write_text(content, encoding="utf-8")
        return path

    # -- compose ----------------------------------------------------------------------
    def compose(self, *args: str, check: bool = True, timeout: float = 120,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`docker compose <args>` in the project dir (files loaded as compose would)."""
        return _run(["docker", "compose", *args], timeout=timeout, check=check,
                    env=self.env if env is None else env, cwd=self.dir)

    def down(self) -> None:
        """Remove everything of the project without loading its files (so a broken
        compose file or a missing ${VAR:?} cannot stop the clean-up)."""
        env = minimal_env()
        _run(["docker", "compose", "-p", self.name, "down", "-v", "--remove-orphans", "--timeout", "0"],
             timeout=120, env=env, cwd="/")
        label = f"label={PROJECT_LABEL}={self.name}"
        leftovers = _run(["docker", "ps", "-aq", "--filter", label]).stdout.split()
        if leftovers:
            _run(["docker", "rm", "-f", "-v", *leftovers], timeout=120)
        volumes = _run(["docker", "volume", "ls", "-q", "--filter", label]).stdout.split()
        if volumes:
            _run(["docker", "volume", "rm", "-f", *volumes])
        networks = _run(["docker", "network", "ls", "-q", "--filter", label]).stdout.split()
        if networks:
            _run(["docker", "network", "rm", *networks])

    # -- queries ----------------------------------------------------------------------
    def containers(self, service: str | None = None, all: bool = False) -> list[dict[str, Any]]:
        """`docker ps` rows (dicts: ID, Names, State, Status, Labels, ...) of the project,
        running only unless all=True, optionally for one service."""
        cmd = ["docker", "ps", "--no-trunc", "--format", "{{json .}}", "--filter", f"label={PROJECT_LABEL}={self.name}"]
        if all:
            cmd.append("-a")
        if service is not None:
            cmd += ["--filter", f"label={SERVICE_LABEL}={service}"]
        result = _run(cmd, check=True)
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def running_services(self) -> dict[str, list[str]]:
        """service name -> ids of its running containers."""
        result: dict[str, list[str]] = {}
        for row in self.containers():
            ids = result.setdefault(self.inspect_id(row["ID"])["Config"]["Labels"][SERVICE_LABEL], [])
            ids.append(row["ID"])
        return result

    def container_id(self, service: str) -> str:
        """The id of the one running container of `service` (AssertionError otherwise)."""
        rows = self.containers(service)
        assert len(rows) == 1, f"expected one running container of {service!r}, found {rows!r}"
        return rows[0]["ID"]

    def inspect_id(self, container_id: str) -> dict[str, Any]:
        return json.loads(_run(["docker", "inspect", container_id], check=True).stdout)[0]

    def inspect(self, service: str) -> dict[str, Any]:
        """`docker inspect` of the one running container of `service`."""
        return self.inspect_id(self.container_id(service))

    def container_env(self, service: str) -> dict[str, str]:
        """The running container's Config.Env as a dict."""
        return env_list_to_dict(self.inspect(service)["Config"]["Env"])

    def config_hash(self, service: str) -> str:
        """The com.docker.compose.config-hash label of the running container."""
        return self.inspect(service)["Config"]["Labels"]["com.docker.compose.config-hash"]
