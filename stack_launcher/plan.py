"""`plan`: what `up` would change, from compose's own decision; changes nothing.

The key names come from comparing the export with the previous `.env.infisical`; the
per-service decision comes from `docker compose --dry-run --progress json up -d`, the same
decision `up` takes (recomputing config hashes disagrees with compose for `env_file:`).
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from . import bootstrap, compose, init_only
from .envfile import read_exported, render, write_private
from .errors import BAD_CONFIG, LauncherError
from .keys import dotenv_secret_values
from .masking import Masker
from .output import Output
from .process import Timeout, run_captured
from .secrets_source import FRESH, LAST_GOOD, diff_secrets, obtain, report_origin, request_for
from .settings import Settings, require_dotenv

DECISIONS = {"Create": "create", "Creating": "create", "Recreate": "recreate", "Running": "untouched"}


def services_decided(events: str, project: str) -> dict[str, str]:
    """Service -> create/recreate/untouched from compose's dry-run JSON events."""
    decided: dict[str, str] = {}
    for line in events.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        ident, status = str(event.get("id", "")), DECISIONS.get(str(event.get("status", "")))
        if not ident.startswith("Container ") or status is None:
            continue
        name = re.sub(r"^[0-9a-f]{12}_", "", ident.removeprefix("Container "))  # the dry run's temp names
        m = re.fullmatch(rf"{re.escape(project)}[-_](.+)[-_]\d+", name)
        service = m.group(1) if m else name
        if decided.get(service) != "recreate":
            decided[service] = status
    return dict(sorted(decided.items()))


def readable(line: str) -> str:
    """A dry-run JSON event as the line a user reads: errors by their message, the rest dropped."""
    try:
        event = json.loads(line)
    except ValueError:
        return line
    if isinstance(event, dict) and event.get("error"):
        return str(event.get("message", line))
    return ""


def plan(settings: Settings, out: Output, max_stale) -> int:
    require_dotenv(settings)
    masker = Masker(dotenv_secret_values(settings))
    if bootstrap.applies(settings):
        running = bootstrap.is_running(settings)
        out.info(f"Local Infisical ({settings.infisical_project_name}): {'running' if running else 'not running (plan starts nothing)'}.")
    obtained = obtain(settings, masker, max_stale)
    masker.add(s.reveal() for s in obtained.secrets.values())
    report_origin(obtained, settings, out)

    changed: list[str] = []
    if obtained.origin == FRESH:
        changes = diff_secrets(read_exported(settings.output), obtained.secrets)
        changed = changes.changed + changes.added
        out.result(f"Secrets changed: {changes.describe()}" if changes else "Secrets changed: none")
    for warning in init_only.warnings_for(settings, changed):
        out.warn(warning)

    with tempfile.TemporaryDirectory(prefix="start-services-plan-") as tmp:
        env_files = [settings.env_file]
        if obtained.origin == FRESH:
            planned = Path(tmp) / ".env.infisical"
            write_private(planned, render(obtained.secrets, request_for(settings).source))
            env_files.append(planned)
        elif obtained.origin == LAST_GOOD:
            env_files.append(settings.output)
        files = settings.compose_files + ((settings.override,) if settings.override else ())
        target = compose.Target(settings.project_dir, settings.project_name, files, tuple(env_files), settings.profile)
        argv = target.args()[:2] + ["--dry-run"] + target.args()[2:] + ["--progress", "json", "up", "-d"]
        out.detail(f"$ {compose.display(argv)}")
        try:
            result = run_captured(argv, compose.compose_env(settings.shell, settings.profile), 120, cwd=str(settings.project_dir))
        except FileNotFoundError:
            raise LauncherError("Docker is not installed: the `docker` command is not on PATH", 4) from None
        except Timeout as exc:
            raise LauncherError(f"docker compose --dry-run gave {exc}", BAD_CONFIG) from None
    if result.returncode != 0:
        lines = [readable(line) for line in masker.mask(result.stderr + result.stdout).splitlines()]
        lines = [line for line in lines if line]
        compose.diagnose(compose.Outcome(result.returncode, tuple(lines)))
        for line in lines[-10:]:
            out.relay(line)
        out.error("docker compose could not plan the launch; its output is above.")
        return result.returncode
    decided = services_decided(result.stdout + "\n" + result.stderr, settings.project_name)
    out.result("Services:")
    for service, decision in decided.items():
        out.result(f"  {service}: {decision}")
    return 0
