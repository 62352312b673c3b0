"""A first start on a machine that cannot pull, or where a port is taken, says so in one
clear line instead of waiting out a health timeout."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from support.processes import LAUNCHER, minimal_env

UNPULLABLE = "registry.invalid/start-services/nothing:1.0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(project, *args):
    cmd = [sys.executable, str(LAUNCHER), *args, "-p", project.name]
    return subprocess.run(cmd, cwd=project.dir, env=project.infisical.env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def project(stack, infisical_server):
    stack.write_env("INFISICAL_TOKEN=tok-1\nINFISICAL_PROJECT_ID=proj-1\nDB_PASSWORD=from-dotenv-password\n")
    infisical_server.set_secrets({"DB_PASSWORD": "from-infisical-password"})
    stack.infisical = infisical_server
    yield stack
    subprocess.run(["docker", "compose", "-p", f"{stack.name}-infisical", "down", "-v", "-t", "0"],
                   env=minimal_env(), capture_output=True, cwd="/")


def test_a_local_infisical_that_cannot_be_pulled_is_named_at_once_not_after_the_health_timeout(project):
    port = free_port()
    (project.dir / "infisical").mkdir()
    (project.dir / "infisical" / "docker-compose.yml").write_text(json.dumps(
        {"services": {"infisical": {"image": UNPULLABLE, "ports": [f"127.0.0.1:{port}:8080"]}}}))
    with open(project.dir / ".env", "a") as env:
        env.write(f"INFISICAL_API_URL=http://127.0.0.1:{port}\n")
    project.write_compose({"api": {"environment": {"DB_PASSWORD": "${DB_PASSWORD:?missing}"}}})
    started = time.monotonic()
    result = launch(project, "--infisical-start-timeout", "180")
    elapsed = time.monotonic() - started
    assert f"cannot pull {UNPULLABLE} (service infisical): registry unreachable" in result.stderr, result.stderr
    assert "docker login" in result.stderr
    assert "did not become healthy" not in result.stderr
    assert elapsed < 60  # not the 180 s health limit
    assert result.returncode == 0, result.stderr  # the launch goes on from .env, as promised
    assert "Traceback" not in result.stderr


def test_a_stack_image_that_cannot_be_pulled_is_one_line_naming_the_image(project):
    project.write_compose({"api": {"image": UNPULLABLE}})
    result = launch(project, "--skip-infisical")
    assert result.returncode == 1
    assert f"error: cannot pull {UNPULLABLE} (service api): registry unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_another_program_holds_names_the_service_and_the_port_and_exits_6(project):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        project.write_compose({"web": {"ports": [f"127.0.0.1:{port}:80"]}})
        result = launch(project, "--skip-infisical")
    assert result.returncode == 6, result.stderr
    assert f"service web cannot publish 127.0.0.1:{port}: another program or container already uses it" \
        in result.stderr
    assert "docker-compose.override.<environment>.yml" in result.stderr


@pytest.mark.skipif(not os.path.exists("/usr/bin/docker") and os.environ.get("CI") != "true",
                    reason="Debian's docker CLI (/usr/bin/docker) is not installed")
def test_doctor_reaches_the_engine_with_debians_docker_cli_first_on_path(project, run_launcher):
    assert shutil.which("docker", path="/usr/bin"), "CI installs docker.io, which brings /usr/bin/docker"
    env = dict(project.infisical.env)
    env["PATH"] = os.pathsep.join(["/usr/bin", env.get("PATH", "")])
    result = run_launcher(["doctor", "--json"], cwd=project.dir, env=env)
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["docker-engine"]["status"] == "pass", checks["docker-engine"]
    assert "reachable" in checks["docker-engine"]["detail"]
