"""A throw-away compose project as a user's checkout has it, and the ways to re-run it.

The project folder holds what a clone holds: a git repository, the repository's `.gitignore`
and `.env.example`, a `.env` with the example's config and bootstrap keys (the secrets live
in Infisical, as after `migrate`), and a compose file of busybox services, svcNN using
SECRET_NN alone, so that rotating one secret concerns one service. The fake Infisical
serves the secrets to the stand-in CLI (tests/support/bin/infisical) first on PATH.

Two ways to re-run it: the launcher (`python start_services.py`), and the raw calls it wraps
run by hand: the same `infisical export` the launcher runs, the file written, and the same
`docker compose ... up -d`; both argvs are taken from a traced launch, not rebuilt here.
"""
from __future__ import annotations

import json
import random
import re
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path
from secrets import token_hex
from typing import Any

from . import BENCH_DIR, REPO_ROOT
from .commands import BenchmarkError, run, run_on_terminal
from support.docker_stack import PROJECT_LABEL, SERVICE_LABEL, Stack  # noqa: E402
from support.infisical_server import DEFAULT_PROJECT, DEFAULT_TOKEN, FakeInfisical  # noqa: E402
from support.processes import LAUNCHER, minimal_env  # noqa: E402

TRACED_LAUNCH = BENCH_DIR / "traced_launch.py"
MARKER = re.compile(r"^\s*#@\s*(config|bootstrap|secret)\b")
ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


def secret_key(index: int, count: int) -> str:
    return f"SECRET_{index:0{max(2, len(str(count - 1)))}d}"


