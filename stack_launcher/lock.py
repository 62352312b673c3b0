"""One launch at a time per project directory: an advisory lock on `.start_services.lock`.

Own code rather than the filelock package: importing filelock 4.x cost 16 to 40 ms on every
`up` (docs/benchmarks.md, "Where the time goes"), a tenth of a no-op re-run, for what is
here a dozen lines over the OS's own lock. What the lock promises:
- it never follows a symlink planted at its path (O_NOFOLLOW; where the OS has no such
  flag, Windows, a symlink is refused before opening), and never truncates, rewrites or
  changes the mode of whatever file is there, so neither a symlink nor a hard link to a
  victim file can damage it;
- the OS releases it when the process dies (flock on POSIX, msvcrt.locking on Windows),
  so a killed run never leaves a stale lock behind (nor one taken early and never used).
The file is left in place on release (deleting it races with a waiting run); it holds
nothing and .gitignore covers it.
"""
from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from .errors import BAD_CONFIG, LOCKED, LauncherError

LOCK_NAME = ".start_services.lock"
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _symlink_error(path: Path) -> LauncherError:
    return LauncherError(f"{path} is a symlink; refusing to open it as the lock", BAD_CONFIG,
                         f"remove it (`rm {LOCK_NAME}`) and run again")


def _open(path: Path) -> int:
    if not NOFOLLOW and os.path.islink(path):
        raise _symlink_error(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        if os.path.islink(path):  # ELOOP from O_NOFOLLOW
            raise _symlink_error(path) from None
        raise LauncherError(f"cannot create the lock {path}: {exc.strerror or exc.__class__.__name__}",
                            BAD_CONFIG, f"check that you may write to {path.parent}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LauncherError(f"{path} is not a regular file; refusing to use it as the lock", BAD_CONFIG,
                            f"remove it (`rm -r {LOCK_NAME}`) and run again")
    return fd


def _acquire(fd: int) -> bool:
    try:
        if os.name == "posix":
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # BlockingIOError (POSIX) or PermissionError (Windows): held elsewhere
        return False
    return True


def _release(fd: int) -> None:
    try:
        if os.name == "posix":
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            import msvcrt

            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    except OSError:
        pass  # closing the descriptor releases it as well
    finally:
        os.close(fd)


_taken_early: dict[Path, int] = {}  # take_early's locks, by folder, for the project_lock to come


def take_early(project_dir: Path) -> bool:
    """Take the lock before the command line is parsed (head_start.py: nothing may change
    between the export it parks and the launch that takes that export); the next
    `project_lock` on the same folder in this process holds it from there. False when
    another run holds it or it cannot be opened: the launch then says so itself."""
    try:
        fd = _open(project_dir / LOCK_NAME)
    except LauncherError:
        return False
    if not _acquire(fd):
        os.close(fd)
        return False
    _taken_early[project_dir] = fd
    return True


@contextlib.contextmanager
def project_lock(project_dir: Path, what: str):
    fd = _taken_early.pop(project_dir, None)
    if fd is None:
        fd = _open(project_dir / LOCK_NAME)
        if not _acquire(fd):
            os.close(fd)
            raise LauncherError(f"another run holds the lock on {project_dir} ({LOCK_NAME}); not starting {what}",
                                LOCKED, "wait for it to finish, then run again")
    try:
        yield
    finally:
        _release(fd)
