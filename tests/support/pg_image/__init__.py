"""A real PostgreSQL 15 for tests: the local image postgres-test:15 (build.sh here), made from
Debian's packages without any registry. It behaves like the official postgres image for what
the project uses (POSTGRES_USER/PASSWORD/DB on the first start, pg_dump, pg_restore, psql,
pg_isready, sh for healthchecks, STOPSIGNAL SIGINT).

    image = pg_image_or_skip()    # in a session fixture that depends on `engine`

build.sh does nothing when the image is up to date (one `docker image inspect`); otherwise it
takes a minute or two (debootstrap + apt), or seconds when its root cache is there.

To run a project compose file that pins e.g. postgres:16.9-alpine against it, tag it:
`docker tag postgres-test:15 postgres:16.9-alpine`, and `docker rmi postgres:16.9-alpine`
afterwards (that only untags). Note the major version: it is PostgreSQL 15.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from ..processes import minimal_env

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
PG_IMAGE = os.environ.get("PG_TEST_IMAGE") or "postgres-test:15"
# Cold: about 1-2 min on a 2-core machine with a fast mirror; generous for a slow one.
BUILD_TIMEOUT_S = 1800
_PASSED_VARS = ("PG_TEST_IMAGE", "PG_IMAGE_ROOT_CACHE", "PG_IMAGE_MIRROR",
                "PG_IMAGE_SECURITY_MIRROR", "PG_IMAGE_FORCE", "TMPDIR")


class PgImageUnavailable(Exception):
    """The image is not there and could not be built; the message says why."""


def must_have_pg_image() -> bool:
    """In CI (CI=true or REQUIRE_DOCKER=1) a missing image fails the tests instead of
    skipping them."""
    return os.environ.get("CI") == "true" or os.environ.get("REQUIRE_DOCKER") == "1"


def ensure_pg_image() -> str:
    """Build the image if needed (build.sh) and return its name."""
    env = minimal_env(**{k: os.environ[k] for k in _PASSED_VARS if k in os.environ})
    # Its own session: on a timeout the whole build (debootstrap, apt-get in the chroot) is
    # stopped, and SIGTERM first lets build.sh unmount /proc and remove its work directory.
    proc = subprocess.Popen(["bash", str(BUILD_SCRIPT)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        raise PgImageUnavailable(f"{BUILD_SCRIPT} did not finish within {BUILD_TIMEOUT_S} s (stopped)") from None
    except BaseException:   # e.g. Ctrl-C in pytest
        _stop_group(proc)
        raise
    if proc.returncode != 0:
        raise PgImageUnavailable(f"{BUILD_SCRIPT} failed (exit {proc.returncode}): "
                                 f"{stderr.strip() or stdout.strip()}")
    return PG_IMAGE


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.communicate(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue


def pg_image_or_skip() -> str:
    """The image's name, or skip the test (fail it when must_have_pg_image())."""
    import pytest

    try:
        return ensure_pg_image()
    except PgImageUnavailable as exc:
        reason = f"the PostgreSQL test image {PG_IMAGE} is not available: {exc}"
        if must_have_pg_image():
            pytest.fail(f"{reason} (CI=true or REQUIRE_DOCKER=1: it must build)", pytrace=False)
        pytest.skip(reason)
