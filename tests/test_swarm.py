"""A user deploys the stack to Docker Swarm: `--target swarm` on `up`, `plan` and `down`.

Every scenario runs the real launcher against the real engine as a single-node swarm, with
busybox services and the stand-in Infisical CLI. The engine is shared: the swarm is joined
only when the engine is not a member yet and left only if this session joined it; each
test's stack, secrets, volumes and node label are removed after it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from stack_launcher import swarm, swarm_launch
from stack_launcher.masking import Masker, printed_forms
from support.docker_stack import Stack, _run
from support.processes import LAUNCHER, minimal_env, prepend_path

TRICKY = {
    "DB_PASSWORD": "it's a \"quoted\" back\\slash $HOME ${X} # not a comment",
    "API_KEY": "line one\nline two\ttabbed ünïcødé ✓ <&> trailing\\",
    "CACHE_TOKEN": "plain-cache-token-1",
    "FILE_SECRET": "file-secret-$$-\"q\"-\nsecond line",
}
DOTENV = ("DB_PASSWORD=from-dotenv-db\nAPI_KEY=from-dotenv-api\nCACHE_TOKEN=from-dotenv-cache\n"
          "FILE_SECRET=from-dotenv-file\nINFISICAL_TOKEN=tok-1\nINFISICAL_PROJECT_ID=proj-1\n"
          "SWARM_SECRET_NAME_KEY=0123456789abcdef0123456789abcdef\n")


# ------------------------------------------------------------------ the shared engine's swarm membership

class _Membership:
    joined = False  # did this module make the engine a swarm manager?


def _swarm_state() -> tuple[str, bool]:
    result = _run(["docker", "info", "--format", "{{json .Swarm}}"], timeout=20, check=True)
    swarm = json.loads(result.stdout)
    return str(swarm.get("LocalNodeState")), bool(swarm.get("ControlAvailable"))


@pytest.fixture(scope="module")
def _leave_the_swarm_we_joined(engine):
    # Module scope: the rest of the suite runs on the engine as this module found it.
    yield
    if _Membership.joined:
        _run(["docker", "swarm", "leave", "--force"], timeout=60)
        _Membership.joined = False


@pytest.fixture
def swarm_manager(_leave_the_swarm_we_joined) -> str:
    """The engine as a swarm manager; its node id."""
    state, manager = _swarm_state()
    if state == "inactive":
        _run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], timeout=60, check=True)
        _Membership.joined = True
    elif not manager:
        pytest.fail(f"the engine is a swarm {state} node but not a manager: cannot deploy stacks", pytrace=False)
    return _run(["docker", "info", "--format", "{{.Swarm.NodeID}}"], check=True).stdout.strip()


@pytest.fixture
def engine_outside_swarm(_leave_the_swarm_we_joined) -> None:
    """The engine as no swarm's member: leaves the swarm only if this session joined it."""
    state, _ = _swarm_state()
    if state != "inactive":
        if not _Membership.joined:
            pytest.fail("the engine is in a swarm this test session did not create; leaving it would break "
                        "someone else's: run this test on an engine outside any swarm", pytrace=False)
        _run(["docker", "swarm", "leave", "--force"], timeout=60, check=True)
        _Membership.joined = False


# ------------------------------------------------------------------ a project deployed as a stack

def _remove_stack(name: str, node: str | None) -> None:
    _run(["docker", "stack", "rm", name], timeout=60)
    deadline = time.monotonic() + 60
    label = f"label=com.docker.stack.namespace={name}"
    while _run(["docker", "ps", "-aq", "--filter", label]).stdout.split() and time.monotonic() < deadline:
        time.sleep(0.5)
    secrets = _run(["docker", "secret", "ls", "-q", "--filter", f"label=start-services.stack={name}"]).stdout.split()
    if secrets:
        _run(["docker", "secret", "rm", *secrets])
    volumes = _run(["docker", "volume", "ls", "-q", "--filter", label]).stdout.split()
    while volumes and time.monotonic() < deadline:  # a removed container lets go of its volume soon after
        if _run(["docker", "volume", "rm", *volumes]).returncode == 0:
            break
        time.sleep(0.5)
    if node:
        _run(["docker", "node", "update", "--label-rm", f"{name}.volume.data", node])