def secret_values(count: int, seed: int) -> dict[str, str]:
    """`count` secrets SECRET_00...; every tenth value holds what needs escaping, and a newline."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    values = {}
    for i in range(count):
        value = "".join(rng.choice(alphabet) for _ in range(32))
        if i % 10 == 9:
            value = f'{value[:8]}$"\'\\ #{value[8:16]}\n{value[16:]}'
        values[secret_key(i, count)] = value
    return values


def user_dotenv(example: Path) -> str:
    """A migrated user's `.env`: the example's config values and generated bootstrap secrets.

    Keys that steer compose or the launcher (COMPOSE_*, INFISICAL_API_URL, ...) are left out:
    the benchmark sets its own."""
    lines, category = [], None
    for line in example.read_text(encoding="utf-8").splitlines():
        marker = MARKER.match(line)
        if marker:
            category = marker.group(1)
            continue
        match = ASSIGNMENT.match(line)
        if not match or category is None:
            continue
        key, default = match.group(1), match.group(2).strip()
        if not key.startswith(("COMPOSE_", "INFISICAL_API_URL", "INFISICAL_PROJECT_ID", "INFISICAL_TOKEN",
                               "INFISICAL_UNIVERSAL_AUTH_")):
            if category == "config":
                lines.append(f"{key}={default}")
            elif category == "bootstrap":
                lines.append(f"{key}={token_hex(16)}")
        category = None
    return "".join(f"{line}\n" for line in lines)


def recreated(before: dict[str, str], after: dict[str, str]) -> int:
    """Services whose running container is not the one that ran before."""
    return sum(1 for service in before.keys() | after.keys() if before.get(service) != after.get(service))


class Project:
    """The project folder, its fake Infisical, and the argvs of the launcher's own calls."""

    def __init__(self, root: Path, services: int, secrets: dict[str, str], dotenv_extra: str = "") -> None:
        self.stack = Stack(root / "stack", name="bench" + token_hex(4))
        self.name = self.stack.name
        self.dir = self.stack.dir
        self.trace_file = root / "trace.json"
        self.server = FakeInfisical(root / "server")
        self.server.set_secrets(secrets)
        self.secret_count = len(secrets)
        self.services = [f"svc{i:02d}" for i in range(services)]
        self.stack.write_compose({
            name: {"environment": {"SECRET": f"${{{key}:?{key} is not set}}"}}
            for name, key in ((s, secret_key(i, len(secrets))) for i, s in enumerate(self.services))
        })
        for name in (".gitignore", ".env.example"):
            shutil.copyfile(REPO_ROOT / name, self.dir / name)
        self.stack.write_env(f"COMPOSE_PROJECT_NAME={self.name}\nINFISICAL_TOKEN={DEFAULT_TOKEN}\n"
                             f"INFISICAL_PROJECT_ID={DEFAULT_PROJECT}\n{dotenv_extra}"
                             + user_dotenv(self.dir / ".env.example"))
        if shutil.which("git"):  # the launcher asks git whether the export could be committed
            subprocess.run(["git", "init", "-q", str(self.dir)], capture_output=True, check=False)
        self.env = dict(self.server.env)  # the stand-in first on PATH, like the tests
        self.output = self.dir / ".env.infisical"
        self.export_argv: list[str] = []
        self.compose_up_argv: list[str] = []
        self.bootstrap_argv: list[str] = []  # the local Infisical's `up -d --wait`, if the launcher ran it
        self._exports = 0

    # -- the launcher ---------------------------------------------------------------------
    def launcher(self, *args: str) -> None:
        """`python start_services.py *args`: one launch."""
        run([sys.executable, str(LAUNCHER), *args], cwd=self.dir, env=self.env)

    def launcher_on_terminal(self, *args: str) -> None:
        """The same on a pseudo-terminal, as a user at a shell runs it (the launcher colours its lines)."""
        run_on_terminal([sys.executable, str(LAUNCHER), *args], cwd=self.dir,
                        env={**self.env, "TERM": "xterm-256color"})

    def mark(self) -> None:
        """Remember how many `infisical export` calls the stand-in has seen so far."""
        self._exports = len(self.server.calls_of("export"))

    def check_exported(self) -> None:
        """Since `mark()`, something ran `infisical export` (the launcher did not fall back)."""
        if len(self.server.calls_of("export")) <= self._exports:
            raise BenchmarkError("the launcher did not run `infisical export`")

    def traced(self, *args: str, env: dict[str, str] | None = None, python: tuple[str, ...] = ()) -> dict[str, Any]:
        """The launcher under traced_launch.py: its subprocesses and functions, timed.

        Returns the trace (see traced_launch.py) with "wall" (seconds, measured here) added,
        every time relative to this process's start of the run."""
        env = {**(env or self.env), "BENCH_TRACE_FILE": str(self.trace_file)}
        start = time.perf_counter()
        _, proc = run([sys.executable, *python, str(TRACED_LAUNCH), *args], cwd=self.dir, env=env)
        wall = time.perf_counter() - start
        trace = json.loads(self.trace_file.read_text(encoding="utf-8"))
        for call in trace["calls"]:
            call["start"] -= start
            call["end"] -= start
        for key in ("start", "main", "end"):
            if trace.get(key) is not None:
                trace[key] -= start
        for probe in trace["probes"].values():
            if probe["first"] is not None:
                probe["first"] -= start
            for span in probe.get("spans", []):
                span[0] -= start
        trace["wall"] = wall
        trace["stderr"] = proc.stderr
        return trace

    def learn_calls(self) -> None:
        """Take the argvs of `infisical export` and `docker compose ... up` from a traced launch
        (and of the local Infisical's `up --wait`, when the launch started it)."""
        trace = self.traced()
        for call in trace["calls"]:
            argv = call["argv"]
            if Path(argv[0]).name == "infisical" and "export" in argv:
                self.export_argv = argv
            elif Path(argv[0]).name == "docker" and "compose" in argv and "up" in argv:
                if "--wait" in argv:
                    self.bootstrap_argv = argv
                else:
                    self.compose_up_argv = argv
        if not self.export_argv or not self.compose_up_argv:
            raise BenchmarkError("a traced launch ran no `infisical export` or no `docker compose up`:\n"
                                 + "\n".join(" ".join(c["argv"]) for c in trace["calls"]) + "\n" + trace["stderr"])

    # -- the raw calls the launcher wraps, by hand --------------------------------------
    def export_by_hand(self) -> str:
        _, proc = run(self.export_argv, cwd=self.dir, env={**self.env, "INFISICAL_TOKEN": DEFAULT_TOKEN})
        return proc.stdout

    def write_by_hand(self, exported: str) -> None:
        """The export as a dotenv file compose reads back exactly: the least any launcher must do."""
        def quote(v: str) -> str:
            return (v.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
                    .replace("\n", "\\n").replace("\r", "\\r"))

        pairs = json.loads(exported) or []
        self.output.write_text("".join(f'{p["key"]}="{quote(p["value"])}"\n' for p in pairs), encoding="utf-8")

    def compose(self, argv: list[str]) -> None:
        run(argv, cwd=self.dir, env=self.env)

    def raw(self) -> dict[str, float]:
        """`infisical export`, the file written, `docker compose ... up -d`: seconds of each part."""
        start = time.perf_counter()
        self.write_by_hand(self.export_by_hand())
        exported = time.perf_counter()
        self.compose(self.compose_up_argv)
        return {"infisical export + write": exported - start, "docker compose up": time.perf_counter() - exported}

    def down_then_up(self) -> None:
        """The old way: export, write, `docker compose down`, then `up -d` (every container restarts)."""
        argv = self.compose_up_argv
        self.write_by_hand(self.export_by_hand())
        # Not checked: engine 20.10 under load may fail to remove the network ("has active
        # endpoints") after removing every container; `up -d` then reuses it.
        run(argv[: argv.index("up")] + ["down"], cwd=self.dir, env=self.env, check=False)
        self.compose(argv)

    # -- state ----------------------------------------------------------------------------
    def rotate(self, index: int) -> None:
        key = secret_key(index, self.secret_count)
        self.server.set_secrets({key: "rotated-" + token_hex(12)}, replace=False)

    def container_ids(self) -> dict[str, str]:
        """service -> id of its running container."""
        _, proc = run(["docker", "ps", "--no-trunc", "--filter", f"label={PROJECT_LABEL}={self.name}",
                       "--format", f'{{{{.Label "{SERVICE_LABEL}"}}}} {{{{.ID}}}}'], cwd="/", env=minimal_env())
        return dict(line.split() for line in proc.stdout.splitlines() if line.strip())

    def down(self) -> None:
        for name in (self.name, f"{self.name}-infisical"):
            try:
                Stack(self.dir, name=name).down()  # compose down -v --remove-orphans -t 0, then leftovers
            except Exception as exc:  # noqa: BLE001  (clean-up must go on for the other project)
                print(f"warning: clean-up of {name} failed: {exc}", file=sys.stderr)
