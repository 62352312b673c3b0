"""`start_services.py init`, as a user meets it: a first `.env` full of strong secrets, a
second run that changes nothing, an old `.env` completed without touching what is set, and
no way to regenerate a secret a database already keeps."""
from __future__ import annotations

import base64
import io
import os
import re
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
from dotenv import dotenv_values

from stack_launcher import errors
from stack_launcher.catalog import load_catalog
from stack_launcher.generate import generate
from stack_launcher.init_env import init_env
from stack_launcher.output import Output
from support.processes import minimal_env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".env.example"
URI_BREAKERS = set("@:/%#?&=+ '\"\\$`")


def fake_docker(folder: Path, script: str) -> str:
    """A stand-in `docker` for the one call init makes (`docker volume ls --quiet`)."""
    path = folder / "fake-docker"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


class Run:
    def __init__(self, folder: Path, docker: str) -> None:
        self.folder, self.docker = folder, docker
        self.env = folder / ".env"
        self.stream = io.StringIO()

    def __call__(self, project: str = "inittest") -> int:
        return init_env(self.folder, Path(".env"), EXAMPLE, project, Output(stream=self.stream), docker=self.docker)

    @property
    def said(self) -> str:
        return self.stream.getvalue()

    def values(self) -> dict[str, str]:
        return dotenv_values(self.env)

    def backups(self) -> list[Path]:
        return sorted(self.folder.glob(".env.bak-*"))

    def leftovers(self) -> list[str]:
        """Files in the folder other than .env, its backups and the fake docker: e.g. the
        temp file of an atomic write (envfile.write_private) left behind, whatever its name."""
        expected = {self.env.name, *(b.name for b in self.backups()), Path(self.docker).name}
        return sorted(p.name for p in self.folder.iterdir() if p.name not in expected)


@pytest.fixture
def run(tmp_path) -> Run:
    return Run(tmp_path, fake_docker(tmp_path, "exit 0"))  # Docker up, no volumes


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# ------------------------------------------------------------------------------ first run


def test_first_init_writes_env_with_mode_0600_whatever_the_umask(run):
    old = os.umask(0)
    try:
        assert run() == 0
    finally:
        os.umask(old)
    assert mode(run.env) == 0o600
    assert run.leftovers() == []


def test_init_leaves_no_temp_file_behind(run):
    run.env.write_text("POSTGRES_PASSWORD=my-old-password\n")  # init adds keys: a backup and a rewrite
    assert run() == 0
    assert run() == 0
    assert run.leftovers() == []


def test_first_init_generates_every_secret_in_its_format(run):
    run()
    values = run.values()
    catalog = load_catalog(EXAMPLE)
    assert re.fullmatch(r"[0-9a-f]{32}", values["INFISICAL_ENCRYPTION_KEY"])
    assert re.fullmatch(r"[0-9a-f]{64}", values["LANGFUSE_ENCRYPTION_KEY"])
    assert re.fullmatch(r"[0-9a-f]{64}", values["N8N_ENCRYPTION_KEY"])
    assert len(base64.b64decode(values["INFISICAL_AUTH_SECRET"], validate=True)) == 32
    assert re.fullmatch(r"neo4j/[A-Za-z0-9]{32}", values["NEO4J_AUTH"])
    for entry in catalog.values():
        if entry.fmt and entry.fmt.startswith("password:"):
            assert re.fullmatch(r"[A-Za-z0-9]{32}", values[entry.key]), entry.key
            assert not set(values[entry.key]) & URI_BREAKERS
    generated = [values[e.key] for e in catalog.values() if e.fmt]
    assert len(set(generated)) == len(generated), "two secrets got the same value"


