"""Could git commit a file that holds secrets? Asked of git itself, never guessed."""
from __future__ import annotations

import subprocess

from .output import Output
from .settings import Settings


def warn_if_committable(settings: Settings, out: Output) -> None:
    """The export holds secrets: say so if git tracks it or would pick it up."""
    path = settings.output
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", path.name], cwd=path.parent,
                                 capture_output=True, timeout=5)
        if tracked.returncode == 0:
            out.warn(f"git tracks {path.name}, which holds secrets: `git rm --cached {path.name}` and add it to .gitignore")
            return
        ignored = subprocess.run(["git", "check-ignore", "-q", path.name], cwd=path.parent, capture_output=True, timeout=5)
        if ignored.returncode == 1:
            out.warn(f".gitignore does not cover {path.name}, which holds secrets: add it")
    except (OSError, subprocess.TimeoutExpired):
        pass  # no git: nothing to commit it to
