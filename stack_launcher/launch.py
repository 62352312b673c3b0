"""`up` and `down`: settings -> secrets -> env file -> compose command -> run."""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from . import bootstrap, compose, init_only
from .envfile import read_exported, render, write_private
from .errors import BAD_CONFIG, LauncherError
from .masking import Masker
from .output import Output
from .secrets_source import DOTENV_ONLY, FRESH, LAST_GOOD, Obtained, obtain, request_for
from .settings import CREDENTIAL_VARS, SecretsMode, Settings

# Names that look like secrets, for `.env` keys that .env.example does not categorise.
SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|AUTH|SALT|CREDENTIAL|PRIVATE", re.IGNORECASE)
LAUNCHER_SETTINGS = {"INFISICAL_ENVIRONMENT", "INFISICAL_SECRET_PATH", "INFISICAL_PROJECT_ID",
                     "INFISICAL_API_URL", "COMPOSE_PROJECT_NAME", *CREDENTIAL_VARS}


def require_dotenv(settings: Settings) -> None:
    if not settings.env_file.is_file():
        raise LauncherError(
            f"no {settings.env_file.name} in {settings.project_dir}", BAD_CONFIG,
            "run `python start_services.py init` to write one from .env.example",
        )


def example_categories(project_dir: Path) -> dict[str, str]:
    """Each key's category from `.env.example` (config, bootstrap, secret); {} without one."""
    path = project_dir / ".env.example"
    if not path.is_file():
        return {}
    from .catalog import load_catalog

    try:
        return {key: entry.category for key, entry in load_catalog(path).items()}
    except LauncherError:
        return {}


def dotenv_secret_values(settings: Settings) -> list[str]:
    """Values in `.env` to mask: secret and bootstrap keys, and uncategorised ones named like secrets."""
    categories = example_categories(settings.project_dir)
    values = []
    for key, value in settings.dotenv.items():
        category = categories.get(key)
        if value and (category in ("secret", "bootstrap")
                      or (category is None and (key in CREDENTIAL_VARS or SECRET_NAME.search(key)))):
            values.append(value)
            values.append(value.replace("\\$", "$"))  # compose reads "a\$b" as a$b, python-dotenv as a\$b
    return values


@dataclass(frozen=True)
class Diff:
    added: list[str]
    removed: list[str]
    changed: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        parts = [f"{label}: {', '.join(keys)}" for label, keys in
                 (("added", self.added), ("changed", self.changed), ("removed", self.removed)) if keys]
        return "; ".join(parts)


def diff_secrets(old: dict, new: dict) -> Diff:
    return Diff(
        added=sorted(new.keys() - old.keys()),
        removed=sorted(old.keys() - new.keys()),
        changed=sorted(k for k in new.keys() & old.keys() if new[k] != old[k]),
    )


def shadowed_keys(settings: Settings, obtained: Obtained) -> list[str]:
    """Keys the user's shell exports with another value: compose would use the shell's."""
    keys = (set(settings.dotenv) | set(obtained.secrets)) - LAUNCHER_SETTINGS
    shadowed = []
    for key in sorted(keys):
        if key not in settings.shell:
            continue
        ours = obtained.secrets[key].reveal() if key in obtained.secrets else settings.dotenv.get(key)
        if settings.shell[key] != ours:
            shadowed.append(key)
    return shadowed


def report_origin(obtained: Obtained, settings: Settings, out: Output) -> None:
    where = f"environment '{settings.infisical_env}', path '{settings.infisical_path}'"
    if obtained.origin == FRESH:
        out.info(f"Secrets: {len(obtained.secrets)} from Infisical ({where}).")
    elif obtained.origin == LAST_GOOD:
        out.warn(f"Infisical unavailable: {obtained.reason}.")
        out.info(f"Secrets: {len(obtained.secrets)} from the last good export {settings.output.name}.")
    elif obtained.reason == "--skip-infisical":
        out.info(f"Secrets: {settings.env_file.name} only (--skip-infisical).")
    else:
        out.warn(f"Infisical unavailable: {obtained.reason}.")
        out.info(f"Secrets: falling back to {settings.env_file.name} only.")
    for warning in obtained.warnings:
        out.warn(warning)


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

    shadowed = shadowed_keys(settings, obtained)
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


def down(project_name: str, project_dir: Path, shell: dict, out: Output) -> int:
    argv = compose.down_argv(project_name, project_dir)
    out.detail(f"$ {compose.display(argv)}")
    outcome = compose.run(argv, dict(shell), Masker(), out, project_dir)
    if outcome.code == 0:
        out.success(f"Stack '{project_name}' is down (volumes kept).")
    return outcome.code
