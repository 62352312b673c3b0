"""Fixtures for the user scenarios: a fake Infisical server behind the stand-in CLI,
a real Docker engine with Compose v2, and a throw-away compose project.

Helpers live in tests/support/ and are importable as `support.*`, e.g.
    from support.processes import run_launcher, minimal_env
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.docker_stack import Engine, EngineUnavailable, Stack, ensure_test_image, probe_engine  # noqa: E402
from support.infisical_server import FakeInfisical  # noqa: E402
from support.processes import REPO_ROOT, run_launcher as _run_launcher  # noqa: E402

ENGINE_FIXTURES = {"engine", "stack"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that use the engine are marked `engine` (so `-m "not engine"` leaves them
    # out), and tests marked `engine` get the engine check even without the fixture.
    for item in items:
        names = getattr(item, "fixturenames", [])
        if ENGINE_FIXTURES.intersection(names):
            item.add_marker(pytest.mark.engine)
        elif item.get_closest_marker("engine") and "engine" not in names:
            names.append("engine")


@pytest.fixture(scope="session")
def engine() -> Engine:
    """A running Docker engine with Compose v2 and the image busybox-test:local.

    Skips when there is none, or fails when REQUIRE_DOCKER=1 (as in CI)."""
    try:
        found = probe_engine()
        ensure_test_image()
    except EngineUnavailable as exc:
        reason = f"no usable Docker engine: {exc}"
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail(f"{reason} (REQUIRE_DOCKER=1)", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture
def infisical_server(tmp_path: Path) -> FakeInfisical:
    """A fake Infisical server; `.env` is the subprocess environment that puts the
    stand-in CLI first on PATH (minimal base: PATH, HOME, LANG, SYSTEMROOT)."""
    return FakeInfisical(tmp_path / "infisical-server")


@pytest.fixture
def stack(engine: Engine, tmp_path: Path):
    """A temp compose project dir with a unique project name; removed afterwards."""
    project = Stack(tmp_path / "stack")
    try:
        yield project
    finally:
        project.down()


@pytest.fixture
def run_launcher():
    """run_launcher(args, cwd, env=None, timeout=120) -> CompletedProcess[str]."""
    return _run_launcher


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
