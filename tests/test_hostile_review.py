"""What a hostile review of the launcher found, each as the scenario that found it."""
from __future__ import annotations

import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stack_launcher.infisical_api import Api, ApiError, find_project
from stack_launcher.masking import Masker
from stack_launcher.secret import Secret
from support.infisical_http import infisical_http  # noqa: F401  (the fixture)
from support.processes import REPO_ROOT, minimal_env, run_launcher


def clone(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / ".env.example", folder / ".env.example")
    (folder / "docker-compose.yml").write_text('{"services": {"app": {"image": "busybox-test:local"}}}')
    return folder


def test_setup_never_rewrites_env_through_a_symlink(tmp_path, infisical_server, infisical_http):  # noqa: F811
    folder = clone(tmp_path / "p")
    real = tmp_path / "keep" / "real.env"
    real.parent.mkdir()
    real.write_text("POSTGRES_PASSWORD=keep-me-in-one-place\n")
    (folder / ".env").symlink_to(real)
    env = infisical_http.cli_env(dict(infisical_server.env))
    result = run_launcher(["setup", "--remote", "--admin-email", "a@example.com"], cwd=folder, env=env)
    assert result.returncode == 6
    assert ".env is a symlink; setup does not rewrite through symlinks" in result.stderr
    assert real.read_text() == "POSTGRES_PASSWORD=keep-me-in-one-place\n"
    assert infisical_server.http_calls() == []


def test_setup_without_the_infisical_cli_stops_before_making_any_credential(tmp_path, infisical_server,
                                                                            infisical_http):  # noqa: F811
    folder = clone(tmp_path / "p")
    env = infisical_http.cli_env(minimal_env())  # PATH without the stand-in CLI
    result = run_launcher(["setup", "--remote", "--admin-email", "a@example.com"], cwd=folder, env=env)
    assert result.returncode == 3
    assert "the Infisical CLI is not on PATH" in result.stderr
    assert infisical_server.http_calls() == []


class _Redirecting(BaseHTTPRequestHandler):
    seen: list = []
    target = ""

    def do_GET(self):  # noqa: N802
        _Redirecting.seen.append((self.server.server_address[1], self.headers.get("Authorization")))
        if self.server.server_address[1] == _Redirecting.first:
            self.send_response(302)
            self.send_header("Location", _Redirecting.target + self.path)
            self.end_headers()
        else:
            body = json.dumps({"id": "p1"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_admin_token_is_never_sent_on_to_where_a_redirect_points():
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _Redirecting.first = servers[0].server_address[1]
        _Redirecting.target = f"http://127.0.0.1:{servers[1].server_address[1]}"
        api = Api(f"http://127.0.0.1:{_Redirecting.first}", Secret("ADMIN-TOKEN-abcdef"))
        with pytest.raises(ApiError) as caught:
            find_project(api, "localai")
        assert caught.value.status == 302
        assert [port for port, _ in _Redirecting.seen] == [_Redirecting.first]
        assert "ADMIN-TOKEN" not in str(caught.value)
    finally:
        for server in servers:
            server.shutdown()


def test_migrate_moves_secrets_out_of_an_env_that_starts_with_a_bom(stack, infisical_server):
    (stack.dir / ".env.example").write_text("#@ bootstrap\nINFISICAL_TOKEN=\n#@ config\nINFISICAL_PROJECT_ID=\n"
                                            "#@ secret format=password:32\nDB_PASSWORD=\n")
    (stack.dir / ".env").write_bytes("\ufeffINFISICAL_TOKEN=tok-1\nINFISICAL_PROJECT_ID=proj-1\n"
                                     "DB_PASSWORD=bom-file-password\n".encode())
    result = run_launcher(["migrate", "--apply", "-p", stack.name], cwd=stack.dir, env=infisical_server.env)
    assert result.returncode == 0, result.stderr
    assert infisical_server.secrets()["DB_PASSWORD"] == "bom-file-password"
    text = (stack.dir / ".env").read_bytes()
    assert text.startswith("\ufeff".encode()) and b"bom-file-password" not in text


def test_init_never_appends_a_second_value_for_a_line_only_compose_can_read(tmp_path, run_launcher):
    folder = clone(tmp_path / "p")
    (folder / ".env").write_text('WEBUI_SECRET_KEY="my-precious-key"v2\n')
    docker = folder / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text("#!/bin/sh\nexit 0\n")  # no volumes
    docker.chmod(0o755)
    env = minimal_env()
    env["PATH"] = f"{docker.parent}{os.pathsep}{env['PATH']}"
    result = run_launcher(["init"], cwd=folder, env=env)
    assert result.returncode == 0, result.stderr
    assert (folder / ".env").read_text().count("WEBUI_SECRET_KEY=") == 1


@pytest.mark.parametrize("output", [".env.example", "docker-compose.override.public.yml"])
def test_the_export_never_overwrites_a_file_of_the_project(tmp_path, run_launcher, output):
    folder = clone(tmp_path / "p")
    (folder / "docker-compose.override.public.yml").write_text("services: {}\n")
    (folder / ".env").write_text("A=1\n")
    before = (folder / output).read_bytes()
    result = run_launcher(["up", "--skip-infisical", "--output", output], cwd=folder, env=minimal_env())
    assert result.returncode == 6
    assert "is a file of the project" in result.stderr
    assert (folder / output).read_bytes() == before


def test_an_env_file_that_never_ends_is_refused_in_one_line(tmp_path, run_launcher):
    folder = clone(tmp_path / "p")
    result = run_launcher(["up", "--dry-run", "--skip-infisical", "--env-file", "/dev/zero"], cwd=folder,
                          env=minimal_env(), timeout=30)
    assert result.returncode == 6
    assert "/dev/zero is not a regular file" in result.stderr and "Traceback" not in result.stderr


def test_a_non_ascii_value_with_ampersands_is_masked_as_go_json_prints_it():
    value = "pässwörd&<x>"
    masker = Masker([value])
    assert masker.mask('{"msg": "p\\u00e4ssw\\u00f6rd\\u0026\\u003cx\\u003e"}') != \
        '{"msg": "p\\u00e4ssw\\u00f6rd\\u0026\\u003cx\\u003e"}'
    assert "***" in masker.mask("error: pässwörd\\u0026\\u003cx\\u003e is bad")


@pytest.mark.parametrize("command", ["up", "plan", "migrate"])
def test_a_value_compose_rejects_as_an_invalid_template_is_never_printed(stack, infisical_server, command):
    (stack.dir / ".env.example").write_text("#@ bootstrap\nINFISICAL_TOKEN=\n#@ secret format=password:32\n"
                                            "POSTGRES_PASSWORD=\n")
    stack.write_compose({"app": {"environment": {"P": "${POSTGRES_PASSWORD}"}}})
    (stack.dir / ".env").write_text('POSTGRES_PASSWORD="ab\\$c${}hunter2x"\n')
    args = [command, "-p", stack.name] + (["--skip-infisical"] if command != "migrate" else [])
    result = run_launcher(args, cwd=stack.dir, env=infisical_server.env)
    shown = result.stdout + result.stderr
    assert "hunter2x" not in shown
    if command == "migrate":  # it keeps a `${` value in .env and never asks compose about it
        assert result.returncode == 0 and "POSTGRES_PASSWORD: refers to another variable" in shown
    else:
        assert result.returncode == 6, shown
        assert "invalid template" in shown.lower()
