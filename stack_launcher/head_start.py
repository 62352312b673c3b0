"""A re-run's export begins before its command line is parsed.

Importing typer and click and building the command take about 50 ms of every run, all of it
before `infisical export` could start (docs/benchmarks.md, section 5), and the export is most
of a re-run's wait. So `up` keeps a record of its command line and of the options typer made
of it (RECORD: no value, no credential). A run with the very same command line, from the same
folder, by the same launcher version, resolves its settings from those options at once and
parks the export (process.park) before typer is imported; typer is then imported while the
CLI talks to the server.

The launch itself then runs as it always does. When it starts its export, process.start_captured
hands it the parked child only if argv, environment and folder are exactly what it would run
itself; so a stale or edited record costs one child stopped unused, never a wrong value.
Anything that goes wrong here is left for the launch to meet and report: this module never
prints, except the one line of a Ctrl-C or SIGTERM that lands while it works.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .settings import Settings

RECORD = ".start_services.last-run"
_MAX_RECORD = 64 * 1024  # a record is a few hundred bytes; anything larger is not ours


def begin(argv: list[str]) -> None:
    """Park the export when `argv` is the command line `up` recorded in this folder."""
    options = _recorded_options(argv)
    if options is None:
        return
    from .process import Terminated, install_signal_handlers, stop_all

    install_signal_handlers()
    try:
        _park_export(options)
    except (KeyboardInterrupt, Terminated) as exc:
        stop_all(exc)
        # The words and codes of cli._finish: it is not running yet to say them.
        sys.stderr.write("error: interrupted\n" if isinstance(exc, KeyboardInterrupt) else f"error: stopped by {exc}\n")
        raise SystemExit(130 if isinstance(exc, KeyboardInterrupt) else exc.exit_code) from None
    except Exception:  # noqa: BLE001 - the launch meets the same problem and says it properly
        stop_all()


def remember(argv: list[str] | None, options: dict[str, Any], settings: Settings) -> None:
    """Keep `up`'s command line and options for the next run (called under the project lock).

    Only a run from the project's own folder whose export can start early is kept, and the
    file is written only when it changes. A folder we cannot write to just means no head
    start."""
    from .envfile import write_private
    from .errors import LauncherError
    from .secrets_source import early_request

    if argv is None or options.get("project_dir") is not None or early_request(settings) is None:
        return
    text = json.dumps({"launcher": __version__, "cwd": os.getcwd(), "argv": argv,
                       "options": {**options, "mode": options["mode"].value}}, sort_keys=True)
    path = settings.project_dir / RECORD
    if _read(path) == text:
        return
    try:
        write_private(path, text)
    except (LauncherError, OSError):
        pass


def _recorded_options(argv: list[str]) -> dict[str, Any] | None:
    text = _read(Path(RECORD))
    try:
        record = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("launcher") != __version__ or record.get("argv") != argv:
        return None
    options = record.get("options")
    if record.get("cwd") != os.getcwd() or not isinstance(options, dict):
        return None
    return options


def _read(path: Path) -> str | None:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_RECORD:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        return None


def _park_export(options: dict[str, Any]) -> None:
    from . import infisical_source, process, secrets_source, settings as settings_mod
    from .masking import Masker

    settings = settings_mod.resolve(**{**options, "mode": settings_mod.SecretsMode(options["mode"])})
    request = secrets_source.early_request(settings)
    if request is None:
        return
    argv, env = infisical_source.export_command(request, settings.shell, Masker())
    process.park(argv, env, request.timeout, request.cwd)
