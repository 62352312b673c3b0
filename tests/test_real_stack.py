"""The first real run: a fresh copy of the project is set up with `init`, started with
`python start_services.py --profile cpu`, checked, has a secret rotated, and is stopped.

One scenario, two modes (the only difference is the copy's compose files):

- busybox (always; needs the Docker engine and busybox-test:local): the copy's
  docker-compose.override.private.yml and infisical/docker-compose.yml are replaced by
  files generated from `docker compose config` of the real ones: every service runs busybox,
  sleeping, with a healthcheck of its own and no published port, and keeps its
  environment, volumes and depends_on. The local "Infisical" is busybox httpd answering
  /api/status on a free port instead of 8010.
- real (REAL_STACK=1, marked `realstack`): the copy is left as it is, so every pinned image
  is pulled (several GB) and the real stack starts, Infisical on 127.0.0.1:8010 included.

In both modes the secrets come from the stand-in Infisical CLI (tests/support/bin/infisical):
a fresh Infisical has no project or machine identity until someone sets it up (docs/setup.md),
which needs the real CLI and a person. The stand-in is made to depend on the local Infisical
all the same (probe_domain: every call first GETs <INFISICAL_API_URL>/api/status), so the
export only succeeds once the launcher has brought Infisical up and it answers.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from stack_launcher.catalog import load_catalog
from stack_launcher.generate import generate
from support.real_stack import (
    BASE_FILE,
    INFISICAL_FILE,
    PRIVATE_OVERRIDE,
    READY_FLAG,
    assert_recreated_exactly,
    busybox_infisical,
    busybox_override,
    compose_model,
    container_env,
    container_ids,
    copy_project,
    environment_mismatches,
    expected_environment,
    free_port,
    http_status,
    model_host_ports,
    port_in_use,
    project_containers,
    project_volumes,
    published_ports,
    pull,
    read_env_file,
    remove_project,
    service_of,
    services_using,
    set_env_values,
    takes,
    volumes_of,
    wait_healthy,
)
from support.docker_stack import TEST_IMAGE, EngineUnavailable, probe_engine
from support.infisical_server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PROJECT
from support.processes import minimal_env

REALSTACK = pytest.mark.realstack  # registered in pyproject.toml

REAL_STACK = os.environ.get("REAL_STACK") == "1"
PROFILE = "cpu"
# The secret rotated in step 4: not init-only (no volume keeps it), and used by three
# services through a YAML anchor (valkey, langfuse-web, langfuse-worker).
ROTATED = "VALKEY_PASSWORD"
# A secret used by other services only: the rotation check must fail when told it was rotated.
UNRELATED = "QDRANT_API_KEY"


@dataclass(frozen=True)
class Mode:
    real: bool
    launch_timeout: float  # one launcher run
    health_timeout: float  # every healthcheck passing after a start
    pull_timeout: float = 0  # one `docker pull` (real images only)


BUSYBOX = Mode(real=False, launch_timeout=300, health_timeout=120)
REAL = Mode(real=True, launch_timeout=20 * 60, health_timeout=15 * 60, pull_timeout=30 * 60)


class Scenario:
    """A copy of the project in `dir`, run as the compose project `name` (Infisical as
    `name`-infisical), with the stand-in CLI's server in `infisical`."""

    def __init__(self, mode: Mode, directory: Path, infisical) -> None:
        self.mode = mode
        self.dir = directory
        self.name = "rs" + os.urandom(4).hex()
        self.infisical_project = f"{self.name}-infisical"
        self.infisical = infisical
        self.env = dict(infisical.env)
        copy_project(self.dir)
        # What the launcher loads, read from the real files before anything is replaced:
        # the services, the variables each one maps, its volumes.
        self.model = compose_model(self.dir, [BASE_FILE, PRIVATE_OVERRIDE])
        self.infisical_model = compose_model(self.dir, [INFISICAL_FILE])
        self.services = {name for name, s in self.model["services"].items()
                         if not s.get("profiles") or PROFILE in s["profiles"]}
        self.held: str | None = None  # busybox mode: one service kept unhealthy until released
        self.infisical_url = "http://localhost:8010"
        if not mode.real:
            self._replace_images_with_busybox()

    def _replace_images_with_busybox(self) -> None:
        # The launcher appends docker-compose.override.<environment>.yml after any `-f` list,
        # and compose appends `ports` across files, so an extra `-f` override could not take
        # the private override's ports away: the generated file takes that file's place.
        nobody_waits_for = self.services - {d for s in self.services
                                            for d in (self.model["services"][s].get("depends_on") or {})}
        self.held = sorted(s for s in nobody_waits_for
                           if self.model["services"][s].get("healthcheck") and s not in services_using(
                               self.model, ROTATED))[0]
        (self.dir / PRIVATE_OVERRIDE).write_text(busybox_override(self.model, held=[self.held]), encoding="utf-8")
        port = free_port()
        (self.dir / INFISICAL_FILE).write_text(busybox_infisical(self.infisical_model, port), encoding="utf-8")
        self.infisical_url = f"http://127.0.0.1:{port}"

    # -- the user's commands ------------------------------------------------------------
    def launcher(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, str(self.dir / "start_services.py"), *args, "-p", self.name]
        try:
            return subprocess.run(cmd, cwd=self.dir, env=self.env, capture_output=True, text=True,
                                  timeout=self.mode.launch_timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{' '.join(args)} still running after {self.mode.launch_timeout:g} s:\n"
                                 f"{exc.stdout}\n{exc.stderr}") from None

    def start(self) -> subprocess.CompletedProcess[str]:
        result = self.launcher("--profile", PROFILE, "--infisical-start-timeout",
                               str(int(self.mode.health_timeout)))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "from Infisical" in result.stderr, result.stderr  # a fresh export, no fallback
        return result

    # -- where the values come from ------------------------------------------------------
    def dotenv(self) -> dict[str, str]:
        return read_env_file(self.dir / ".env")

    def infisical_values(self) -> dict[str, str]:
        return {k: (v["value"] if isinstance(v, dict) else v) for k, v in self.infisical.secrets().items()}

    def container_values(self) -> dict[str, str]:
        """What compose should interpolate: .env, then Infisical's values over it."""
        return {**self.dotenv(), **self.infisical_values()}


