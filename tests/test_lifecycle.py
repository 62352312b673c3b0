"""Day-to-day: Infisical is down, a secret was rotated, two launches at once, what would change."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from support.processes import LAUNCHER, REPO_ROOT

SECRETS = {"DB_PASSWORD": "db-password-from-infisical", "CACHE_TOKEN": "cache-token-from-infisical"}


@pytest.fixture
def project(stack, infisical_server):
    stack.write_compose({
        "api": {"environment": {"DB_PASSWORD": "${DB_PASSWORD:?DB_PASSWORD is not set}"}},
        "cache": {"environment": {"CACHE_TOKEN": "${CACHE_TOKEN:?CACHE_TOKEN is not set}"}},
    })
    # After migration .env holds no secrets, only how to reach Infisical.
    stack.write_env("INFISICAL_TOKEN=tok-1\nINFISICAL_PROJECT_ID=proj-1\n")
    infisical_server.set_secrets(dict(SECRETS))
    stack.infisical = infisical_server
    return stack


def launch(project, *args, env=None):
    cmd = [sys.executable, str(LAUNCHER), *args, "-p", project.name]
    return subprocess.run(cmd, cwd=project.dir, env=dict(env or project.infisical.env), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def age_export(project, hours: float) -> None:
    """Pretend the last export was made `hours` ago (its header says when)."""
    path = project.dir / ".env.infisical"
    stamp = (datetime.now(timezone.utc) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = re.sub(r"# exported-at: \S+", f"# exported-at: {stamp}", path.read_text())
    path.write_text(text)
    os.chmod(path, 0o600)


def test_infisical_down_starts_from_the_last_good_export_and_says_its_age(project):
    assert launch(project).returncode == 0
    age_export(project, 3)
    project.infisical.set_server("down")
    result = launch(project)
    assert result.returncode == 0, result.stderr
    assert "last good export" in result.stderr and "3h" in result.stderr
    assert project.container_env("api")["DB_PASSWORD"] == SECRETS["DB_PASSWORD"]


def test_a_failed_export_never_damages_the_last_good_file(project):
    assert launch(project).returncode == 0
    before = (project.dir / ".env.infisical").read_bytes()
    for mode in ("down", "garbage", "empty"):
        project.infisical.set_server(mode)
        launch(project)
        assert (project.dir / ".env.infisical").read_bytes() == before


def test_an_export_older_than_max_stale_is_not_used(project):
    assert launch(project).returncode == 0
    age_export(project, 48)
    project.infisical.set_server("down")
    result = launch(project, "--max-stale", "12h")
    assert "older than --max-stale 12h" in result.stderr
    assert result.returncode != 0  # .env alone lacks the secrets, and compose says which
    assert "DB_PASSWORD" in result.stderr or "CACHE_TOKEN" in result.stderr  # compose names the first it meets


def test_an_export_from_another_environment_is_not_used(project):
    assert launch(project).returncode == 0
    project.infisical.set_server("down")
    result = launch(project, "--infisical-env", "prod")
    assert "another project, environment or path" in result.stderr
    assert result.returncode != 0


def test_require_infisical_refuses_the_last_good_export(project):
    assert launch(project).returncode == 0
    project.infisical.set_server("down")
    result = launch(project, "--require-infisical")
    assert result.returncode == 3


def test_offline_uses_the_last_good_export_without_calling_infisical(project):
    assert launch(project).returncode == 0
    project.infisical.clear_calls()
    result = launch(project, "--offline")
    assert result.returncode == 0, result.stderr
    assert project.infisical.calls() == []
    assert "last good export" in result.stderr


def test_offline_without_a_usable_export_is_exit_3(project):
    result = launch(project, "--offline")
    assert result.returncode == 3
    assert "--offline" in result.stderr
    assert project.running_services() == {}


def test_plan_names_the_changed_keys_and_what_compose_would_do(project):
    assert launch(project).returncode == 0
    before = {s: project.container_id(s) for s in ("api", "cache")}
    project.infisical.set_secrets({**SECRETS, "CACHE_TOKEN": "rotated-cache-token"})
    result = launch(project, "plan")
    assert result.returncode == 0, result.stderr
    assert "changed: CACHE_TOKEN" in result.stdout
    assert "cache: recreate" in result.stdout and "api: untouched" in result.stdout
    assert "rotated-cache-token" not in result.stdout + result.stderr
    # plan changed nothing: same containers, same export on disk
    assert {s: project.container_id(s) for s in ("api", "cache")} == before
    assert "rotated-cache-token" not in (project.dir / ".env.infisical").read_text()


def test_plan_on_a_fresh_project_says_everything_is_created(project):
    result = launch(project, "plan")
    assert result.returncode == 0, result.stderr
    assert "api: create" in result.stdout and "cache: create" in result.stdout
    assert project.running_services() == {}


def test_a_second_launch_while_one_runs_exits_5(project):
    from stack_launcher.lock import project_lock

    with project_lock(project.dir, "a test's run"):  # what a running launcher holds
        result = launch(project)
    assert result.returncode == 5
    assert "another run holds the lock" in result.stderr
    assert project.infisical.calls() == []


def test_a_launch_killed_with_sigkill_leaves_no_stale_lock(project):
    import signal
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
         "from pathlib import Path; from stack_launcher.lock import project_lock\n"
         "with project_lock(Path(sys.argv[2]), 'x'):\n print('held', flush=True); time.sleep(60)",
         str(REPO_ROOT), str(project.dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert launch(project).returncode == 5
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    result = launch(project)
    assert result.returncode == 0, result.stderr


def test_changing_a_database_password_under_its_volume_warns_with_a_fix(project):
    (project.dir / ".env.example").write_text(
        "#@ bootstrap\nINFISICAL_TOKEN=\n#@ config\nINFISICAL_PROJECT_ID=\n"
        "#@ secret format=password:32 init-only=api volume=dbdata\nDB_PASSWORD=\n"
        "#@ secret format=password:32\nCACHE_TOKEN=\n")
    project.write_compose({
        "api": {"environment": {"DB_PASSWORD": "${DB_PASSWORD:?DB_PASSWORD is not set}"}, "volumes": ["dbdata:/data"]},
        "cache": {"environment": {"CACHE_TOKEN": "${CACHE_TOKEN:?CACHE_TOKEN is not set}"}},
    }, volumes={"dbdata": {}})
    assert launch(project).returncode == 0
    project.infisical.set_secrets({**SECRETS, "DB_PASSWORD": "a-new-db-password"})
    for args in (["plan"], []):
        result = launch(project, *args)
        assert result.returncode == 0, result.stderr
        assert f"DB_PASSWORD changed, but api keeps the old value in volume {project.name}_dbdata" in result.stderr
        assert "a-new-db-password" not in result.stdout + result.stderr
