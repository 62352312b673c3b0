"""The local Infisical (its own compose project) is brought up and healthy before the export."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from support.docker_stack import TEST_IMAGE
from support.processes import LAUNCHER, minimal_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def infisical_service(port: int, delay: int = 2, healthy: bool = True) -> dict:
    """Busybox standing in for Infisical: /api/status answers after `delay` seconds."""
    check = "http://127.0.0.1:8080/api/status" if healthy else "http://127.0.0.1:8080/never"
    return {"services": {"infisical": {
        "image": TEST_IMAGE, "init": True,
        "command": ["sh", "-c", f"sleep {delay}; mkdir -p /www/api; echo '{{\"ok\":1}}' > /www/api/status; "
                                "exec httpd -f -p 8080 -h /www"],
        "ports": [f"127.0.0.1:{port}:8080"],
        "healthcheck": {"test": ["CMD", "wget", "-qO-", check], "interval": "1s", "timeout": "2s", "retries": 60},
    }}}


@pytest.fixture
def project(stack, infisical_server):
    port = free_port()
    (stack.dir / "infisical").mkdir()
    (stack.dir / "infisical" / "docker-compose.yml").write_text(json.dumps(infisical_service(port)))
    stack.write_compose({"api": {"environment": {"DB_PASSWORD": "${DB_PASSWORD:?DB_PASSWORD is not set}"}}})
    stack.write_env(f"INFISICAL_API_URL=http://127.0.0.1:{port}\nINFISICAL_TOKEN=tok-1\nINFISICAL_PROJECT_ID=proj-1\n"
                    "DB_PASSWORD=from-dotenv-password\n")
    infisical_server.set_secrets({"DB_PASSWORD": "from-infisical-password"})
    infisical_server.update(probe_domain=True)  # the stand-in CLI really asks <url>/api/status
    stack.infisical = infisical_server
    stack.port = port
    yield stack
    subprocess.run(["docker", "compose", "-p", f"{stack.name}-infisical", "down", "-v", "-t", "0"],
                   env=minimal_env(), capture_output=True, cwd="/")


def launch(project, *args):
    cmd = [sys.executable, str(LAUNCHER), *args, "-p", project.name]
    return subprocess.run(cmd, cwd=project.dir, env=project.infisical.env, capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)


def infisical_containers(project) -> list[str]:
    out = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter",
                          f"label=com.docker.compose.project={project.name}-infisical"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_infisical_is_started_and_healthy_before_the_export(project):
    result = launch(project)
    assert result.returncode == 0, result.stderr
    assert "Starting the local Infisical" in result.stderr
    assert "from Infisical" in result.stderr  # the stand-in reached /api/status: it was up
    assert project.container_env("api")["DB_PASSWORD"] == "from-infisical-password"
    (infisical_id,) = infisical_containers(project)
    health = json.loads(subprocess.run(["docker", "inspect", infisical_id], capture_output=True, text=True).stdout)
    started_ai = project.inspect("api")["State"]["StartedAt"]
    healthy_at = [h["End"] for h in health[0]["State"]["Health"]["Log"] if h["ExitCode"] == 0][0]
    assert healthy_at <= started_ai  # the AI services start after Infisical is healthy


def test_an_already_running_infisical_is_not_recreated(project):
    assert launch(project).returncode == 0
    before = infisical_containers(project)
    result = launch(project)
    assert result.returncode == 0, result.stderr
    assert infisical_containers(project) == before
    assert "Starting the local Infisical" not in result.stderr


def test_an_unhealthy_infisical_falls_back_with_a_reason(project):
    (project.dir / "infisical" / "docker-compose.yml").write_text(json.dumps(infisical_service(project.port, healthy=False)))
    result = launch(project, "--infisical-start-timeout", "4")
    assert result.returncode == 0, result.stderr
    assert "did not become healthy within 4 s" in result.stderr
    assert project.container_env("api")["DB_PASSWORD"] == "from-dotenv-password"
    assert project.infisical.calls_of("export") == []


def test_an_unhealthy_infisical_with_require_infisical_is_exit_3(project):
    (project.dir / "infisical" / "docker-compose.yml").write_text(json.dumps(infisical_service(project.port, healthy=False)))
    result = launch(project, "--infisical-start-timeout", "4", "--require-infisical")
    assert result.returncode == 3
    assert "did not become healthy" in result.stderr
    assert project.running_services() == {}


def test_dry_run_and_plan_never_start_infisical(project):
    for args in (["--dry-run"], ["plan"]):
        result = launch(project, *args)
        assert "not running" in result.stderr
        assert infisical_containers(project) == []


def test_a_remote_infisical_url_starts_nothing_local(project):
    env_file = project.dir / ".env"
    env_file.write_text(env_file.read_text().replace("http://127.0.0.1", "http://infisical.example.invalid"))
    result = launch(project, "--infisical-timeout", "5")
    assert infisical_containers(project) == []
    assert "Starting the local Infisical" not in result.stderr


def test_down_leaves_infisical_running_unless_asked(project):
    assert launch(project).returncode == 0
    assert launch(project, "down").returncode == 0
    assert project.running_services() == {}
    assert len(infisical_containers(project)) == 1
    assert launch(project, "down", "--with-infisical").returncode == 0
    assert infisical_containers(project) == []
