"""Safety at the edges (issue 9): what a user sees when things are odd, and what they never see.

Every scenario runs the real launcher as a subprocess, with the stand-in Infisical CLI on
PATH. Where the subject is compose's own output (its errors quoting a value, an env file it
rejects, a compose file it cannot find) the real Docker engine and Compose v2 run; where
compose is not the subject, a fake `docker` that logs its argv and exits 0 stands in, which
keeps the file fast. Each test checks both halves: the value is nowhere in the output, AND
the message around it was printed (a launcher that printed nothing would fail).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from support.processes import LAUNCHER, list_processes

EXAMPLE = """\
#@ config
INFISICAL_PROJECT_ID=
#@ bootstrap
INFISICAL_TOKEN=
#@ secret format=password:32
API_KEY=
#@ secret format=password:32
DB_PASSWORD=
"""
DOTENV = """\
INFISICAL_TOKEN=tok-1
INFISICAL_PROJECT_ID=proj-1
API_KEY=dotenv-api-key-0001
DB_PASSWORD=dotenv-db-password-0001
"""
FROM_INFISICAL = {"API_KEY": "infisical-api-key-0001", "DB_PASSWORD": "infisical-db-password-0001"}


# ------------------------------------------------------------------------------ helpers

def go_quote(value: str) -> str:
    """Go's %q inside the quotes, for the characters these tests use."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        else:
            out.append(ch)
    return "".join(out)


def printed_forms(value: str) -> set[str]:
    """Raw, JSON-escaped (ASCII, UTF-8, and Go's encoding/json with & < > escaped), Go-quoted."""
    ascii_json = json.dumps(value)[1:-1]
    return {
        value,
        ascii_json,
        json.dumps(value, ensure_ascii=False)[1:-1],
        ascii_json.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"),
        go_quote(value),
    }


def shown(result) -> str:
    return result.stdout + result.stderr


def assert_never_shown(result, *values: str) -> None:
    text = shown(result)
    for value in values:
        for form in printed_forms(value):
            assert form not in text, f"a secret was shown in the form {form!r}:\n{text}"


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_failed_cleanly(result, code: int) -> None:
    """Exactly `code`, one `error:` line, no traceback."""
    assert result.returncode == code, f"exit {result.returncode}, expected {code}:\n{shown(result)}"
    assert "Traceback" not in shown(result), shown(result)
    assert len(error_lines(result)) == 1, shown(result)


def fake_docker(folder: Path, body: str = "exit 0\n") -> tuple[Path, Path]:
    """A `docker` that logs each call's argv (one line) and then runs `body`."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "docker-calls.log"
    script = folder / "docker"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\n{body}')
    script.chmod(0o755)
    return folder, log


def wrapped_cli(tmp_path: Path, env: dict[str, str], export_body: str) -> dict[str, str]:
    """The stand-in CLI behind a wrapper whose `export` runs `export_body` instead (a server
    or CLI fault the stand-in has no switch for); every other command is the stand-in's."""
    real = shutil.which("infisical", path=env["PATH"])
    assert real, "the stand-in CLI is not on the test PATH"
    hook = tmp_path / "cli-wrapper"
    hook.mkdir()
    (hook / "infisical").write_text(
        f'#!/bin/sh\nif [ "$1" = export ]; then\n{export_body}\nfi\nexec "{real}" "$@"\n')
    (hook / "infisical").chmod(0o755)
    return dict(env, PATH=f"{hook}{os.pathsep}{env['PATH']}")


class Folder:
    """A project folder for scenarios where compose is not the subject: a fake docker first
    on PATH (so a launcher that wrongly went on to compose starts nothing real)."""

    def __init__(self, tmp_path: Path, infisical) -> None:
        self.dir = tmp_path / "project"
        self.dir.mkdir()
        (self.dir / "docker-compose.yml").write_text(
            'services:\n  app:\n    image: busybox-test:local\n'
            '    environment:\n      API_KEY: "${API_KEY:?API_KEY is not set}"\n')
        (self.dir / ".env.example").write_text(EXAMPLE)
        (self.dir / ".env").write_text(DOTENV)
        infisical.set_secrets(dict(FROM_INFISICAL))
        self.infisical = infisical
        bin_dir, self.docker_log = fake_docker(tmp_path / "fake-docker")
        self.env = dict(infisical.env, PATH=f"{bin_dir}{os.pathsep}{infisical.env['PATH']}")

    def docker_calls(self) -> list[str]:
        return self.docker_log.read_text().splitlines() if self.docker_log.exists() else []

    def exported(self) -> str:
        return (self.dir / ".env.infisical").read_text()


