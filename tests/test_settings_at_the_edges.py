"""Smaller promises of issue 9: where Infisical is, the CLI's update check, short secrets,
and the temp files git must never pick up."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stack_launcher import doctor as doctor_mod
from stack_launcher.infisical_source import Request, cli_env
from stack_launcher.keys import classify
from stack_launcher.secrets_source import request_for
from stack_launcher.settings import resolve

REPO = Path(__file__).resolve().parent.parent


def project(tmp_path: Path, dotenv: str) -> Path:
    (tmp_path / "infisical").mkdir()
    shutil.copy(REPO / "infisical" / "docker-compose.yml", tmp_path / "infisical" / "docker-compose.yml")
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    (tmp_path / ".env").write_text(dotenv)
    return tmp_path


def test_infisical_domain_beats_the_older_api_url_when_deciding_whether_infisical_is_local(tmp_path):
    folder = project(tmp_path, "INFISICAL_API_URL=https://vault.example.com\nINFISICAL_DOMAIN=http://localhost:8010\n")
    settings = resolve(project_dir=folder, shell={"PATH": "/usr/bin"})
    assert (settings.api_url, settings.api_url_var) == ("http://localhost:8010", "INFISICAL_DOMAIN")
    assert settings.infisical_is_local
    assert request_for(settings).api_url == "http://localhost:8010"  # the CLI gets it as --domain


def test_a_remote_infisical_domain_is_not_started_locally(tmp_path):
    folder = project(tmp_path, "INFISICAL_API_URL=http://localhost:8010\n")
    settings = resolve(project_dir=folder, shell={"PATH": "/usr/bin", "INFISICAL_DOMAIN": "https://vault.example.com"})
    assert settings.api_url == "https://vault.example.com" and not settings.infisical_is_local


def test_the_cli_never_stops_to_ask_github_for_an_update():
    request = Request(environment="dev", path="/", project_id="p", api_url="", timeout=5, cwd=".")
    env = cli_env({"PATH": "/usr/bin", "TOKEN": "someone-elses"}, request)
    assert env["INFISICAL_DISABLE_UPDATE_CHECK"] == "true"
    assert "TOKEN" not in env


def test_doctor_warns_about_secrets_too_short_to_be_masked_naming_only_keys(tmp_path):
    folder = project(tmp_path, "POSTGRES_PASSWORD=abc\nN8N_ENCRYPTION_KEY=0123456789abcdef0123\nPOSTGRES_USER=pg\n")
    settings = resolve(project_dir=folder, shell={"PATH": "/usr/bin"})
    check = doctor_mod.check_short_secrets(settings, classify(settings))
    assert check.status == doctor_mod.WARN
    assert "POSTGRES_PASSWORD" in check.detail and "abc" not in check.detail.replace("POSTGRES", "")
    assert "N8N_ENCRYPTION_KEY" not in check.detail and "POSTGRES_USER" not in check.detail


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_gitignore_covers_every_file_that_may_hold_secrets(tmp_path):
    shutil.copy(REPO / ".gitignore", tmp_path / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    names = [".env", ".env.infisical", ".env.tmp-k3j2h1", ".env.infisical.tmp-a8b7c6", ".env.bak-20261129-101010",
             "secrets.env.tmp-x1y2z3", ".start_services.lock"]
    for name in names:
        (tmp_path / name).write_text("x")
    ignored = subprocess.run(["git", "check-ignore", *names], cwd=tmp_path, capture_output=True, text=True)
    assert sorted(ignored.stdout.split()) == sorted(names)
    kept = subprocess.run(["git", "check-ignore", ".env.example"], cwd=tmp_path, capture_output=True)
    assert kept.returncode == 1  # the catalog stays in git
