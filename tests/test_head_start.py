"""A user re-runs the same command: its export starts before the command line is parsed
(stack_launcher/head_start.py), and nothing else about the run changes.

Real launcher, real engine and Compose, the stand-in Infisical CLI, as in test_launch.py.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from support.processes import LAUNCHER, REPO_ROOT
from test_launch import TRICKY, assert_no_secret_shown, launch, project, shown  # noqa: F401 (fixture)

RECORD = ".start_services.last-run"


def exports(project) -> list[dict]:
    return project.infisical.calls_of("export")


def parked_before_typer(project, *argv: str) -> dict:
    """What a fresh interpreter has parked once head_start.begin(argv) returns, and whether
    typer was imported by then (it must not be: the point is to start before it)."""
    code = ("import json, sys\n"
            "from stack_launcher import head_start, process\n"
            "head_start.begin(json.loads(sys.argv[1]))\n"
            "print(json.dumps({'parked': process.parked(), 'typer': 'typer' in sys.modules}))\n"
            "process.stop_all()\n")
    env = dict(project.infisical.env, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", code, json.dumps(list(argv))], cwd=project.dir, env=env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return json.loads(result.stdout)


def launch_watching_typer(project, *args: str, signal_then: str = "") -> tuple[subprocess.CompletedProcess, dict]:
    """Run start_services.py itself; when it turns to the CLI (which imports typer), note
    what is parked and whether typer is loaded already, and send itself `signal_then` (a
    signal's name) if given: the moment a parked export has no owner yet."""
    code = ("import importlib.abc, json, os, runpy, signal, sys\n"
            "note, then, sys.argv = sys.argv[1], sys.argv[2], sys.argv[3:]\n"
            "class Watch(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'stack_launcher.cli':\n"
            "            process = sys.modules.get('stack_launcher.process')\n"
            "            seen = {'parked': process.parked() if process else [], 'typer': 'typer' in sys.modules}\n"
            "            open(note, 'w').write(json.dumps(seen))\n"
            "            if then:\n"
            "                os.kill(os.getpid(), getattr(signal, then))\n"
            "sys.meta_path.insert(0, Watch())\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    note = project.dir.parent / "parked-at-typer.json"
    result = subprocess.run([sys.executable, "-c", code, str(note), signal_then, str(LAUNCHER), *args,
                             "-p", project.name],
                            cwd=project.dir, env=project.infisical.env, capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    return result, json.loads(note.read_text(encoding="utf-8"))


def test_a_rerun_of_the_same_command_starts_its_export_before_typer_is_imported(project):
    first, seen = launch_watching_typer(project, "--profile", "cpu")
    assert first.returncode == 0 and seen == {"parked": [], "typer": False}, shown(first)
    project.infisical.clear_calls()
    again, seen = launch_watching_typer(project, "--profile", "cpu")
    assert again.returncode == 0, shown(again)
    assert seen["typer"] is False
    [argv] = seen["parked"]
    assert argv[1:3] == ["export", "--format=json"] and "--env=dev" in argv
    assert len(exports(project)) == 1
    # the same through head_start alone; another command line, even one meaning the same,
    # is not guessed at
    assert parked_before_typer(project, "--profile", "cpu", "-p", project.name) == {"parked": [argv], "typer": False}
    assert parked_before_typer(project, "-p", project.name)["parked"] == []


def test_sigterm_before_the_cli_takes_over_stops_the_parked_export_with_one_line(project):
    assert launch(project, "--json").returncode == 0
    project.infisical.set_server("hang")  # the parked export would never end by itself
    project.infisical.clear_calls()
    result, seen = launch_watching_typer(project, "--json", signal_then="SIGTERM")
    assert len(seen["parked"]) == 1  # (killed before it could even log its call)
    assert result.returncode == 143, shown(result)
    assert result.stderr.strip().splitlines() == ["error: stopped by SIGTERM"]
    assert json.loads(result.stdout)["exit_code"] == 143
    # (the autouse fixture fails the test if the hanging export outlived the launcher)


def test_a_rerun_while_another_run_holds_the_lock_parks_nothing_and_says_so(project):
    assert launch(project).returncode == 0
    from stack_launcher.lock import project_lock

    with project_lock(project.dir.resolve(), "a test"):
        assert parked_before_typer(project, "-p", project.name)["parked"] == []
        project.infisical.clear_calls()
        result = launch(project)
    assert result.returncode == 5 and "another run holds the lock" in result.stderr, shown(result)
    assert exports(project) == []


def test_a_rerun_asks_infisical_once_and_starts_the_rotated_value(project):
    assert launch(project).returncode == 0
    before = project.container_id("api")
    project.infisical.set_secrets({**TRICKY, "CACHE_TOKEN": "rotated-cache-token-7"})
    project.infisical.clear_calls()
    result = launch(project)
    assert result.returncode == 0, shown(result)
    assert len(exports(project)) == 1  # the parked export was taken, not run a second time
    assert project.container_env("cache")["CACHE_TOKEN"] == "rotated-cache-token-7"
    assert project.container_id("api") == before
    assert_no_secret_shown(result, (*TRICKY.values(), "rotated-cache-token-7"))


def test_the_record_is_private_and_holds_no_value_or_token(project):
    assert launch(project, "--infisical-env", "dev").returncode == 0
    path = project.dir / RECORD
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 or os.name == "nt"
    text = path.read_text(encoding="utf-8")
    assert "--infisical-env" in text
    for value in (*TRICKY.values(), "tok-1", "from-dotenv-db"):
        assert json.dumps(value)[1:-1] not in text and value not in text


def test_an_edited_record_costs_one_stopped_export_never_a_wrong_value(project):
    """A record that no longer matches what typer makes of the command line (edited by hand,
    or left by another version of the code) parks the wrong export: it is stopped unused."""
    project.infisical.set_secrets({**TRICKY, "CACHE_TOKEN": "prod-cache-token"}, env="prod")
    assert launch(project).returncode == 0
    path = project.dir / RECORD
    record = json.loads(path.read_text(encoding="utf-8"))
    record["options"]["infisical_env"] = "prod"
    path.write_text(json.dumps(record), encoding="utf-8")
    project.infisical.clear_calls()
    result = launch(project)
    assert result.returncode == 0, shown(result)
    assert ["--env=prod" in c["argv"] for c in exports(project)] == [True, False]
    assert project.container_env("cache")["CACHE_TOKEN"] == TRICKY["CACHE_TOKEN"]
    # the run put its own record back (the autouse fixture checks that no child outlived it)
    assert json.loads(path.read_text(encoding="utf-8"))["options"]["infisical_env"] is None


def test_a_token_changed_in_dotenv_since_the_last_run_is_the_one_used(project):
    assert launch(project).returncode == 0
    assert parked_before_typer(project, "-p", project.name)["parked"]  # the record fits this command line
    project.infisical.add_token("tok-2")
    project.infisical.revoke_token("tok-1")
    text = (project.dir / ".env").read_text(encoding="utf-8")
    project.write_env(text.replace("INFISICAL_TOKEN=tok-1", "INFISICAL_TOKEN=tok-2"))
    project.infisical.clear_calls()
    result = launch(project)
    assert result.returncode == 0 and "No secret changed" in result.stderr, shown(result)
    assert [c["env_token_vars"]["INFISICAL_TOKEN"] for c in exports(project)] == ["tok-2"]


def test_a_broken_or_foreign_record_is_ignored(project):
    assert launch(project).returncode == 0
    path = project.dir / RECORD
    good = json.loads(path.read_text(encoding="utf-8"))
    assert parked_before_typer(project, "-p", project.name)["parked"]  # as written, it is used

    def options(**changed):
        return json.dumps({**good, "options": {**good["options"], **changed}}).encode()

    broken = [b"\xff\xfe not json", b'{"argv": 1}', b"[]", b"[" * 5000, b"{" * 100_000,
              options(mode="bogus"), options(timeout="30"), options(files=[1]), options(profile=True),
              options(shell={"INFISICAL_DOMAIN": "https://elsewhere.example"}),  # not an option it writes
              options(project_dir="/elsewhere")]
    for text in broken:
        path.write_bytes(text)
        os.chmod(path, 0o600)
        assert parked_before_typer(project, "-p", project.name)["parked"] == [], text[:80]
        project.infisical.clear_calls()
        result = launch(project)
        assert result.returncode == 0, shown(result)
        assert len(exports(project)) == 1 and "Traceback" not in shown(result)
    path.write_bytes(json.dumps(good).encode())
    os.chmod(path, 0o644)  # others may read it: not trusted (POSIX)
    assert parked_before_typer(project, "-p", project.name)["parked"] == [] or os.name == "nt"


def test_a_symlink_in_place_of_the_record_is_never_followed(project, tmp_path):
    assert launch(project).returncode == 0
    path = project.dir / RECORD
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    path.unlink()
    path.symlink_to(elsewhere)
    assert parked_before_typer(project, "-p", project.name)["parked"] == []
    assert launch(project).returncode == 0
    assert not path.is_symlink()  # replaced by a file of its own, the target untouched
    assert elsewhere.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


def test_runs_that_do_not_ask_infisical_keep_no_record(project):
    for args, code in ((("--skip-infisical",), 0), (("--offline",), 3), (("--dry-run",), 0)):
        result = launch(project, *args)
        assert result.returncode == code, shown(result)
        assert not (project.dir / RECORD).exists(), args
