"""A first start pulls the local Infisical's images (hundreds of MB for the real one): on a
terminal that is one live row a service with its bytes, not hundreds of scrolled lines."""
from __future__ import annotations

import json
import subprocess
import uuid

from support.tiny_registry import TinyRegistry
from test_bootstrap import infisical_service, project  # noqa: F401 (fixture)
from test_live_terminal import LIVE_HEADER, assert_no_value_on, run_in_tmux


def test_a_first_start_on_a_terminal_shows_the_local_infisicals_pull_as_live_rows(project, tmp_path):
    with TinyRegistry("busybox-test:local", tmp_path) as registry:
        image = registry.ref(f"liveview/infisical-{uuid.uuid4().hex[:8]}:1")  # never pulled before
        model = infisical_service(project.port, delay=1)
        model["services"]["infisical"]["image"] = image
        (project.dir / "infisical" / "docker-compose.yml").write_text(json.dumps(model))
        try:
            code, screens = run_in_tmux(project, tmp_path, every=0.05)
        finally:
            subprocess.run(["docker", "compose", "-p", f"{project.name}-infisical", "down", "-t", "0"],
                           cwd=project.dir, capture_output=True)
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
    assert code == "0", screens[-1]
    pulling = [s for s in screens
               if any(line.split()[:4] == list(LIVE_HEADER) for line in s.splitlines())
               and any(line.split()[:2] == ["infisical", "pulling"] for line in s.splitlines())]
    assert pulling, "no screen showed the pull as a live row:\n" + screens[-1]
    assert "Downloading" not in screens.raw and "Pulling fs layer" not in screens.raw, \
        "compose's plain pull lines were relayed"
    assert "Secrets from infisical" in screens[-1], screens[-1]
    assert_no_value_on(screens, ["from-infisical-password", "from-dotenv-password", "tok-1-secret"])
