"""`up` in a real terminal (tmux, a pseudo-terminal) against the real engine and the stand-in
CLI: the live view while compose works, then the summary in its place, and no secret value
on any screen captured along the way, even one compose quotes in an error."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from support.processes import LAUNCHER
from test_launch import TRICKY, launch, project  # noqa: F401 (fixture)

LIVE_HEADER = ("service", "state", "action", "progress")  # the live view's columns, in a row


class Screens(list):
    """Every screen captured, and `raw`: every byte the launcher wrote to the terminal (a value
    drawn and overwritten between two captures is in there too)."""

    raw = ""


def run_in_tmux(project, tmp_path, *args: str, every: float = 0.05) -> tuple[str, Screens]:
    """Run the launcher in a 200x60 tmux pane; (its exit code, every screen captured)."""
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    env = dict(project.infisical.env, TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    done = tmp_path / f"done-{time.monotonic_ns()}"
    command = (f"cd {shlex.quote(str(project.dir))} && env -i {exports} {shlex.quote(sys.executable)} "
               f"{shlex.quote(str(LAUNCHER))} {' '.join(map(shlex.quote, args))} -p {project.name}; "
               f"echo $? > {done}; sleep 60")
    # A named server (`-L`: its socket in tmux's own short folder): a socket path under a deep
    # tmp_path passes the 107-byte limit of a Unix socket's name (a bare Debian's CI does).
    tmux = ["tmux", "-L", f"st-{os.getpid()}-{done.name}"]
    subprocess.run([*tmux, "new-session", "-d", "-x", "200", "-y", "60", "-s", "t", command], check=True,
                   stdin=subprocess.DEVNULL)
    raw = tmp_path / f"raw-{done.name}.log"
    subprocess.run([*tmux, "pipe-pane", "-t", "t", f"cat >> {shlex.quote(str(raw))}"], check=True,
                   stdin=subprocess.DEVNULL)

    def capture() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True).stdout

    screens = Screens()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not done.exists():
            screens.append(capture())
            time.sleep(every)
        screens.append(capture())
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    screens.raw = raw.read_bytes().decode("utf-8", "replace") if raw.exists() else ""
    return done.read_text().strip() if done.exists() else "timeout", screens


def shows_live_view(screen: str) -> bool:
    return any(line.split()[:4] == list(LIVE_HEADER) for line in screen.splitlines())


def assert_no_value_on(screens: Screens, values) -> None:
    assert screens.raw, "tmux recorded nothing the launcher wrote"
    for screen in [*screens, screens.raw]:
        for value in values:
            for part in value.split("\n"):
                if len(part) >= 6:
                    assert part not in screen, screen


def test_a_start_on_a_terminal_shows_each_service_live_then_the_summary(project, tmp_path):
    # db takes a few seconds to become healthy and api waits for it: time for several frames.
    project.write_compose({
        "db": {"profiles": ["cpu"], "environment": {"DB_PASSWORD": "${DB_PASSWORD:?x}"},
               "healthcheck": {"test": ["CMD-SHELL", "test -e /tmp/up || (sleep 2; touch /tmp/up; false)"],
                               "interval": "1s", "retries": 10}},
        "api": {"profiles": ["cpu"], "ports": ["127.0.0.1:0:80"], "depends_on": {"db": {"condition": "service_healthy"}},
                "environment": {"API_KEY": "${API_KEY:?x}", "CACHE_TOKEN": "${CACHE_TOKEN:?x}"}},
    })
    code, screens = run_in_tmux(project, tmp_path)
    final = screens[-1]
    assert code == "0", final
    live = [s for s in screens if shows_live_view(s)]
    assert live, "the live view never appeared:\n" + screens[len(screens) // 2]
    assert any("db" in s and ("waiting" in s or "healthy" in s or "starting" in s) for s in live)
    # The view collapsed into the summary: its columns are gone, the summary's are there.
    assert not shows_live_view(final), final
    assert "health" in final and "http://localhost:" in final and "Secrets from infisical" in final, final
    assert_no_value_on(screens, TRICKY.values())
    first_url = next(w for w in final.split() if w.startswith("http://localhost:"))

    # A re-run with nothing changed: the summary comes from the containers noted before `up`
    # (compose's events said it touched none), with the same states and URL.
    code, screens = run_in_tmux(project, tmp_path)
    final = screens[-1]
    assert code == "0", final
    rows = {line.replace("│", " ").split()[0]: line for line in final.splitlines()
            if line.replace("│", " ").split()[:1] in (["api"], ["db"])}
    assert "unchanged" in rows["api"] and "running" in rows["api"] and first_url in rows["api"], final
    assert "unchanged" in rows["db"] and "healthy" in rows["db"], final
    assert_no_value_on(screens, TRICKY.values())


def test_a_value_compose_quotes_in_its_error_never_reaches_the_screen(project, tmp_path):
    project.infisical.set_secrets({**TRICKY, "PORT_SECRET": "s3cr3t-port-value"})
    project.write_compose({"api": {"profiles": ["cpu"], "ports": ["${PORT_SECRET}:80"]}})
    code, screens = run_in_tmux(project, tmp_path)
    final = screens[-1]
    assert code not in ("0", "timeout"), final
    assert "invalid hostPort: ***" in final and "Traceback" not in final, final
    assert_no_value_on(screens, [*TRICKY.values(), "s3cr3t-port-value"])


def test_doctor_on_a_terminal_is_a_coloured_table_with_one_verdict(project, tmp_path):
    plain = launch(project, "doctor")
    code, screens = run_in_tmux(project, tmp_path, "doctor")
    final = screens[-1]
    assert code == str(plain.returncode), final
    assert any(line.replace("┃", " ").split() == ["status", "check", "found"] for line in final.splitlines()), final
    verdicts = [line for line in final.splitlines() if line.startswith(("Ready to launch", "Not ready to launch"))]
    assert len(verdicts) == 1, final
    failed = [line.split()[1] for line in plain.stdout.splitlines() if line.startswith("FAIL")]
    assert all(name in verdicts[0] for name in failed), (verdicts, failed)
    assert_no_value_on(screens, TRICKY.values())


def test_a_dependency_that_never_gets_healthy_leaves_its_failed_row_and_one_error_line(project, tmp_path):
    project.write_compose({
        "db": {"profiles": ["cpu"], "environment": {"DB_PASSWORD": "${DB_PASSWORD:?x}"},
               "healthcheck": {"test": ["CMD", "false"], "interval": "1s", "retries": 2}},
        "api": {"profiles": ["cpu"], "depends_on": {"db": {"condition": "service_healthy"}}},
    })
    code, screens = run_in_tmux(project, tmp_path)
    final = screens[-1]
    assert code not in ("0", "timeout"), final
    assert shows_live_view(final), final  # after a failure the rows stay
    db = next(line for line in final.splitlines() if line.split()[:1] == ["db"])
    assert "failed" in db and "unhealthy" in db, final
    assert len([line for line in final.splitlines() if line.startswith("error: ")]) == 1, final
    assert "Traceback" not in final
    assert_no_value_on(screens, TRICKY.values())
