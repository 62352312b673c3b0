"""The state behind the Infisical CLI stand-in (tests/support/bin/infisical).

The stand-in reads its "server" from a JSON file; this class writes that file and
reads the stand-in's call log. See the stand-in's docstring for the file format.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .processes import STAND_IN_BIN, minimal_env, prepend_path

if TYPE_CHECKING:
    from .infisical_http import FakeInfisicalHTTP

DEFAULT_PROJECT = "proj-1"
DEFAULT_TOKEN = "tok-1"
DEFAULT_CLIENT_ID = "client-id"
DEFAULT_CLIENT_SECRET = "client-secret"

SERVER_MODES = ("up", "down", "hang", "garbage", "empty")


def default_state() -> dict[str, Any]:
    return {
        "server": "up",
        "user_logged_in": False,
        "user_email": "dev@example.com",
        "tokens": [DEFAULT_TOKEN],
        "machine_identities": {
            DEFAULT_CLIENT_ID: {"client_secret": DEFAULT_CLIENT_SECRET, "token": DEFAULT_TOKEN}
        },
        "default_project": None,
        "projects": {DEFAULT_PROJECT: {"dev": {"/": {}}, "prod": {"/": {}}}},
        "offline_backup": None,
        "probe_domain": False,
    }


class FakeInfisical:
    """A fake Infisical server for the stand-in CLI, kept in `db_path`.

    `env` is the environment to hand to subprocesses: a minimal base environment
    with the stand-in first on PATH and FAKE_INFISICAL_DB / FAKE_INFISICAL_LOG set.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.db_path = directory / "infisical-db.json"
        self.log_path = directory / "infisical-calls.jsonl"
        self.env: dict[str, str] = prepend_path(
            minimal_env(FAKE_INFISICAL_DB=str(self.db_path), FAKE_INFISICAL_LOG=str(self.log_path)),
            STAND_IN_BIN,
        )
        self._write(default_state())

    # -- raw state --------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return json.loads(self.db_path.read_text(encoding="utf-8"))

    def _write(self, state: dict[str, Any]) -> None:
        tmp = self.db_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.db_path)

    def update(self, **fields: Any) -> None:
        """Set top-level DB fields as they are, e.g. update(probe_domain=True)."""
        state = self.state()
        state.update(fields)
        self._write(state)

    # -- scenarios ----------------------------------------------------------------------
    def set_server(self, mode: str) -> None:
        """up | down | hang | garbage | empty (see the stand-in's docstring)."""
        if mode not in SERVER_MODES:
            raise ValueError(f"server mode {mode!r} not in {SERVER_MODES}")
        self.update(server=mode)

    def set_user_session(self, logged_in: bool = True, default_project: str | None = DEFAULT_PROJECT) -> None:
        """A developer logged in with `infisical login` (and `infisical init` done)."""
        self.update(user_logged_in=logged_in, default_project=default_project)

    def set_secrets(
        self,
        secrets: dict[str, Any],
        project: str = DEFAULT_PROJECT,
        env: str = "dev",
        path: str = "/",
        replace: bool = True,
    ) -> None:
        """Store secrets in (project, env, path); creates the project/env/folder.

        A value is a string, or a dict {"value": ..., "skipMultilineEncoding": bool,
        "type": "shared"|"personal", "comment": str, "tags": [slug, ...]}.
        replace=False merges into what is there.
        """
        state = self.state()
        folders = state.setdefault("projects", {}).setdefault(project, {}).setdefault(env, {})
        folders.setdefault("/", {})
        folder = {} if replace else folders.get(path, {})
        folder.update(copy.deepcopy(secrets))
        folders[path] = folder
        self._write(state)

    def secrets(self, project: str = DEFAULT_PROJECT, env: str = "dev", path: str = "/") -> dict[str, Any]:
        """What the server holds now (e.g. after `infisical secrets set`)."""
        return self.state().get("projects", {}).get(project, {}).get(env, {}).get(path, {})

    def add_environment(self, env: str, project: str = DEFAULT_PROJECT) -> None:
        state = self.state()
        state.setdefault("projects", {}).setdefault(project, {}).setdefault(env, {"/": {}})
        self._write(state)

    def remove_environment(self, env: str, project: str = DEFAULT_PROJECT) -> None:
        state = self.state()
        state.get("projects", {}).get(project, {}).pop(env, None)
        self._write(state)

    def add_token(self, token: str) -> str:
        state = self.state()
        if token not in state["tokens"]:
            state["tokens"].append(token)
        self._write(state)
        return token

    def revoke_token(self, token: str) -> None:
        state = self.state()
        state["tokens"] = [t for t in state["tokens"] if t != token]
        self._write(state)

    def add_machine_identity(
        self, client_id: str = DEFAULT_CLIENT_ID, client_secret: str = DEFAULT_CLIENT_SECRET,
        token: str = DEFAULT_TOKEN,
    ) -> str:
        """Register a universal-auth identity; returns the access token its login yields."""
        state = self.state()
        state.setdefault("machine_identities", {})[client_id] = {
            "client_secret": client_secret, "token": token}
        if token not in state["tokens"]:
            state["tokens"].append(token)
        self._write(state)
        return token

    def write_workspace_file(
        self, directory: Path, workspace_id: str = DEFAULT_PROJECT,
        default_environment: str | None = None, domain: str | None = None,
    ) -> Path:
        """An `.infisical.json` like `infisical init` writes."""
        data: dict[str, Any] = {"workspaceId": workspace_id}
        if default_environment:
            data["defaultEnvironment"] = default_environment
        if domain:
            data["domain"] = domain
        path = Path(directory) / ".infisical.json"
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return path

    # -- the REST API (tests/support/infisical_http.py) ----------------------------------
    def http(self, host: str = "127.0.0.1", port: int = 0) -> "FakeInfisicalHTTP":
        """A fake Infisical REST API over this same state file (not started: call
        .start(), or use it as a context manager)."""
        from .infisical_http import FakeInfisicalHTTP
        return FakeInfisicalHTTP(self.db_path, host=host, port=port)

    def http_state(self) -> dict[str, Any]:
        """The REST API's own keys (http_admin, http_identities, http_projects, ...)."""
        return {k: v for k, v in self.state().items() if k.startswith("http_")}

    def http_calls(self) -> list[dict[str, Any]]:
        """One dict per REST request: method, path, route, status, actor (identity id)."""
        return list(self.state().get("http_log", []))

    def fail_http(self, route: str, status: int | None = 500, times: int | str = 1, **extra: Any) -> None:
        """Make a REST route fail: route is "<METHOD> <route or path>", e.g.
        fail_http("POST /api/v1/identities", 500) (once), times="always", or extra
        message=..., delay=seconds, drop=True (see infisical_http's docstring)."""
        from .infisical_http import locked_state
        spec: dict[str, Any] = {"times": times, **extra}
        if status is not None:
            spec["status"] = status
        with locked_state(self.db_path) as state:
            state.setdefault("http_fail", {})[route] = spec

    def set_http_option(self, name: str, value: Any) -> None:
        """e.g. set_http_option("identity_project_list", "member")."""
        from .infisical_http import locked_state
        with locked_state(self.db_path) as state:
            state.setdefault("http_options", {})[name] = value

    # -- what the CLI was asked ------------------------------------------------------------
    def calls(self) -> list[dict[str, Any]]:
        """One dict per stand-in invocation: argv, env_token_vars, env,
        stdin_is_closed_or_devnull, cwd, pid, pgid."""
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text(encoding="utf-8").splitlines() if line]

    def calls_of(self, command: str) -> list[dict[str, Any]]:
        """Calls whose first non-flag argument is `command` ("export", "login", ...)."""
        return [c for c in self.calls()
                if next((a for a in c["argv"] if not a.startswith("-")), None) == command]

    def clear_calls(self) -> None:
        self.log_path.unlink(missing_ok=True)