def test_first_init_copies_config_and_leaves_machine_identity_empty(run):
    run()
    values = run.values()
    assert values["INFISICAL_API_URL"] == "http://localhost:8010"
    assert values["POSTGRES_USER"] == "postgres"
    assert values["INFISICAL_UNIVERSAL_AUTH_CLIENT_ID"] == ""
    assert values["INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET"] == ""
    assert set(load_catalog(EXAMPLE)) <= set(values)
    assert "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID" in run.said  # told what is still to do


def test_secret_values_never_appear_in_what_init_says(run):
    run()
    said = run.said
    for entry in load_catalog(EXAMPLE).values():
        if entry.fmt:
            assert run.values()[entry.key] not in said


# ------------------------------------------------------------------------------ re-runs


def test_a_second_init_changes_nothing(run):
    run()
    before = run.env.read_bytes()
    run()
    assert run.env.read_bytes() == before
    assert run.backups() == []
    assert "nothing changed" in run.said


def test_init_on_an_old_env_keeps_every_value_and_adds_only_missing_keys(run):
    run.env.write_text("# mine\nPOSTGRES_PASSWORD=my-old-password\nN8N_HOSTNAME=n8n.example.org\nEXTRA=kept\n")
    run.env.chmod(0o644)
    run()
    values = run.values()
    assert values["POSTGRES_PASSWORD"] == "my-old-password"
    assert values["N8N_HOSTNAME"] == "n8n.example.org"
    assert values["EXTRA"] == "kept"
    assert re.fullmatch(r"[0-9a-f]{32}", values["INFISICAL_ENCRYPTION_KEY"])
    assert run.env.read_text().startswith("# mine\nPOSTGRES_PASSWORD=my-old-password\n")
    assert mode(run.env) == 0o600
    # which keys were added, by name
    [added] = re.findall(r"(?m)^Added to \.env: (.*)$", run.said)
    added = added.split(", ")
    assert "INFISICAL_ENCRYPTION_KEY" in added and "WEBUI_HOSTNAME" in added
    assert "POSTGRES_PASSWORD" not in added and "N8N_HOSTNAME" not in added


def test_init_backs_up_the_old_env_with_mode_0600_before_adding(run):
    old = "POSTGRES_PASSWORD=my-old-password\n"
    run.env.write_text(old)
    run()
    [backup] = run.backups()
    assert re.fullmatch(r"\.env\.bak-\d{8}-\d{6}", backup.name)
    assert backup.read_text() == old
    assert mode(backup) == 0o600


def test_the_projects_gitignore_keeps_init_backups_out_of_git(tmp_path):
    repo = tmp_path / "repo"  # a repository of our own: the tests also run from a tree without .git
    repo.mkdir()
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=minimal_env(), stdin=subprocess.DEVNULL,
                   capture_output=True)
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env.bak-20250101-000000"], cwd=repo,
                             env=minimal_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert ignored.returncode == 0, f".gitignore must cover the backups ({ignored.stderr.strip()})"


def test_an_empty_secret_copied_from_the_example_by_hand_is_filled_in_place(run):
    shutil.copy(EXAMPLE, run.env)
    run()
    values = run.values()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", values["POSTGRES_PASSWORD"])
    assert run.env.read_text().count("\nPOSTGRES_PASSWORD=") == 1
    assert "POSTGRES_PASSWORD" in run.said
    assert values["INFISICAL_UNIVERSAL_AUTH_CLIENT_ID"] == ""  # no format: left for the user


def test_init_does_not_write_through_a_symlink(run, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("A=1\n")
    run.env.symlink_to(target)
    with pytest.raises(errors.LauncherError, match="symlink") as caught:
        run()
    assert caught.value.exit_code == errors.BAD_CONFIG
    assert target.read_text() == "A=1\n"


# ------------------------------------------------------------------------------ init-only


@pytest.fixture
def volume(engine):
    made = []

    def create(name: str) -> str:
        subprocess.run(["docker", "volume", "create", name], check=True, capture_output=True)
        made.append(name)
        return name

    yield create
    for name in made:
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True)


