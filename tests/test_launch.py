"""A user starts the stack: secrets from Infisical, or from .env when Infisical can't be had.

Every scenario runs the real launcher against the real Docker engine and Compose v2, with
the stand-in Infisical CLI on PATH.
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from support.processes import LAUNCHER, minimal_env

TRICKY = {
    "DB_PASSWORD": "it's a \"quoted\" back\\slash $HOME ${X} # not a comment",
    "API_KEY": "line one\nline two\ttabbed ünïcødé ✓ <&>",
    "CACHE_TOKEN": "plain-cache-token-1",
}
DOTENV = "HOSTNAME_CONFIG=example.local\nDB_PASSWORD=from-dotenv-db\nAPI_KEY=from-dotenv-api\nCACHE_TOKEN=from-dotenv-cache\n"


@pytest.fixture
def project(stack, infisical_server):
    """A stack with two cpu services, one gpu-nvidia service, secrets in Infisical, and .env."""
    stack.write_compose({
        "api": {"profiles": ["cpu"], "environment": {"DB_PASSWORD": "${DB_PASSWORD:?DB_PASSWORD is not set}",
                                                     "API_KEY": "${API_KEY:?API_KEY is not set}"}},
        "cache": {"profiles": ["cpu"], "environment": {"CACHE_TOKEN": "${CACHE_TOKEN:?CACHE_TOKEN is not set}"}},
        "gpu": {"profiles": ["gpu-nvidia"], "environment": {"API_KEY": "${API_KEY:?API_KEY is not set}"}},
    })
    stack.write_env(DOTENV + "INFISICAL_TOKEN=tok-1\nINFISICAL_PROJECT_ID=proj-1\n")
    infisical_server.set_secrets(dict(TRICKY))
    stack.infisical = infisical_server
    return stack


def launch(project, *args, env=None, timeout=120):
    env = dict(project.infisical.env if env is None else env)
    cmd = [sys.executable, str(LAUNCHER), *args, "-p", project.name]
    return subprocess.run(cmd, cwd=project.dir, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def shown(result) -> str:
    return result.stdout + result.stderr


def assert_no_secret_shown(result, values=tuple(TRICKY.values())):
    text = shown(result)
    for value in values:
        assert value not in text
        for part in value.split("\n"):
            if len(part) >= 6:
                assert part not in text, f"part of a secret leaked: {part!r}"


def test_starts_the_stack_with_the_secrets_from_infisical(project):
    result = launch(project, "--profile", "cpu")
    assert result.returncode == 0, shown(result)
    assert project.container_env("api")["DB_PASSWORD"] == TRICKY["DB_PASSWORD"]
    assert project.container_env("api")["API_KEY"] == TRICKY["API_KEY"]
    assert project.container_env("cache")["CACHE_TOKEN"] == TRICKY["CACHE_TOKEN"]
    assert set(project.running_services()) == {"api", "cache"}  # the gpu-nvidia one does not start
    exported = project.dir / ".env.infisical"
    if os.name == "posix":
        assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    assert "from Infisical" in result.stderr
    assert_no_secret_shown(result)


def test_the_export_call_is_explicit_and_has_no_secret_in_argv(project):
    assert launch(project).returncode == 0
    (export,) = project.infisical.calls_of("export")
    assert "--format=json" in export["argv"] and "--env=dev" in export["argv"] and "--path=/" in export["argv"]
    assert "--projectId=proj-1" in export["argv"]
    assert not any("tok-1" in a for a in export["argv"])
    assert export["env_token_vars"]["INFISICAL_TOKEN"] == "tok-1"
    assert export["stdin_is_closed_or_devnull"]


def test_an_unrelated_TOKEN_in_the_shell_never_reaches_the_cli(project):
    env = dict(project.infisical.env, TOKEN="my-github-token")
    assert launch(project, env=env).returncode == 0
    (export,) = project.infisical.calls_of("export")
    assert export["env_token_vars"]["TOKEN"] is None


@pytest.mark.parametrize("cause, setup, expected", [
    ("the CLI is missing", "no-cli", "not on PATH"),
    ("the token is refused", "bad-token", "401"),
    ("the CLI hangs", "hang", "no answer within 2 s"),
    ("the CLI prints no JSON", "garbage", "other than JSON"),
    ("Infisical returns nothing", "empty-result", "no secrets"),
])
def test_falls_back_to_dotenv_and_says_why(project, cause, setup, expected):
    env = dict(project.infisical.env)
    if setup == "no-cli":
        env["PATH"] = minimal_env()["PATH"]
    elif setup == "bad-token":
        project.infisical.revoke_token("tok-1")
    elif setup == "hang":
        project.infisical.set_server("hang")
    elif setup == "garbage":
        project.infisical.set_server("garbage")
    elif setup == "empty-result":
        project.infisical.set_secrets({})
    started = time.monotonic()
    result = launch(project, "--infisical-timeout", "2", env=env)
    assert result.returncode == 0, shown(result)
    assert time.monotonic() - started < 60
    assert expected in result.stderr, result.stderr
    assert "falling back to .env" in result.stderr
    assert project.container_env("api")["DB_PASSWORD"] == "from-dotenv-db"
    assert not (project.dir / ".env.infisical").exists()


def test_require_infisical_fails_and_starts_nothing(project):
    project.infisical.set_server("down")
    result = launch(project, "--require-infisical")
    assert result.returncode == 3
    assert "Infisical is required but unavailable" in result.stderr
    assert project.running_services() == {}


def test_skip_infisical_never_calls_the_cli(project):
    result = launch(project, "--skip-infisical")
    assert result.returncode == 0, shown(result)
    assert project.infisical.calls() == []
    assert project.container_env("cache")["CACHE_TOKEN"] == "from-dotenv-cache"


def test_a_secret_missing_everywhere_is_named_and_offline_suggested(project):
    project.write_env("INFISICAL_TOKEN=tok-1\nDB_PASSWORD=x-db-pass\nAPI_KEY=x-api-key\n")
    result = launch(project, "--skip-infisical")
    assert result.returncode == 1
    assert "CACHE_TOKEN" in result.stderr and "--offline" in result.stderr
    assert project.running_services() == {}


def test_rotating_one_secret_recreates_only_the_service_that_uses_it(project):
    assert launch(project).returncode == 0
    before = {s: project.container_id(s) for s in ("api", "cache")}
    project.infisical.set_secrets({**TRICKY, "CACHE_TOKEN": "rotated-cache-token-2"})
    result = launch(project)
    assert result.returncode == 0, shown(result)
    assert "changed: CACHE_TOKEN" in result.stderr
    assert project.container_id("api") == before["api"]
    assert project.container_id("cache") != before["cache"]
    assert project.container_env("cache")["CACHE_TOKEN"] == "rotated-cache-token-2"
    assert "rotated-cache-token-2" not in shown(result)


def test_a_rerun_with_nothing_changed_recreates_nothing(project):
    assert launch(project).returncode == 0
    before = {s: project.container_id(s) for s in ("api", "cache")}
    result = launch(project)
    assert result.returncode == 0
    assert "No secret changed" in result.stderr
    assert {s: project.container_id(s) for s in ("api", "cache")} == before


def test_machine_identity_token_reaches_export_through_the_environment(project):
    project.write_env(DOTENV + "INFISICAL_PROJECT_ID=proj-1\nINFISICAL_UNIVERSAL_AUTH_CLIENT_ID=client-id\n"
                      "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET=client-secret\n")
    project.infisical.add_machine_identity(token="machine-tok-9")
    result = launch(project)
    assert result.returncode == 0, shown(result)
    (login,) = project.infisical.calls_of("login")
    assert "--method=universal-auth" in login["argv"]
    (export,) = project.infisical.calls_of("export")
    assert export["env_token_vars"]["INFISICAL_TOKEN"] == "machine-tok-9"
    for call in project.infisical.calls():
        assert not any("client-secret" in a or "machine-tok-9" in a for a in call["argv"])
    assert "machine-tok-9" not in shown(result)
    assert project.container_env("api")["DB_PASSWORD"] == TRICKY["DB_PASSWORD"]


def test_warns_when_the_shell_shadows_a_secret(project):
    env = dict(project.infisical.env, CACHE_TOKEN="shell-cache-value")
    result = launch(project, env=env)
    assert result.returncode == 0
    assert "your shell exports CACHE_TOKEN" in result.stderr
    assert "shell-cache-value" not in shown(result)


def test_dry_run_changes_nothing_and_shows_only_names(project):
    result = launch(project, "--dry-run")
    assert result.returncode == 0, shown(result)
    assert "DB_PASSWORD" in result.stdout and "docker compose -p" in result.stdout
    assert not (project.dir / ".env.infisical").exists()
    assert project.running_services() == {}
    assert_no_secret_shown(result)
    assert "from-dotenv-db" not in shown(result)


def test_profile_none_starts_no_profiled_service_even_when_an_env_file_sets_one(project):
    project.write_env(DOTENV + "INFISICAL_TOKEN=tok-1\nINFISICAL_PROJECT_ID=proj-1\nCOMPOSE_PROFILES=cpu,gpu-nvidia\n")
    project.write_compose({"plain": {}, "api": {"profiles": ["cpu"]}, "gpu": {"profiles": ["gpu-nvidia"]}})
    result = launch(project, "--profile", "none")
    assert result.returncode == 0, shown(result)
    assert set(project.running_services()) == {"plain"}


def test_environment_adds_its_override_file(project):
    (project.dir / "docker-compose.override.public.yml").write_text(
        'services:\n  cache:\n    environment:\n      PUBLIC_MODE: "yes"\n')
    assert launch(project, "--environment", "public").returncode == 0
    assert project.container_env("cache")["PUBLIC_MODE"] == "yes"
    assert launch(project, "--environment", "private").returncode == 0
    assert "PUBLIC_MODE" not in project.container_env("cache")


def test_unreachable_docker_is_one_clear_error(project):
    env = dict(project.infisical.env, DOCKER_HOST="unix:///nonexistent/docker.sock")
    result = launch(project, env=env)
    assert result.returncode == 4
    assert "Docker engine is not reachable" in result.stderr
    assert "Traceback" not in shown(result)


def test_an_env_file_compose_cannot_load_is_exit_6_with_the_line(project):
    project.write_env("INFISICAL_TOKEN=tok-1\nINFISICAL_PROJECT_ID=proj-1\nBROKEN='it''s-secret-value'\n")
    result = launch(project)
    assert result.returncode == 6, shown(result)
    assert "line 3" in result.stderr and ".env" in result.stderr
    assert "Traceback" not in shown(result)


def test_no_dotenv_points_to_init(project):
    (project.dir / ".env").unlink()
    result = launch(project)
    assert result.returncode == 6
    assert "init" in result.stderr
    assert project.infisical.calls() == []


def test_a_secret_that_compose_quotes_in_an_error_is_masked(project):
    project.infisical.set_secrets({**TRICKY, "PORT_SECRET": "s3cr3t-port-value"})
    project.write_compose({"api": {"profiles": ["cpu"], "ports": ["${PORT_SECRET}:80"]}})
    result = launch(project)
    assert result.returncode != 0
    assert "s3cr3t-port-value" not in shown(result)
    assert "***" in shown(result)


def test_down_removes_every_profile_and_keeps_the_volumes(project):
    project.write_compose({
        "api": {"profiles": ["cpu"], "volumes": ["data:/data"]},
        "gpu": {"profiles": ["gpu-nvidia"]},
    }, volumes={"data": {}})
    assert launch(project, "--profile", "cpu").returncode == 0
    assert launch(project, "--profile", "gpu-nvidia").returncode == 0
    assert set(project.running_services()) == {"api", "gpu"}
    (project.dir / ".env.infisical").unlink()
    (project.dir / ".env").write_text("")  # down needs no secret
    result = launch(project, "down")
    assert result.returncode == 0, shown(result)
    assert project.containers(all=True) == []
    volumes = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project.name}"],
                             capture_output=True, text=True).stdout.split()
    assert volumes == [f"{project.name}_data"]


def test_ctrl_c_while_waiting_for_infisical_exits_130_and_leaves_nothing(project):
    project.infisical.set_server("hang")
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), "-p", project.name], cwd=project.dir,
                            env=project.infisical.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not project.infisical.calls_of("export") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert sorted(p.name for p in project.dir.iterdir() if p.name.startswith(".env")) == [".env"]
    assert project.running_services() == {}


def fake_docker(tmp_path, script: str) -> str:
    """A `docker` on PATH that answers like a machine without Compose v2 (no engine needed)."""
    folder = tmp_path / "fakebin"
    folder.mkdir()
    (folder / "docker").write_text("#!/bin/sh\n" + script)
    (folder / "docker").chmod(0o755)
    return str(folder)


def test_a_docker_without_compose_v2_is_one_clear_error(tmp_path, infisical_server):
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    (tmp_path / ".env").write_text("INFISICAL_TOKEN=tok-1\nINFISICAL_PROJECT_ID=proj-1\n")
    infisical_server.set_secrets({"A": "value-a"})
    env = dict(infisical_server.env)
    env["PATH"] = fake_docker(tmp_path, "echo \"docker: 'compose' is not a docker command.\" >&2; exit 1\n") + ":" + env["PATH"]
    result = subprocess.run([sys.executable, str(LAUNCHER)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 4
    assert "Docker Compose v2 is not installed" in result.stderr


def test_warns_when_git_would_commit_the_export(tmp_path, infisical_server):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=minimal_env(), stdin=subprocess.DEVNULL)
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    (tmp_path / ".env").write_text("INFISICAL_TOKEN=tok-1\nINFISICAL_PROJECT_ID=proj-1\n")
    infisical_server.set_secrets({"A": "value-a"})
    env = dict(infisical_server.env)
    env["PATH"] = fake_docker(tmp_path, "exit 0\n") + ":" + env["PATH"]
    result = subprocess.run([sys.executable, str(LAUNCHER)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    assert ".gitignore does not cover .env.infisical" in result.stderr
    (tmp_path / ".gitignore").write_text(".env\n.env.*\n")
    result = subprocess.run([sys.executable, str(LAUNCHER)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    assert ".gitignore" not in result.stderr
    # A re-run asks git while the export runs (the file is there already): the same answers.
    (tmp_path / ".gitignore").unlink()
    result = subprocess.run([sys.executable, str(LAUNCHER)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    assert ".gitignore does not cover .env.infisical" in result.stderr
    subprocess.run(["git", "-C", str(tmp_path), "add", "-f", ".env.infisical"], check=True, env=minimal_env(),
                   stdin=subprocess.DEVNULL)
    result = subprocess.run([sys.executable, str(LAUNCHER)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    assert "git tracks .env.infisical" in result.stderr
