"""The stack's files as compose itself reads them: every profile x environment validates with
an env made by `init`, secrets are required, images are pinned, ports stay where they belong,
and `.env.example` catalogs every variable exactly once.

These need only the compose binary (`docker compose config` starts nothing and needs no
engine); they skip without it unless REQUIRE_DOCKER=1, where they fail instead.
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from stack_launcher import errors
from stack_launcher.catalog import load_catalog, parse_catalog
from stack_launcher.init_env import init_env
from stack_launcher.output import Output

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".env.example"
BASE = "docker-compose.yml"
INFISICAL = "infisical/docker-compose.yml"
PROFILES = ["cpu", "gpu-nvidia", "gpu-amd", "none"]
ENVIRONMENTS = ["private", "public"]
COMMON = {
    "n8n", "open-webui", "qdrant", "postgres", "valkey", "langfuse-web", "langfuse-worker",
    "clickhouse", "minio", "neo4j", "searxng", "caddy",
}
OLLAMA = {"cpu": {"ollama-cpu"}, "gpu-nvidia": {"ollama-gpu"}, "gpu-amd": {"ollama-gpu-amd"}, "none": set()}


def _minimal_env() -> dict[str, str]:
    # Only what finds the binaries: a variable from the developer's shell must not satisfy
    # a `${VAR:?}` the env file leaves unset.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}


@pytest.fixture(scope="session")
def compose_binary() -> None:
    try:
        ok = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, env=_minimal_env(), timeout=30
        ).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail("`docker compose` is required (REQUIRE_DOCKER=1) but does not run")
        pytest.skip("`docker compose` is not available")


@pytest.fixture(scope="session")
def init_env_file(tmp_path_factory, compose_binary) -> Path:
    """An env file made by `init` (with a stand-in docker that knows no volumes)."""
    folder = tmp_path_factory.mktemp("stack")
    no_volumes = folder / "docker"
    no_volumes.write_text("#!/bin/sh\nexit 0\n")
    no_volumes.chmod(0o755)
    init_env(folder, Path(".env"), EXAMPLE, "stacktest", Output(stream=io.StringIO()), docker=str(no_volumes))
    return folder / ".env"


def compose(*args: str, env_file: Path, files: list[str], project: str = "stacktest") -> subprocess.CompletedProcess:
    cmd = ["docker", "compose", "-p", project, "--project-directory", str(ROOT)]
    for f in files:
        cmd += ["-f", str(ROOT / f)]
    cmd += ["--env-file", str(env_file), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_minimal_env(), timeout=60)


def stack_files(environment: str | None) -> list[str]:
    return [BASE] + ([f"docker-compose.override.{environment}.yml"] if environment else [])


def model(env_file: Path, files: list[str], profiles=PROFILES) -> dict:
    args = [a for p in profiles for a in ("--profile", p)]
    proc = compose(*args, "config", "--format", "json", env_file=env_file, files=files)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def variables(env_file: Path, files: list[str]) -> dict:
    proc = compose("config", "--variables", "--format", "json", env_file=env_file, files=files)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def used_variables(init_env_file) -> dict[str, dict]:
    """Every variable the compose files interpolate, with compose's own view of it."""
    found = {}
    for files in (stack_files("private"), stack_files("public"), [INFISICAL]):
        found.update(variables(init_env_file, files))
    return found


def caddyfile_variables() -> set[str]:
    return set(re.findall(r"\{\$([A-Za-z_][A-Za-z0-9_]*)", (ROOT / "Caddyfile").read_text()))


# ------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("profile", PROFILES)
def test_stack_validates_for_every_profile_and_environment_with_an_env_made_by_init(
    init_env_file, profile, environment
):
    proc = compose("--profile", profile, "config", "-q", env_file=init_env_file, files=stack_files(environment))
    assert proc.returncode == 0, proc.stderr


def test_infisical_project_validates_with_an_env_made_by_init(init_env_file):
    proc = compose("config", "-q", env_file=init_env_file, files=[INFISICAL], project="stacktest-infisical")
    assert proc.returncode == 0, proc.stderr


def _uses(files: list[str], key: str) -> bool:
    return re.search(rf"\$\{{{key}\b", "".join((ROOT / f).read_text() for f in files)) is not None


def _compose_secret_keys() -> list[str]:
    # Machine-identity credentials are read by the launcher, not by a compose file.
    return [
        e.key for e in load_catalog(EXAMPLE).values()
        if e.category != "config" and (_uses([BASE], e.key) or _uses([INFISICAL], e.key))
    ]


