"""The step `up` and `plan` share: which secrets, which env files, which compose target.

Both commands start from its result, so what `plan` shows is what `up` does. It decides;
it writes nothing and starts nothing but the local Infisical (and only when asked).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

from . import bootstrap, compose, init_only, keys
from .envfile import read_exported, render
from .masking import Masker
from .output import Output
from .secrets_source import (
    FRESH,
    LAST_GOOD,
    Diff,
    Obtained,
    diff_secrets,
    obtain,
    report_origin,
    request_for,
    start_early,
)
from .settings import Settings, require_dotenv


@dataclass(frozen=True)
class Prepared:
    masker: Masker  # every secret known to this run, in every printed form
    obtained: Obtained  # the secrets and where they came from
    changes: Diff | None  # against the previous export; None when there is none to compare
    export_text: str | None  # what the export file gets (a fresh export only)
    target: compose.Target  # the AI stack, with the env files this run uses
    env: dict[str, str]  # compose's process environment


def seed_masker(settings: Settings, classes: keys.Classes, previous: dict | None = None,
                masker: Masker | None = None) -> Masker:
    """Every value this run knows before it reads any subprocess's output: `.env`'s secrets,
    the last good export (`previous`, when the caller has read it already), and the CLI's
    credentials; added to `masker` when given."""
    masker = Masker() if masker is None else masker
    masker.add(keys.mask_values(settings, classes))
    previous = read_exported(settings.output) if previous is None else previous
    masker.add(s.reveal() for s in previous.values())
    masker.add(s.reveal() for s in settings.credentials.values())
    return masker


def prepare(settings: Settings, out: Output, max_stale: timedelta, export_path: Path, *,
            start_infisical: bool, start_timeout: float, meanwhile: Callable[[], None] | None = None) -> Prepared:
    """`export_path`: where the compose run will find a fresh export (the caller writes
    `export_text` there: `.env.infisical` for `up`, a temp file for `plan`). `meanwhile`:
    the caller's own work to do while the export runs (it must not read the CLI's output)."""
    require_dotenv(settings)
    masker = Masker()
    # The export first: the CLI's round trip to the server is most of a launch's wait, and
    # the work below (the masker, the last export, the local Infisical's health) runs
    # meanwhile. Its output is read in `obtain`, once the masker is complete.
    pending = start_early(settings, masker)
    try:
        obtained, previous = _obtain(settings, out, masker, max_stale, pending, start_infisical, start_timeout,
                                     meanwhile)
    except BaseException as exc:  # an error or a signal: the CLI must not outlive the run
        if pending is not None:
            pending.cancel(exc)
        raise
    masker.add(s.reveal() for s in obtained.secrets.values())
    report_origin(obtained, settings, out)

    env_files = [settings.env_file]
    changes = None
    export_text = None
    if obtained.origin == FRESH:
        changes = diff_secrets(previous, obtained.secrets) if previous else None
        export_text = render(obtained.secrets, request_for(settings).source)
        env_files.append(export_path)
    elif obtained.origin == LAST_GOOD:
        env_files.append(settings.output)
    if changes:
        for warning in init_only.warnings_for(settings, changes.changed + changes.added):
            out.warn(warning)

    shadowed = keys.shadowed_keys(settings, obtained.secrets)
    if shadowed:
        out.warn(f"your shell exports {', '.join(shadowed)}; docker compose uses the shell's value over "
                 f"{settings.env_file.name} and {settings.output.name} (unset them to use the files)")

    target = compose.Target(settings.project_dir, settings.project_name, settings.compose_files_with_override,
                            tuple(env_files), settings.profiles)
    return Prepared(masker, obtained, changes, export_text, target,
                    compose.compose_env(settings.shell, settings.profiles))


def _obtain(settings: Settings, out: Output, masker: Masker, max_stale: timedelta, pending,
            start_infisical: bool, start_timeout: float,
            meanwhile: Callable[[], None] | None) -> tuple[Obtained, dict]:
    """The secrets, and the last export as it was before this run."""
    previous = read_exported(settings.output)  # read once: masker seed, then the diff
    classified_masker(settings, out, previous, masker)
    started = []

    def too_early() -> None:  # the early export asked a server that was not up: ask once it is
        started.append(True)
        if pending is not None:
            pending.cancel()

    unreachable = local_infisical(settings, out, masker, start_infisical, start_timeout, before_start=too_early)
    if started:
        pending = None
    # A local Infisical may have become healthy just after the early export asked it.
    ask_again = pending is not None and bootstrap.applies(settings) and start_infisical
    if meanwhile is not None and pending is not None:
        meanwhile()
    return obtain(settings, masker, max_stale, unreachable, pending, ask_again), previous


def classified_masker(settings: Settings, out: Output, previous: dict | None = None,
                      masker: Masker | None = None) -> Masker:
    """`seed_masker` after classifying `.env` (a broken `.env.example` is said, and masking
    falls back to the names): what both targets know before reading any subprocess."""
    classes = keys.classify(settings)
    if classes.problem:
        out.warn(f"{classes.problem}; masking .env values by their names only")
    return seed_masker(settings, classes, previous, masker)


def local_infisical(settings: Settings, out: Output, masker: Masker, start_infisical: bool, start_timeout: float,
                    before_start: Callable[[], None] | None = None) -> str | None:
    """The local Infisical, when this run talks to it: brought up and waited for (`up`), or
    only reported (`plan`, which starts nothing). Why it cannot be had, or None."""
    if not bootstrap.applies(settings):
        return None
    if start_infisical:
        return bootstrap.ensure_up(settings, out, masker, start_timeout, before_start=before_start)
    running = bootstrap.is_running(settings)
    out.info(f"Local Infisical ({settings.infisical_project_name}): "
             f"{'running' if running else 'not running (nothing is started)'}.")
    return None


def record_secrets(out: Output, settings: Settings, prepared, command: str, dry_run: bool = False) -> None:
    """The --json document's head: what ran, and where the secrets came from and why (names only)."""
    if out.report is None:
        return
    obtained, changes = prepared.obtained, prepared.changes
    out.record(command=command, dry_run=dry_run, project=settings.project_name, profile=settings.profile or None,
               environment=settings.environment, services=[],
               secrets={"origin": obtained.origin, "reason": prepared.masker.mask(obtained.reason) or None,
                        "count": len(obtained.secrets),
                        "changes": None if changes is None else {"added": changes.added, "changed": changes.changed,
                                                                 "removed": changes.removed}})
