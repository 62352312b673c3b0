"""`up` and `down`: settings -> secrets -> env file -> compose command -> run."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from . import bootstrap, compose, init_only
from .gitcheck import warn_if_committable
from .keys import dotenv_secret_values, shadowed_keys
from .envfile import read_exported, render, write_private
from .masking import Masker
from .output import Output
from .secrets_source import DOTENV_ONLY, FRESH, LAST_GOOD, diff_secrets, obtain, report_origin, request_for
from .settings import SecretsMode, Settings, require_dotenv


def up(settings: Settings, out: Output, *, dry_run: bool = False, max_stale: timedelta = timedelta(days=7),
       start_timeout: float = 180.0) -> int:
    require_dotenv(settings)
    masker = Masker(dotenv_secret_values(settings))
    unreachable = None
    if bootstrap.applies(settings):
        if dry_run:
            running = bootstrap.is_running(settings)
            out.info(f"Local Infisical ({settings.infisical_project_name}): {'running' if running else 'not running; up would start it'}.")
        else:
            unreachable = bootstrap.ensure_up(settings, out, masker, start_timeout)
    obtained = obtain(settings, masker, max_stale, unreachable)
    masker.add(s.reveal() for s in obtained.secrets.values())
    report_origin(obtained, settings, out)

    env_files = [settings.env_file]
    if obtained.origin == FRESH:
        previous = read_exported(settings.output)
        if previous:
            changes = diff_secrets(previous, obtained.secrets)
            out.info(f"Changed since the last export: {changes.describe()}." if changes
                     else "No secret changed since the last export.")
            for warning in init_only.warnings_for(settings, changes.changed):
                out.warn(warning)
        if not dry_run:
            text = render(obtained.secrets, request_for(settings).source)
            write_private(settings.output, text)
            warn_if_committable(settings, out)
        env_files.append(settings.output)
    elif obtained.origin == LAST_GOOD:
        env_files.append(settings.output)

    shadowed = shadowed_keys(settings, obtained.secrets)
    if shadowed:
        out.warn(f"your shell exports {', '.join(shadowed)}; docker compose uses the shell's value over "
                 f"{settings.env_file.name} and {settings.output.name} (unset them to use the files)")

    files = settings.compose_files + ((settings.override,) if settings.override else ())
    target = compose.Target(settings.project_dir, settings.project_name, files, tuple(env_files), settings.profile)
    argv = compose.up_argv(target)
    env = compose.compose_env(settings.shell, settings.profile)
    if dry_run:
        out.result("Dry run: nothing written, nothing started.")
        out.result("Env layers (later wins; the shell beats both):")
        out.result(f"  1. {settings.env_file.name}: {', '.join(sorted(settings.dotenv)) or '(no keys)'}")
        if len(env_files) > 1:
            label = "would be written" if obtained.origin == FRESH else "as it is"
            out.result(f"  2. {settings.output.name} ({label}): {', '.join(sorted(obtained.secrets))}")
        out.result(f"Command: {compose.display(argv)}")
        return 0
    out.detail(f"$ {compose.display(argv)}")
    outcome = compose.run(argv, env, masker, out, settings.project_dir)
    if outcome.code != 0:
        missing = outcome.missing_variables()
        if missing:
            hint = "add it to Infisical" if obtained.origin != DOTENV_ONLY else "add it to .env or Infisical"
            if settings.mode is SecretsMode.skip:
                hint += ", or start from the last good export with --offline"
            out.error(f"docker compose needs {', '.join(missing)}, which no env file sets: {hint}.")
        else:
            out.error(f"docker compose failed (exit {outcome.code}); its output is above.")
        return outcome.code
    out.success(f"Stack '{settings.project_name}' is up ({'profile ' + settings.profile if settings.profile else 'no profile'}, "
                f"{settings.environment}).")
    return 0


def down(project_name: str, project_dir: Path, shell: dict, out: Output) -> int:
    argv = compose.down_argv(project_name, project_dir)
    out.detail(f"$ {compose.display(argv)}")
    outcome = compose.run(argv, dict(shell), Masker(), out, project_dir)
    if outcome.code == 0:
        out.success(f"Stack '{project_name}' is down (volumes kept).")
    return outcome.code
