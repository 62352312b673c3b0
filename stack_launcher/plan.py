"""`plan`: what `up` would change, from compose's own decision; changes nothing.

The key names come from comparing the export with the previous `.env.infisical`; the
per-service decision comes from `docker compose --dry-run --progress json up -d`, the same
decision `up` takes (recomputing config hashes disagrees with compose for `env_file:`).
"""
from __future__ import annotations

import json
import re
import tempfile
from datetime import timedelta
from pathlib import Path

from . import compose
from .envfile import write_private
from .errors import OK
from .output import Output
from .prepare import prepare
from .secrets_source import FRESH, diff_secrets
from .settings import Settings

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


def plan(settings: Settings, out: Output, max_stale: timedelta) -> int:
    with tempfile.TemporaryDirectory(prefix="start-services-plan-") as tmp:
        planned = Path(tmp) / ".env.infisical"
        prepared = prepare(settings, out, max_stale, planned, start_infisical=False, start_timeout=0)
        if prepared.obtained.origin == FRESH:
            changes = prepared.changes or diff_secrets({}, prepared.obtained.secrets)
            out.result(f"Secrets changed: {changes.describe()}" if changes else "Secrets changed: none")
        if prepared.export_text is not None:
            write_private(planned, prepared.export_text)
        argv = prepared.target.dry_run_up()
        out.detail(f"$ {compose.display(argv)}")
        result = compose.capture(argv, prepared.env, settings.project_dir)
    # Decode each event first, then mask: masking the JSON text would miss a value whose
    # quotes, backslashes or `&<>` JSON escapes.
    lines = [compose.redact(prepared.masker.mask(readable(line))) for line in (result.stderr + result.stdout).splitlines()]
    lines = [line for line in lines if line]
    if result.returncode != 0:
        compose.diagnose(compose.Outcome(result.returncode, tuple(lines)))
        for line in lines[-10:]:
            out.relay(line)
        out.failure_lines(lines[-10:])
        out.error("docker compose could not plan the launch; its output is above.")
        return result.returncode
    decided = services_decided(result.stdout + "\n" + result.stderr, settings.project_name)
    out.result("Services:")
    for service, decision in decided.items():
        out.result(f"  {service}: {decision}")
    return OK
