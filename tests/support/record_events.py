"""Record real `docker compose --progress json up` event streams for the rendering tests.

    /tmp/dev-venv/bin/python tests/support/record_events.py      # rewrites tests/support/events/

Each scenario runs the launcher's own compose command line for `up` on a terminal
(`compose.Target.up(progress="json")`, i.e. `up -d` without `--wait`, as launch.py runs it)
against the real engine, in a throw-away project named `liveview`, and keeps what compose wrote:
`<scenario>.jsonl` (stderr, one event a line, byte for byte) and `<scenario>.json` (the
exit code, and the engine's `docker ps` lines afterwards (engine.ps_argv), which the summary's
states and URLs come from). The only
secret values in them are this file's fake ones (FAKE_SECRETS), which the tests check are
masked on screen. A first start pulls from a registry on 127.0.0.1 (support/tiny_registry.py)
so the pull's progress events are real too.

The stack is shaped like the real one: `worker` depends on `db` being healthy (as services
depend on postgres), so `up -d` waits for db's health and reports `Healthy` for it alone;
a failing healthcheck fails `up -d` only through that dependency (`dependency failed to
start: container ... is unhealthy`). The `wait_*` recordings alone use `up -d --wait`
(`Target.up_wait`), which the launcher runs only to start the local Infisical
(bootstrap.py, the spinner of live.WaitView).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE.parent))

from stack_launcher import compose, engine  # noqa: E402

from support.tiny_registry import TinyRegistry  # noqa: E402

EVENTS = HERE / "events"
PROJECT = "liveview"
IMAGE = "busybox-test:local"
FAKE_SECRETS = {"WEB_TOKEN": "fake-web-token-1111", "DB_PASSWORD": "fake-db-password-2222",
                "PORT_SECRET": "fake-port-secret-3333"}
ROTATED = {**FAKE_SECRETS, "WEB_TOKEN": "fake-web-token-rotated-4444"}
SLEEP = ["sleep", "3600"]
HEALTHY = {"test": ["CMD", "true"], "interval": "1s", "retries": 3}


def stack(pulled_image: str = IMAGE) -> dict:
    return {"services": {
        "web": {"image": pulled_image, "command": ["httpd", "-f", "-p", "80"], "ports": ["127.0.0.1:0:80"],
                "environment": {"WEB_TOKEN": "${WEB_TOKEN:?x}"}},
        "db": {"image": IMAGE, "command": SLEEP, "healthcheck": HEALTHY,
               "environment": {"DB_PASSWORD": "${DB_PASSWORD:?x}"}},
        "worker": {"image": IMAGE, "command": SLEEP, "healthcheck": HEALTHY,
                   "depends_on": {"db": {"condition": "service_healthy"}}},
    }}


def unhealthy_db(pulled_image: str) -> dict:
    model = stack(pulled_image)
    model["services"]["db"]["healthcheck"] = {"test": ["CMD", "false"], "interval": "1s", "retries": 2}
    return model


class Scratch:
    """A compose project in a temp dir, run the way the launcher runs it."""

    def __init__(self, root: Path, project: str = PROJECT, cli: str = "docker") -> None:
        self.root = root
        self.cli = cli  # which docker CLI runs the compose plugin (Debian's 20.10 is another binary)
        self.file = root / "docker-compose.yml"
        self.env_file = root / ".env"
        self.target = compose.Target(root, project, (self.file,), (self.env_file,))
        self.argvs: dict[str, list[str]] = {}  # scenario -> the command line it ran (tests check it)

    def write(self, model: dict, secrets: dict[str, str]) -> None:
        self.file.write_text(json.dumps(model, indent=2))
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in secrets.items()))

    def up(self, name: str, wait: bool = False, services: tuple[str, ...] = ()) -> tuple[int, str, str]:
        """`up` as launch.py runs it on a terminal; `wait`: as bootstrap.py starts the local Infisical."""
        argv = self.target.up_wait(20, progress="json") if wait else self.target.up(progress="json")
        argv = [self.cli, *argv[1:], *services]
        self.argvs[name] = argv
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self.root)
        ps = subprocess.run(engine.ps_argv(self.target.project_name), capture_output=True, text=True, cwd=self.root)
        return done.returncode, done.stderr, ps.stdout

    def down(self) -> None:
        subprocess.run(compose.down_argv(self.target.project_name, self.root) + ["--volumes"], capture_output=True)


def scenarios(scratch: Scratch, registry: TinyRegistry | None):
    """(name, exit code, stderr, ps) of each scenario, in order: each starts where the last ended."""
    pulled = registry.ref("liveview/busybox:1") if registry else IMAGE
    scratch.write(stack(pulled), FAKE_SECRETS)
    yield "first_start", *scratch.up("first_start")
    yield "unchanged", *scratch.up("unchanged")
    scratch.write(stack(pulled), ROTATED)
    yield "recreate", *scratch.up("recreate")
    scratch.write(unhealthy_db(pulled), ROTATED)
    yield "unhealthy", *scratch.up("unhealthy")
    model = stack(pulled)
    model["services"]["ghost"] = {"image": "127.0.0.1:1/liveview/missing:1", "command": SLEEP}
    scratch.write(model, ROTATED)
    yield "pull_failure", *scratch.up("pull_failure", services=("ghost",))
    model = stack(pulled)
    model["services"]["web"]["ports"] = ["${PORT_SECRET}:80"]  # compose quotes the value it rejects
    scratch.write(model, ROTATED)
    yield "quoted_value", *scratch.up("quoted_value")
    model = stack(pulled)
    model["services"]["worker"]["environment"] = {"UNSET": "${LIVEVIEW_UNSET_VARIABLE}"}  # compose warns
    scratch.write(model, ROTATED)
    yield "warning", *scratch.up("warning")
    model = stack(pulled)
    model["services"]["worker"]["environment"] = {"NEEDED": "${LIVEVIEW_NEEDED:?LIVEVIEW_NEEDED is not set}"}
    scratch.write(model, ROTATED)
    yield "missing_variable", *scratch.up("missing_variable")
    scratch.write(stack(pulled), ROTATED)
    # An unterminated quote: compose's error quotes the rest of the line, value included.
    scratch.env_file.write_text(f"WEB_TOKEN={ROTATED['WEB_TOKEN']}\nDB_PASSWORD=\"{ROTATED['DB_PASSWORD']}\n")
    yield "bad_env_file", *scratch.up("bad_env_file")
    # `up --wait`, as bootstrap.py starts the local Infisical: from nothing, then the service
    # on top (worker, as infisical on its db and redis) never gets healthy: `--wait` fails on it.
    scratch.down()
    scratch.write(stack(pulled), ROTATED)
    yield "wait_healthy", *scratch.up("wait_healthy", wait=True)
    model = stack(pulled)
    model["services"]["worker"]["healthcheck"] = {"test": ["CMD", "false"], "interval": "1s", "retries": 2}
    scratch.write(model, ROTATED)
    yield "wait_unhealthy", *scratch.up("wait_unhealthy", wait=True)


def record(into: Path = EVENTS, pull: bool = True, only: int | None = None, project: str = PROJECT,
           cli: str = "docker", workdir: Path | None = None) -> dict[str, list[str]]:
    """Record the scenarios (the first `only` of them) into `into`: scenario -> the command
    line it ran. `workdir`: where the compose project lives (a temp dir if not given)."""
    into.mkdir(parents=True, exist_ok=True)
    names = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) if workdir is None else workdir
        root.mkdir(parents=True, exist_ok=True)
        scratch = Scratch(root, project, cli)
        registry = TinyRegistry(IMAGE, Path(tmp)) if pull else None
        try:
            if registry:
                registry.__enter__()
            for name, code, stderr, ps in scenarios(scratch, registry):
                (into / f"{name}.jsonl").write_text(stderr)
                (into / f"{name}.json").write_text(json.dumps({"exit_code": code, "ps": ps}, indent=1) + "\n")
                names.append(name)
                if only is not None and len(names) >= only:
                    break
        finally:
            scratch.down()
            if registry:
                registry.__exit__(None, None, None)
                subprocess.run(["docker", "rmi", "-f", registry.ref("liveview/busybox:1")], capture_output=True)
    return {name: scratch.argvs[name] for name in names}


if __name__ == "__main__":
    for recorded in record():
        print(f"recorded {EVENTS / recorded}.jsonl")