@pytest.fixture
def folder(tmp_path, infisical_server) -> Folder:
    return Folder(tmp_path, infisical_server)


@pytest.fixture
def project(stack, infisical_server):
    """A real compose project: one service taking API_KEY, secrets in Infisical."""
    stack.write_compose({"app": {"environment": {"API_KEY": "${API_KEY:?API_KEY is not set}"}}})
    (stack.dir / ".env.example").write_text(EXAMPLE)
    stack.write_env(DOTENV)
    infisical_server.set_secrets(dict(FROM_INFISICAL))
    stack.infisical = infisical_server
    return stack


# ------------------------------------------------------------------------------ 1. compose quotes a value

NASTY = 'p0rt"spec\\&<>-s3cr3t-9c1'  # " \ & < >: compose's JSON escapes them, Go's %q too


@pytest.fixture
def port_project(project):
    """PORTSPEC (a secret in Infisical) lands in a port mapping compose rejects, quoting it,
    and the same run has two warning events (an unset variable, an obsolete `version`)."""
    project.write_compose({"app": {"ports": ["${PORTSPEC:-8080}:80"],
                                   "environment": {"OTHER": "${NOT_SET_ANYWHERE}"}}}, version="3")
    project.infisical.set_secrets({**FROM_INFISICAL, "PORTSPEC": NASTY})
    return project


def test_plan_never_prints_a_value_with_quotes_and_ampersands_that_compose_quotes(port_project, run_launcher):
    result = run_launcher(["plan", "-p", port_project.name], cwd=port_project.dir, env=port_project.infisical.env)
    assert result.returncode not in (0, 70), shown(result)
    assert "Traceback" not in shown(result)
    assert_never_shown(result, NASTY)
    assert "s3cr3t-9c1" not in shown(result)
    assert "invalid hostPort: ***" in result.stderr, shown(result)
    assert "docker compose could not plan the launch" in result.stderr
    assert port_project.running_services() == {}


def test_up_never_prints_a_value_with_quotes_and_ampersands_that_compose_quotes(port_project, run_launcher):
    result = run_launcher(["up", "-p", port_project.name], cwd=port_project.dir, env=port_project.infisical.env)
    assert result.returncode not in (0, 70), shown(result)
    assert "Traceback" not in shown(result)
    assert_never_shown(result, NASTY)
    assert "s3cr3t-9c1" not in shown(result)
    assert "invalid hostPort: ***" in result.stderr, shown(result)
    assert "NOT_SET_ANYWHERE" in result.stderr  # the warnings are relayed, not swallowed
    assert "docker compose failed" in result.stderr
    assert port_project.running_services() == {}


# ------------------------------------------------------------------------------ 2. a $VAR inside a .env secret

@pytest.mark.parametrize("command, spelling", [
    pytest.param("up", "$HOSTPART"),
    pytest.param("plan", "$HOSTPART"),
    pytest.param("up", "${HOSTPART}"),
], ids=["up-$VAR", "plan-$VAR", "up-${VAR}"])
def test_a_dotenv_secret_with_a_variable_inside_is_masked_as_compose_interpolates_it(project, run_launcher, command,
                                                                                      spelling):
    project.write_compose({"app": {"ports": ["${PORT_SECRET}:80"]}})
    project.write_env(DOTENV + f"HOSTPART=abcdef\nPORT_SECRET=s3cr3t-{spelling}\n")
    result = run_launcher([command, "--skip-infisical", "-p", project.name], cwd=project.dir, env=project.infisical.env)
    assert result.returncode not in (0, 70), shown(result)
    assert "Traceback" not in shown(result)
    assert_never_shown(result, "s3cr3t-abcdef", f"s3cr3t-{spelling}")
    assert "invalid hostPort: ***" in result.stderr, shown(result)
    assert project.running_services() == {}


