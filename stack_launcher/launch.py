"""`up` and `down`: prepare (secrets, env files, target) -> write the export -> run compose."""
from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Callable

from . import compose, gitcheck, status
from .envfile import write_private
from .errors import OK, LauncherError
from .masking import Masker
from .output import Output
from .prepare import prepare, record_secrets
from .secrets_source import DOTENV_ONLY, FRESH
from .settings import SecretsMode, Settings


def up(settings: Settings, out: Output, *, max_stale: timedelta, start_timeout: float, dry_run: bool = False) -> int:
    live_view = out.fancy and out.report is None and not dry_run
    # The summary (a terminal, or --json) compares the containers before and after `up`.
    summarize = (out.report is not None or out.fancy) and not dry_run
    asked_git: list = []
    before: dict | None = None

    def meanwhile() -> None:
        """While the Infisical CLI talks to the server: ask git about the export file (whether
        it is tracked or ignored does not depend on what it holds), note the containers as
        they are before `up`, load the live view."""
        nonlocal before
        if not dry_run and settings.output.is_file():
            asked_git.append(gitcheck.start(settings.output, settings.shell))
        if summarize:
            before = status.containers(settings.project_name, settings.shell)
        if live_view:
            _load_live_view()

    prepared = prepare(settings, out, max_stale, settings.output, start_infisical=not dry_run,
                       start_timeout=start_timeout, meanwhile=meanwhile)
    obtained = prepared.obtained
    record_secrets(out, settings, prepared, "up", dry_run=dry_run)
    if prepared.changes is not None:
        out.info(f"Changed since the last export: {prepared.changes.describe()}." if prepared.changes
                 else "No secret changed since the last export.")
    # The live view only on a terminal, and not with --json (whose stderr stays as it was):
    # elsewhere the argv, and every line, stay exactly what they were.
    view = None
    if live_view:
        from .live import ServicesView

        view = ServicesView(settings.project_name)
    argv = prepared.target.up(progress="json" if view else "plain")
    if dry_run:
        out.result("Dry run: nothing written, nothing started.")
        out.result("Env layers (later wins; the shell beats both):")
        out.result(f"  1. {settings.env_file.name}: {', '.join(sorted(settings.dotenv)) or '(no keys)'}")
        if len(prepared.target.env_files) > 1:
            label = "would be written" if obtained.origin == FRESH else "as it is"
            out.result(f"  2. {settings.output.name} ({label}): {', '.join(sorted(obtained.secrets))}")
        out.result(f"Command: {compose.display(argv)}")
        return OK
    asked = asked_git[0] if asked_git else None
    if prepared.export_text is not None:
        write_private(settings.output, prepared.export_text)
        gitcheck.warn_if_committable(settings, out, asked)
    elif asked is not None:
        asked.stop()  # no fresh export written: nothing to warn about
    out.detail(f"$ {compose.display(argv)}")
    if before is None:  # not noted while the export ran (no export started early)
        before = status.containers(settings.project_name, settings.shell) if summarize else {}
    used = ask_used_variables(prepared, view) if summarize else dict
    import contextlib

    if view is not None:
        from .live import showing
    try:
        with showing(out, view) if view is not None else contextlib.nullcontext():
            outcome = compose.run(argv, prepared.env, prepared.masker, out, settings.project_dir, sink=view)
            if view is not None:
                view.ended(outcome.code)
        if view is not None and outcome.code != 0 and compose.progress_unsupported(outcome):
            out.detail("This Compose has no --progress json (before 2.29): plain progress instead.")
            argv = prepared.target.up()
            outcome = compose.run(argv, prepared.env, prepared.masker, out, settings.project_dir)
    except LauncherError:
        if summarize:
            summary(out, settings, prepared, before, used())
        raise
    # When compose's own events say it left every container as it was, the containers are
    # what they were before `up`: no second `docker ps`.
    untouched = view is not None and outcome.code == 0 and bool(view.rows) and not view.stays and \
        all(row.action == "unchanged" for row in view.rows.values()) and set(view.rows) == set(before)
    services = summary(out, settings, prepared, before, used(), after=before if untouched else None) \
        if summarize else []
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
    if out.fancy and services:
        show_summary(out, settings, prepared, services)
    out.success(f"Stack '{settings.project_name}' is up ({'profile ' + settings.profile if settings.profile else 'no profile'}, "
                f"{settings.environment}).")
    return OK


