"""`plan`: what `up` would change, from compose's own decision; changes nothing.

The key names come from comparing the export with the previous `.env.infisical`; the
per-service decision comes from `docker compose --dry-run --progress json up -d`, the same
decision `up` takes (recomputing config hashes disagrees with compose for `env_file:`).
"""
from __future__ import annotations

import json
import re
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from . import compose, status
from .envfile import write_private
from .errors import OK
from .output import Output
from .prepare import prepare, record_secrets
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
        record_secrets(out, settings, prepared, "plan")
        changes = None
        if prepared.obtained.origin == FRESH:
            changes = prepared.changes or diff_secrets({}, prepared.obtained.secrets)
            out.result(f"Secrets changed: {changes.describe()}" if changes else "Secrets changed: none")
            if out.report is not None:
                out.report["secrets"]["changes"] = {"added": changes.added, "changed": changes.changed,
                                                    "removed": changes.removed}
        if prepared.export_text is not None:
            write_private(planned, prepared.export_text)
        argv = prepared.target.dry_run_up()
        out.detail(f"$ {compose.display(argv)}")
        result = compose.capture(argv, prepared.env, settings.project_dir)
        keys = set(changes.added + changes.changed + changes.removed) if changes else set()
        explain = bool(keys) and (out.report is not None or out.fancy) and result.returncode == 0
        used = status.variables_used(prepared.target, prepared.env) if explain else {}
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
    reports = [status.ServiceReport(service, decision, keys=sorted(used.get(service, set()) & keys))
               for service, decision in decided.items()]
    out.record(services=[r.as_dict() for r in reports])
    if out.fancy and out.report is None and sys.stdout.isatty():
        show_plan(out, reports)
        return OK
    out.result("Services:")
    for service, decision in decided.items():
        out.result(f"  {service}: {decision}")
    return OK


def show_plan(out: Output, reports: list) -> None:
    """The plan as one table on a terminal: service, action, and the changed keys it uses."""
    from rich.table import Table

    table = Table(title="Plan", title_justify="left")
    for column in ("service", "action", "why"):
        table.add_column(column)
    colours = {"create": "green", "recreate": "yellow", "untouched": "dim"}
    for r in reports:
        why = f"uses changed {', '.join(r.keys)}" if r.keys else ("new container" if r.action == "create" else
                                                                   "" if r.action == "untouched" else "its configuration changed")
        table.add_row(r.name, f"[{colours.get(r.action, 'bold')}]{r.action}[/]", why)
    from rich.console import Console

    Console(highlight=False).print(table)  # stdout: the plan is what the user asked for
