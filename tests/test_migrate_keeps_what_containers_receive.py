"""`migrate --apply` never changes what a container receives: it checks the whole stack's
resolved environment before and after, and undoes the move when they differ."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.processes import LAUNCHER

EXAMPLE = """\
#@ config
INFISICAL_PROJECT_ID=
#@ bootstrap
INFISICAL_TOKEN=
#@ secret format=password:32
DB_PASSWORD=
#@ config
DATABASE_URL=
#@ secret format=password:32
API_SECRET=
#@ secret format=password:32
BLANK_SECRET=
"""
DOTENV = """\
INFISICAL_PROJECT_ID=proj-1\r
INFISICAL_TOKEN=tok-1\r
DB_PASSWORD=db-pass-\U0001F511-"quoted"\r
DATABASE_URL=postgres://u:${DB_PASSWORD}@db/x\r
API_SECRET="multi\rline-api-secret"\r
BLANK_SECRET="   "\r
"""


@pytest.fixture
def project(stack, infisical_server):
    (stack.dir / ".env.example").write_text(EXAMPLE)
    stack.write_env(DOTENV)
    stack.infisical = infisical_server
    return stack


def migrate(project, *args):
    cmd = [sys.executable, str(LAUNCHER), "migrate", *args, "-p", project.name]
    return subprocess.run(cmd, cwd=project.dir, env=dict(project.infisical.env), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def resolved(project) -> dict:
    out = project.compose("--env-file", ".env", "--env-file", ".env.infisical", "--profile", "*", "config",
                          "--format", "json") if (project.dir / ".env.infisical").exists() else \
        project.compose("--env-file", ".env", "--profile", "*", "config", "--format", "json")
    return {name: svc.get("environment") for name, svc in json.loads(out.stdout)["services"].items()}


def test_a_key_another_value_refers_to_stays_in_env_and_the_listing_says_why(project):
    project.write_compose({"api": {"environment": {"DATABASE_URL": "${DATABASE_URL}",
                                                   "API_SECRET": "${API_SECRET:?missing}"}}})
    result = migrate(project)
    assert result.returncode == 0, result.stderr
    moving, staying = result.stdout.split("Staying in .env:")
    assert "API_SECRET" in moving and "DB_PASSWORD" not in moving
    assert "DB_PASSWORD: DATABASE_URL in .env refers to it" in staying
    assert "BLANK_SECRET: only whitespace, which the Infisical CLI refuses to store" in staying


def test_apply_keeps_every_services_environment_and_the_line_endings(project):
    project.write_compose({"api": {"environment": {"DATABASE_URL": "${DATABASE_URL}",
                                                   "API_SECRET": "${API_SECRET:?missing}"}},
                           "worker": {"environment": {"DB_PASSWORD": "${DB_PASSWORD}"}, "profiles": ["gpu"]}})
    before = resolved(project)
    original = (project.dir / ".env").read_bytes()
    result = migrate(project, "--apply")
    assert result.returncode == 0, result.stderr
    assert "Moved 1 secrets to Infisical" in result.stderr and "API_SECRET" in result.stderr
    assert project.infisical.secrets()["API_SECRET"] == "multi\rline-api-secret"
    # what the launcher will now hand compose: .env plus a fresh export
    up = subprocess.run([sys.executable, str(LAUNCHER), "up", "--dry-run", "-p", project.name], cwd=project.dir,
                        env=dict(project.infisical.env), capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    (project.dir / ".env.infisical").write_text(
        "".join(f'{k}="{v}"\n'.replace("\r", "\\r") for k, v in project.infisical.secrets().items()))
    assert resolved(project) == before
    text = (project.dir / ".env").read_bytes()
    assert text.count(b"\r\n") == original.count(b"\r\n")  # CRLF kept on every line that stays
    assert b"API_SECRET moved to Infisical" in text and b"DB_PASSWORD=db-pass-" in text
    backup = next(project.dir.glob(".env.bak-*"))
    assert backup.read_bytes() == original  # byte for byte


def test_a_move_that_would_change_a_container_is_undone_and_exits_1(project):
    # `env_file: .env` hands the service .env's keys directly: moving one would drop it there.
    project.write_compose({"api": {"env_file": [".env"]}})
    original = (project.dir / ".env").read_bytes()
    result = migrate(project, "--apply")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the move would change what containers receive (api: API_SECRET)" in result.stderr
    assert "undone" in result.stderr
    assert (project.dir / ".env").read_bytes() == original
    assert "API_SECRET" not in project.infisical.secrets()
    assert next(project.dir.glob(".env.bak-*")).read_bytes() == original
    assert "multi" not in result.stdout + result.stderr


def test_a_symlinked_env_is_refused_and_its_target_keeps_its_secrets(project):
    target = project.dir / "real.env"
    target.write_bytes((project.dir / ".env").read_bytes())
    (project.dir / ".env").unlink()
    (project.dir / ".env").symlink_to(target.name)
    result = migrate(project, "--apply")
    assert result.returncode == 6
    assert ".env is a symlink; migrate does not rewrite through symlinks" in result.stderr
    assert (project.dir / ".env").is_symlink() and target.read_bytes().decode() == DOTENV
    assert project.infisical.calls() == []


def test_a_raw_cr_inside_a_quoted_value_that_stays_is_kept_byte_for_byte(project):
    project.write_compose({"api": {"environment": {"API_SECRET": "${API_SECRET:?missing}"}}})
    (project.dir / ".env").write_bytes(DOTENV.encode() + b'NOTE="first\rsecond"\r\n')
    result = migrate(project, "--apply")
    assert result.returncode == 0, result.stderr
    assert b'NOTE="first\rsecond"\r\n' in (project.dir / ".env").read_bytes()
