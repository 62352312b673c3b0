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


def test_the_wait_names_each_container_s_health_from_compose_s_events(tmp_path):
    view = live.WaitView("Starting the local Infisical...", "liveview")
    argv = [sys.executable, "-c", "import sys; sys.stderr.write(open(sys.argv[1]).read())",
            str(EVENTS / "unhealthy.jsonl")]
    compose.run(argv, {}, Masker(), Output(stream=io.StringIO()), tmp_path, sink=view)
    assert view.health == {"db": "unhealthy", "web": "healthy", "worker": "healthy"}
    assert re.fullmatch(r"Starting the local Infisical\.\.\. \d+ s · db unhealthy, web healthy, worker healthy",
                        view.describe())


def test_on_a_terminal_the_wait_shows_elapsed_time_and_health(project, tmp_path):
    (project.dir / "infisical" / "docker-compose.yml").write_text(
        __import__("json").dumps(infisical_service(project.port, delay=4)))
    code, screens = run_in_tmux(project, tmp_path, every=0.2)
    assert code == "0", screens[-1]
    waiting = [s for s in screens if "Starting the local Infisical" in s]
    assert any(re.search(r"waiting until healthy\.\.\. \d+ s · infisical starting", s) for s in waiting), \
        "\n---\n".join(waiting[-3:] or screens[-1:])
    assert "Secrets from infisical" in screens[-1], screens[-1]
