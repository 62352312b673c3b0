"""The stack's facts, as docs/stack.md states them with their sources: every image the compose
files start has a row in its "Images and what they need" table with the same `image:tag`,
each healthcheck runs a command the row says the image ships, and `init` generates every
secret in the format that row states (each stated format is encoded below as a regex).

These read files only: no engine and no compose binary (one cross-check of the file reader
against `docker compose config` skips without the binary).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from stack_launcher.catalog import load_catalog
from stack_launcher.generate import generate

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".env.example"
DOC = ROOT / "docs" / "stack.md"
COMPOSE_FILES = [
    "docker-compose.yml",
    "docker-compose.override.private.yml",
    "docker-compose.override.public.yml",
    "infisical/docker-compose.yml",
]
TABLE_HEADER = "| service | image:tag |"
SAMPLES = 200

# The format each image needs, as docs/stack.md states it (variable -> the service whose row
# states it, and the stated format as a regex). `init` must produce exactly this.
URI_SAFE = r"^[A-Za-z0-9]+$"  # inside a connection URI or a shell line: no @ : / % # ? quote or space
PLAIN = r"^[^\s'\"#$`\\]+$"  # any non-empty value that is safe unquoted in dotenv and YAML, no $ interpolation
STATED_FORMATS: dict[str, tuple[str, str]] = {
    "INFISICAL_ENCRYPTION_KEY": ("infisical", r"^[0-9a-f]{32}$"),
    "INFISICAL_AUTH_SECRET": ("infisical", r"^[A-Za-z0-9+/]{43}=$"),
    "INFISICAL_POSTGRES_PASSWORD": ("infisical-db", URI_SAFE),
    "INFISICAL_REDIS_PASSWORD": ("infisical-redis", URI_SAFE),
    "POSTGRES_PASSWORD": ("postgres", URI_SAFE),
    "N8N_ENCRYPTION_KEY": ("n8n", PLAIN),
    "N8N_USER_MANAGEMENT_JWT_SECRET": ("n8n", PLAIN),
    "WEBUI_SECRET_KEY": ("open-webui", PLAIN),
    "QDRANT_API_KEY": ("qdrant", PLAIN),
    "VALKEY_PASSWORD": ("valkey", URI_SAFE),
    "LANGFUSE_ENCRYPTION_KEY": ("langfuse-worker", r"^[0-9a-f]{64}$"),
    "LANGFUSE_SALT": ("langfuse-worker", PLAIN),
    "LANGFUSE_NEXTAUTH_SECRET": ("langfuse-web", PLAIN),
    "CLICKHOUSE_PASSWORD": ("clickhouse", PLAIN),
    "MINIO_ROOT_PASSWORD": ("minio", r"^[A-Za-z0-9]{8,}$"),
    "NEO4J_AUTH": ("neo4j", r"^neo4j/(?!neo4j$)[^/]{8,}$"),
    "SEARXNG_SECRET": ("searxng", r"^(?!ultrasecretkey$)[^\s'\"#$`\\]+$"),
}


# ------------------------------------------------------------------ reading the compose files


def _blocks(path: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(anchors, services): the body lines of each top-level `&anchor` block and of each
    service, dedented so that their own keys start in column 0."""
    anchors: dict[str, list[str]] = {}
    services: dict[str, list[str]] = {}
    top = body = None
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        top_level = re.match(r"^([A-Za-z0-9_.-]+):(?:\s*&(\S+))?\s*$", line)
        if top_level:
            top = top_level.group(1)
            body = anchors.setdefault(top_level.group(2), []) if top_level.group(2) else None
            continue
        if top == "services":
            service = re.match(r"^  ([A-Za-z0-9_.-]+):\s*$", line)
            if service:
                body = services.setdefault(service.group(1), [])
                continue
            if body is not None and line.startswith("    "):
                body.append(line[4:])
        elif body is not None and line.startswith("  "):
            body.append(line[2:])
    return anchors, services


def _own(body: list[str], key: str) -> str | None:
    for line in body:
        match = re.match(rf"^{key}:\s*(.+?)\s*$", line)
        if match:
            return match.group(1)
    return None


def _merged(body: list[str], anchors: dict[str, list[str]]) -> list[list[str]]:
    """The service's body, then the bodies it merges with `<<: *anchor` (own keys win)."""
    return [body] + [anchors[m.group(1)] for line in body if (m := re.match(r"^<<:\s*\*(\S+)\s*$", line))]