def real_stack_engine() -> None:
    """The real mode needs an engine but not busybox-test:local (so not the `engine`
    fixture); it was asked for with REAL_STACK=1, so it fails rather than skips."""
    try:
        probe_engine()
    except EngineUnavailable as exc:
        pytest.fail(f"REAL_STACK=1 needs a Docker engine with Compose v2: {exc}", pytrace=False)


def wrong_environment(model, containers, values) -> list[str]:
    """`service.VARIABLE` (never a value) for each mapped variable a container does not hold
    as the compose file maps it from `values`."""
    return sorted(f"{service_of(row)}.{k}" for row in containers for k in environment_mismatches(
        expected_environment(model, service_of(row), values), container_env(row)))


# ------------------------------------------------------------------------------ the steps


def step_init_and_move_the_secrets_into_infisical(s: Scenario) -> None:
    """`init`, then what docs/setup.md has the user do: a machine identity and a project in
    Infisical, holding the stack's secrets. Infisical's values differ from the ones `init`
    left in .env, so a container showing them got them from Infisical, not from .env."""
    result = s.launcher("init")
    assert result.returncode == 0, result.stdout + result.stderr
    catalog = load_catalog(s.dir / ".env.example")
    secrets = {e.key: generate(e.fmt) for e in catalog.values() if e.category == "secret" and e.fmt}
    assert ROTATED in secrets and UNRELATED in secrets
    stale = s.dotenv()
    assert all(stale[k] and stale[k] != v for k, v in secrets.items())
    s.infisical.set_secrets(secrets)
    s.infisical.update(probe_domain=True)  # every CLI call first asks <INFISICAL_API_URL>/api/status
    set_env_values(s.dir / ".env", {
        "INFISICAL_API_URL": s.infisical_url,
        "INFISICAL_PROJECT_ID": DEFAULT_PROJECT,
        "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID": DEFAULT_CLIENT_ID,
        "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
    })