# ------------------------------------------------------------------------------ 3. a .env line compose rejects

UNTERMINATED = "unterminated-secret-value-7f3a"


@pytest.mark.parametrize("command", [["up"], ["plan"], ["migrate"]], ids=["up", "plan", "migrate"])
def test_a_dotenv_line_compose_rejects_names_file_line_and_key_but_never_the_value(project, run_launcher, command):
    (project.dir / ".env.example").write_text(EXAMPLE + "#@ secret\nAPI_TOKEN=\n")
    project.write_env(DOTENV + f'API_TOKEN="{UNTERMINATED}\nLAST_SETTING=x\n')  # line 5, never closed
    args = [*command] + (["-p", project.name] if command != ["migrate"] else [])
    result = run_launcher(args, cwd=project.dir, env=project.infisical.env)
    assert_failed_cleanly(result, 6)
    (line,) = error_lines(result)
    assert ".env" in line and "line 5" in line and "API_TOKEN" in line, shown(result)
    assert_never_shown(result, UNTERMINATED)
    assert "unterminated-secret" not in shown(result)
    assert project.running_services() == {}


# ------------------------------------------------------------------------------ 4. the CLI's stderr quotes a value

LAST_EXPORTED = 'last"export\\db-pass-42'


@pytest.mark.parametrize("form", ["raw", "go-quoted", "json-escaped"])
def test_the_infisical_clis_error_quoting_a_value_from_the_last_export_is_masked(folder, tmp_path, run_launcher, form):
    """The stand-in has no switch to fail quoting a value; a wrapper in front of it does."""
    folder.infisical.set_secrets({**FROM_INFISICAL, "DB_PASSWORD": LAST_EXPORTED})
    first = run_launcher(["up"], cwd=folder.dir, env=folder.env)
    assert first.returncode == 0, shown(first)
    assert "DB_PASSWORD" in folder.exported()
    quoted = {"raw": LAST_EXPORTED, "go-quoted": f'"{go_quote(LAST_EXPORTED)}"',
              "json-escaped": json.dumps(LAST_EXPORTED)}[form]
    message = f"error: CallGetRawSecretsV3: secret DB_PASSWORD rejected: value {quoted} is not valid"
    said = tmp_path / "cli-error.txt"
    said.write_text(message + "\nUnable to fetch secrets\n")
    env = wrapped_cli(tmp_path, folder.env, f'cat "{said}" >&2; exit 1')
    result = run_launcher(["up"], cwd=folder.dir, env=env)
    assert result.returncode == 0, shown(result)
    assert_never_shown(result, LAST_EXPORTED)
    assert "db-pass-42" not in shown(result)
    assert "`infisical export` failed (exit 1)" in result.stderr, shown(result)
    assert "secret DB_PASSWORD rejected: value" in result.stderr and "***" in result.stderr, shown(result)
    assert "last good export" in result.stderr


# ------------------------------------------------------------------------------ 5. the CLI serves its own cached copy

CACHED = {"API_KEY": "cli-cached-api-key-0001", "DB_PASSWORD": "cli-cached-db-password-0001"}


def serve_cached_copy(infisical, key: str = "identity_offline_backup") -> None:
    """The server is down and the CLI's own cache holds an older fetch: `identity_offline_backup`
    for a token login (INFISICAL_TOKEN in .env), `offline_backup` for a user's `infisical login`."""
    infisical.update(server="down", **{key: {"proj-1": {"dev": {"/": dict(CACHED)}}}})


def test_the_clis_cached_copy_is_not_used_and_up_starts_from_the_last_good_export(project, run_launcher):
    first = run_launcher(["up", "-p", project.name], cwd=project.dir, env=project.infisical.env)
    assert first.returncode == 0, shown(first)
    before = (project.dir / ".env.infisical").read_bytes()
    serve_cached_copy(project.infisical)
    result = run_launcher(["up", "-p", project.name], cwd=project.dir, env=project.infisical.env)
    assert result.returncode == 0, shown(result)
    (export,) = project.infisical.calls_of("export")[1:]  # it was asked, and answered from its cache
    assert "cached copy" in result.stderr and "unreachable" in result.stderr, result.stderr
    assert "last good export" in result.stderr
    assert (project.dir / ".env.infisical").read_bytes() == before
    assert project.container_env("app")["API_KEY"] == FROM_INFISICAL["API_KEY"]
    assert_never_shown(result, *CACHED.values(), *FROM_INFISICAL.values())


