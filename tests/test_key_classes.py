"""One answer to "which keys are secrets?", whichever command asks it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.processes import minimal_env, run_launcher

REPO = Path(__file__).resolve().parent.parent

INFISICAL_COMPOSE = """\
services:
  infisical:
    image: busybox-test:local
    environment:
      ENCRYPTION_KEY: ${INFISICAL_ENCRYPTION_KEY:?missing}
      SITE_URL: ${INFISICAL_SITE_URL:-http://localhost:8010}
      PRICE: "$$NOT_A_REFERENCE"
"""
EXAMPLE_WITH_TYPO = """\
#@ config
INFISICAL_SITE_URL=http://localhost:8010
#@ secret format=hex:16
INFISICAL_ENCRYPTION_KEY=
#@ secret format=password:32
DB_PASSWORD=
#@ config
NOT_A_REFERENCE=
"""
DOTENV = """\
INFISICAL_SITE_URL=http://localhost:8010
INFISICAL_ENCRYPTION_KEY=00112233445566778899aabbccddeeff
DB_PASSWORD=correct-horse-battery
NOT_A_REFERENCE=plain
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "infisical").mkdir()
    (tmp_path / "infisical" / "docker-compose.yml").write_text(INFISICAL_COMPOSE)
    (tmp_path / "docker-compose.yml").write_text("services:\n  app:\n    image: busybox-test:local\n")
    (tmp_path / ".env").write_text(DOTENV)
    (tmp_path / ".env").chmod(0o600)
    return tmp_path


def test_infisicals_own_key_never_moves_even_when_a_marker_typo_calls_it_a_secret(project):
    (project / ".env.example").write_text(EXAMPLE_WITH_TYPO)
    if shutil.which("docker") is None:
        pytest.skip("migrate asks docker compose how it reads .env")
    result = run_launcher(["migrate"], project, env=minimal_env())
    assert result.returncode == 0, result.stderr
    would_move = result.stdout.split("Staying in .env:")[0]
    assert "DB_PASSWORD" in would_move
    assert "INFISICAL_ENCRYPTION_KEY" not in would_move
    assert "INFISICAL_ENCRYPTION_KEY: Infisical's own setting (infisical/docker-compose.yml uses it)" in result.stdout


def test_migrate_refuses_without_env_example_instead_of_guessing_by_name(project):
    result = run_launcher(["migrate"], project, env=minimal_env())
    assert result.returncode == 6
    assert "no .env.example" in result.stderr
    assert "Traceback" not in result.stderr and "DB_PASSWORD" not in result.stdout


def test_migrate_refuses_an_env_example_it_cannot_parse(project):
    (project / ".env.example").write_text("#@ secrit\nDB_PASSWORD=\n")
    result = run_launcher(["migrate", "--apply"], project, env=minimal_env())
    assert result.returncode == 6
    assert ".env.example cannot be used" in result.stderr and "unknown category 'secrit'" in result.stderr
    assert (project / ".env").read_text() == DOTENV


def test_doctor_exits_6_naming_a_missing_env_example(project):
    result = run_launcher(["doctor"], project, env=minimal_env())
    assert result.returncode == 6
    assert "FAIL  env-example" in result.stdout and "no .env.example" in result.stdout


def test_up_without_env_example_warns_and_falls_back_to_the_name_rule(project):
    result = run_launcher(["up", "--dry-run", "--skip-infisical"], project, env=minimal_env())
    assert result.returncode == 0, result.stderr
    assert "warning: no .env.example" in result.stderr and "masking .env values by their names only" in result.stderr
    assert "Dry run: nothing written, nothing started." in result.stdout
