"""The command line: `up` (the default), `down`, `init`, `plan`, `doctor`, `migrate`, `setup`,
`backup`, `restore`.

Each command takes its options after its name. Errors raised as LauncherError are printed
as one line (plus a hint) with their exit code; no traceback ever reaches the user, and
typer is told never to show local variables (they can hold secret values).

No `from __future__ import annotations` here: typer reads every option's annotation on
every run, and string annotations cost it ~460 evals (~7 ms a launch, docs/benchmarks.md).
"""
import math
import os
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from . import __version__, errors
from .choices import (
    DEFAULT_MAX_STALE,
    DeployTarget,
    Environment,
    Profile,
    SecretsMode,
    parse_duration,
)
from .errors import LauncherError
from .output import Output


def _fancy() -> bool:
    """Rich help and errors on a terminal; plain text when piped or NO_COLOR is set."""
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


app = typer.Typer(
    add_completion=False,
    rich_markup_mode="rich" if _fancy() else None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    help="Start the self-hosted AI stack with its secrets from Infisical.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

COMMANDS = {"up", "down", "init", "plan", "doctor", "migrate", "setup", "backup", "restore"}

Verbose = Annotated[bool, typer.Option("--verbose", help="Show full commands (never secret values).")]
Quiet = Annotated[bool, typer.Option("--quiet", help="Only warnings and errors.")]
ProjectDir = Annotated[Optional[Path], typer.Option("--project-dir", help="Folder every relative path is relative to (default: current directory).", file_okay=False)]
ProjectName = Annotated[Optional[str], typer.Option("-p", "--project-name", help="Compose project name (default: COMPOSE_PROJECT_NAME, else localai).")]
EnvFile = Annotated[str, typer.Option("--env-file", help="The base env file.")]


def _version(value: bool) -> None:
    if value:
        print(f"start_services {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Start the self-hosted AI stack with its secrets from Infisical.

    `python start_services.py --profile cpu` is the same as `python start_services.py up --profile cpu`.
    """


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return text


def _seconds(value: float) -> float:
    """A finite number of seconds, at most a day (inf, nan and 1e300 are usage errors)."""
    if not math.isfinite(value) or not 1 <= value <= 86400:
        raise typer.BadParameter("use a number of seconds from 1 to 86400")
    return value


def _mode(skip: bool, require: bool, offline: bool) -> SecretsMode:
    chosen = [name for name, on in (("--skip-infisical", skip), ("--require-infisical", require), ("--offline", offline)) if on]
    if len(chosen) > 1:
        raise LauncherError(f"{' and '.join(chosen)} cannot be used together", errors.USAGE)
    if skip:
        return SecretsMode.skip
    if require:
        return SecretsMode.require
    if offline:
        return SecretsMode.offline
    return SecretsMode.fresh


ProfileOpt = Annotated[Profile, typer.Option("--profile", help="Compose profile; `none` means no profile at all.")]
EnvironmentOpt = Annotated[Environment, typer.Option("--environment", help="Adds docker-compose.override.<environment>.yml when it exists.")]
SkipOpt = Annotated[bool, typer.Option("--skip-infisical", help="Don't call Infisical: .env only.")]
RequireOpt = Annotated[bool, typer.Option("--require-infisical", help="Fail (exit 3) instead of falling back.")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Don't call Infisical: use the last good export (exit 3 if none).")]
MaxStaleOpt = Annotated[str, typer.Option("--max-stale", callback=_duration, help="Oldest last good export to use: 30m, 12h, 7d.")]
InfisicalEnvOpt = Annotated[Optional[str], typer.Option("--infisical-env", help="Infisical environment (default: INFISICAL_ENVIRONMENT, else .infisical.json, else dev).")]
InfisicalPathOpt = Annotated[Optional[str], typer.Option("--infisical-path", help="Secret folder (default: INFISICAL_SECRET_PATH, else /).")]
ProjectIdOpt = Annotated[Optional[str], typer.Option("--project-id", help="Infisical project id (default: INFISICAL_PROJECT_ID).")]
TimeoutOpt = Annotated[float, typer.Option("--infisical-timeout", callback=_seconds, help="Seconds for each Infisical CLI call.")]
StartTimeoutOpt = Annotated[float, typer.Option("--infisical-start-timeout", callback=_seconds, help="Seconds to wait for the local Infisical to be healthy.")]
FileOpt = Annotated[Optional[List[str]], typer.Option("-f", "--file", help="Compose file, repeatable (default: docker-compose.yml).")]
OutputOpt = Annotated[str, typer.Option("--output", help="The exported file.")]
TargetOpt = Annotated[DeployTarget, typer.Option("--target", help="Where the stack runs: `compose` on this machine, or `swarm` (docker stack deploy; docs/swarm.md).")]
ConvergeTimeoutOpt = Annotated[float, typer.Option("--converge-timeout", callback=_seconds, help="--target swarm: seconds to wait until every service runs its replicas.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout at the end, for scripts (README: `--json`).")]


def _launch(plan: bool, *, profile: Profile, environment: Environment, skip_infisical: bool, require_infisical: bool,
            offline: bool, max_stale: str, infisical_env, infisical_path, project_id, infisical_timeout: float,
            infisical_start_timeout: float, file, project_name, project_dir, env_file: str, output: str,
            dry_run: bool, out: Output, target: DeployTarget = DeployTarget.compose,
            converge_timeout: float = 300.0) -> None:
    stale = parse_duration(max_stale)
    out.record(command="plan" if plan else "up", services=[])

    def run() -> int:
        from . import settings as settings_mod

        options = dict(
            project_dir=project_dir, env_file=env_file, output=output, files=file, project_name=project_name,
            profile=profile.value, environment=environment.value,
            mode=_mode(skip_infisical, require_infisical, offline), infisical_env=infisical_env,
            infisical_path=infisical_path, project_id=project_id, timeout=infisical_timeout,
        )

        def resolve():
            return settings_mod.resolve(**options)

        if target is DeployTarget.swarm:
            from . import swarm_launch
            from .lock import project_lock

            if plan:
                return swarm_launch.plan(resolve(), out)
            if dry_run:  # changes nothing, like the compose dry run: no lock
                return swarm_launch.up(resolve(), out, start_timeout=infisical_start_timeout,
                                       converge_timeout=converge_timeout, dry_run=True)
            with project_lock(settings_mod.project_root(project_dir), "the stack"):
                return swarm_launch.up(resolve(), out, start_timeout=infisical_start_timeout,
                                       converge_timeout=converge_timeout, dry_run=dry_run)
        if plan:
            from .plan import plan as run_plan

            return run_plan(resolve(), out, max_stale=stale)
        from .launch import up

        if dry_run:
            return up(resolve(), out, dry_run=True, max_stale=stale, start_timeout=infisical_start_timeout)
        from .head_start import remember
        from .lock import project_lock

        with project_lock(settings_mod.project_root(project_dir), "the stack"):
            settings = resolve()
            try:
                return up(settings, out, max_stale=stale, start_timeout=infisical_start_timeout)
            finally:  # after `up`: a record that changes is written once the stack is up, not before
                remember(_command_line, options, settings)  # the next identical run starts its export sooner

    _finish(run, out)


@app.command("up")
def up_cmd(
    profile: ProfileOpt = Profile.cpu,
    environment: EnvironmentOpt = Environment.private,
    skip_infisical: SkipOpt = False,
    require_infisical: RequireOpt = False,
    offline: OfflineOpt = False,
    max_stale: MaxStaleOpt = DEFAULT_MAX_STALE,
    infisical_env: InfisicalEnvOpt = None,
    infisical_path: InfisicalPathOpt = None,
    project_id: ProjectIdOpt = None,
    infisical_timeout: TimeoutOpt = 30.0,
    infisical_start_timeout: StartTimeoutOpt = 180.0,
    file: FileOpt = None,
    project_name: ProjectName = None,
    project_dir: ProjectDir = None,
    env_file: EnvFile = ".env",
    output: OutputOpt = ".env.infisical",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would run; change nothing.")] = False,
    target: TargetOpt = DeployTarget.compose,
    converge_timeout: ConvergeTimeoutOpt = 300.0,
    json_output: JsonOpt = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Export the secrets and start the stack (the default command)."""
    _launch(False, **_without(locals(), "verbose", "quiet", "json_output"),
            out=Output(verbose=verbose, quiet=quiet, json_report=json_output))


@app.command("plan")
def plan_cmd(
    profile: ProfileOpt = Profile.cpu,
    environment: EnvironmentOpt = Environment.private,
    skip_infisical: SkipOpt = False,
    require_infisical: RequireOpt = False,
    offline: OfflineOpt = False,
    max_stale: MaxStaleOpt = DEFAULT_MAX_STALE,
    infisical_env: InfisicalEnvOpt = None,
    infisical_path: InfisicalPathOpt = None,
    project_id: ProjectIdOpt = None,
    infisical_timeout: TimeoutOpt = 30.0,
    file: FileOpt = None,
    project_name: ProjectName = None,
    project_dir: ProjectDir = None,
    env_file: EnvFile = ".env",
    output: OutputOpt = ".env.infisical",
    target: TargetOpt = DeployTarget.compose,
    json_output: JsonOpt = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Show what `up` would change (secrets and services); change nothing, start nothing."""
    _launch(True, **_without(locals(), "verbose", "quiet", "json_output"), infisical_start_timeout=0, dry_run=False,
            out=Output(verbose=verbose, quiet=quiet, json_report=json_output))


def _without(options: dict, *names: str) -> dict:
    return {k: v for k, v in options.items() if k not in names}


@app.command("down")
def down_cmd(
    with_infisical: Annotated[bool, typer.Option("--with-infisical", help="Stop the local Infisical too.")] = False,
    target: TargetOpt = DeployTarget.compose,
    project_name: ProjectName = None,
    project_dir: ProjectDir = None,
    env_file: EnvFile = ".env",
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Stop and remove every container of the project, whatever profile started it. Volumes are kept."""
    out = Output(verbose=verbose, quiet=quiet)

    def run() -> int:
        from .launch import down

        settings = _settings(project_dir, env_file, project_name)  # the same project name `up` uses
        if target is DeployTarget.swarm:
            from .swarm_launch import down as swarm_down

            code = swarm_down(settings, out)
        else:
            code = down(settings.project_name, settings.project_dir, dict(settings.shell), out)
        if code == 0 and with_infisical:
            code = down(settings.infisical_project_name, settings.project_dir, dict(settings.shell), out)
        return code

    _finish(run, out)


def _settings(project_dir, env_file, project_name, infisical_env=None, infisical_path=None, project_id=None,
              timeout=30.0, output=".env.infisical"):
    from . import settings as settings_mod

    return settings_mod.resolve(project_dir=project_dir, env_file=env_file, output=output, project_name=project_name,
                                infisical_env=infisical_env, infisical_path=infisical_path, project_id=project_id,
                                timeout=timeout)


@app.command("init")
def init_cmd(
    project_name: ProjectName = None,
    project_dir: ProjectDir = None,
    env_file: EnvFile = ".env",
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Write .env from .env.example with generated secrets; on an existing .env, add only missing keys."""
    out = Output(verbose=verbose, quiet=quiet)

    def run() -> int:
        from .init_env import init_env
        from .lock import project_lock
        from .settings import project_root

        with project_lock(project_root(project_dir), "init"):
            settings = _settings(project_dir, env_file, project_name)  # read under the lock
            return init_env(settings.project_dir, Path(env_file), Path(".env.example"), settings.project_name, out)

    _finish(run, out)


@app.command("doctor")
def doctor_cmd(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document on stdout, for scripts.")] = False,
    profile: ProfileOpt = Profile.cpu,
    environment: EnvironmentOpt = Environment.private,
    infisical_env: Annotated[Optional[str], typer.Option("--infisical-env", help="Infisical environment.")] = None,
    project_id: Annotated[Optional[str], typer.Option("--project-id", help="Infisical project id.")] = None,
    project_name: ProjectName = None,
    project_dir: ProjectDir = None,
    env_file: EnvFile = ".env",
    output: Annotated[str, typer.Option("--output", help="The exported file.")] = ".env.infisical",
    target: TargetOpt = DeployTarget.compose,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Check Docker, Compose, the Infisical CLI, login, server, and the env files; each failure with its fix."""
    out = Output(verbose=verbose, quiet=quiet)

    def run() -> int:
        from . import settings as settings_mod
        from .doctor import run_doctor

        settings = settings_mod.resolve(project_dir=project_dir, env_file=env_file, output=output,
                                        project_name=project_name, profile=profile.value,
                                        environment=environment.value, infisical_env=infisical_env,
                                        project_id=project_id)
        return run_doctor(settings, out, as_json=json_output, swarm_target=target is DeployTarget.swarm)

    _finish(run, out)


@app.command("migrate")
def migrate_cmd(
    apply: Annotated[bool, typer.Option("--apply", help="Really move them (default: only list what would move).")] = False,
    infisical_env: Annotated[Optional[str], typer.Option("--infisical-env", help="Infisical environment to move to.")] = None,
    infisical_path: Annotated[Optional[str], typer.Option("--infisical-path", help="Secret folder to move to.")] = None,
    project_id: Annotated[Optional[str], typer.Option("--project-id", help="Infisical project id.")] = None,
    infisical_timeout: TimeoutOpt = 30.0,
    project_name: ProjectName = None,
    project_dir: ProjectDir = None,
    env_file: EnvFile = ".env",
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Move the secrets from .env into Infisical (a dry run unless --apply), verified before .env changes."""
    out = Output(verbose=verbose, quiet=quiet)

    def run() -> int:
        from .lock import project_lock
        from .migrate import migrate
        from .settings import project_root

        def resolve():
            return _settings(project_dir, env_file, project_name, infisical_env, infisical_path, project_id,
                             infisical_timeout)

        if not apply:
            return migrate(resolve(), out, apply=False)
        with project_lock(project_root(project_dir), "migrate"):
            return migrate(resolve(), out, apply=True)  # decides and rewrites from one read of .env

    _finish(run, out)


@app.command("setup")
def setup_cmd(
    admin_email: Annotated[Optional[str], typer.Option("--admin-email", help="The Infisical admin's login (required on the first run).")] = None,
    organization: Annotated[Optional[str], typer.Option("--organization", help="Infisical organization name (default: the compose project name).")] = None,
    remote: Annotated[bool, typer.Option("--remote", help="Allow setting up an Infisical that is not this project's local one.")] = False,
    infisical_start_timeout: StartTimeoutOpt = 180.0,
    project_name: ProjectName = None,
    project_dir: ProjectDir = None,
    env_file: EnvFile = ".env",
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """From a fresh clone to secrets served by Infisical: init, bootstrap, machine identity, migrate."""
    out = Output(verbose=verbose, quiet=quiet)

    def run() -> int:
        from .lock import project_lock
        from .settings import project_root
        from .setup import Options, check_email, setup

        check_email(admin_email)
        root = project_root(project_dir)
        with project_lock(root, "setup"):
            settings = _settings(project_dir, env_file, project_name)
            if settings.dotenv_text is None:
                from .init_env import init_env

                init_env(settings.project_dir, Path(env_file), Path(".env.example"), settings.project_name, out)
                settings = _settings(project_dir, env_file, project_name)
            code = setup(settings, out, Options(admin_email, organization, remote, infisical_start_timeout))
            if code != errors.OK:
                return code
            from .migrate import migrate

            settings = _settings(project_dir, env_file, project_name)  # with the new credentials
            code = migrate(settings, out, apply=True)
        if code != errors.OK:
            out.error("Infisical is set up, but moving the secrets did not complete (see above); "
                      "fix that and run `python3 start_services.py migrate --apply`")
            return code
        ui = settings.dotenv.get("INFISICAL_SITE_URL") or settings.api_url
        out.success(f"Infisical UI: {ui}" + (f" (log in as {admin_email.strip()})" if admin_email else "")
                    + ". The next `python start_services.py --profile cpu` exports from Infisical.")
        return code

    _finish(run, out)


PassphraseFileOpt = Annotated[Optional[Path], typer.Option("--passphrase-file", dir_okay=False, help="File holding the passphrase (a trailing newline is ignored; default: INFISICAL_BACKUP_PASSPHRASE, else asked on the terminal).")]


@app.command("backup")
def backup_cmd(
    output: Annotated[str, typer.Option("--output", help="Folder for the archive.")] = "backups",
    keep: Annotated[Optional[int], typer.Option("--keep", min=1, help="Keep the newest N archives in the folder and delete older ones (only files this command names).")] = None,
    passphrase_file: PassphraseFileOpt = None,
    no_encrypt: Annotated[bool, typer.Option("--no-encrypt", help="Write a plain .tar: the bootstrap secrets in the clear.")] = False,
    project_name: ProjectName = None,
    project_dir: ProjectDir = None,
    env_file: EnvFile = ".env",
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Back up the local Infisical: its database and .env's bootstrap secrets, in one age-encrypted file."""
    out = Output(verbose=verbose, quiet=quiet)

    def run() -> int:
        from .backup import backup
        from .lock import project_lock
        from .settings import project_root

        with project_lock(project_root(project_dir), "backup"):
            settings = _settings(project_dir, env_file, project_name)
            return backup(settings, out, output=output, keep=keep, passphrase_file=passphrase_file,
                          no_encrypt=no_encrypt)

    _finish(run, out)


@app.command("restore")
def restore_cmd(
    archive: Annotated[Path, typer.Argument(help="An archive written by `backup` (.age or .tar).", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Restore even when Infisical's image differs, or .env's bootstrap secrets differ from the archive's (.env is backed up first).")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Only check the archive: restore it into a scratch project, compare the row counts, remove it.")] = False,
    passphrase_file: PassphraseFileOpt = None,
    project_name: ProjectName = None,
    project_dir: ProjectDir = None,
    env_file: EnvFile = ".env",
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Restore the local Infisical from an archive (after a backup of what is there), or --verify it."""
    out = Output(verbose=verbose, quiet=quiet)

    def run() -> int:
        from .backup import restore
        from .lock import project_lock
        from .settings import project_root

        def resolve():
            return _settings(project_dir, env_file, project_name)

        options = dict(archive_path=archive, force=force, verify=verify, passphrase_file=passphrase_file,
                       resolve=resolve)
        if verify:  # touches nothing of the project: no lock
            return restore(resolve(), out, **options)
        with project_lock(project_root(project_dir), "restore"):
            return restore(resolve(), out, **options)

    _finish(run, out)

def _finish(run, out: Output) -> None:
    """The one error handler. LauncherError -> its line and code; a file or encoding problem
    -> one line, exit 6; Ctrl-C -> 130, SIGTERM -> 143, SIGHUP -> 129; anything else -> one
    line asking for a report, exit 70. A traceback only with --verbose, never with locals
    (they may hold secret values)."""
    from .process import Terminated, install_signal_handlers, stop_all

    install_signal_handlers()
    error = None
    try:
        try:
            code = run()
        except BaseException as exc:
            stop_all(exc)  # a child started early and not collected yet must not outlive the run
            raise
    except LauncherError as exc:
        out.error(error := exc.message)
        if exc.hint:
            out.info(f"  -> {exc.hint}")
        code = exc.exit_code
    except (KeyboardInterrupt, Terminated) as exc:
        error, code = errors.signal_ending(exc)
        out.error(error)
    except (OSError, UnicodeError) as exc:
        out.error(error := _describe_os_error(exc))
        _traceback(out)
        code = errors.BAD_CONFIG
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
        out.error(error := f"unexpected {exc.__class__.__name__}; please report this (run again with --verbose for details)")
        _traceback(out)
        code = errors.UNEXPECTED
    if code != errors.OK and error is None:
        error = "see the lines above (stderr)"
    out.emit_report(code, error)
    raise typer.Exit(code)


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, UnicodeError):
        return f"a file is not valid UTF-8 text ({exc.__class__.__name__})"
    where = getattr(exc, "filename", None)
    what = getattr(exc, "strerror", None) or exc.__class__.__name__
    return f"{where}: {what}" if where else what


def _traceback(out: Output) -> None:
    """The stack, file and line only: no message (it may quote a value), no locals."""
    if out.verbose:
        import traceback

        for frame in traceback.extract_tb(sys.exc_info()[2]):
            out.detail(f"  at {frame.filename}:{frame.lineno} in {frame.name}")


_command_line: list[str] | None = None  # as the user typed it; set by main() alone


def main() -> None:
    global _command_line
    argv = _command_line = sys.argv[1:]
    # `up` is the default command: `start_services.py --profile cpu` means `up --profile cpu`.
    first = next((a for a in argv if not a.startswith("-") or a in ("--help", "-h", "--version")), None)
    if first is None or first not in COMMANDS | {"--help", "-h", "--version"}:
        argv = ["up", *argv]
    try:
        app(args=argv, prog_name="start_services.py")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except (KeyboardInterrupt, errors.Terminated) as exc:  # while typer parsed, before _finish took over
        from .head_start import stopped

        code = stopped(exc, _command_line)
    process = sys.modules.get("stack_launcher.process")
    if process is not None:  # a child parked for a command that ended before taking it (click's own
        process.stop_all()  # "Aborted!" on a Ctrl-C while it parsed, say) must not outlive us
    # Everything is done, every file closed and every child reaped: skip the interpreter's
    # teardown of typer, click and the rest (about 20 ms of every run, docs/benchmarks.md).
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