@pytest.mark.parametrize("login", ["token", "user-session"])
def test_the_clis_cached_copy_without_a_last_good_export_falls_back_to_dotenv(folder, run_launcher, login):
    if login == "user-session":
        (folder.dir / ".env").write_text(DOTENV.replace("INFISICAL_TOKEN=tok-1\n", ""))
        folder.infisical.set_user_session()
        serve_cached_copy(folder.infisical, "offline_backup")
    else:
        serve_cached_copy(folder.infisical)
    result = run_launcher(["up"], cwd=folder.dir, env=folder.env)
    assert result.returncode == 0, shown(result)
    assert len(folder.infisical.calls_of("export")) == 1
    assert "cached copy" in result.stderr and "falling back to .env only" in result.stderr, result.stderr
    assert not (folder.dir / ".env.infisical").exists()
    (up,) = folder.docker_calls()
    assert ".env.infisical" not in up and "--env-file" in up
    assert_never_shown(result, *CACHED.values())


def test_the_clis_cached_copy_with_require_infisical_exits_3(folder, run_launcher):
    serve_cached_copy(folder.infisical)
    result = run_launcher(["up", "--require-infisical"], cwd=folder.dir, env=folder.env)
    assert_failed_cleanly(result, 3)
    assert "Infisical is required but unavailable" in result.stderr and "cached copy" in result.stderr
    assert folder.docker_calls() == []
    assert not (folder.dir / ".env.infisical").exists()
    assert_never_shown(result, *CACHED.values())


# ------------------------------------------------------------------------------ 6. the lock file is a symlink

@pytest.mark.parametrize("command", [["up"], ["init"], ["migrate", "--apply"]], ids=["up", "init", "migrate"])
def test_a_lock_file_that_is_a_symlink_to_another_file_is_refused_and_the_file_untouched(folder, tmp_path,
                                                                                       run_launcher, command):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious content\n")
    os.utime(victim, (1_000_000_000, 1_000_000_000))
    (folder.dir / ".start_services.lock").symlink_to(victim)
    result = run_launcher(command, cwd=folder.dir, env=folder.env)
    assert_failed_cleanly(result, 6)
    assert ".start_services.lock" in error_lines(result)[0] and "symlink" in error_lines(result)[0], shown(result)
    assert len(result.stderr.splitlines()) <= 2, result.stderr  # the line, and at most its hint
    assert victim.read_text() == "precious content\n"
    assert victim.stat().st_mtime == 1_000_000_000
    assert folder.docker_calls() == [] and folder.infisical.calls() == []


# ------------------------------------------------------------------------------ 7. --output names a file the user keeps

@pytest.mark.parametrize("output", [".env", "docker-compose.yml", "somedir/"])
def test_output_onto_the_env_file_a_compose_file_or_a_folder_is_refused(folder, run_launcher, output):
    (folder.dir / "somedir").mkdir()
    kept = {name: (folder.dir / name).read_bytes() for name in (".env", "docker-compose.yml")}
    result = run_launcher(["up", "--output", output], cwd=folder.dir, env=folder.env)
    assert_failed_cleanly(result, 6)
    assert "--output" in error_lines(result)[0], shown(result)
    assert {name: (folder.dir / name).read_bytes() for name in kept} == kept
    assert list((folder.dir / "somedir").iterdir()) == []
    assert folder.docker_calls() == []
    assert_never_shown(result, *FROM_INFISICAL.values())


# ------------------------------------------------------------------------------ 8. .env.infisical is a folder

def test_an_export_file_that_is_a_directory_is_exit_6_without_a_traceback(folder, run_launcher):
    (folder.dir / ".env.infisical").mkdir()
    result = run_launcher(["up"], cwd=folder.dir, env=folder.env)
    assert_failed_cleanly(result, 6)
    assert ".env.infisical" in error_lines(result)[0] and "directory" in error_lines(result)[0], shown(result)
    assert (folder.dir / ".env.infisical").is_dir()
    assert folder.docker_calls() == []


