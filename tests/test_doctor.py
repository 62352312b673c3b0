"""`start_services.py doctor`, as a user meets it: a healthy setup passes every check; each
thing that is wrong fails with its fix and exit 1; warnings don't fail; `--json` is one
document for scripts; and no secret value ever shows, whatever is wrong.

Run against the real Docker engine and the Infisical CLI stand-in (tests/support/bin). Once
the CLI has a `doctor` command the scenarios run `python start_services.py doctor` as a
subprocess; until then they call `run_doctor` in-process with the same environment.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stack_launcher import doctor as doctor_mod
from stack_launcher.catalog import load_catalog
from stack_launcher.envfile import Source, render, write_private
from stack_launcher.generate import generate
from stack_launcher.output import Output
from stack_launcher.secret import Secret
from stack_launcher.settings import resolve
from support.infisical_server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PROJECT
from support.processes import REPO_ROOT, minimal_env, prepend_path, run_launcher

EXAMPLE = REPO_ROOT / ".env.example"
TOKEN = "tok-doctor-7f3a9c2e51"  # long enough to be masked (6+ characters)
CHECKS = ["docker-engine", "docker-compose", "infisical-cli", "infisical-auth", "infisical-project", "setup",
          "infisical-server", "env-file", "env-example", "placeholders", "secrets-in-env-file", "short-secrets",
          "temp-files", "ports", "env-mode", "export-mode",
          "export-age", "git-ignore", "shell-shadowing"]


# ------------------------------------------------------------------------------ running doctor

@functools.lru_cache(maxsize=None)
def cli_has_doctor() -> bool:
    result = run_launcher(["doctor", "--help"], cwd=REPO_ROOT, timeout=60)
    return result.returncode == 0


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout + self.stderr

    def lines(self, name: str) -> list[str]:
        """The check's line and its fix line (text output)."""
        lines = self.stdout.splitlines()
        for i, line in enumerate(lines):
            if line.split()[1:2] == [name]:
                fix = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].lstrip().startswith("fix:") else ""
                return [line, fix]
        raise AssertionError(f"no {name} line in:\n{self.stdout}")

    def status(self, name: str) -> str:
        return self.lines(name)[0].split()[0].lower()

    def fix(self, name: str) -> str:
        return self.lines(name)[1]

    def statuses(self) -> dict[str, str]:
        return {name: self.status(name) for name in CHECKS}


def run_doctor(project: Path, env: dict[str, str], *args: str, as_json: bool = False) -> Result:
    args = ["doctor", *args] + (["--json"] if as_json else [])
    if cli_has_doctor():
        done = run_launcher(args, cwd=project, env=env, timeout=60)
        return Result(done.returncode, done.stdout, done.stderr)
    err, out = io.StringIO(), io.StringIO()
    settings = resolve(project_dir=project, shell=env)
    with contextlib.redirect_stdout(out):
        code = doctor_mod.run_doctor(settings, Output(stream=err), as_json=as_json)
    return Result(code, out.getvalue(), err.getvalue())


# ------------------------------------------------------------------------------ a user's project

