"""The export starts first and is read last: what a user must never notice about that.

`prepare` starts `infisical export` before its own work (the masker, the last export, the
local Infisical's health) and reads the CLI's answer only at the end (docs/architecture.md,
"When the export runs"). These scenarios hold the promises that must survive the overlap:
a slow launcher is not blamed on the server, a signal stops every child at once, and a local
Infisical that comes up just after the early ask still gives fresh secrets.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from stack_launcher import process
from stack_launcher.masking import Masker
from stack_launcher.secrets_source import FRESH, obtain, start_early
from stack_launcher.settings import resolve
from support.infisical_server import DEFAULT_PROJECT, DEFAULT_TOKEN, FakeInfisical

POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="process groups and /proc are POSIX/Linux")


def _gone(pid: int) -> bool:
    """Reaped, or a zombie nobody will run again (Linux's /proc; the tests run on Linux)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def _group_alive(pgid: int, within: float = 5.0) -> bool:
    """Does any process of the group still run (zombies waiting for a reaper do not count)?
    Asked until `within` s have passed, as a killed group takes a moment to go."""
    deadline = time.monotonic() + within
    while True:
        running = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                running.append(stat.parent.name)
        if not running or time.monotonic() > deadline:
            return bool(running)
        time.sleep(0.05)


def test_a_cli_that_answered_while_the_launcher_was_still_busy_is_not_reported_as_timed_out():
    running = process.start_captured([sys.executable, "-c", "print('answer')"], dict(os.environ), timeout=0.5)
    time.sleep(1.0)  # the launcher's own work (the masker, a slow `docker ps`) outlasts the CLI's timeout
    result = running.result()
    assert (result.returncode, result.stdout.strip()) == (0, "answer")


def test_a_cli_that_hangs_is_still_stopped_by_its_timeout_once_the_launcher_waits_for_it():
    running = process.start_captured([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ),
                                      timeout=0.5)
    started = time.monotonic()
    with pytest.raises(process.Timeout):
        running.result()
    assert time.monotonic() - started < 10
    assert not process._live, "a timed-out child is still listed as running"


@POSIX_ONLY
def test_a_signal_before_the_export_is_read_stops_the_cli_and_everything_it_started():
    # The CLI (here a shell) has a child of its own: the whole group must go, not just the shell.
    running = process.start_captured(["sh", "-c", "sleep 60 & sleep 60"], dict(os.environ), timeout=120)
    pgid = running._proc.pid
    time.sleep(0.2)
    process.stop_all(KeyboardInterrupt())
    assert not _group_alive(pgid), "the CLI's group outlived the run"
    assert not process._live
    with pytest.raises(RuntimeError):
        running.result()  # a stopped child has no answer to give


@POSIX_ONLY
def test_a_signal_gives_every_child_one_grace_period_together_not_one_after_another(monkeypatch):
    monkeypatch.setattr(process, "GRACE", 2.0)
    stubborn = ["sh", "-c", "trap '' TERM; sleep 30 & wait; sleep 30"]
    children = [process.start_captured(stubborn, dict(os.environ), timeout=120) for _ in range(2)]
    time.sleep(0.3)  # the traps are set
    started = time.monotonic()
    process.stop_all(process.Terminated(signal.SIGTERM))
    took = time.monotonic() - started
    assert all(not _group_alive(c._proc.pid) for c in children)
    assert took < 1.5 * 2.0, f"the grace periods ran one after another ({took:.1f} s)"


@pytest.fixture
def local_infisical_folder(tmp_path: Path, monkeypatch) -> tuple[Path, FakeInfisical]:
    server = FakeInfisical(tmp_path / "server")
    monkeypatch.setenv("PATH", server.env["PATH"])  # the launcher finds the CLI on its own PATH
    server.set_secrets({"API_KEY": "fresh-from-infisical-123"})
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / ".env").write_text(f"INFISICAL_TOKEN={DEFAULT_TOKEN}\nINFISICAL_PROJECT_ID={DEFAULT_PROJECT}\n",
                                 encoding="utf-8")
    return folder, server


def _early_export_against_a_server_that_is_down(folder: Path, server: FakeInfisical):
    server.set_server("down")
    settings = resolve(project_dir=folder, shell=server.env, timeout=30)
    masker = Masker()
    pending = start_early(settings, masker)
    assert pending is not None, "a token: the export starts early"
    deadline = time.monotonic() + 30
    while not (server.calls_of("export") and _gone(server.calls_of("export")[-1]["pid"])):
        assert time.monotonic() < deadline, "the early export never ended"
        time.sleep(0.05)
    server.set_server("up")  # healthy now, just after the early export asked
    return settings, masker, pending


@POSIX_ONLY
def test_an_infisical_that_comes_up_just_after_the_early_export_asked_still_gives_fresh_secrets(
        local_infisical_folder):
    settings, masker, pending = _early_export_against_a_server_that_is_down(*local_infisical_folder)
    obtained = obtain(settings, masker, timedelta(days=1), None, pending, ask_again=True)
    assert obtained.origin == FRESH
    assert obtained.secrets["API_KEY"].reveal() == "fresh-from-infisical-123"


@POSIX_ONLY
def test_without_reason_to_ask_again_a_failed_early_export_falls_back_as_before(local_infisical_folder):
    settings, masker, pending = _early_export_against_a_server_that_is_down(*local_infisical_folder)
    obtained = obtain(settings, masker, timedelta(days=1), None, pending, ask_again=False)
    assert obtained.origin != FRESH
    assert "unreachable" in obtained.reason or "failed" in obtained.reason, obtained.reason