@pytest.mark.parametrize("key", _compose_secret_keys())
def test_a_missing_secret_stops_compose_naming_it(init_env_file, tmp_path, key):
    text = init_env_file.read_text()
    used_by = [files for files in (stack_files("private"), [INFISICAL]) if _uses(files, key)]
    without = tmp_path / ".env"
    without.write_text(re.sub(rf"(?m)^{key}=.*$", f"{key}=", text))
    for files in used_by:
        proc = compose("--profile", "cpu", "config", "-q", env_file=without, files=files)
        assert proc.returncode != 0
        assert f"{key} is not set" in proc.stderr


def test_every_secret_the_compose_files_use_is_required(used_variables):
    catalog = load_catalog(EXAMPLE)
    optional = [k for k, v in used_variables.items() if catalog[k].category != "config" and not v["Required"]]
    assert optional == []


# ------------------------------------------------------------------------------- images


def test_no_image_uses_latest_or_lacks_a_tag(init_env_file):
    images = {}
    for files in (stack_files("public"), [INFISICAL]):
        for name, service in model(init_env_file, files)["services"].items():
            images[name] = service["image"]
    assert images
    for name, image in images.items():
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and not tag.startswith("latest-"), f"{name}: {image} uses latest"


def test_amd_ollama_uses_the_rocm_build_of_the_same_version(init_env_file):
    services = model(init_env_file, [BASE])["services"]
    assert services["ollama-gpu-amd"]["image"] == services["ollama-cpu"]["image"] + "-rocm"
    assert services["ollama-gpu-amd"]["devices"]
    assert {d["source"] for d in services["ollama-gpu-amd"]["devices"]} == {"/dev/kfd", "/dev/dri"}
    devices = services["ollama-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]


def test_no_healthcheck_uses_start_interval_which_engine_20_10_rejects(init_env_file):
    for files in ([BASE], [INFISICAL]):
        for name, service in model(init_env_file, files)["services"].items():
            assert "start_interval" not in service.get("healthcheck", {}), name


# ------------------------------------------------------------------------------- services


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_starts_exactly_the_expected_services(init_env_file, profile):
    proc = compose("--profile", profile, "config", "--services", env_file=init_env_file, files=stack_files("private"))
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == COMMON | OLLAMA[profile]


def test_infisical_runs_with_its_own_database_and_redis(init_env_file):
    proc = compose("config", "--services", env_file=init_env_file, files=[INFISICAL])
    assert set(proc.stdout.split()) == {"infisical", "infisical-db", "infisical-redis"}
    infisical = model(init_env_file, [INFISICAL])["services"]["infisical"]
    assert infisical["environment"]["TELEMETRY_ENABLED"] == "false"
    assert "/api/status" in " ".join(infisical["healthcheck"]["test"])


# ------------------------------------------------------------------------------- ports


def _published(services: dict) -> dict[str, list[dict]]:
    return {name: s.get("ports", []) for name, s in services.items() if s.get("ports")}


def test_the_base_file_publishes_no_port(init_env_file):
    assert _published(model(init_env_file, [BASE])["services"]) == {}


def test_private_publishes_every_port_on_localhost_only(init_env_file):
    published = _published(model(init_env_file, stack_files("private"))["services"])
    assert {"n8n", "open-webui", "langfuse-web", "ollama-cpu"} <= set(published)
    for name, ports in published.items():
        for port in ports:
            assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"


def test_public_publishes_only_caddy_on_80_and_443(init_env_file):
    published = _published(model(init_env_file, stack_files("public"))["services"])
    assert set(published) == {"caddy"}
    assert {p["target"] for p in published["caddy"]} == {80, 443}
    assert {str(p["published"]) for p in published["caddy"]} == {"80", "443"}
    assert all(not p.get("host_ip") or p["host_ip"] == "0.0.0.0" for p in published["caddy"])


def test_infisical_listens_on_localhost_8010_only(init_env_file):
    published = _published(model(init_env_file, [INFISICAL])["services"])
    assert published == {
        "infisical": [
            {"mode": "ingress", "host_ip": "127.0.0.1", "target": 8080, "published": "8010", "protocol": "tcp"}
        ]
    }


# ------------------------------------------------------------------------------- catalog


def test_every_variable_the_stack_uses_has_exactly_one_marker_in_env_example(used_variables):
    text = EXAMPLE.read_text()
    catalog = load_catalog(EXAMPLE)
    for key in set(used_variables) | caddyfile_variables():
        assert key in catalog, f"{key} is used but missing from .env.example"
        assert len(re.findall(rf"(?m)^{key}=", text)) == 1, key


def test_caddy_receives_every_hostname_its_caddyfile_reads(init_env_file):
    caddy = model(init_env_file, [BASE])["services"]["caddy"]
    assert caddyfile_variables() <= set(caddy["environment"])


def test_init_only_secrets_name_a_real_service_and_volume(init_env_file):
    services, volumes = set(), set()
    for files in ([BASE], [INFISICAL]):
        m = model(init_env_file, files)
        services |= set(m["services"])
        volumes |= {v.get("name", k).removeprefix("stacktest_") for k, v in m["volumes"].items()}
        volumes |= set(m["volumes"])
    init_only = [e for e in load_catalog(EXAMPLE).values() if e.init_only]
    assert {e.key for e in init_only} >= {
        "POSTGRES_PASSWORD", "NEO4J_AUTH", "MINIO_ROOT_PASSWORD",
        "INFISICAL_ENCRYPTION_KEY", "INFISICAL_POSTGRES_PASSWORD", "N8N_ENCRYPTION_KEY",
    }
    for entry in init_only:
        assert entry.init_only in services, entry.key
        assert set(entry.volumes) <= volumes, entry.key


def test_every_generated_secret_says_how_to_make_one_by_hand():
    lines = EXAMPLE.read_text().splitlines()
    for entry in load_catalog(EXAMPLE).values():
        if entry.fmt:
            above = []
            i = entry.line - 2
            while i >= 0 and lines[i].startswith("#"):
                above.append(lines[i])
                i -= 1
            assert any("By hand:" in line for line in above), entry.key


def test_launcher_settings_are_config_and_machine_identity_is_bootstrap():
    catalog = load_catalog(EXAMPLE)
    for key in ("INFISICAL_API_URL", "INFISICAL_ENVIRONMENT", "INFISICAL_SECRET_PATH",
                "INFISICAL_PROJECT_ID", "COMPOSE_PROJECT_NAME"):
        assert catalog[key].category == "config"
    assert catalog["INFISICAL_API_URL"].default == "http://localhost:8010"
    for key in ("INFISICAL_TOKEN", "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET"):
        assert catalog[key].category == "bootstrap" and catalog[key].fmt is None
    assert catalog["INFISICAL_ENCRYPTION_KEY"].fmt == "hex:16"
    assert catalog["LANGFUSE_ENCRYPTION_KEY"].fmt == "hex:32"


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("A=1\n", "A has no '#@ <category>' marker"),
        ("#@ config\n\nA=1\n", "marker not directly above a variable"),
        ("#@ secrets\nA=\n", "unknown category 'secrets'"),
        ("#@ secret format=hex\nA=\n", "unknown format 'hex'"),
        ("#@ secret format=hex:16 colour=red\nA=\n", "unknown attribute 'colour'"),
        ("#@ secret format=hex:16 init-only=postgres\nA=\n", "init-only= and volume= go together"),
        ("#@ config format=hex:16\nA=\n", "a config value has a default, not a format"),
        ("#@ secret format=hex:16\nA=oops\n", "must be empty"),
        ("#@ config\nA=1\n#@ config\nA=2\n", "A is already defined at line 2"),
        ("#@ config\nA=1\n#@ config\n", "marker at the end of the file"),
    ],
)
def test_a_mistake_in_env_example_is_reported_with_file_and_line(text, complaint):
    with pytest.raises(errors.LauncherError) as caught:
        parse_catalog(text, "x.env")
    assert complaint in caught.value.message
    assert re.match(r"x\.env:\d+: ", caught.value.message)
    assert caught.value.exit_code == errors.BAD_CONFIG


def test_env_example_is_read_with_each_default_and_its_line(tmp_path):
    catalog = load_catalog(EXAMPLE)
    entry = catalog["POSTGRES_PASSWORD"]
    assert (entry.category, entry.fmt, entry.init_only, entry.volume) == ("secret", "password:32", "postgres", "postgres_data")
    assert EXAMPLE.read_text().splitlines()[entry.line - 1] == "POSTGRES_PASSWORD="
    assert catalog["POSTGRES_USER"].default == "postgres"
    with pytest.raises(errors.LauncherError, match="no missing in"):
        load_catalog(tmp_path / "missing")
