"""The local Infisical: its own compose project, brought up and waited for before export.

It is a separate project (`<project>-infisical`), not `include:`d, because compose
interpolates every loaded service on every command: the AI services' `${VAR:?}` would
fail while their secrets still sit inside Infisical. Health comes from compose's own
`up -d --wait`, never from a fixed sleep; on a healthy Infisical that is one quick check.
"""
from __future__ import annotations

from typing import Callable

from . import compose, engine
from .errors import DOCKER_UNAVAILABLE, LauncherError
from .masking import Masker
from .output import Output
from .process import Timeout
from .settings import SecretsMode, Settings


def applies(settings: Settings) -> bool:
    """Start the local Infisical only when the launch would talk to it."""
    if settings.mode in (SecretsMode.skip, SecretsMode.offline):
        return False
    return settings.infisical_is_local  # else another server, or the CLI's own domain


def target(settings: Settings) -> compose.Target:
    return compose.Target(settings.project_dir, settings.infisical_project_name,
                          (settings.infisical_compose_file,), (settings.env_file,))


def ensure_up(settings: Settings, out: Output, masker: Masker, timeout: float,
              before_start: Callable[[], None] | None = None) -> str | None:
    """Bring the local Infisical up and wait until healthy; the reason it failed, or None.
    `before_start` is called when it was not running (something asked it too early)."""
    if is_running(settings):
        out.detail(f"Local Infisical ({settings.infisical_project_name}) is already healthy.")
        return None  # one `docker ps` (~50 ms) instead of `up --wait` (~600 ms) on every launch
    if before_start is not None:
        before_start()
    local = target(settings)
    env = compose.compose_env(settings.shell, ())
    # Pull first, without the health limit: a first start may download for minutes, and a
    # pull that fails is said as such, not as "did not become healthy".
    try:
        pulled = _pull(local, env, masker, out, settings)
    except LauncherError as exc:
        if exc.exit_code == DOCKER_UNAVAILABLE and "not installed" in exc.message:
            return "Docker is not installed (the `docker` command is not on PATH)"
        raise
    if pulled.code != 0:
        failure = compose.pull_failure("\n".join(pulled.tail))
        if failure:
            error = compose.pull_error(*failure, compose.image_of(local, failure[0], env))
            return f"{error.message} ({error.hint})"
        return f"`docker compose pull` for the local Infisical failed: {(pulled.tail or ('no message',))[-1]}"
    title = f"Starting the local Infisical ({settings.infisical_project_name}), waiting until healthy..."
    view = None
    if out.fancy and out.report is None:
        # On a terminal the spinner says how long, and each container's health, from
        # compose's events; elsewhere the command and the lines stay what they were.
        from .live import WaitView, waiting

        view = WaitView(title, settings.infisical_project_name, out.verbose)
    argv = local.up_wait(timeout, progress="json" if view else "plain")
    out.detail(f"$ {compose.display(argv)}")
    with waiting(out, view) if view else out.status(title):
        try:
            outcome = compose.run(argv, env, masker, out, settings.project_dir, timeout=timeout + 30, quiet=True,
                                  sink=view)
            if view is not None and outcome.code != 0 and compose.progress_unsupported(outcome):
                outcome = compose.run(local.up_wait(timeout), env, masker, out, settings.project_dir,
                                      timeout=timeout + 30, quiet=True)  # Compose < 2.29: no events, same wait
        except Timeout:
            return f"the local Infisical was not healthy within {timeout:g} s"
        except LauncherError as exc:
            if exc.exit_code == DOCKER_UNAVAILABLE and "not installed" in exc.message:
                return "Docker is not installed (the `docker` command is not on PATH)"
            raise
    lines = [line for line in outcome.tail if line.strip()]
    # Compose v2.40 exits 0 when --wait-timeout runs out with a container still starting,
    # so health is read back rather than trusted from the exit code.
    if outcome.code == 0 and is_running(settings):
        return None
    if outcome.code != 0:
        compose.diagnose(outcome)  # engine and env-file problems stop here
    unhealthy = next((l.strip() for l in lines if "unhealthy" in l.lower() or "timeout" in l.lower()), "")
    detail = f" ({unhealthy})" if unhealthy else (f" ({lines[-1].strip()})" if lines else "")
    return f"the local Infisical did not become healthy within {timeout:g} s{detail}"


def _pull(local: compose.Target, env, masker: Masker, out: Output, settings: Settings) -> compose.Outcome:
    """`pull --policy missing`; on a terminal as the live rows (a first start downloads
    hundreds of MB: one row a service with its bytes, not hundreds of scrolled lines)."""
    view = None
    if out.fancy and out.report is None:
        from .live import ServicesView, showing

        view = ServicesView(settings.infisical_project_name)
    pull = local.pull_missing(progress="json" if view else "plain")
    out.detail(f"$ {compose.display(pull)}")
    if view is None:
        return compose.run(pull, env, masker, out, settings.project_dir)
    with showing(out, view):
        pulled = compose.run(pull, env, masker, out, settings.project_dir, sink=view)
        view.ended(pulled.code)
    if pulled.code != 0 and compose.progress_unsupported(pulled):  # Compose < 2.29: plain lines
        pulled = compose.run(local.pull_missing(), env, masker, out, settings.project_dir)
    return pulled


def is_running(settings: Settings) -> bool:
    """Is every container of the local Infisical up, and none unhealthy or starting? (Starts nothing.)"""
    try:
        return engine.all_healthy(engine.project_states(settings.infisical_project_name, settings.shell))
    except engine.Unanswered:
        return False