# ------------------------------------------------------------------------------ 9. a folder the user cannot write

def _nobody_can_run_the_launcher() -> str | None:
    """Why the launcher cannot be run as `nobody` here, or None when it can."""
    if os.name != "posix" or shutil.which("setpriv") is None:
        return "setpriv is not installed"
    if os.geteuid() != 0:
        return "changing to the user nobody needs root"
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                            "-c", f"import runpy, sys; sys.argv=['x', '--version']; runpy.run_path({str(LAUNCHER)!r})"],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, cwd="/")
    if probe.returncode != 0:
        return f"the user nobody cannot run {sys.executable} and {LAUNCHER}: {probe.stderr.strip()[-200:]}"
    return None


def _read_only_mount_refuses(folder, command, why_not_nobody: str) -> None:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip(f"{why_not_nobody}; and no read-only mount can be made here (needs root and unshare)")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && cd "$1" && shift && exec "$@"'
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                             str(folder.dir), sys.executable, str(LAUNCHER), *command], env=folder.env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    if "mount" in result.stderr and result.returncode not in (6,):
        pytest.skip(f"{why_not_nobody}; a read-only mount failed: {result.stderr.strip()[-200:]}")
    assert_failed_cleanly(result, 6)
    assert str(folder.dir) in result.stderr and "Read-only file system" in result.stderr, shown(result)
    assert folder.docker_calls() == []


