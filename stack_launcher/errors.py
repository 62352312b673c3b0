"""Exit codes and the one exception type every user-facing error is raised as."""
from __future__ import annotations

OK = 0
FAILED = 1  # a check failed, or compose's own code (propagated; compose uses 1)
USAGE = 2
INFISICAL_UNAVAILABLE = 3
DOCKER_UNAVAILABLE = 4
LOCKED = 5
BAD_CONFIG = 6
UNEXPECTED = 70  # a bug: one line and "please report this" (EX_SOFTWARE)
INTERRUPTED = 130  # Ctrl-C; SIGTERM and SIGHUP give 128 + their number (143, 129)


class LauncherError(Exception):
    """An error written for the user: one line, never a secret value, with its exit code."""

    def __init__(self, message: str, exit_code: int, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint


class Terminated(BaseException):
    """SIGTERM or SIGHUP reached us; like KeyboardInterrupt, not an ordinary error.
    (process.install_signal_handlers raises it; here so that catching it imports nothing.)"""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 143 for SIGTERM, 129 for SIGHUP, as shells report them


def signal_ending(exc: BaseException) -> tuple[str, int] | None:
    """The line (without "error: ") and exit code a run stopped by a signal ends with; None
    for anything else. The one wording, wherever the signal lands."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", INTERRUPTED
    if isinstance(exc, Terminated):
        return f"stopped by {exc}", exc.exit_code
    return None
