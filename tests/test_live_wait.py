"""Waiting for the local Infisical on a terminal: a spinner with the elapsed time and each
container's health (starting, unhealthy, healthy), instead of a silent wait."""
from __future__ import annotations

import io
import re
import sys

from support.record_events import EVENTS
from test_bootstrap import infisical_service, project  # noqa: F401 (fixture)
from test_live_terminal import run_in_tmux

from stack_launcher import compose, live
from stack_launcher.masking import Masker
from stack_launcher.output import Output


def waited(stream: str, tmp_path) -> live.WaitView:
    """A recorded `up -d --wait` (as bootstrap.py starts the local Infisical) replayed into the spinner."""
    view = live.WaitView("Starting the local Infisical...", "liveview")
    argv = [sys.executable, "-c", "import sys; sys.stderr.write(open(sys.argv[1]).read())",
            str(EVENTS / f"{stream}.jsonl")]
    compose.run(argv, {}, Masker(), Output(stream=io.StringIO()), tmp_path, sink=view)
    return view


def test_the_wait_names_each_container_s_health_from_compose_s_events(tmp_path):
    """worker (as infisical on its db and redis) never gets healthy: `--wait` fails on it."""
    view = waited("wait_unhealthy", tmp_path)
    assert view.health == {"db": "healthy", "web": "healthy", "worker": "unhealthy"}
    assert re.fullmatch(r"Starting the local Infisical\.\.\. \d+ s · db healthy, web healthy, worker unhealthy",
                        view.describe())


def test_a_wait_that_succeeds_ends_with_every_container_healthy(tmp_path):
    view = waited("wait_healthy", tmp_path)
    assert view.health == {"db": "healthy", "web": "healthy", "worker": "healthy"}


def test_on_a_terminal_the_wait_shows_elapsed_time_and_health(project, tmp_path):
    (project.dir / "infisical" / "docker-compose.yml").write_text(
        __import__("json").dumps(infisical_service(project.port, delay=4)))
    code, screens = run_in_tmux(project, tmp_path, every=0.2)
    assert code == "0", screens[-1]
    waiting = [s for s in screens if "Starting the local Infisical" in s]
    assert any(re.search(r"waiting until healthy\.\.\. \d+ s · infisical starting", s) for s in waiting), \
        "\n---\n".join(waiting[-3:] or screens[-1:])
    assert "Secrets from infisical" in screens[-1], screens[-1]
