"""A user goes from a fresh clone to secrets served by Infisical with one command, `setup`,
against a fake Infisical REST API that shares its state with the stand-in CLI."""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from dotenv import dotenv_values

from support.docker_stack import TEST_IMAGE
from support.infisical_http import infisical_http  # noqa: F401  (the fixture)
from support.processes import REPO_ROOT, minimal_env, run_launcher

EMAIL = "admin@example.com"
TOKEN_FILE = ".infisical-setup-token"
SET_UP = ("INFISICAL_PROJECT_ID", "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_infisical(port: int) -> dict:
    """Busybox standing in for the local Infisical container (healthy at once); the API
    itself is the fake server on the host."""
    return {"services": {"infisical": {
        "image": TEST_IMAGE, "init": True,
        "command": ["sh", "-c", "mkdir -p /www/api; echo ok > /www/api/status; exec httpd -f -p 8080 -h /www"],
        "ports": [f"127.0.0.1:{port}:8080"],
        "healthcheck": {"test": ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/api/status"],
                        "interval": "1s", "timeout": "2s", "retries": 30},
    }}}


class Clone:
    def __init__(self, folder: Path, server, http, name: str) -> None:
        self.dir, self.server, self.http, self.name = folder, server, http, name
        self.env = http.cli_env(dict(server.env))

    def run(self, *args: str, env: dict | None = None):
        return run_launcher([*args, "-p", self.name], cwd=self.dir, env=env or self.env, timeout=180)

    def setup(self, *args: str):
        return self.run("setup", "--admin-email", EMAIL, *args)

    def dotenv(self) -> dict:
        return dotenv_values(self.dir / ".env") if (self.dir / ".env").exists() else {}

    def identities(self) -> list[dict]:
        return [i for i in self.server.http_state().get("http_identities", {}).values()
                if i["name"] == "start-services"]


@pytest.fixture
def clone(tmp_path, infisical_server, infisical_http):  # noqa: F811 (pytest fixture)
    """A fresh clone: .env.example, a small stack using two secrets, no .env, and no local
    Infisical compose project (so `--remote`; the `local` fixture adds one)."""
    folder = tmp_path / "clone"
    folder.mkdir()
    shutil.copy(REPO_ROOT / ".env.example", folder / ".env.example")
    (folder / "docker-compose.yml").write_text(json.dumps({"services": {"app": {
        "image": TEST_IMAGE, "init": True, "command": ["sleep", "3600"],
        "environment": {"DB": "${POSTGRES_PASSWORD:?missing}", "Q": "${QDRANT_API_KEY:?missing}"}}}}))
    project = Clone(folder, infisical_server, infisical_http, "setup" + os.urandom(3).hex())
    yield project
    for name in (project.name, f"{project.name}-infisical"):
        run_launcher(["down", "-p", name], cwd=folder, env=minimal_env(), timeout=60)


@pytest.fixture
def local(clone, engine):
    port = free_port()
    (clone.dir / "infisical").mkdir()
    (clone.dir / "infisical" / "docker-compose.yml").write_text(json.dumps(local_infisical(port)))
    return clone


def values_shown(result, values) -> list[str]:
    return [v for v in values if v and v in result.stdout + result.stderr]


def test_a_fresh_clone_is_set_up_with_one_command_and_then_starts_from_infisical(local):
    result = local.setup()
    assert result.returncode == 0, result.stdout + result.stderr
    env = local.dotenv()
    assert all(env.get(key) for key in SET_UP)
    assert not (local.dir / TOKEN_FILE).exists()
    assert "Bootstrapped Infisical: admin admin@example.com" in result.stderr
    assert "Infisical is set up" in result.stderr and "Moved" in result.stderr
    assert f"log in as {EMAIL}" in result.stderr
    held = local.server.secrets(project=env["INFISICAL_PROJECT_ID"])
    assert held["POSTGRES_PASSWORD"] and "POSTGRES_PASSWORD" not in env  # moved, verified, gone from .env
    membership = local.server.http_state()["http_memberships"][env["INFISICAL_PROJECT_ID"]]
    assert [r["role"] for m in membership.values() for r in m["roles"] if m["identityId"] ==
            local.identities()[0]["id"]] == ["member"]

    up = local.run("up", "--profile", "none")
    assert up.returncode == 0, up.stderr
    assert "from Infisical" in up.stderr


def test_running_setup_again_changes_nothing(local):
    assert local.setup().returncode == 0
    before = (local.dir / ".env").read_bytes()
    calls = len(local.server.http_calls())
    again = local.setup()
    assert again.returncode == 0, again.stderr
    assert "Already set up" in again.stderr
    assert (local.dir / ".env").read_bytes() == before
    assert not [c for c in local.server.http_calls()[calls:] if c["method"] == "POST"]


STEPS = [
    "POST /api/v1/admin/bootstrap",
    "POST /api/v2/workspace",
    "POST /api/v1/identities",
    "POST /api/v1/auth/universal-auth/identities/:identityId",
    "POST /api/v1/auth/universal-auth/identities/:identityId/client-secrets",
    "POST /api/v2/workspace/:projectId/identity-memberships/:identityId",
]


@pytest.mark.parametrize("route", STEPS, ids=[s.split(" ", 1)[1] for s in STEPS])
def test_a_failure_at_any_step_leaves_env_as_it_was_and_a_rerun_completes(clone, route):
    assert clone.run("init").returncode == 0
    before = (clone.dir / ".env").read_bytes()
    clone.server.fail_http(route, 500, message="injected failure")
    failed = clone.setup("--remote")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "setup stopped at" in failed.stderr and "HTTP 500: injected failure" in failed.stderr
    assert "run setup again" in failed.stderr and "Traceback" not in failed.stderr
    assert (clone.dir / ".env").read_bytes() == before
    done = clone.setup("--remote")
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(clone.dotenv().get(key) for key in SET_UP)
    assert len(clone.identities()) == 1  # never a second identity
    assert not (clone.dir / TOKEN_FILE).exists()


def test_an_identity_without_a_client_secret_gets_one_on_the_rerun(clone):
    clone.run("init")
    clone.server.fail_http("POST /api/v1/auth/universal-auth/identities/:identityId/client-secrets", 503)
    assert clone.setup("--remote").returncode == 1
    assert (clone.dir / TOKEN_FILE).exists()  # the admin token survives for the rerun
    assert clone.setup("--remote").returncode == 0
    secrets = clone.server.http_state()["http_client_secrets"].values()
    assert len([s for s in secrets if not s["isClientSecretRevoked"]]) == 1


def test_no_secret_of_setup_reaches_argv_output_or_another_file(clone):
    result = clone.setup("--remote")
    assert result.returncode == 0, result.stderr
    env = clone.dotenv()
    admin_token = next(t for t, v in clone.server.http_state()["http_access_tokens"].items()
                       if v["authMethod"] == "token-auth")
    secrets = [env["INFISICAL_ADMIN_PASSWORD"], env["INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET"], admin_token]
    assert all(len(s) >= 6 for s in secrets)
    assert values_shown(result, secrets) == []
    assert "Infisical is set up" in result.stderr  # the message is there, without them
    for call in clone.server.calls():
        assert not [s for s in secrets if any(s in arg for arg in call["argv"])], call["argv"]
    for path in clone.dir.rglob("*"):
        if path.is_file() and path.name != ".env" and not path.name.startswith(".env.bak-"):
            text = path.read_bytes()
            assert not [s for s in secrets if s.encode() in text], path.name


def test_an_instance_bootstrapped_elsewhere_without_credentials_stops_with_the_manual_steps(clone):
    clone.run("init")
    status, _ = clone.http.request("POST", "/api/v1/admin/bootstrap",
                                   {"email": "other@example.com", "password": "pw-123456", "organization": "o"})
    assert status == 200
    before = (clone.dir / ".env").read_bytes()
    result = clone.setup("--remote")
    assert result.returncode == 3
    assert "already bootstrapped" in result.stderr and "docs/setup.md" in result.stderr
    assert (clone.dir / ".env").read_bytes() == before


def test_a_remote_infisical_is_refused_without_remote(clone):
    clone.run("init")
    result = clone.setup()
    assert result.returncode == 6
    assert "not this project's local Infisical" in result.stderr and "--remote" in result.stderr
    assert clone.server.http_calls() == []


def test_a_malformed_admin_email_is_refused_before_any_call(clone):
    result = clone.run("setup", "--admin-email", "not-an-email", "--remote")
    assert result.returncode == 2
    assert "is not an email address" in result.stderr
    assert clone.server.http_calls() == [] and not (clone.dir / ".env").exists()


def test_doctor_says_whether_setup_was_done(clone):
    clone.run("init")
    before = json.loads(clone.run("doctor", "--json").stdout)
    check = {c["name"]: c for c in before["checks"]}["setup"]
    assert check["status"] == "warn" and "not set up" in check["detail"]
    assert clone.setup("--remote").returncode == 0
    after = {c["name"]: c for c in json.loads(clone.run("doctor", "--json").stdout)["checks"]}["setup"]
    assert after["status"] == "pass"
