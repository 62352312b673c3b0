"""Could git commit a file that holds secrets? Asked of git itself, never guessed.

One `git status` answers both "is it tracked?" and "is it ignored?", and no git runs at all
outside a work tree (no `.git` above the folder), which is the cheap common case.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from .output import Output
from .process import Running, Timeout, start_captured
from .settings import Settings

TRACKED, IGNORED, EXPOSED = "tracked", "ignored", "exposed"


def _in_work_tree(folder: Path) -> bool:
    return any((parent / ".git").exists() for parent in (folder, *folder.parents))


def start(path: Path, shell: Mapping[str, str], git: str = "git") -> Running | None:
    """Ask git about `path` without waiting for the answer (`state` reads it); None when
    there is no work tree, or git cannot run."""
    if not _in_work_tree(path.parent):
        return None
    try:
        return start_captured([git, "status", "--porcelain=v1", "--ignored=matching", "--untracked-files=all",
                               "--", path.name], shell, 10, cwd=str(path.parent))
    except OSError:
        return None


def state(path: Path, shell: Mapping[str, str], git: str = "git", asked: Running | None = None) -> str | None:
    """TRACKED, IGNORED or EXPOSED (neither), or None when git cannot tell (no work tree,
    no git). The file must exist (when `asked` was started, too)."""
    running = asked or start(path, shell, git)
    if running is None:
        return None
    try:
        result = running.result()
    except Timeout:
        return None
    if result.returncode != 0:
        return None  # not a repository after all (128), or git cannot tell
    codes = {line[:2] for line in result.stdout.splitlines() if len(line) > 3}
    if "!!" in codes:
        return IGNORED
    if "??" in codes:
        return EXPOSED
    return TRACKED if os.path.lexists(path) else None


def warn_if_committable(settings: Settings, out: Output, asked: Running | None = None) -> None:
    """The export holds secrets: say so if git tracks it or would pick it up. `asked`: the
    question started while the export was running (`start`, when the file existed then)."""
    name = settings.output.name
    found = state(settings.output, settings.shell, asked=asked)
    if found == TRACKED:
        out.warn(f"git tracks {name}, which holds secrets: `git rm --cached {name}` and add it to .gitignore")
    elif found == EXPOSED:
        out.warn(f".gitignore does not cover {name}, which holds secrets: add it")
