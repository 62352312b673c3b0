"""`up` and `down`: prepare (secrets, env files, target) -> write the export -> run compose."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from . import compose
from .envfile import write_private
from .errors import OK
from .gitcheck import warn_if_committable
from .masking import Masker
from .output import Output
from .prepare import prepare
from .secrets_source import DOTENV_ONLY, FRESH
from .settings import SecretsMode, Settings


def up(settings: Settings, out: Output, *, max_stale: timedelta, start_timeout: float, dry_run: bool = False) -> int:
    prepared = prepare(settings, out, max_stale, settings.output, start_infisical=not dry_run,
                       start_timeout=start_timeout)
    obtained = prepared.obtained
    if prepared.changes is not None:
        out.info(f"Changed since the last export: {prepared.changes.describe()}." if prepared.changes
                 else "No secret changed since the last export.")
    argv = prepared.target.up()
    if dry_run:
        out.result("Dry run: nothing written, nothing started.")
        out.result("Env layers (later wins; the shell beats both):")
        out.result(f"  1. {settings.env_file.name}: {', '.join(sorted(settings.dotenv)) or '(no keys)'}")
        if len(prepared.target.env_files) > 1:
            label = "would be written" if obtained.origin == FRESH else "as it is"
            out.result(f"  2. {settings.output.name} ({label}): {', '.join(sorted(obtained.secrets))}")
        out.result(f"Command: {compose.display(argv)}")
        return OK
    if prepared.export_text is not None:
        write_private(settings.output, prepared.export_text)
        warn_if_committable(settings, out)
    out.detail(f"$ {compose.display(argv)}")
    outcome = compose.run(argv, prepared.env, prepared.masker, out, settings.project_dir)
    if outcome.code != 0:
        out.failure_lines(outcome.tail[-10:])
        pulled = compose.pull_failure("\n".join(outcome.tail))
        if pulled:
            raise compose.pull_error(*pulled, compose.image_of(prepared.target, pulled[0], prepared.env))
        missing = outcome.missing_variables()
        if missing:
            hint = "add it to Infisical" if obtained.origin != DOTENV_ONLY else "add it to .env or Infisical"
            if settings.mode is SecretsMode.skip:
                hint += ", or start from the last good export with --offline"
            out.error(f"docker compose needs {', '.join(missing)}, which no env file sets: {hint}.")
        else:
            out.error(f"docker compose failed (exit {outcome.code}); its last lines are above.")
        return outcome.code
    out.success(f"Stack '{settings.project_name}' is up ({'profile ' + settings.profile if settings.profile else 'no profile'}, "
                f"{settings.environment}).")
    return OK


def down(project_name: str, project_dir: Path, shell: dict, out: Output) -> int:
    argv = compose.down_argv(project_name, project_dir)
    out.detail(f"$ {compose.display(argv)}")
    outcome = compose.run(argv, dict(shell), Masker(), out, project_dir)
    if outcome.code != 0:
        out.failure_lines(outcome.tail[-10:])
    if outcome.code == 0:
        out.success(f"Stack '{project_name}' is down (volumes kept).")
    return outcome.code
