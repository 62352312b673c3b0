"""Whatever Infisical holds, docker compose reads back exactly the value that was exported."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from stack_launcher.envfile import Source, quote, read_exported, read_header, render, write_private
from stack_launcher.secret import Secret

KEYS = st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,15}\Z")
# Any text an env var can hold: no NUL, no lone surrogates (not encodable as UTF-8).
VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
TRICKY = ["it's", 'say "hi"', "a\\b", "ends with \\", "\\'", "$HOME", "${HOME}", "$$", "a #not comment", " lead",
          "trail ", "tab\there", "multi\nline\n", "cr\r\nlf", "ünïcødé ✓ 🎉", "\u2028sep", "=", "'single'", "`tick`"]


def compose_reads(tmp: Path, secrets: dict[str, str]) -> dict[str, str]:
    """What the real `docker compose config` makes of our file, one value per key."""
    env_file = tmp / ".env.infisical"
    write_private(env_file, render({k: Secret(v) for k, v in secrets.items()}, Source("p", "dev", "/")))
    compose_file = tmp / "compose.yml"
    service = {"image": "busybox-test:local", "environment": {k: "${%s}" % k for k in secrets}}
    compose_file.write_text(json.dumps({"services": {"x": service}}))
    result = subprocess.run(
        ["docker", "compose", "-p", "roundtrip", "-f", str(compose_file), "--env-file", str(env_file),
         "config", "--format", "json"],
        capture_output=True, text=True, env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")},
    )
    assert result.returncode == 0, result.stderr
    environment = json.loads(result.stdout)["services"]["x"].get("environment") or {}
    return {k: (v or "").replace("$$", "$") for k, v in environment.items()}


@pytest.fixture(scope="module")
def compose_binary():
    if shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode:
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail("docker compose v2 is required (REQUIRE_DOCKER=1) but not available")
        pytest.skip("docker compose v2 not available")


def test_tricky_values_reach_compose_exactly(compose_binary, tmp_path):
    secrets = {f"K{i}": v for i, v in enumerate(TRICKY)}
    assert compose_reads(tmp_path, secrets) == secrets


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=12))
def test_any_secret_reaches_compose_exactly(compose_binary, tmp_path, secrets):
    assert compose_reads(tmp_path, secrets) == secrets


@given(st.dictionaries(KEYS, VALUES, max_size=12))
def test_the_last_good_export_reads_back_exactly_what_was_exported(tmp_path_factory, secrets):
    path = tmp_path_factory.mktemp("rw") / ".env.infisical"
    write_private(path, render({k: Secret(v) for k, v in secrets.items()}, Source("p", "dev", "/a b")))
    assert {k: s.reveal() for k, s in read_exported(path).items()} == secrets
    assert read_header(path).source == Source("p", "dev", "/a b")


def test_export_file_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        path = tmp_path / ".env.infisical"
        write_private(path, "A=\"1\"\n")
    finally:
        os.umask(old)
    if os.name == "posix":  # 0600 is a POSIX guarantee
        assert path.stat().st_mode & 0o777 == 0o600


def test_an_export_over_a_symlink_never_writes_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / ".env.infisical"
    link.symlink_to(victim)
    write_private(link, "A=\"1\"\n")
    assert victim.read_text() == "keep me"
    assert not link.is_symlink()


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / ".env.infisical"
    write_private(path, "A=\"old\"\n")

    with pytest.raises(TypeError):
        write_private(path, 42)  # type: ignore[arg-type]  # write() fails mid-way
    assert path.read_text() == "A=\"old\"\n"
    assert [p.name for p in tmp_path.iterdir()] == [".env.infisical"]


def test_an_exported_value_escapes_only_what_compose_would_interpret():
    assert quote('a"b\\c$d\ne\rf') == '"a\\"b\\\\c\\$d\\ne\\rf"'