class StatusServer:
    """A stand-in Infisical HTTP endpoint: GET /api/status answers 200."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                ok = self.path == "/api/status"
                body = b'{"message":"Ok"}' if ok else b"{}"
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def status_server():
    server = StatusServer()
    yield server
    server.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens once the socket is closed


@dataclass
class Project:
    """A project folder as a user has it after `init` and `migrate`: `.env` holds the config
    and the bootstrap secrets, `.env.infisical` (0600, fresh) every secret."""

    dir: Path
    env: dict[str, str]
    dotenv: dict[str, str] = field(default_factory=dict)
    exported: dict[str, str] = field(default_factory=dict)

    def write_dotenv(self) -> None:
        (self.dir / ".env").write_text("".join(f"{k}={v}\n" for k, v in self.dotenv.items()), encoding="utf-8")
        (self.dir / ".env").chmod(0o600)  # as init writes it

    def write_export(self, when: datetime | None = None, source: Source | None = None) -> None:
        text = render({k: Secret(v) for k, v in self.exported.items()},
                      source or Source(DEFAULT_PROJECT, "dev", "/"), when)
        write_private(self.dir / ".env.infisical", text)

    def values(self) -> list[str]:
        """Every secret value the project holds (for 'never printed')."""
        catalog = load_catalog(EXAMPLE)
        sensitive = [v for k, v in self.dotenv.items() if k not in catalog or catalog[k].sensitive]
        return [v for v in sensitive + list(self.exported.values()) if len(v) >= 6]

    def doctor(self, *args: str, as_json: bool = False) -> Result:
        return run_doctor(self.dir, self.env, *args, as_json=as_json)


@pytest.fixture
def project(tmp_path, infisical_server, status_server) -> Project:
    infisical_server.add_token(TOKEN)
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / ".env.example")
    shutil.copy(REPO_ROOT / ".gitignore", folder / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True, env=minimal_env(), stdin=subprocess.DEVNULL)
    proj = Project(folder, dict(infisical_server.env))
    for key, entry in load_catalog(EXAMPLE).items():
        if entry.category == "config":
            proj.dotenv[key] = entry.default
        elif entry.category == "bootstrap":
            proj.dotenv[key] = generate(entry.fmt) if entry.fmt else ""
        else:
            proj.exported[key] = generate(entry.fmt)
    proj.dotenv.update(INFISICAL_TOKEN=TOKEN, INFISICAL_PROJECT_ID=DEFAULT_PROJECT,
                       INFISICAL_API_URL=status_server.url)
    proj.write_dotenv()
    proj.write_export(datetime.now(timezone.utc) - timedelta(minutes=5))
    return proj


def assert_no_value_shown(result: Result, values: list[str]) -> None:
    shown = [v for v in values if v in result.text]
    assert not shown, f"{len(shown)} secret value(s) printed"


# ------------------------------------------------------------------------------ scenarios

def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_stack(project, port: int, profile: str | None = None) -> None:
    service = {"image": "busybox-test:local", "ports": [f"127.0.0.1:{port}:80"]}
    if profile:
        service["profiles"] = [profile]
    import json as _json

    (project.dir / "docker-compose.yml").write_text(_json.dumps({"services": {"web": service}}))


def test_a_healthy_setup_passes_every_check(engine, project):
    write_stack(project, free_port())
    started = time.monotonic()
    result = project.doctor()
    elapsed = time.monotonic() - started
    assert result.code == 0, result.text
    assert result.statuses() == {name: "pass" for name in CHECKS}, result.stdout
    assert "Compose 2." in result.lines("docker-compose")[0] and ">= 2.29.0" in result.lines("docker-compose")[0]
    assert "Infisical CLI 0.43.121" in result.lines("infisical-cli")[0]
    assert "INFISICAL_TOKEN from .env" in result.lines("infisical-auth")[0]
    assert result.stdout.rstrip().endswith(f"{len(CHECKS)} checks: {len(CHECKS)} passed, 0 failed, 0 warnings, 0 skipped.")
    assert_no_value_shown(result, project.values() + [TOKEN])
    assert elapsed < 10, f"doctor took {elapsed:.1f} s"  # the probes run concurrently


def test_the_cli_missing_from_path_fails_with_how_to_install_it(project):
    path = os.pathsep.join(d for d in project.env["PATH"].split(os.pathsep)
                           if d and not os.path.exists(os.path.join(d, "infisical")))
    project.env["PATH"] = path
    result = project.doctor()
    assert result.code == 1
    assert result.status("infisical-cli") == "fail"
    assert "not on PATH" in result.lines("infisical-cli")[0]
    assert "install the Infisical CLI" in result.fix("infisical-cli")
    assert result.status("infisical-auth") == "pass"  # a token needs no CLI to be present


def test_a_missing_env_file_fails_with_init_as_the_fix(project):
    (project.dir / ".env").unlink()
    result = project.doctor()
    assert result.code == 1
    assert result.status("env-file") == "fail"
    assert "python start_services.py init" in result.fix("env-file")
    assert result.status("placeholders") == "skip"


def test_placeholders_left_unchanged_fail_naming_the_keys(project):
    project.dotenv["INFISICAL_ENCRYPTION_KEY"] = ""  # bootstrap: init would have generated it
    project.dotenv["POSTGRES_PASSWORD"] = ""  # a secret left empty in .env ...
    project.dotenv["WEBUI_SECRET_KEY"] = ""
    del project.exported["WEBUI_SECRET_KEY"]  # ... and not in the export either
    project.write_dotenv()
    project.write_export()
    result = project.doctor()
    assert result.code == 1
    line = result.lines("placeholders")[0]
    assert result.status("placeholders") == "fail"
    assert "INFISICAL_ENCRYPTION_KEY" in line and "WEBUI_SECRET_KEY" in line
    assert "POSTGRES_PASSWORD" not in line  # the export sets it, and the export wins over .env
    assert "start_services.py init" in result.fix("placeholders")


def test_a_secret_still_in_env_fails_and_suggests_migrate(project):
    project.dotenv["WEBUI_SECRET_KEY"] = "still-here-" + generate("hex:8")
    project.dotenv["SOME_API_TOKEN"] = "uncategorised-" + generate("hex:8")  # not in .env.example, named like a secret
    project.write_dotenv()
    result = project.doctor()
    assert result.code == 1
    line = result.lines("secrets-in-env-file")[0]
    assert "WEBUI_SECRET_KEY" in line and "SOME_API_TOKEN" in line
    assert "INFISICAL_AUTH_SECRET" not in line  # bootstrap secrets stay in .env for good
    assert "migrate" in result.fix("secrets-in-env-file")
    assert_no_value_shown(result, project.values())


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX-only")
def test_a_world_readable_export_fails_with_chmod_as_the_fix(project):
    (project.dir / ".env.infisical").chmod(0o644)
    result = project.doctor()
    assert result.code == 1
    assert result.status("export-mode") == "fail"
    assert "0644" in result.lines("export-mode")[0]
    assert "chmod 600 .env.infisical" in result.fix("export-mode")


def test_shell_variables_shadowing_keys_fail_naming_only_the_keys(project):
    project.env["POSTGRES_PASSWORD"] = "from-the-shell-" + generate("hex:8")  # beats .env.infisical
    project.env["N8N_HOSTNAME"] = "other.example"  # beats .env
    project.env["WEBUI_HOSTNAME"] = project.dotenv["WEBUI_HOSTNAME"]  # same value: no harm
    result = project.doctor()
    assert result.code == 1
    line = result.lines("shell-shadowing")[0]
    assert "POSTGRES_PASSWORD" in line and "N8N_HOSTNAME" in line and "WEBUI_HOSTNAME" not in line
    assert "unset" in result.fix("shell-shadowing")
    assert_no_value_shown(result, project.values() + [project.env["POSTGRES_PASSWORD"]])


@pytest.mark.engine  # exit 0 needs every other check to pass, the engine's too
def test_an_old_export_only_warns_and_doctor_still_exits_0(project):
    project.write_export(datetime.now(timezone.utc) - timedelta(days=10))
    result = project.doctor()
    assert result.status("export-age") == "warn"
    assert "10d old" in result.lines("export-age")[0]
    assert result.code == 0, result.stdout


def test_an_export_from_another_environment_warns(project):
    project.write_export(source=Source(DEFAULT_PROJECT, "prod", "/"))
    result = project.doctor()
    assert result.status("export-age") == "warn"
    assert "'prod'" in result.lines("export-age")[0]


def test_an_unreachable_infisical_server_fails_with_its_url(project):
    project.dotenv["INFISICAL_API_URL"] = closed_port_url() + "/api"  # /api is stripped as the CLI does
    project.write_dotenv()
    result = project.doctor()
    assert result.code == 1
    assert result.status("infisical-server") == "fail"
    assert "/api/status" in result.lines("infisical-server")[0] and "/api/api" not in result.stdout
    assert "INFISICAL_API_URL" in result.fix("infisical-server")


def test_without_a_server_url_the_server_check_is_skipped_with_a_note(project):
    project.dotenv["INFISICAL_API_URL"] = ""
    project.write_dotenv()
    result = project.doctor()
    assert result.status("infisical-server") == "skip"
    assert "Infisical Cloud" in result.lines("infisical-server")[0]


def test_an_unreachable_engine_fails_with_how_to_start_docker(project):
    project.env["DOCKER_HOST"] = f"unix://{project.dir / 'no-docker.sock'}"
    result = project.doctor()
    assert result.code == 1
    assert result.status("docker-engine") == "fail"
    assert "start Docker" in result.fix("docker-engine")


def test_no_credentials_and_no_user_session_fail_with_the_ways_to_log_in(project, infisical_server):
    project.dotenv["INFISICAL_TOKEN"] = ""
    project.write_dotenv()
    result = project.doctor()
    assert result.code == 1
    assert result.status("infisical-auth") == "fail"
    assert "infisical login" in result.fix("infisical-auth")
    infisical_server.set_user_session(logged_in=True)
    result = project.doctor()
    assert result.status("infisical-auth") == "pass", result.stdout
    assert "user session" in result.lines("infisical-auth")[0]
    calls = infisical_server.calls_of("login")
    assert calls and all(c["stdin_is_closed_or_devnull"] for c in calls)


def test_a_machine_identity_is_checked_by_logging_in(project, infisical_server):
    project.dotenv.update(INFISICAL_TOKEN="", INFISICAL_UNIVERSAL_AUTH_CLIENT_ID=DEFAULT_CLIENT_ID,
                          INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET=DEFAULT_CLIENT_SECRET)
    project.write_dotenv()
    result = project.doctor()
    assert result.status("infisical-auth") == "pass", result.stdout
    assert "machine identity" in result.lines("infisical-auth")[0]
    assert infisical_server.calls_of("login")[-1]["env_token_vars"]["TOKEN"] is None

    wrong = "wrong-client-secret-" + generate("hex:8")
    project.dotenv["INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET"] = wrong
    project.write_dotenv()
    result = project.doctor()
    assert result.code == 1
    assert result.status("infisical-auth") == "fail"
    assert "Invalid credentials" in result.lines("infisical-auth")[0]
    assert_no_value_shown(result, [wrong, DEFAULT_CLIENT_SECRET])


def test_a_machine_identity_needs_a_project_id_even_with_infisical_json(project, infisical_server):
    project.dotenv.update(INFISICAL_TOKEN="", INFISICAL_PROJECT_ID="", INFISICAL_UNIVERSAL_AUTH_CLIENT_ID=DEFAULT_CLIENT_ID,
                          INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET=DEFAULT_CLIENT_SECRET)
    project.write_dotenv()
    infisical_server.write_workspace_file(project.dir)
    result = project.doctor()
    assert result.status("infisical-project") == "fail"
    assert "INFISICAL_PROJECT_ID" in result.fix("infisical-project")


def test_an_export_tracked_by_git_fails(project):
    (project.dir / ".gitignore").write_text("# nothing ignored\n", encoding="utf-8")
    subprocess.run(["git", "add", "-f", ".env.infisical"], cwd=project.dir, check=True, env=minimal_env(),
                   stdin=subprocess.DEVNULL)
    result = project.doctor()
    assert result.code == 1
    assert result.status("git-ignore") == "fail"
    assert "git rm --cached .env.infisical" in result.fix("git-ignore")


def test_json_output_is_one_document_naming_the_failing_checks(project):
    (project.dir / ".env.infisical").chmod(0o644)
    project.dotenv["WEBUI_SECRET_KEY"] = "json-leak-check-" + generate("hex:8")
    project.write_dotenv()
    result = project.doctor(as_json=True)
    assert result.code == 1
    document = json.loads(result.stdout)  # the whole of stdout, nothing else
    assert document["ok"] is False
    assert [c["name"] for c in document["checks"]] == CHECKS
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in document["checks"])
    assert all(c["status"] in ("pass", "fail", "warn", "skip") for c in document["checks"])
    failing = {c["name"] for c in document["checks"] if c["status"] == "fail"}
    assert failing >= {"export-mode", "secrets-in-env-file"}
    assert all(c["fix"] for c in document["checks"] if c["status"] == "fail")
    assert_no_value_shown(result, project.values())


def test_everything_wrong_at_once_still_shows_no_value(project, infisical_server):
    """Everything wrong together, in text and JSON: still no value, anywhere."""
    leak = {
        "WEBUI_SECRET_KEY": "in-dotenv-" + generate("hex:8"),
        "NEO4J_AUTH": "neo4j/" + generate("password:12"),
    }
    project.dotenv.update(leak, INFISICAL_TOKEN="", INFISICAL_UNIVERSAL_AUTH_CLIENT_ID=DEFAULT_CLIENT_ID,
                          INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET="bad-secret-" + generate("hex:8"))
    project.write_dotenv()
    project.env["POSTGRES_PASSWORD"] = "shell-value-" + generate("hex:8")
    (project.dir / ".env.infisical").chmod(0o644)
    values = project.values() + [project.env["POSTGRES_PASSWORD"]]
    for as_json in (False, True):
        result = project.doctor(as_json=as_json)
        assert result.code == 1
        assert_no_value_shown(result, values)


# ------------------------------------------------------------------------------ compose versions

def fake_docker(folder: Path, compose_version: str) -> Path:
    """A `docker` that answers `compose version --short` with an old release; the engine and
    everything else is never asked here (only the compose check runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "docker"
    script.write_text(f'#!/bin/sh\n[ "$1 $2" = "compose version" ] && echo "{compose_version}" && exit 0\nexit 1\n')
    script.chmod(0o755)
    return folder


@pytest.mark.parametrize("version, status, says", [
    ("2.40.3", "pass", ">= 2.29.0"),
    ("2.20.0", "warn", "--progress json (plan)"),  # `up` works, `plan` does not
    ("2.16.0", "fail", "upgrade Docker Compose"),
])
def test_an_old_compose_warns_or_fails_saying_which_version_is_needed(tmp_path, version, status, says):
    bin_dir = fake_docker(tmp_path / "bin", version)
    env = prepend_path(minimal_env(), bin_dir)
    check = doctor_mod.check_compose(resolve(project_dir=tmp_path, shell=env))
    assert check.status == status
    assert says in check.detail + check.fix


def test_a_machine_with_only_compose_v1_fails_the_compose_check(tmp_path):
    bin_dir = fake_docker(tmp_path / "bin", "")  # `docker compose` prints nothing: not a v2 plugin
    (bin_dir / "docker").write_text("#!/bin/sh\necho \"docker: 'compose' is not a docker command.\" >&2\nexit 1\n")
    env = prepend_path(minimal_env(), bin_dir)
    check = doctor_mod.check_compose(resolve(project_dir=tmp_path, shell=env))
    assert check.status == "fail"
    assert "Compose v2 is not installed" in check.detail and "docker-compose-plugin" in check.fix


def test_doctor_names_the_service_and_port_another_program_holds(engine, project):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        write_stack(project, port)
        result = project.doctor()
    assert result.code == 1
    assert result.statuses()["ports"] == "fail"
    assert f"web 127.0.0.1:{port}" in result.lines("ports")[0] and "docker-compose.override.private.yml" in result.text


def test_doctor_checks_only_the_ports_of_the_chosen_profile(engine, project):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        write_stack(project, holder.getsockname()[1], profile="gpu-nvidia")
        result = project.doctor("--profile", "cpu")
    assert result.statuses()["ports"] == "pass", result.text
    assert "0 published ports" in result.lines("ports")[0]


def test_an_env_file_others_can_read_fails_naming_the_fix(project):
    (project.dir / ".env").chmod(0o644)
    result = project.doctor()
    assert result.code == 1
    assert result.statuses()["env-mode"] == "fail" and "chmod 600 .env" in result.text
