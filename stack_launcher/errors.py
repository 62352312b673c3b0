"""Exit codes and the one exception type every user-facing error is raised as."""

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