@pytest.mark.parametrize("command", [["up"], ["init"]], ids=["up", "init"])
def test_a_project_folder_the_user_cannot_write_is_exit_6_naming_the_folder(folder, command):
    reason = _nobody_can_run_the_launcher()
    if reason:
        # Root ignores permission bits; a read-only mount stops root too. (A clone in a 0700
        # folder, as `mktemp -d` makes, is out of nobody's reach.)
        _read_only_mount_refuses(folder, command, reason)
        return
    # pytest's tmp_path lies under a 0700 folder of root's: the copy goes where nobody can reach it.
    outer = Path(tempfile.mkdtemp(prefix="s9-readonly-"))
    try:
        outer.chmod(0o755)
        copy = outer / "project"
        shutil.copytree(folder.dir, copy)
        for path in copy.iterdir():
            path.chmod(0o444)
        copy.chmod(0o555)
        env = dict(folder.env, HOME=str(outer))
        result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                 sys.executable, str(LAUNCHER), *command], cwd=copy, env=env, capture_output=True,
                                text=True, stdin=subprocess.DEVNULL, timeout=60)
        assert_failed_cleanly(result, 6)
        assert str(copy) in result.stderr, shown(result)
        assert sorted(p.name for p in copy.iterdir()) == [".env", ".env.example", "docker-compose.yml"]
        assert folder.docker_calls() == []
    finally:
        for path in [outer, *outer.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(outer, ignore_errors=True)


# ------------------------------------------------------------------------------ 10. absurd numbers

@pytest.mark.parametrize("args", [
    ["--max-stale", "99999999999d"],
    ["--infisical-timeout", "inf"],
    ["--infisical-timeout", "nan"],
    ["--infisical-timeout", "1e300"],
    ["--infisical-start-timeout", "inf"],
], ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_an_absurd_duration_or_timeout_is_a_usage_error(folder, run_launcher, args):
    result = run_launcher(["up", *args], cwd=folder.dir, env=folder.env)
    assert result.returncode == 2, shown(result)
    assert "Traceback" not in shown(result)
    assert args[0] in result.stderr and "Invalid value" in result.stderr, shown(result)
    assert folder.docker_calls() == [] and folder.infisical.calls() == []


# ------------------------------------------------------------------------------ 11. an export nested too deeply

def test_an_export_of_two_hundred_thousand_brackets_falls_back_with_one_line(folder, tmp_path, run_launcher):
    brackets = tmp_path / "brackets.json"
    brackets.write_text("[" * 200_000)
    env = wrapped_cli(tmp_path, folder.env, f'cat "{brackets}"; exit 0')
    result = run_launcher(["up"], cwd=folder.dir, env=env)
    assert result.returncode == 0, shown(result)
    assert "Traceback" not in shown(result) and "RecursionError" not in shown(result)
    reasons = [line for line in result.stderr.splitlines() if line.startswith("warning: Infisical unavailable")]
    assert len(reasons) == 1 and "infisical export" in reasons[0], result.stderr
    assert len(reasons[0]) < 400
    assert "falling back to .env only" in result.stderr
    assert len(folder.docker_calls()) == 1


# ------------------------------------------------------------------------------ 12. a lone surrogate

def test_a_value_holding_a_lone_surrogate_skips_that_key_and_exports_the_rest(folder, tmp_path, run_launcher):
    """The stand-in writes its output as UTF-8 and cannot print a lone surrogate; a wrapper does."""
    export = tmp_path / "export.json"
    export.write_text('[{"key":"API_KEY","value":"\\ud800"},'
                      '{"key":"DB_PASSWORD","value":"fine-db-password-0002"}]')
    env = wrapped_cli(tmp_path, folder.env, f'cat "{export}"; exit 0')
    result = run_launcher(["up"], cwd=folder.dir, env=env)
    assert result.returncode == 0, shown(result)
    assert "Traceback" not in shown(result)
    warnings = [line for line in result.stderr.splitlines() if "API_KEY" in line and line.startswith("warning:")]
    assert warnings and "surrogate" in warnings[0], result.stderr
    exported = folder.exported()
    assert 'DB_PASSWORD="fine-db-password-0002"' in exported
    assert "API_KEY" not in exported
    assert_never_shown(result, "fine-db-password-0002")


# ------------------------------------------------------------------------------ 13. a key with a newline

def test_a_key_with_a_trailing_newline_is_skipped_and_the_export_has_no_broken_line(folder, run_launcher):
    folder.infisical.set_secrets({**FROM_INFISICAL, "API_KEY\n": "newline-key-value-0003"})
    result = run_launcher(["up"], cwd=folder.dir, env=folder.env)
    assert result.returncode == 0, shown(result)
    assert "Traceback" not in shown(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: skipped Infisical key")]
    assert len(warnings) == 1 and "API_KEY" in warnings[0], result.stderr
    lines = [line for line in folder.exported().split("\n") if line and not line.startswith("#")]
    assert sorted(line.split("=", 1)[0] for line in lines) == ["API_KEY", "DB_PASSWORD"], lines
    for line in lines:
        key, _, value = line.partition("=")
        assert value.startswith('"') and value.endswith('"'), line
    assert 'API_KEY="infisical-api-key-0001"' in lines
    assert_never_shown(result, "newline-key-value-0003", *FROM_INFISICAL.values())


# ------------------------------------------------------------------------------ 14. SIGTERM and SIGHUP

def _live_in_group(pgid: int) -> list[str]:
    """Processes (not zombies) in process group `pgid`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(f"{pid}: {stat.partition(' (')[2].partition(')')[0]}")
    return found


def _start_hanging(folder: Folder, command: list[str], env: dict[str, str]) -> subprocess.Popen:
    folder.infisical.set_server("hang")
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), *command], cwd=folder.dir, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        calls = folder.infisical.calls_of("export")
        if calls and _live_in_group(calls[0]["pgid"]) and any("sleep" in p for p in _live_in_group(calls[0]["pgid"])):
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the launcher ended early: {proc.communicate()}"
    assert folder.infisical.calls_of("export"), "the launcher never called `infisical export`"
    return proc


def _stop(proc: subprocess.Popen, signum: int) -> tuple[int, str, float]:
    started = time.monotonic()
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=25)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"the launcher did not exit within 25 s of {signal.Signals(signum).name}:\n{err}")
    return proc.returncode, err, time.monotonic() - started


def _assert_cli_gone(folder: Folder) -> None:
    (call,) = folder.infisical.calls_of("export")
    deadline = time.monotonic() + 3
    while _live_in_group(call["pgid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _live_in_group(call["pgid"]) == [], "the stand-in CLI or its child sleep is still running"
    assert call["pid"] not in list_processes() or list_processes()[call["pid"]].state in ("Z", "X")


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_while_the_cli_hangs_during_up_exits_at_once_and_leaves_no_cli_behind(folder, run_launcher,
                                                                                       signum, code):
    proc = _start_hanging(folder, ["up"], folder.env)
    returncode, err, took = _stop(proc, signum)
    assert returncode == code, err
    assert took < 20
    assert "Traceback" not in err
    assert f"stopped by {signal.Signals(signum).name}" in err, err
    _assert_cli_gone(folder)
    assert folder.docker_calls() == []
    assert [p.name for p in folder.dir.iterdir() if p.name.startswith(".env.infisical")] == []


def test_sigterm_to_plan_while_the_cli_hangs_removes_its_temp_folder(folder, tmp_path):
    scratch = tmp_path / "tmpdir"  # plan's temp folder goes here (TMPDIR), not among other runs' in /tmp
    scratch.mkdir()
    proc = _start_hanging(folder, ["plan"], dict(folder.env, TMPDIR=str(scratch)))
    during = sorted(p.name for p in scratch.glob("start-services-plan-*"))
    assert len(during) == 1, during
    returncode, err, took = _stop(proc, signal.SIGTERM)
    assert returncode == 143, err
    assert took < 20
    assert "Traceback" not in err and "stopped by SIGTERM" in err, err
    assert list(scratch.glob("start-services-plan-*")) == [], "plan's temp folder was left behind"
    _assert_cli_gone(folder)


# ------------------------------------------------------------------------------ 15. a stale temp file

def test_doctor_reports_a_stale_export_temp_file_and_the_next_up_removes_it(folder, run_launcher):
    stale = folder.dir / ".env.infisical.tmp-k3j2h1"
    stale.write_text('API_KEY="half-written-stale-value"\n')
    doctor = run_launcher(["doctor"], cwd=folder.dir, env=folder.env)
    assert doctor.returncode in (0, 1), shown(doctor)
    assert "Traceback" not in shown(doctor)
    (line,) = [line for line in doctor.stdout.splitlines() if "temp-files" in line]
    assert line.startswith("WARN") and stale.name in line, doctor.stdout
    assert_never_shown(doctor, "half-written-stale-value")
    result = run_launcher(["up"], cwd=folder.dir, env=folder.env)
    assert result.returncode == 0, shown(result)
    assert not stale.exists()
    assert 'API_KEY="infisical-api-key-0001"' in folder.exported()


# ------------------------------------------------------------------------------ 16. --quiet still explains a failure

@pytest.mark.parametrize("command", ["up", "plan"])
def test_quiet_with_a_missing_compose_file_still_shows_composes_error(project, run_launcher, command):
    result = run_launcher([command, "--quiet", "-f", "nope.yml", "-p", project.name], cwd=project.dir,
                          env=project.infisical.env)
    assert result.returncode not in (0, 70), shown(result)
    assert "Traceback" not in shown(result)
    relayed = [line for line in result.stderr.splitlines() if "nope.yml" in line and not line.startswith("error:")]
    assert relayed and "no such file" in relayed[0], shown(result)
    assert error_lines(result), shown(result)
    assert_never_shown(result, *FROM_INFISICAL.values())


# ------------------------------------------------------------------------------ 17. init and what .env already says

INIT_EXAMPLE = """\
#@ config
HOST_NAME=example.local
#@ secret format=hex:32
WEBUI_SECRET_KEY=
#@ secret format=password:32
API_SECRET=
"""


def test_init_keeps_a_key_that_refers_to_another_variable_and_never_appends_it_again(folder, run_launcher):
    (folder.dir / ".env.example").write_text(INIT_EXAMPLE)
    (folder.dir / ".env").write_text("HOST_NAME=example.local\nWEBUI_SECRET_KEY=${WEBUI_KEY_FROM_VAULT}\n")
    result = run_launcher(["init"], cwd=folder.dir, env=folder.env)
    assert result.returncode == 0, shown(result)
    assert "Traceback" not in shown(result)
    assert "API_SECRET" in result.stderr and "WEBUI_SECRET_KEY" not in result.stderr, result.stderr
    text = (folder.dir / ".env").read_text()
    assert text.count("WEBUI_SECRET_KEY=") == 1, text
    assert "WEBUI_SECRET_KEY=${WEBUI_KEY_FROM_VAULT}\n" in text
    assert text.count("API_SECRET=") == 1


@pytest.mark.parametrize("dotenv, said", [
    ("HOST_NAME=bom.example\nWEBUI_SECRET_KEY=kept-webui-key-0004\n", ["Added to .env: API_SECRET"]),
    ("API_SECRET=\nHOST_NAME=bom.example\nWEBUI_SECRET_KEY=kept-webui-key-0004\n",
     ["Filled empty values in .env: API_SECRET"]),
], ids=["set-key-first", "empty-key-first"])
def test_init_with_a_bom_before_the_first_key_works_and_the_key_has_no_bom(folder, run_launcher, dotenv, said):
    (folder.dir / ".env.example").write_text(INIT_EXAMPLE)
    (folder.dir / ".env").write_bytes(("\ufeff" + dotenv).encode("utf-8"))
    result = run_launcher(["init"], cwd=folder.dir, env=folder.env)
    assert result.returncode == 0, shown(result)
    assert "Traceback" not in shown(result)
    told = [line for line in result.stderr.splitlines() if line.startswith(("Added to .env", "Filled empty"))]
    assert told == said, result.stderr
    text = (folder.dir / ".env").read_text(encoding="utf-8")
    assert "\ufeff" not in text.removeprefix("\ufeff"), "a BOM was written into the middle of .env"
    keys = [line.split("=")[0].removeprefix("\ufeff") for line in text.splitlines()
            if "=" in line and not line.startswith("#")]
    assert sorted(keys) == ["API_SECRET", "HOST_NAME", "WEBUI_SECRET_KEY"], text
    api_secret = next(line for line in text.splitlines() if line.lstrip("\ufeff").startswith("API_SECRET="))
    assert len(api_secret.split("=", 1)[1]) == 32, "API_SECRET was not generated"
    assert "HOST_NAME=bom.example\n" in text and "WEBUI_SECRET_KEY=kept-webui-key-0004\n" in text
    assert_never_shown(result, "kept-webui-key-0004")


# ------------------------------------------------------------------------------ 18. a .env.example that is not UTF-8

@pytest.mark.parametrize("command", [["init"], ["migrate"]], ids=["init", "migrate"])
def test_a_non_utf8_env_example_is_exit_6_with_one_line(folder, run_launcher, command):
    (folder.dir / ".env.example").write_bytes(EXAMPLE.encode() + b"#@ config\nCITY=Z\xfcrich\n")
    before = (folder.dir / ".env").read_bytes()
    result = run_launcher(command, cwd=folder.dir, env=folder.env)
    assert_failed_cleanly(result, 6)
    assert "UTF-8" in error_lines(result)[0], shown(result)
    assert (folder.dir / ".env").read_bytes() == before
    assert folder.docker_calls() == [] and folder.infisical.calls() == []


def test_init_names_the_env_example_that_is_not_utf8(folder, run_launcher):
    (folder.dir / ".env.example").write_bytes(EXAMPLE.encode() + b"#@ config\nCITY=Z\xfcrich\n")
    result = run_launcher(["init"], cwd=folder.dir, env=folder.env)
    assert_failed_cleanly(result, 6)
    assert ".env.example" in error_lines(result)[0], shown(result)


# ------------------------------------------------------------------------------ 19. an unexpected exception

def test_an_unexpected_error_is_one_line_asking_for_a_report_and_exit_70(folder, tmp_path, run_launcher):
    """Provoked from outside: a `docker compose --dry-run` that prints a JSON line that is
    not an event object (plan reads each line as an event)."""
    bin_dir, _ = fake_docker(tmp_path / "odd-docker", "echo 1\nexit 0\n")
    env = dict(folder.env, PATH=f"{bin_dir}{os.pathsep}{folder.env['PATH']}")
    result = run_launcher(["plan"], cwd=folder.dir, env=env)
    assert_failed_cleanly(result, 70)
    assert "please report this" in error_lines(result)[0], shown(result)
    assert_never_shown(result, *FROM_INFISICAL.values())
