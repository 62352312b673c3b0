"""Fixtures for the user scenarios: a fake Infisical server behind the stand-in CLI,
a real Docker engine with Compose v2, and a throw-away compose project.

Helpers live in tests/support/ and are importable as `support.*`, e.g.
    from support.processes import run_launcher, minimal_env
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.docker_stack import Engine, EngineUnavailable, Stack, ensure_test_image, probe_engine  # noqa: E402
from support.infisical_server import FakeInfisical  # noqa: E402
from support.processes import (  # noqa: E402
    MARKER_VAR, REPO_ROOT, kill_processes, processes_of_test, run_launcher as _run_launcher,
)

ENGINE_FIXTURES = {"engine", "stack"}
# How long a test's processes may take to finish exiting after it (and its fixtures) ended:
# a killed process group dies at once, an orphan is reaped by init soon after.
LEFTOVER_GRACE_S = 5.0
_test_numbers = itertools.count(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that use the engine are marked `engine` (so `-m "not engine"` leaves them
    # out), and tests marked `engine` get the engine check even without the fixture.
    for item in items:
        names = getattr(item, "fixturenames", [])
        if ENGINE_FIXTURES.intersection(names):
            item.add_marker(pytest.mark.engine)
        elif item.get_closest_marker("engine") and "engine" not in names:
            names.append("engine")


@pytest.fixture(autouse=True)
def no_process_left_behind(tmp_path: Path):
    """Fail (at teardown) a test that leaves a process running, after killing it.

    A test's processes are the descendants of this process and anything that names the
    test's tmp_path (working directory, command line, environment) or carries the test's
    marker (MARKER_VAR, set here and copied by minimal_env) -- so a CLI started in its own
    session and orphaned when the launcher was killed is found too. Processes that already
    matched before the test, zombies, the Docker engine and containers don't count. Runs
    after every other fixture's teardown (autouse fixtures are set up first), so the stack's
    own clean-up has had its chance."""
    marker = f"{os.getpid()}-{next(_test_numbers)}"
    before = set(processes_of_test(os.getpid(), tmp_path, marker))
    previous = os.environ.get(MARKER_VAR)
    os.environ[MARKER_VAR] = marker
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MARKER_VAR, None)
        else:
            os.environ[MARKER_VAR] = previous
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while True:
        left = {k: v for k, v in processes_of_test(os.getpid(), tmp_path, marker).items() if k not in before}
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if left:
        kill_processes([proc for proc, _ in left.values()])
        listing = "\n".join(f"  {proc.describe()} -- {why}" for proc, why in left.values())
        pytest.fail(f"{len(left)} process(es) still running {LEFTOVER_GRACE_S:g} s after the test "
                    f"(now killed):\n{listing}", pytrace=False)


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