def _healthcheck(bodies: list[list[str]]) -> list[str] | None:
    for body in bodies:
        for i, line in enumerate(body):
            if line == "healthcheck:":
                for inner in body[i + 1:]:
                    if not inner.startswith("  "):
                        break
                    match = re.match(r"^\s+test:\s*(\[.*\])\s*$", inner)
                    if match:
                        return json.loads(match.group(1))
    return None


def _environment(bodies: list[list[str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for body in reversed(bodies):  # own keys last, so they win
        for i, line in enumerate(body):
            if line == "environment:":
                for inner in body[i + 1:]:
                    if not inner.startswith("  "):
                        break
                    match = re.match(r"^  ([A-Za-z_][A-Za-z0-9_]*):\s*(.*?)\s*$", inner)
                    if match:
                        env[match.group(1)] = match.group(2).strip('"')
    return env


def compose_services() -> dict[str, dict]:
    """Every service of every compose file: its image, healthcheck test and environment."""
    found: dict[str, dict] = {}
    for name in COMPOSE_FILES:
        anchors, services = _blocks(ROOT / name)
        for service, body in services.items():
            bodies = _merged(body, anchors)
            image = next((v for b in bodies if (v := _own(b, "image"))), None)
            entry = found.setdefault(service, {"image": None, "healthcheck": None, "environment": {}, "file": name})
            if image:
                entry.update(image=image, healthcheck=_healthcheck(bodies), environment=_environment(bodies), file=name)
    return found


# ------------------------------------------------------------------ reading docs/stack.md


def fact_rows() -> list[dict]:
    lines = DOC.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(TABLE_HEADER)), None)
    assert start is not None, f"docs/stack.md has no table starting {TABLE_HEADER!r}"
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 5, f"a row of the facts table does not have 5 cells: {line[:80]}"
        image = re.search(r"`([^`]+)`", cells[1])
        rows.append({
            "services": [s.strip().strip("`") for s in cells[0].split(",")],
            "image": image.group(1) if image else cells[1],
            "tag_source": cells[2],
            "healthcheck": cells[3],
            "variables": cells[4],
        })
    return rows


def row_for(service: str) -> dict | None:
    return next((row for row in fact_rows() if service in row["services"]), None)


def _healthcheck_binary(test: list[str]) -> str:
    if test[0] == "CMD":
        return test[1]
    assert test[0] == "CMD-SHELL", test
    return test[1].split()[0]


RUNNING = {name: entry for name, entry in compose_services().items() if entry["image"]}


# ------------------------------------------------------------------ images


def test_the_file_reader_finds_every_service_with_its_image():
    assert {"infisical", "infisical-db", "infisical-redis", "n8n", "ollama-cpu", "ollama-gpu",
            "ollama-gpu-amd", "langfuse-worker", "langfuse-web", "neo4j", "caddy"} <= set(RUNNING)
    assert RUNNING["ollama-gpu"]["image"] == RUNNING["ollama-cpu"]["image"]
    assert RUNNING["ollama-gpu-amd"]["image"] == RUNNING["ollama-cpu"]["image"] + "-rocm"
    overrides_only = {n for n, e in compose_services().items() if not e["image"]}
    assert not overrides_only, f"services with no image anywhere: {overrides_only}"


@pytest.mark.parametrize("service", sorted(RUNNING))
def test_every_image_the_stack_starts_has_a_row_in_the_docs(service):
    assert row_for(service), f"docs/stack.md has no facts row for {service} ({RUNNING[service]['image']})"


@pytest.mark.parametrize("service", sorted(RUNNING))
def test_the_docs_state_the_same_image_and_tag_the_compose_file_pins(service):
    row = row_for(service)
    assert row, service
    assert row["image"] == RUNNING[service]["image"], (
        f"{service}: docs/stack.md says {row['image']}, {RUNNING[service]['file']} pins {RUNNING[service]['image']}"
    )


def test_the_docs_have_no_row_for_a_service_that_no_longer_exists():
    stale = {s for row in fact_rows() for s in row["services"]} - set(RUNNING)
    assert not stale, f"docs/stack.md has rows for services the compose files do not have: {stale}"


@pytest.mark.parametrize("service", sorted(RUNNING))
def test_every_row_says_where_the_tag_and_the_healthcheck_command_come_from(service):
    row = row_for(service)
    assert row and row["tag_source"] and row["healthcheck"] and row["variables"], service


@pytest.mark.parametrize("service", sorted(s for s, e in RUNNING.items() if e["healthcheck"]))
def test_each_healthcheck_runs_the_command_the_docs_show_the_image_ships(service):
    binary = _healthcheck_binary(RUNNING[service]["healthcheck"])
    row = row_for(service)
    assert row and re.search(rf"`{re.escape(binary)}\b", row["healthcheck"]), (
        f"{service}'s healthcheck runs {binary!r}; docs/stack.md's row does not show it"
    )


# ------------------------------------------------------------------ the first real run


def test_infisical_is_pinned_to_a_tag_that_migrates_a_fresh_database_itself():
    image = RUNNING["infisical"]["image"]
    match = re.fullmatch(r"infisical/infisical:v(\d+)\.(\d+)\.(\d+)-postgres", image)
    assert match, f"{image} is not a pinned -postgres tag"
    # Migrations run at boot from v0.111.0-postgres (Infisical's upgrade guide).
    assert tuple(int(g) for g in match.groups()) >= (0, 111, 0), image


def test_infisical_listens_where_its_port_mapping_and_healthcheck_look():
    env = RUNNING["infisical"]["environment"]
    assert (env.get("HOST"), env.get("PORT")) == ("0.0.0.0", "8080")
    test = RUNNING["infisical"]["healthcheck"]
    assert _healthcheck_binary(test) == "node"
    assert "http://127.0.0.1:8080/api/status" in " ".join(test)


def test_langfuse_worker_listens_on_all_interfaces_so_its_healthcheck_is_not_refused():
    assert RUNNING["langfuse-worker"]["environment"].get("HOSTNAME") == "0.0.0.0"
    assert RUNNING["langfuse-web"]["environment"].get("HOSTNAME") == "0.0.0.0"


# ------------------------------------------------------------------ formats


def _compose_text() -> str:
    return "".join((ROOT / name).read_text() for name in COMPOSE_FILES)


def test_every_secret_init_generates_for_the_stack_has_a_stated_format():
    text = _compose_text()
    generated = {
        e.key for e in load_catalog(EXAMPLE).values()
        if e.fmt and re.search(rf"\$\{{{e.key}\b", text)
    }
    assert generated - set(STATED_FORMATS) == set(), "state their format in docs/stack.md and STATED_FORMATS"
    assert set(STATED_FORMATS) - generated == set(), "a stated format for a variable init no longer generates"


@pytest.mark.parametrize("key", sorted(STATED_FORMATS))
def test_init_generates_each_secret_in_the_format_its_image_requires(key):
    service, pattern = STATED_FORMATS[key]
    row = row_for(service)
    assert row and f"`{key}`" in row["variables"], f"docs/stack.md's {service} row does not state {key}"
    entry = load_catalog(EXAMPLE)[key]
    assert entry.fmt, f"{key} has no format= in .env.example"
    for _ in range(SAMPLES):
        value = generate(entry.fmt)
        assert re.fullmatch(pattern, value), f"{key}: format={entry.fmt} made {value!r}, not {pattern}"


# ------------------------------------------------------------------ the reader vs compose


def test_the_file_reader_agrees_with_docker_compose_where_compose_is_installed(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    try:
        ok = subprocess.run(["docker", "compose", "version"], capture_output=True, env=env, timeout=30).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pytest.skip("`docker compose` is not available")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(
        f"{e.key}={generate(e.fmt) if e.fmt else (e.default or 'x')}\n" for e in load_catalog(EXAMPLE).values()
    ))
    seen = {}
    for files in (["docker-compose.yml", "docker-compose.override.public.yml"], ["infisical/docker-compose.yml"]):
        cmd = ["docker", "compose", "-p", "factcheck", "--project-directory", str(ROOT)]
        for f in files:
            cmd += ["-f", str(ROOT / f)]
        cmd += ["--env-file", str(env_file), "--profile", "cpu", "--profile", "gpu-nvidia", "--profile", "gpu-amd",
                "config", "--format", "json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        for name, service in json.loads(proc.stdout)["services"].items():
            seen[name] = (service["image"], service.get("healthcheck", {}).get("test"))
    mine = {name: (e["image"], e["healthcheck"]) for name, e in RUNNING.items()}
    assert {n: v[0] for n, v in mine.items()} == {n: v[0] for n, v in seen.items()}
    for name, (_, test) in seen.items():
        assert mine[name][1] == test, name
