"""A re-run's export begins before its command line is parsed.

Importing typer and click and building the command take about 50 ms of every run, all of it
before `infisical export` could start (docs/benchmarks.md, section 5), and the export is most
of a re-run's wait. So `up` keeps a record of its command line and of the options typer made
of it (RECORD: no value, no credential). A run with the very same command line, from the same
folder, by the same launcher version, takes the project lock at once (lock.take_early: nothing
that holds the lock, `migrate` or `restore`, can change Infisical or `.env` between this export
and the launch that uses it), resolves its settings from those options and parks the export
(process.park) before typer is imported; typer is then imported while the CLI talks to the
server.

The launch itself then runs as it always does. When it starts its export,
process.start_captured hands it the parked child only if argv, environment and folder are
exactly what it would run itself; a record that no longer fits costs one child stopped unused
(cli.main), never a wrong value. A record is used only if it is a regular file of this
user's, not readable by others, holding exactly the options `remember` writes, with their
types; anything else about it is ignored. This module prints nothing, except the one line
(and `--json` document) of a Ctrl-C or SIGTERM that lands before the CLI takes over.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .settings import Settings

RECORD = ".start_services.last-run"
_MAX_RECORD = 64 * 1024  # a record is a few hundred bytes; anything larger is not ours
# What `remember` writes, and the types each option may have (settings.resolve's arguments
# but `project_dir`, always absent: only a run from the project's own folder is recorded).
_OPTIONS: dict[str, tuple[type, ...]] = {
    "env_file": (str,), "output": (str,), "files": (list, type(None)), "project_name": (str, type(None)),
    "profile": (str,), "environment": (str,), "mode": (str,), "infisical_env": (str, type(None)),
    "infisical_path": (str, type(None)), "project_id": (str, type(None)), "timeout": (int, float),
}


def begin(argv: list[str]) -> None:
    """Take the lock and park the export when `argv` is the command line `up` recorded in
    this folder. Never raises but for a signal (see `stopped`)."""
    try:
        options = _recorded_options(argv)
        if options is None:
            return
        from . import lock, process

        process.install_signal_handlers()
        if lock.take_early(Path.cwd().resolve()):
            _park_export(options)
    except Exception:  # noqa: BLE001 - the launch meets the same problem and says it properly
        _stop_parked()


def stopped(exc: BaseException, argv: list[str]) -> int:
    """A Ctrl-C or SIGTERM that landed before cli._finish took over: stop what was parked,
    say it as _finish does (and the --json document), and return the exit code. Anything but
    a signal is re-raised."""
    from .errors import signal_ending

    _stop_parked(exc)
    ending = signal_ending(exc)
    if ending is None:
        raise exc
    from .output import Output

    out = Output(json_report="--json" in argv)
    out.record(command="up", services=[])
    out.error(ending[0])
    out.emit_report(ending[1], ending[0])
    return ending[1]


def remember(argv: list[str] | None, options: dict[str, Any], settings: Settings) -> None:
    """Keep `up`'s command line and options for the next run (called under the project lock,
    after `up`). Only a run from the project's own folder whose export can start early is
    kept, and the file is written only when it changes. A folder we cannot write to just
    means no head start."""
    from .envfile import write_private
    from .errors import LauncherError
    from .secrets_source import early_request

    if argv is None or options.get("project_dir") is not None or early_request(settings) is None:
        return
    kept = {**{k: v for k, v in options.items() if k != "project_dir"}, "mode": options["mode"].value}
    text = json.dumps({"launcher": __version__, "cwd": os.getcwd(), "argv": argv, "options": kept}, sort_keys=True)
    path = settings.project_dir / RECORD
    if _read(path) == text:
        return
    try:
        write_private(path, text)
    except (LauncherError, OSError):
        pass


def _recorded_options(argv: list[str]) -> dict[str, Any] | None:
    text = _read(Path(RECORD))
    record = json.loads(text) if text else None
    if not isinstance(record, dict) or record.get("launcher") != __version__ or record.get("argv") != argv:
        return None
    options = record.get("options")
    if record.get("cwd") != os.getcwd() or not isinstance(options, dict) or set(options) != set(_OPTIONS):
        return None
    if not all(isinstance(options[k], types) and not isinstance(options[k], bool) for k, types in _OPTIONS.items()):
        return None
    if options["files"] is not None and not all(isinstance(f, str) for f in options["files"]):
        return None
    return options


def _read(path: Path) -> str | None:
    """The record's text; None unless it is a small regular file of this user's that others
    cannot read or write (POSIX; on Windows the folder's ACL decides)."""
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_RECORD:
            return None
        if os.name == "posix" and (info.st_uid != os.geteuid() or info.st_mode & 0o077):
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


def _stop_parked(cause: BaseException | None = None) -> None:
    process = sys.modules.get(f"{__package__}.process")
    if process is not None:
        process.stop_all(cause)