def test_init_refuses_to_regenerate_a_database_password_whose_volume_exists(tmp_path, volume):
    run = Run(tmp_path, "docker")
    project = f"inittest{uuid.uuid4().hex[:8]}"
    name = volume(f"{project}_postgres_data")
    run.env.write_text("N8N_HOSTNAME=n8n.example.org\n")
    before = run.env.read_bytes()
    with pytest.raises(errors.LauncherError) as caught:
        run(project)
    assert caught.value.exit_code == errors.BAD_CONFIG
    assert "POSTGRES_PASSWORD" in caught.value.message and name in caught.value.message
    assert "backup" in caught.value.hint and "docker volume rm" in caught.value.hint
    assert run.env.read_bytes() == before and run.backups() == []


def test_init_refuses_to_regenerate_infisicals_encryption_key_under_its_volume(tmp_path, volume):
    run = Run(tmp_path, "docker")
    project = f"inittest{uuid.uuid4().hex[:8]}"
    name = volume(f"{project}-infisical_infisical_pg_data")
    with pytest.raises(errors.LauncherError) as caught:
        run(project)
    assert "INFISICAL_ENCRYPTION_KEY" in caught.value.message and name in caught.value.message
    assert not run.env.exists()


def test_init_completes_an_env_whose_init_only_secrets_are_set_even_with_volumes(tmp_path, volume):
    run = Run(tmp_path, "docker")
    project = f"inittest{uuid.uuid4().hex[:8]}"
    volume(f"{project}_postgres_data")
    init_only = {e.key: generate(e.fmt) for e in load_catalog(EXAMPLE).values() if e.init_only}
    run.env.write_text("".join(f"{k}={v}\n" for k, v in init_only.items()))
    assert run(project) == 0
    assert {k: run.values()[k] for k in init_only} == init_only


def test_without_docker_init_generates_no_init_only_secret_and_writes_nothing(tmp_path):
    run = Run(tmp_path, fake_docker(tmp_path, "echo 'Cannot connect to the Docker daemon' >&2; exit 1"))
    with pytest.raises(errors.LauncherError) as caught:
        run()
    assert caught.value.exit_code == errors.DOCKER_UNAVAILABLE
    assert "Cannot connect to the Docker daemon" in caught.value.message
    assert "POSTGRES_PASSWORD" in caught.value.message
    assert not run.env.exists()


def test_without_docker_init_still_completes_an_env_whose_init_only_secrets_are_set(tmp_path):
    run = Run(tmp_path, str(tmp_path / "no-such-docker"))
    init_only = {e.key: generate(e.fmt) for e in load_catalog(EXAMPLE).values() if e.init_only}
    run.env.write_text("".join(f"{k}={v}\n" for k, v in init_only.items()))
    assert run() == 0
    assert re.fullmatch(r"[0-9a-f]{64}", run.values()["SEARXNG_SECRET"])


# ------------------------------------------------------------------------------ generator


@pytest.mark.parametrize(
    "fmt, pattern",
    [
        ("hex:16", r"[0-9a-f]{32}"),
        ("hex:32", r"[0-9a-f]{64}"),
        ("password:24", r"[A-Za-z0-9]{24}"),
        ("neo4j:20", r"neo4j/[A-Za-z0-9]{20}"),
        ("uuid", r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"),
    ],
)
def test_each_secret_format_generates_a_fresh_value_of_that_shape(fmt, pattern):
    assert re.fullmatch(pattern, generate(fmt))
    assert generate(fmt) != generate(fmt)


def test_a_base64_secret_decodes_to_the_declared_number_of_bytes():
    assert len(base64.b64decode(generate("base64:32"), validate=True)) == 32


@pytest.mark.parametrize("fmt", ["hex", "hex:", "hex:0", "hex:x", "rot13:5", "uuid:4", "password:99999"])
def test_an_unknown_secret_format_is_refused(fmt):
    with pytest.raises(ValueError):
        generate(fmt)
