"""A user moves the secrets still in .env into Infisical, and loses nothing on the way."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from support.processes import LAUNCHER

EXAMPLE = """\
#@ config
HOST_NAME=
#@ config
INFISICAL_PROJECT_ID=
#@ bootstrap
INFISICAL_TOKEN=
#@ bootstrap format=hex:16
INFISICAL_ENCRYPTION_KEY=
#@ secret format=password:32
DB_PASSWORD=
#@ secret format=password:32
ESCAPED_SECRET=
#@ secret format=password:32
INTERPOLATED_SECRET=
#@ secret format=password:32
REFERENCE_SECRET=
#@ secret format=password:32
EMPTY_SECRET=
"""
DOTENV = """\
# where Infisical lives
HOST_NAME=example.local
INFISICAL_PROJECT_ID=proj-1
INFISICAL_TOKEN=tok-1
INFISICAL_ENCRYPTION_KEY=0123456789abcdef0123456789abcdef
# the database
DB_PASSWORD="it's a db pass"
ESCAPED_SECRET="a\\$b-and-more"
INTERPOLATED_SECRET=pre-$HOST_NAME-post
REFERENCE_SECRET=${HOST_NAME}
EMPTY_SECRET=
API_TOKEN=uncategorised-but-named-like-a-secret
"""


@pytest.fixture
def project(stack, infisical_server):
    (stack.dir / ".env.example").write_text(EXAMPLE)  # API_TOKEN is deliberately not in it
    stack.write_env(DOTENV)
    stack.infisical = infisical_server
    return stack


def migrate(project, *args, env=None):
    cmd = [sys.executable, str(LAUNCHER), "migrate", *args, "-p", project.name]
    return subprocess.run(cmd, cwd=project.dir, env=dict(env or project.infisical.env), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_the_dry_run_lists_what_moves_and_what_stays_and_changes_nothing(project):
    before = (project.dir / ".env").read_bytes()
    result = migrate(project)
    assert result.returncode == 0, result.stderr
    moving = result.stdout.split("Staying in .env:")[0]
    staying = result.stdout.split("Staying in .env:")[1]
    for key in ("DB_PASSWORD", "ESCAPED_SECRET", "INTERPOLATED_SECRET", "API_TOKEN"):
        assert key in moving
    for key in ("HOST_NAME", "INFISICAL_TOKEN", "INFISICAL_ENCRYPTION_KEY", "REFERENCE_SECRET", "EMPTY_SECRET"):
        assert key in staying
    assert (project.dir / ".env").read_bytes() == before
    assert project.infisical.calls() == []
    assert "it's a db pass" not in result.stdout + result.stderr


def test_apply_pushes_the_values_compose_would_use_and_removes_only_verified_keys(project):
    result = migrate(project, "--apply")
    assert result.returncode == 0, result.stderr
    held = project.infisical.secrets()
    assert held["DB_PASSWORD"] == "it's a db pass"
    assert held["ESCAPED_SECRET"] == "a$b-and-more"  # compose reads "a\$b" as a$b (python-dotenv: a\$b)
    assert held["INTERPOLATED_SECRET"] == "pre-example.local-post"  # compose interpolates unquoted $VAR
    assert "REFERENCE_SECRET" not in held and "INFISICAL_TOKEN" not in held
    env_text = (project.dir / ".env").read_text()
    assert "it's a db pass" not in env_text and "DB_PASSWORD moved to Infisical" in env_text
    assert "INFISICAL_TOKEN=tok-1" in env_text and "REFERENCE_SECRET=${HOST_NAME}" in env_text
    assert "# the database" in env_text
    backups = list(project.dir.glob(".env.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == DOTENV
    if os.name == "posix":
        assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
        assert stat.S_IMODE((project.dir / ".env").stat().st_mode) == 0o600
    for call in project.infisical.calls():
        assert not any("db pass" in a for a in call["argv"])
    assert "it's a db pass" not in result.stdout + result.stderr


def test_the_migrated_stack_starts_with_the_same_values(project):
    project.write_compose({"api": {"environment": {"DB_PASSWORD": "${DB_PASSWORD:?DB_PASSWORD is not set}",
                                                   "ESCAPED_SECRET": "${ESCAPED_SECRET:?missing}"}}})
    launch = [sys.executable, str(LAUNCHER), "--skip-infisical", "-p", project.name]
    assert subprocess.run(launch, cwd=project.dir, env=project.infisical.env, capture_output=True).returncode == 0
    before = project.container_env("api")
    assert migrate(project, "--apply").returncode == 0
    launch = [sys.executable, str(LAUNCHER), "-p", project.name]
    result = subprocess.run(launch, cwd=project.dir, env=project.infisical.env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    after = project.container_env("api")
    assert (after["DB_PASSWORD"], after["ESCAPED_SECRET"]) == (before["DB_PASSWORD"], before["ESCAPED_SECRET"])


def test_infisical_unreachable_is_exit_3_and_nothing_changes(project):
    project.infisical.set_server("down")
    before = (project.dir / ".env").read_bytes()
    result = migrate(project, "--apply")
    assert result.returncode == 3
    assert (project.dir / ".env").read_bytes() == before
    assert list(project.dir.glob(".env.bak-*")) == []


def wrapped_cli(project, tmp_path, body: str) -> dict:
    """The stand-in CLI behind a shell wrapper (a server fault); `body` runs first, `$REAL` is the stand-in."""
    hook = tmp_path / "bin"
    hook.mkdir()
    real = next(p for p in project.infisical.env["PATH"].split(os.pathsep) if os.path.exists(os.path.join(p, "infisical")))
    (hook / "infisical").write_text(f"#!/bin/sh\nREAL={real}/infisical\n{body}\nexec \"$REAL\" \"$@\"\n")
    (hook / "infisical").chmod(0o755)
    return dict(project.infisical.env, PATH=f"{hook}{os.pathsep}{project.infisical.env['PATH']}")


def test_a_value_that_does_not_read_back_stays_in_dotenv_and_its_wrong_copy_is_removed(project, tmp_path):
    # A server that mangles one value on the way in: API_TOKEN's stored copy differs.
    env = wrapped_cli(project, tmp_path, 'if [ "$1" = secrets ] && [ "$2" = set ]; then '
                      'f="${3#--file=}"; m=$(sed "s/uncategorised-but/MANGLED/" "$f") && '
                      'printf "%s\\n" "$m" > "$f"; fi')  # POSIX sed: no -i
    result = migrate(project, "--apply", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "API_TOKEN did not read back exactly" in result.stderr
    assert "removed the wrong copies of API_TOKEN" in result.stderr
    assert "API_TOKEN" not in project.infisical.secrets()
    env_text = (project.dir / ".env").read_text()
    assert "API_TOKEN=uncategorised-but-named-like-a-secret" in env_text
    assert "DB_PASSWORD moved to Infisical" in env_text
    assert project.infisical.secrets()["DB_PASSWORD"] == "it's a db pass"


def test_a_key_infisical_already_holds_with_another_value_is_left_alone(project):
    project.infisical.set_secrets({"DB_PASSWORD": "the-value-in-infisical"})
    result = migrate(project, "--apply")
    assert "DB_PASSWORD: Infisical already holds another value" in result.stderr
    assert project.infisical.secrets()["DB_PASSWORD"] == "the-value-in-infisical"
    assert "DB_PASSWORD=\"it's a db pass\"" in (project.dir / ".env").read_text()


def kill_session_of(pid_file) -> None:
    """Kill the process whose pid a wrapper wrote, with its process group: the launcher runs
    the CLI in a session of its own, so killing the launcher's group never reaches it."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return  # it never started
    try:
        group = os.getpgid(pid)
        if group != os.getpgrp():
            os.killpg(group, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_killed_between_push_and_rewrite_leaves_dotenv_whole(project, tmp_path):
    """The verifying export hangs after the push: migrate is killed (SIGKILL) right there.

    SIGKILL gives the launcher no chance to stop the hanging CLI it started in its own
    session, so the test kills that one itself (its pid is in `hanging`)."""
    before = (project.dir / ".env").read_bytes()
    pushed, hanging = tmp_path / "pushed", tmp_path / "hanging-export.pid"
    env = wrapped_cli(project, tmp_path,
                      f'if [ "$1" = export ] && [ -e {pushed} ]; then echo $$ > {hanging}; exec sleep 600; fi\n'
                      f'if [ "$1" = secrets ]; then "$REAL" "$@"; rc=$?; touch {pushed}; exit $rc; fi')
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), "migrate", "--apply"], cwd=project.dir, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not hanging.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hanging.exists(), "the verifying export never started"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        kill_session_of(hanging)
    assert pushed.exists()
    assert project.infisical.secrets()["DB_PASSWORD"] == "it's a db pass"  # the push happened
    assert (project.dir / ".env").read_bytes() == before  # .env is whole