def _load_live_view() -> None:
    """The live view's and the summary's modules (rich's Live and Table, ~30 ms of imports),
    loaded while the Infisical CLI talks to the server instead of after."""
    import rich.console  # noqa: F401
    import rich.live  # noqa: F401
    import rich.progress_bar  # noqa: F401
    import rich.table  # noqa: F401
    import rich.text  # noqa: F401

    from . import live  # noqa: F401


def changed_keys(prepared) -> set[str]:
    changes = prepared.changes
    return set(changes.added + changes.changed + changes.removed) if changes else set()


def ask_used_variables(prepared, view) -> Callable[[], dict[str, set[str]]]:
    """Start asking compose which variables each service interpolates (only when a key
    changed: once a launch, for the live view's recreated rows and the summary), beside `up`
    rather than before it; returns the function that waits for the answer."""
    if not changed_keys(prepared):
        return dict
    answer: dict[str, set[str]] = {}

    def ask() -> None:
        try:
            answer.update(status.variables_used(prepared.target, prepared.env))
        except Exception:  # noqa: BLE001 - the summary is best effort; a failure here shows no keys
            return
        if view is not None:
            view.causes = causes(prepared, answer)  # read by the next redraw

    # A thread, because the main thread relays compose's output meanwhile; its child is in
    # process._live, so an error or a signal stops it with the rest (cli._finish).
    thread = threading.Thread(target=ask, name="variables-used", daemon=True)
    thread.start()

    def wait() -> dict[str, set[str]]:
        thread.join()
        return answer

    return wait


def causes(prepared, used: dict[str, set[str]]) -> dict[str, list[str]]:
    """Service -> the changed keys it uses: why compose recreates it."""
    keys = changed_keys(prepared)
    return {name: sorted(names & keys) for name, names in used.items() if names & keys}


def summary(out: Output, settings: Settings, prepared, before: dict,
            used: dict[str, set[str]], after: dict | None = None) -> list[status.ServiceReport]:
    """Each service after `up`: what happened to it, its state, health and URLs; recorded for --json."""
    if after is None:
        after = status.containers(settings.project_name, settings.shell)
    variables = {**settings.dotenv, **settings.shell}
    services = status.after_up(before, after, settings.environment, variables)
    keys = changed_keys(prepared)
    if keys:
        for service in services:
            service.keys = sorted(used.get(service.name, set()) & keys)
    out.record(services=[s.as_dict() for s in services])
    return services


def show_summary(out: Output, settings: Settings, prepared, services: list[status.ServiceReport]) -> None:
    """One table on a terminal: service, what `up` did, state, health, URL, the changed keys it uses."""
    from rich.table import Table

    console = out.console()
    if console.width < 60:  # a table would cut every cell, URLs first: one line a service
        console.print(f"Stack '{settings.project_name}' ({settings.environment}):", markup=False)
        for s in services:
            state = ", ".join(x for x in (s.action, s.state, s.health) if x)
            console.print(f"  {s.name}: {state}" + "".join(f"\n    {url}" for url in s.urls), markup=False)
        console.print(f"Secrets from {prepared.obtained.origin}; changed: "
                      f"{prepared.changes.describe() if prepared.changes else 'none'}", markup=False)
        return
    table = Table(title=f"Stack '{settings.project_name}' ({settings.environment})", title_justify="left")
    for column in ("service", "action", "state", "health", "url", "changed keys"):
        table.add_column(column, no_wrap=column in ("service", "url"))  # the others give way first
    colours = {"running": "green", "exited": "red", "dead": "red", "restarting": "yellow"}
    for s in services:
        state = f"[{colours.get(s.state, 'yellow')}]{s.state}[/]" if s.state else ""
        health = f"[{'green' if s.health == 'healthy' else 'red' if s.health == 'unhealthy' else 'yellow'}]{s.health}[/]" \
            if s.health else ""
        action = f"[bold]{s.action}[/]" if s.action != "unchanged" else s.action
        table.add_row(s.name, action, state, health, "\n".join(s.urls), ", ".join(s.keys))
    console.print(table)
    origin = prepared.obtained.origin
    changed = prepared.changes.describe() if prepared.changes else "none"
    console.print(f"Secrets from {origin}; changed: {changed}", markup=False)


def down(project_name: str, project_dir: Path, shell: dict, out: Output) -> int:
    argv = compose.down_argv(project_name, project_dir)
    out.detail(f"$ {compose.display(argv)}")
    outcome = compose.run(argv, dict(shell), Masker(), out, project_dir)
    if outcome.code != 0:
        out.failure_lines(outcome.tail[-10:])
    if outcome.code == 0:
        out.success(f"Stack '{project_name}' is down (volumes kept).")
    return outcome.code
