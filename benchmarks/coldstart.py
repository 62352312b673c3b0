"""A cold start with the local Infisical: the launcher's health gate against a fixed sleep.

Nothing running; `infisical/docker-compose.yml` is a stand-in Infisical (busybox httpd that
answers /api/status after `healthy_after` seconds, healthcheck `wget` every 0.5 s),
INFISICAL_API_URL in `.env` points at it, and the stand-in CLI really asks /api/status.
Taking turns, each from nothing: the launcher (it brings the local Infisical up with
`up -d --wait`, then exports and starts the services); the same by hand; and the old way,
`up -d`, a fixed sleep, then export and up. Then, with the local Infisical healthy, a
no-op re-run (the launcher checks the local Infisical first) against the raw calls.
"""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from .commands import BenchmarkError
from .project import Project, secret_values
from .timing import interleave
from support.docker_stack import busybox_service  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_stand_in_infisical(project: Project, port: int, healthy_after: float) -> None:
    script = ("mkdir -p /www/api && echo '{\"message\":\"Ok\"}' > /www/api/status"
              f" && sleep {healthy_after:g} && exec httpd -f -p 8080 -h /www")
    model = {"services": {"infisical": busybox_service(
        command=["sh", "-c", script],
        ports=[f"127.0.0.1:{port}:8080"],
        # No start_interval: Debian's engine 20.10 rejects it.
        healthcheck={"test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/api/status"],
                     "interval": "500ms", "timeout": "2s", "retries": 120},
    )}}
    path = project.dir / "infisical" / "docker-compose.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")


def run_section(cfg, root: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    project = Project(root / "cold", services=cfg.services, secrets=secret_values(cfg.secrets, seed=5),
                      dotenv_extra=f"INFISICAL_API_URL={url}\n")
    project.server.update(probe_domain=True)  # the stand-in CLI really asks <url>/api/status
    write_stand_in_infisical(project, port, cfg.healthy_after)
    try:
        project.learn_calls()  # from nothing: the launcher starts the local Infisical
        if not project.bootstrap_argv:
            raise BenchmarkError("the launcher did not start the local Infisical (`up -d --wait`)")
        wait = project.bootstrap_argv
        no_wait = wait[: wait.index("--wait")]  # `up -d`, not waiting for health

        def by_hand(gate: list[str], sleep: float) -> None:
            project.compose(gate)
            time.sleep(sleep)
            project.write_by_hand(project.export_by_hand())
            project.compose(project.compose_up_argv)

        ways = {"launcher": project.launcher,
                "wait_by_hand": lambda: by_hand(wait, 0.0),
                "sleep_by_hand": lambda: by_hand(no_wait, cfg.fixed_sleep)}

        def before(way: str) -> None:
            project.down()
            project.mark()

        def after(way: str, returned: Any) -> None:
            if way == "launcher":
                project.check_exported()
            if len(project.container_ids()) != len(project.services):
                raise BenchmarkError(f"cold start ({way}) did not start every service")

        cold = interleave(ways, cfg.cold_rounds, warmup=0, before=before, after=after)
        # The local Infisical is up and healthy now: a no-op re-run against the raw calls.
        warm = interleave({"launcher": project.launcher, "raw": project.raw}, cfg.rounds,
                          before=lambda way: project.mark(),
                          after=lambda way, _: project.check_exported() if way == "launcher" else None)
    finally:
        project.down()
    return {
        "healthy_after_s": cfg.healthy_after, "sleep_s": cfg.fixed_sleep, "services": len(project.services),
        "vs_sleep": cold.summary("launcher", "sleep_by_hand"),
        "vs_wait_by_hand": cold.summary("launcher", "wait_by_hand"),
        "warm": warm.summary(),
    }