@pytest.fixture
def project(engine, swarm_manager, infisical_server, tmp_path):
    """Three cpu services (one with a named volume, one reading a secret from a file) and a
    gpu-nvidia one; the secrets in Infisical, fallbacks in .env; the node labelled for the
    volume. The launcher's temp folder is the test's own, so that it can be searched."""
    stack = Stack(tmp_path / "stack")
    stack.write_compose({
        "api": {"profiles": ["cpu"], "restart": "unless-stopped", "volumes": ["data:/data"],
                "environment": {"DB_PASSWORD": "${DB_PASSWORD:?DB_PASSWORD is not set}",
                                "API_KEY": "${API_KEY:?API_KEY is not set}", "MODE": "plain"}},
        "cache": {"profiles": ["cpu"], "environment": {"CACHE_TOKEN": "${CACHE_TOKEN:?CACHE_TOKEN is not set}"}},
        "files": {"profiles": ["cpu"], "x-file-env": ["FILE_SECRET"],
                  "environment": {"FILE_SECRET": "${FILE_SECRET:?FILE_SECRET is not set}"}},
        "gpu": {"profiles": ["gpu-nvidia"], "environment": {"API_KEY": "${API_KEY:?API_KEY is not set}"}},
    }, volumes={"data": {}})
    stack.write_env(DOTENV)
    infisical_server.set_secrets(dict(TRICKY))
    stack.infisical = infisical_server
    stack.temp = tmp_path / "tmp"
    stack.temp.mkdir()
    stack.argv_log = tmp_path / "docker-argv.log"
    _run(["docker", "node", "update", "--label-add", f"{stack.name}.volume.data=true", swarm_manager], check=True)
    try:
        yield stack
    finally:
        _remove_stack(stack.name, swarm_manager)
        stack.down()


def _docker_shim(folder: Path, log: Path) -> Path:
    """A `docker` first on PATH that logs each argv (NUL-separated, one call a line), keeps a
    copy of each stack file `-c` names in `<folder>/stack-files` (the launcher removes its
    own at once), and runs the real one. `<folder>/misbehave` names one way for docker to
    fail instead (see _misbehave): the launcher passes no variable of its own to docker."""
    real = next(Path(p) / "docker" for p in os.environ["PATH"].split(os.pathsep) if (Path(p) / "docker").is_file())
    folder.mkdir(exist_ok=True)
    (folder / "stack-files").mkdir(exist_ok=True)
    shim = folder / "docker"
    shim.write_text(f"""#!/bin/sh
printf '%s\\0' "$@" >> '{log}'
printf '\\n' >> '{log}'
prev=
for arg in "$@"; do
  if [ "$prev" = "-c" ]; then cp "$arg" "{folder}/stack-files/stack-$$-$(date +%s%N).json"; fi
  prev=$arg
done
mode=$(cat '{folder}/misbehave' 2>/dev/null)
case "$mode:$1 $2" in
  # a message cut at 300 characters in the middle of the value docker echoes from stdin
  "secret-create:secret create") printf '%0285d' 0 >&2; cat >&2; exit 1;;
  # a multi-line value printed raw
  "stack-deploy:stack deploy") printf 'error: bad value %s\\n' "$API_KEY" >&2; exit 1;;
  # a message that quotes a value of .env's
  "stack-rm:stack rm") printf 'error: removing with from-dotenv-db\\n' >&2; exit 1;;
  # the first `stack rm` of a stack whose tasks still hold its network (moby/moby#31068):
  # the services go, the network does not; the CLI's own words, without a newline between
  "network-busy:stack rm")
    if [ ! -e '{folder}/network-busy-done' ]; then
      touch '{folder}/network-busy-done'
      for s in $('{real}' service ls -q --filter "label=com.docker.stack.namespace=$3"); do '{real}' service rm "$s" >/dev/null; done
      printf 'Removing network %s_default\n' "$3"
      printf 'Failed to remove network lelxky2v5sbx: Error response from daemon: rpc error: code = FailedPrecondition desc = network lelxky2v5sbx is in use by task ywb39irtfxt7Failed to remove some resources from stack: %s\n' "$3" >&2
      exit 1
    fi;;
  # a failure with the spec (values and all) on stdout and nothing on stderr
  "service-inspect:service inspect") '{real}' "$@"; exit 1;;
esac
exec '{real}' "$@"
""")
    shim.chmod(0o755)
    return folder