def step_every_image_can_be_had_and_every_port_is_free(s: Scenario) -> None:
    """Real images: pull each one first, so a tag the registry does not serve is named alone
    (not lost in a start that falls back or times out), and refuse to start over a stack that
    already holds the ports (yours, most likely: `python start_services.py down`)."""
    if not s.mode.real:
        return
    busy = sorted(p for p in model_host_ports(s.model, s.services) | model_host_ports(
        s.infisical_model, s.infisical_model["services"]) if port_in_use(p))
    if busy:
        pytest.fail(f"ports already in use on 127.0.0.1: {busy}; stop what holds them (another stack?) first",
                    pytrace=False)
    images = [s.model["services"][n]["image"] for n in s.services] + \
        [svc["image"] for svc in s.infisical_model["services"].values()]
    failed = pull(images, s.mode.pull_timeout)
    assert not failed, "images that could not be pulled:\n" + "\n".join(f"  {i}: {e}" for i, e in failed.items())


def step_every_healthcheck_passes(s: Scenario) -> None:
    if s.held:  # busybox: prove the wait names a service that is not healthy, then release it
        wait_healthy(s.name, s.mode.health_timeout, ignore={s.held})
        with pytest.raises(AssertionError, match=rf"not healthy after 3 s:\n  {s.held}: (starting|unhealthy)$"):
            wait_healthy(s.name, 3)
        subprocess.run(["docker", "exec", container_ids(s.name)[s.held], "touch", READY_FLAG], check=True,
                       env=minimal_env(), capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    states = wait_healthy(s.name, s.mode.health_timeout)
    assert set(states) == {n for n in s.services if s.model["services"][n].get("healthcheck")}
    assert set(container_ids(s.name)) == s.services  # the cpu profile: every service, no GPU one
    wait_healthy(s.infisical_project, s.mode.health_timeout)
    ports = {service_of(row): published_ports(row) for row in project_containers(s.name).values()}
    if s.mode.real:  # the private environment: every port on 127.0.0.1 only
        assert {ip for bindings in ports.values() for ip, _ in bindings} == {"127.0.0.1"}, ports
    else:  # busybox: the generated override took every port away
        assert not any(ports.values()), ports


def step_every_container_has_its_secrets(s: Scenario) -> None:
    """Each container's environment is what the compose file maps, interpolated from
    Infisical's values (over .env); Infisical's containers get theirs from .env."""
    containers = project_containers(s.name).values()
    assert not wrong_environment(s.model, containers, s.container_values()), \
        "containers whose environment is not what the compose file maps from Infisical's values"
    # The check can fail: the same containers against .env alone (what a fallback would give)
    # show every variable that carries a secret as wrong.
    carrying = {f"{service}.{k}" for service in s.services
                for k, v in (s.model["services"][service].get("environment") or {}).items()
                if any(takes(v, key) for key in s.infisical_values())}
    assert set(wrong_environment(s.model, containers, s.dotenv())) == carrying

    infisical_containers = project_containers(s.infisical_project).values()
    assert {service_of(row) for row in infisical_containers} == set(s.infisical_model["services"])
    assert not wrong_environment(s.infisical_model, infisical_containers, s.dotenv())
    assert http_status(f"{s.infisical_url}/api/status") == 200
    if s.mode.real:
        assert s.infisical_url == "http://localhost:8010"
        assert http_status("http://127.0.0.1:8010/api/status") == 200


def step_rotating_a_secret_recreates_exactly_its_services(s: Scenario) -> None:
    users = services_using(s.model, ROTATED, s.services)
    assert len(users) >= 2, f"{ROTATED} is meant to be a secret several services share; now used by {users}"
    assert services_using(s.model, UNRELATED, s.services) - users, f"{UNRELATED} is meant to be used elsewhere"
    before = container_ids(s.name)
    s.infisical.set_secrets({**s.infisical_values(), ROTATED: generate("password:32")})
    result = s.start()
    assert f"changed: {ROTATED}" in result.stderr, result.stderr
    after = container_ids(s.name)
    assert_recreated_exactly(before, after, users)
    with pytest.raises(AssertionError, match="recreated"):  # the check fails for another key's services
        assert_recreated_exactly(before, after, services_using(s.model, UNRELATED, s.services))
    wait_healthy(s.name, s.mode.health_timeout)
    assert not wrong_environment(s.model, project_containers(s.name).values(), s.container_values())


def step_down_keeps_the_volumes(s: Scenario) -> None:
    kept = volumes_of(s.model, s.services, s.name) | volumes_of(
        s.infisical_model, s.infisical_model["services"], s.infisical_project)
    assert project_volumes(s.name) | project_volumes(s.infisical_project) >= kept
    result = s.launcher("down", "--with-infisical")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project_containers(s.name, all=True) == {} and project_containers(s.infisical_project, all=True) == {}
    assert project_volumes(s.name) | project_volumes(s.infisical_project) >= kept
    # The check can fail: after `down -v` the same comparison does.
    remove_project(s.name)
    remove_project(s.infisical_project)
    assert not project_volumes(s.name) | project_volumes(s.infisical_project) >= kept


# ------------------------------------------------------------------------------ the scenario


def first_run(mode: Mode, directory: Path, infisical) -> None:
    """The scenario, the same in both modes; both compose projects are removed afterwards."""
    scenario = Scenario(mode, directory, infisical)
    try:
        step_init_and_move_the_secrets_into_infisical(scenario)
        step_every_image_can_be_had_and_every_port_is_free(scenario)
        scenario.start()
        step_every_healthcheck_passes(scenario)
        step_every_container_has_its_secrets(scenario)
        step_rotating_a_secret_recreates_exactly_its_services(scenario)
        step_down_keeps_the_volumes(scenario)
    finally:
        remove_project(scenario.name)
        remove_project(scenario.infisical_project)


def test_a_fresh_copy_inits_starts_healthy_with_its_secrets_rotates_one_and_stops(engine, tmp_path,
                                                                                   infisical_server):
    first_run(BUSYBOX, tmp_path / "project", infisical_server)


@REALSTACK
@pytest.mark.skipif(not REAL_STACK, reason=(
    "REAL_STACK=1 not set: this pulls every pinned image (several GB) and starts the real stack; "
    "run it on a machine that can pull before changing a pinned tag (README.md)"))
def test_the_same_first_run_with_the_real_images_pulled_from_their_registries(tmp_path, infisical_server):
    real_stack_engine()
    first_run(REAL, tmp_path / "project", infisical_server)


def test_the_busybox_copy_changes_only_images_commands_healthchecks_and_ports(engine, tmp_path):
    """What the CI mode relies on, for every service of every profile: the generated files
    keep each service's environment, volumes, dependencies, profiles and networks as the
    real files have them, and take away the images, the published ports and the GPU needs."""
    copy = copy_project(tmp_path / "copy")
    real = compose_model(copy, [BASE_FILE, PRIVATE_OVERRIDE])
    real_infisical = compose_model(copy, [INFISICAL_FILE])
    port = free_port()
    (copy / PRIVATE_OVERRIDE).write_text(busybox_override(real), encoding="utf-8")
    (copy / INFISICAL_FILE).write_text(busybox_infisical(real_infisical, port), encoding="utf-8")
    fake = compose_model(copy, [BASE_FILE, PRIVATE_OVERRIDE])
    fake_infisical = compose_model(copy, [INFISICAL_FILE])
    for before, after in ((real, fake), (real_infisical, fake_infisical)):
        assert set(after["services"]) == set(before["services"])
        assert set(after.get("volumes") or {}) == set(before.get("volumes") or {})
        for name, service in after["services"].items():
            original = before["services"][name]
            assert service["image"] == TEST_IMAGE and service["init"] is True, name
            for key in ("environment", "volumes", "depends_on", "profiles", "networks"):
                assert service.get(key) == original.get(key), f"{name}: {key} changed"
            assert bool(service.get("healthcheck")) == bool(original.get("healthcheck")), name
            assert "devices" not in service and "deploy" not in service, name
    assert any(s.get("ports") for s in real["services"].values())
    assert not any(s.get("ports") for s in fake["services"].values())
    assert [(p["host_ip"], p["published"]) for s in fake_infisical["services"].values()
            for p in s.get("ports") or []] == [("127.0.0.1", str(port))]
