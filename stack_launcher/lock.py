"""One launch at a time per project directory: a cross-platform lock (filelock).

The lock file is left in place on release (deleting it races with a waiting run); it
holds nothing and .gitignore covers it.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import BAD_CONFIG, LOCKED, LauncherError

LOCK_NAME = ".start_services.lock"


@contextlib.contextmanager
def project_lock(project_dir: Path, what: str):
    from filelock import FileLock, Timeout

    path = project_dir / LOCK_NAME
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LauncherError(f"another run holds the lock on {project_dir} ({LOCK_NAME}); not starting {what}",
                            LOCKED, "wait for it to finish, then run again") from None
    except OSError as exc:
        # filelock >= 3.20.3 opens the lock file with O_NOFOLLOW: a symlink planted there is
        # refused (ELOOP) instead of truncating its target.
        if os.path.islink(path):
            raise LauncherError(f"{path} is a symlink; refusing to open it as the lock", BAD_CONFIG,
                                f"remove it (`rm {LOCK_NAME}`) and run again") from None
        raise LauncherError(f"cannot create the lock {path}: {exc.strerror or exc.__class__.__name__}",
                            BAD_CONFIG, f"check that you may write to {project_dir}") from None
    try:
        yield
    finally:
        lock.release()