def _misbehave(project, mode: str) -> None:
    (project.dir.parent / "shim").mkdir(exist_ok=True)
    (project.dir.parent / "shim" / "misbehave").write_text(mode)


def stack_files(project) -> list[Path]:
    return sorted((project.dir.parent / "shim" / "stack-files").glob("*.json"))


def launch(project, *args, env=None, timeout=240):
    env = dict(project.infisical.env if env is None else env)
    env["TMPDIR"] = str(project.temp)
    prepend_path(env, _docker_shim(project.dir.parent / "shim", project.argv_log))
    cmd = [sys.executable, str(LAUNCHER), *args, "-p", project.name]
    return subprocess.run(cmd, cwd=project.dir, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def shown(result) -> str:
    return result.stdout + result.stderr


def containers_of(project, service: str) -> list[str]:
    label = f"label=com.docker.swarm.service.name={project.name}_{service}"
    return _run(["docker", "ps", "-q", "--filter", label], check=True).stdout.split()


def container_env(project, service: str) -> dict[str, str]:
    (cid,) = containers_of(project, service)
    pairs = json.loads(_run(["docker", "inspect", cid], check=True).stdout)[0]["Config"]["Env"]
    return dict(pair.partition("=")[::2] for pair in pairs)


def running_tasks(project) -> dict[str, set[str]]:
    """service -> ids of its tasks that should be running."""
    services = _run(["docker", "service", "ls", "--format", "{{.Name}}", "--filter",
                     f"label=com.docker.stack.namespace={project.name}"], check=True).stdout.split()
    return {name.removeprefix(project.name + "_"): set(_run(
        ["docker", "service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running", name],
        check=True).stdout.split()) for name in services}


def argv_logged(project) -> list[list[str]]:
    if not project.argv_log.exists():
        return []
    return [line.strip("\0").split("\0") for line in project.argv_log.read_text(encoding="utf-8").split("\0\n")
            if line.strip("\0")]


def assert_no_secret_shown(result, values=tuple(TRICKY.values())):
    """No line of any value, raw or as docker would escape it (JSON, Go-quoted)."""
    text = shown(result)
    for value in values:
        for form in printed_forms(value):
            for part in form.split("\n"):
                if len(part) >= 6:
                    assert part not in text, f"part of a secret leaked: {part!r}"


def secret_versions(project, key: str) -> list[str]:
    return _run(["docker", "secret", "ls", "--format", "{{.Name}}", "--filter",
                 f"label=start-services.key={key}", "--filter", f"label=start-services.stack={project.name}"],
                check=True).stdout.split()


# ------------------------------------------------------------------ the scenarios

def test_an_engine_outside_any_swarm_gives_exit_4_and_the_fix(engine, engine_outside_swarm, infisical_server,
                                                               tmp_path):
    stack = Stack(tmp_path / "stack")
    stack.write_compose({"app": {"environment": {"K": "${K}"}}})
    stack.write_env(DOTENV)
    env = dict(infisical_server.env)
    for command in (["up", "--target", "swarm"], ["plan", "--target", "swarm"], ["down", "--target", "swarm"]):
        result = subprocess.run([sys.executable, str(LAUNCHER), *command, "-p", stack.name], cwd=stack.dir, env=env,
                                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert result.returncode == 4, shown(result)
        assert "not in swarm mode" in result.stderr and "docker swarm init" in result.stderr, result.stderr
        assert "Traceback" not in shown(result)
    doctor = subprocess.run([sys.executable, str(LAUNCHER), "doctor", "--target", "swarm", "-p", stack.name],
                            cwd=stack.dir, env=env, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    line = next(line for line in doctor.stdout.splitlines() if line.split()[1:2] == ["swarm"])
    assert line.startswith("FAIL") and "not in swarm mode" in line, doctor.stdout
    assert "docker swarm init" in doctor.stdout


def test_deploys_only_the_chosen_profile_with_values_exactly_as_in_infisical(project):
    result = launch(project, "up", "--target", "swarm", "--profile", "cpu")
    assert result.returncode == 0, shown(result)
    assert set(running_tasks(project)) == {"api", "cache", "files"}  # not the gpu-nvidia one
    api = container_env(project, "api")
    assert api["DB_PASSWORD"] == TRICKY["DB_PASSWORD"]
    assert api["API_KEY"] == TRICKY["API_KEY"]
    assert api["MODE"] == "plain"
    assert container_env(project, "cache")["CACHE_TOKEN"] == TRICKY["CACHE_TOKEN"]
    # The file-mapped key: a path in the environment, the value in the mounted Docker secret.
    files = container_env(project, "files")
    assert "FILE_SECRET" not in files and files["FILE_SECRET_FILE"] == "/run/secrets/FILE_SECRET"
    (cid,) = containers_of(project, "files")
    read = _run(["docker", "exec", cid, "cat", "/run/secrets/FILE_SECRET"], check=True).stdout
    assert read == TRICKY["FILE_SECRET"]
    assert not (project.dir / ".env.infisical").exists()
    assert "converged" in result.stderr
    assert_no_secret_shown(result)


def test_no_secret_value_in_any_argv_file_or_file_mapped_service_spec(project):
    result = launch(project, "up", "--target", "swarm", "--profile", "cpu")
    assert result.returncode == 0, shown(result)
    calls = argv_logged(project)
    assert any(call[:2] == ["stack", "deploy"] for call in calls)
    assert any(call[:2] == ["secret", "create"] for call in calls)
    for call in calls:
        for value in TRICKY.values():
            assert not any(value in arg for arg in call), f"a secret value in argv: docker {call[:3]}"
    assert stack_files(project), "the docker shim kept no copy of the stack file"
    written = [p for folder in (project.dir, project.temp) for p in folder.rglob("*") if p.is_file()]
    written = [p for p in written if p.name != ".env"] + stack_files(project)
    for path in written:
        text = path.read_bytes()
        for value in TRICKY.values():
            for form in printed_forms(value):
                assert form.encode() not in text, f"a secret value in {path}"
    spec = _run(["docker", "service", "inspect", f"{project.name}_files"], check=True).stdout
    for part in TRICKY["FILE_SECRET"].split("\n"):
        assert part not in spec and json.dumps(part)[1:-1] not in spec


def test_doctor_passes_the_swarm_check_on_a_manager(project):
    result = launch(project, "doctor", "--target", "swarm")
    line = next(line for line in result.stdout.splitlines() if line.split()[1:2] == ["swarm"])
    assert line.startswith("PASS") and "swarm manager" in line, result.stdout


def test_rotating_one_secret_updates_only_the_service_that_uses_it_as_plan_predicted(project):
    assert launch(project, "up", "--target", "swarm").returncode == 0
    before = running_tasks(project)
    project.infisical.set_secrets({**TRICKY, "CACHE_TOKEN": "plain-cache-token-2"})

    plan = launch(project, "plan", "--target", "swarm")
    assert plan.returncode == 0, shown(plan)
    assert "  cache: update (secret CACHE_TOKEN changed)" in plan.stdout, plan.stdout
    for other in ("api", "files"):
        assert f"  {other}: untouched" in plan.stdout, plan.stdout
    assert running_tasks(project) == before  # plan changed nothing

    result = launch(project, "up", "--target", "swarm")
    assert result.returncode == 0, shown(result)
    after = running_tasks(project)
    assert after["api"] == before["api"] and after["files"] == before["files"]
    assert after["cache"] != before["cache"]
    assert container_env(project, "cache")["CACHE_TOKEN"] == "plain-cache-token-2"


def test_a_profile_change_removes_the_services_it_drops_as_plan_said(project):
    assert launch(project, "up", "--target", "swarm", "--profile", "cpu").returncode == 0
    plan = launch(project, "plan", "--target", "swarm", "--profile", "gpu-nvidia")
    assert plan.returncode == 0, shown(plan)
    for service in ("api", "cache", "files"):
        assert f"  {service}: remove (not in the chosen profile)" in plan.stdout, plan.stdout
    assert "  gpu: create" in plan.stdout
    result = launch(project, "up", "--target", "swarm", "--profile", "gpu-nvidia")
    assert result.returncode == 0, shown(result)
    assert set(running_tasks(project)) == {"gpu"}
    assert container_env(project, "gpu")["API_KEY"] == TRICKY["API_KEY"]


def test_a_rotated_file_secret_keeps_its_previous_version_and_drops_older_ones(project):
    assert launch(project, "up", "--target", "swarm").returncode == 0
    first = secret_versions(project, "FILE_SECRET")
    assert len(first) == 1
    before = running_tasks(project)
    names = [first[0]]
    for n in (2, 3):
        project.infisical.set_secrets({**TRICKY, "FILE_SECRET": f"file-secret-{n}"})
        plan = launch(project, "plan", "--target", "swarm")
        assert "  files: update (secret FILE_SECRET changed)" in plan.stdout, plan.stdout
        result = launch(project, "up", "--target", "swarm")
        assert result.returncode == 0, shown(result)
        names += [n for n in secret_versions(project, "FILE_SECRET") if n not in names]
    after = running_tasks(project)
    assert after["api"] == before["api"] and after["cache"] == before["cache"]
    (cid,) = containers_of(project, "files")
    assert _run(["docker", "exec", cid, "cat", "/run/secrets/FILE_SECRET"], check=True).stdout == "file-secret-3"
    # the one in use and the previous one stay; the first is gone
    assert sorted(secret_versions(project, "FILE_SECRET")) == sorted(names[1:])


def test_with_infisical_down_a_rerun_keeps_the_deployed_versions_and_names_the_cause(project):
    assert launch(project, "up", "--target", "swarm").returncode == 0
    before = running_tasks(project)
    project.infisical.set_server("down")
    result = launch(project, "up", "--target", "swarm", "--infisical-timeout", "5")
    assert result.returncode == 0, shown(result)
    assert "Infisical unavailable: " in result.stderr and "connection refused" in result.stderr, result.stderr
    assert "keeping the versions the swarm already runs" in result.stderr
    assert running_tasks(project) == before
    assert container_env(project, "api")["DB_PASSWORD"] == TRICKY["DB_PASSWORD"]  # not .env's


def test_a_first_deploy_without_infisical_uses_dotenv(project):
    project.infisical.set_server("down")
    result = launch(project, "up", "--target", "swarm", "--infisical-timeout", "5")
    assert result.returncode == 0, shown(result)
    assert "falling back to .env" in result.stderr
    assert container_env(project, "api")["DB_PASSWORD"] == "from-dotenv-db"


def test_down_removes_the_stack_and_keeps_its_volumes(project):
    assert launch(project, "up", "--target", "swarm").returncode == 0
    (cid,) = containers_of(project, "api")
    _run(["docker", "exec", cid, "sh", "-c", "echo kept > /data/proof"], check=True)
    env = minimal_env()  # no Infisical, no secrets needed
    (project.dir / ".env").unlink()
    result = launch(project, "down", "--target", "swarm", env=env)
    assert result.returncode == 0, shown(result)
    assert running_tasks(project) == {}
    assert not _run(["docker", "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={project.name}"]).stdout.strip()
    volume = f"{project.name}_data"
    assert _run(["docker", "volume", "inspect", volume]).returncode == 0
    proof = _run(["docker", "run", "--rm", "-v", f"{volume}:/data", "busybox-test:local", "cat", "/data/proof"],
                 check=True)
    assert proof.stdout.strip() == "kept"


def test_down_removes_a_network_the_stopping_tasks_still_held_on_the_first_try(project):
    """`docker stack rm` gives up on a network whose tasks are still stopping (CI saw it on
    this engine); the launcher removes it on a second try and says nothing failed."""
    assert launch(project, "up", "--target", "swarm").returncode == 0
    _misbehave(project, "network-busy")
    result = launch(project, "down", "--target", "swarm")
    assert result.returncode == 0, shown(result)
    assert (project.dir.parent / "shim" / "network-busy-done").exists()  # the refusal did happen
    assert "in use by task" not in shown(result) and "failed" not in result.stderr.lower()
    assert result.stderr.count("Removing network") == 2  # tried again, quietly
    assert running_tasks(project) == {}
    networks = _run(["docker", "network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={project.name}"])
    assert not networks.stdout.strip()


def test_down_names_a_network_it_could_not_remove_for_another_reason():
    """Only a network still held by tasks is tried again: any other failure is the user's to see."""
    busy = ("Failed to remove network lelx: Error response from daemon: rpc error: code = FailedPrecondition "
            "desc = network lelx is in use by task ywb3Failed to remove some resources from stack: s")
    assert swarm.only_busy_networks(busy)
    assert swarm.only_busy_networks(busy.replace("Failed to remove some", "Failed to remove network k2: "
                                                 "rpc error: network k2 is in use by task q1Failed to remove some"))
    assert not swarm.only_busy_networks(busy.replace("is in use by task ywb3", "not found"))
    assert not swarm.only_busy_networks("Failed to remove service abc: timeout" + busy)
    assert not swarm.only_busy_networks("error: removing with from-dotenv-db")


def test_a_value_over_128_kib_that_is_not_a_file_is_refused_in_one_line(project):
    project.infisical.set_secrets({**TRICKY, "API_KEY": "x" * (129 * 1024)})
    result = launch(project, "up", "--target", "swarm")
    assert result.returncode == 6, shown(result)
    assert "API_KEY is 129 KiB" in result.stderr and "Traceback" not in shown(result)
    assert running_tasks(project) == {}


@pytest.mark.parametrize("service, extra, cause", [
    ("exits", {"command": ["sh", "-c", "exit 3"], "restart": "no"}, "non-zero exit (3)"),
    ("unhealthy", {"healthcheck": {"test": ["CMD", "false"], "interval": "1s", "retries": 1}}, "unhealthy"),
])
def test_a_service_that_does_not_converge_gives_exit_1_naming_it_and_its_last_task_error(project, service, extra,
                                                                                         cause):
    project.write_compose({"steady": {}, service: extra})
    started = time.monotonic()
    result = launch(project, "up", "--target", "swarm", "--converge-timeout", "20")
    assert result.returncode == 1, shown(result)
    assert time.monotonic() - started < 90
    line = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert f"service {service} did not converge within 20 s" in line and cause in line, result.stderr
    assert "Traceback" not in shown(result)


def test_a_stateful_service_with_no_labelled_node_gives_exit_4_and_the_command(project, swarm_manager):
    _run(["docker", "node", "update", "--label-rm", f"{project.name}.volume.data", swarm_manager], check=True)
    result = launch(project, "up", "--target", "swarm")
    assert result.returncode == 4, shown(result)
    assert "no swarm node is labelled for the volume of api" in result.stderr
    assert f"docker node update --label-add {project.name}.volume.data=true <node>" in result.stderr
    assert running_tasks(project) == {} and secret_versions(project, "FILE_SECRET") == []  # nothing created


def test_without_the_secret_name_key_in_dotenv_up_is_refused_with_the_fix(project):
    project.write_env(DOTENV.replace("SWARM_SECRET_NAME_KEY=", "UNUSED="))
    result = launch(project, "up", "--target", "swarm")
    assert result.returncode == 6, shown(result)
    assert "SWARM_SECRET_NAME_KEY" in result.stderr and "init" in result.stderr


# ------------------------------------------------------------------ review findings, as scenarios

def test_a_list_form_environment_reaches_the_containers_and_plan_then_reports_nothing_to_do(project):
    """`- KEY` (the value from the env files or the shell, in compose), `- KEY=VALUE` and an
    env_file: every value reaches the container; a rerun's plan neither crashes nor reports
    the env_file's variables as removed."""
    (project.dir / "app.env").write_text("FROM_FILE=from-the-env-file\n", encoding="utf-8")
    project.write_compose({
        "lister": {"environment": ["CACHE_TOKEN", "DB=${DB_PASSWORD}", "MODE=plain"], "env_file": ["app.env"]},
        "files": {"x-file-env": ["FILE_SECRET"], "environment": ["FILE_SECRET"]},
    })
    result = launch(project, "up", "--target", "swarm")
    assert result.returncode == 0, shown(result)
    env = container_env(project, "lister")
    assert env["CACHE_TOKEN"] == TRICKY["CACHE_TOKEN"] and env["DB"] == TRICKY["DB_PASSWORD"]
    assert env["MODE"] == "plain" and env["FROM_FILE"] == "from-the-env-file"
    assert container_env(project, "files")["FILE_SECRET_FILE"] == "/run/secrets/FILE_SECRET"
    (cid,) = containers_of(project, "files")
    assert _run(["docker", "exec", cid, "cat", "/run/secrets/FILE_SECRET"], check=True).stdout == TRICKY["FILE_SECRET"]
    plan = launch(project, "plan", "--target", "swarm")
    assert plan.returncode == 0, shown(plan)
    assert "  lister: untouched" in plan.stdout and "  files: untouched" in plan.stdout, plan.stdout
    assert_no_secret_shown(plan)


def test_a_multi_line_value_docker_prints_raw_is_masked_whole(project):
    _misbehave(project, "stack-deploy")
    result = launch(project, "up", "--target", "swarm")
    assert result.returncode == 1, shown(result)
    assert "docker stack deploy failed" in result.stderr
    assert_no_secret_shown(result)


def test_a_failed_secret_create_whose_message_echoes_the_value_is_masked_before_it_is_cut(project):
    _misbehave(project, "secret-create")
    result = launch(project, "up", "--target", "swarm")
    assert result.returncode == 4, shown(result)
    assert "`docker secret create` for FILE_SECRET failed" in result.stderr
    assert "file-secret-" not in shown(result)  # what a cut at 300 characters left of the value
    assert_no_secret_shown(result)


def test_a_failed_service_inspect_never_shows_its_stdout(project):
    assert launch(project, "up", "--target", "swarm").returncode == 0
    _misbehave(project, "service-inspect")
    result = launch(project, "plan", "--target", "swarm")
    assert result.returncode == 4, shown(result)
    assert "`docker service inspect` failed: no message" in result.stderr, result.stderr
    assert "Traceback" not in shown(result)
    assert_no_secret_shown(result)


def test_values_over_2_mib_together_are_refused_by_plan_and_up_before_any_secret_is_made(project):
    big = {f"BIG_{n}": chr(ord("a") + n) * (120 * 1024) for n in range(18)}
    project.infisical.set_secrets({**TRICKY, **big})
    project.write_compose({
        "big": {"environment": {key: "${" + key + "}" for key in big}},
        "files": {"x-file-env": ["FILE_SECRET"], "environment": {"FILE_SECRET": "${FILE_SECRET}"}},
    })
    for command in ("plan", "up"):
        result = launch(project, command, "--target", "swarm")
        assert result.returncode == 6, shown(result)
        line = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
        assert "over the 2 MiB" in line and "Traceback" not in shown(result), result.stderr
    assert secret_versions(project, "FILE_SECRET") == [] and running_tasks(project) == {}


def test_after_down_with_infisical_unavailable_up_refuses_rather_than_deploy_dotenv(project):
    assert launch(project, "up", "--target", "swarm").returncode == 0
    assert launch(project, "down", "--target", "swarm").returncode == 0
    assert secret_versions(project, "FILE_SECRET")  # kept by down
    project.infisical.set_server("down")
    result = launch(project, "up", "--target", "swarm", "--infisical-timeout", "5")
    assert result.returncode == 3, shown(result)
    line = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert "Infisical unavailable" in line and "Docker secrets from an earlier deploy" in line, result.stderr
    assert "--skip-infisical" in result.stderr
    assert running_tasks(project) == {}
    explicit = launch(project, "up", "--target", "swarm", "--skip-infisical")
    assert explicit.returncode == 0, shown(explicit)
    assert container_env(project, "api")["DB_PASSWORD"] == "from-dotenv-db"


def test_a_locked_swarm_node_gets_docker_swarm_unlock_as_the_fix(tmp_path):
    """An autolocked manager after a restart (a stand-in docker: locking the shared engine
    would need its unlock key)."""
    stack = Stack(tmp_path / "stack")
    stack.write_compose({"app": {"environment": {"K": "${K}"}}})
    stack.write_env(DOTENV)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "docker").write_text("#!/bin/sh\n"
                                 "echo '{\"LocalNodeState\":\"locked\",\"ControlAvailable\":false}'\n")
    (fake / "docker").chmod(0o755)
    env = prepend_path(minimal_env(), fake)
    result = subprocess.run([sys.executable, str(LAUNCHER), "down", "--target", "swarm", "-p", stack.name],
                            cwd=stack.dir, env=env, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 4, shown(result)
    assert "docker swarm unlock" in result.stderr and "docker swarm init" not in result.stderr, result.stderr


def test_cleanup_keeps_the_version_a_rollback_returns_to_and_orders_versions_by_time(monkeypatch):
    """A service rolled back by hand, then updated again: its previous spec (the rollback
    target) names an older version than another spare one. Timestamps as the engine prints
    them: trailing zeros of the fraction dropped, so the text does not sort in time order.
    (A stand-in for the engine's answers: a rollback by hand on the shared engine would race
    the converge wait.)"""
    def spec(name, secret):
        return {"Name": name, "TaskTemplate": {"ContainerSpec": {"Secrets": [{"SecretName": secret}]}}}

    created = {"v2": ("K", "2026-01-01T00:00:02.1Z"), "v3": ("K", "2026-01-01T00:00:03Z"),
               "v4": ("K", "2026-01-01T00:00:04.5Z"), "w1": ("W", "2026-01-01T00:00:05Z"),
               "w2": ("W", "2026-01-01T00:00:05.5Z"),
               "w0": ("W", "2026-01-01T01:00:00+02:00")}  # 23:00 UTC the day before
    removed = []

    def engine(argv, shell, stdin=None, timeout=0, env=None):
        verb = argv[1:3]
        if verb == ["secret", "ls"]:
            return swarm.Result(0, "\n".join(json.dumps({"ID": name}) for name in created), "")
        if verb == ["secret", "inspect"]:
            return swarm.Result(0, json.dumps([{"ID": n, "CreatedAt": created[n][1], "Spec": {
                "Name": n, "Labels": {swarm.SECRET_KEY_LABEL: created[n][0]}}} for n in argv[3:]]), "")
        if verb == ["service", "ls"]:
            return swarm.Result(0, json.dumps({"ID": "svc"}), "")
        if verb == ["service", "inspect"]:
            return swarm.Result(0, json.dumps([{"Spec": spec("s_files", "v4"), "PreviousSpec": spec("s_files", "v2"),
                                                 "UpdateStatus": {"State": "completed"}}]), "")
        if verb == ["secret", "rm"]:
            removed.extend(argv[3:])
            return swarm.Result(0, "", "")
        raise AssertionError(argv)

    class Quiet:
        def info(self, text): pass
        def warn(self, text): pass

    monkeypatch.setattr(swarm, "run", engine)
    swarm_launch.prune_secrets("s", {}, Quiet(), Masker())
    # v4 (in use) and v2 (the rollback target) stay, v3 goes; no service uses W: its newest stays
    assert sorted(removed) == ["v3", "w0", "w1"]


def test_what_down_relays_from_docker_is_masked_with_dotenvs_secrets(project):
    _misbehave(project, "stack-rm")
    result = launch(project, "down", "--target", "swarm", env=minimal_env())
    assert result.returncode == 1, shown(result)
    assert "docker stack rm failed" in result.stderr
    assert_no_secret_shown(result, values=("from-dotenv-db",))
