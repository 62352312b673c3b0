"""One launch at a time per project directory: a cross-platform lock (filelock).

The lock file is left in place on release (deleting it races with a waiting run); it
holds nothing and .gitignore covers it.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from .errors import LOCKED, LauncherError

LOCK_NAME = ".start_services.lock"


@contextlib.contextmanager
def project_lock(project_dir: Path, what: str):
    from filelock import FileLock, Timeout

    lock = FileLock(str(project_dir / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LauncherError(f"another run holds the lock on {project_dir} ({LOCK_NAME}); not starting {what}",
                            LOCKED, "wait for it to finish, then run again") from None
    try:
        yield
    finally:
        lock.release()
