"""The structure docs/architecture.md promises, held against the code: one runner of
subprocesses, one builder of compose command lines, one of swarm command lines."""
from __future__ import annotations

import ast
from pathlib import Path

from stack_launcher import compose, swarm

PACKAGE = Path(__file__).resolve().parent.parent / "stack_launcher"
MODULES = sorted(PACKAGE.glob("*.py"))


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def test_only_process_py_starts_subprocesses():
    offenders = []
    for path in MODULES:
        if path.name == "process.py":
            continue
        for node in ast.walk(_tree(path)):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(name.split(".")[0] in ("subprocess", "asyncio") for name in names) or (
                    isinstance(node, ast.Attribute) and node.attr in ("system", "popen", "spawnv", "execv")
                    and isinstance(node.value, ast.Name) and node.value.id == "os"):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == [], f"subprocesses start outside process.py: {offenders}"


def _spells_compose_argv(node: ast.AST) -> bool:
    """A list or tuple literal holding the word "compose" next to "docker" or a subcommand."""
    if not isinstance(node, (ast.List, ast.Tuple)):
        return False
    words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return "compose" in words


def _built_outside(owner: str, spells) -> list[str]:
    """file:line of each command line that `spells` recognises in a module other than `owner`."""
    return [f"{path.name}:{node.lineno}" for path in MODULES if path.name != owner
            for node in ast.walk(_tree(path)) if spells(node)]


def test_only_compose_py_builds_compose_command_lines():
    offenders = _built_outside("compose.py", _spells_compose_argv)
    assert offenders == [], f"compose command lines built outside compose.py: {offenders}"


def test_the_structure_test_would_catch_a_stray_compose_line():
    stray = ast.parse('argv = ["docker", "compose", "-p", name, "up"]')
    assert any(_spells_compose_argv(node) for node in ast.walk(stray))


SWARM_COMMANDS = {"swarm", "stack", "secret", "service", "node"}


def _spells_swarm_argv(node: ast.AST) -> bool:
    """A list or tuple literal starting with "docker" and a swarm-mode command."""
    if not isinstance(node, (ast.List, ast.Tuple)) or len(node.elts) < 2:
        return False
    words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts[:2]]
    return words[0] == "docker" and words[1] in SWARM_COMMANDS


def test_only_swarm_py_builds_swarm_stack_secret_service_and_node_command_lines():
    offenders = _built_outside("swarm.py", _spells_swarm_argv)
    assert offenders == [], f"swarm command lines built outside swarm.py: {offenders}"


def test_the_structure_test_would_catch_a_stray_swarm_line():
    stray = ast.parse('argv = ["docker", "secret", "create", name, "-"]')
    assert any(_spells_swarm_argv(node) for node in ast.walk(stray))


# ------------------------------------------------------------------ the command lines, as lists

TARGET = compose.Target(Path("/p"), "localai", (Path("/p/docker-compose.yml"), Path("/p/override.yml")),
                        (Path("/p/.env"), Path("/p/.env.infisical")), ("cpu",))
BASE = ["docker", "compose", "-p", "localai", "--project-directory", "/p", "-f", "/p/docker-compose.yml",
        "-f", "/p/override.yml", "--env-file", "/p/.env", "--env-file", "/p/.env.infisical", "--profile", "cpu"]


def test_up_layers_env_files_in_order_and_keeps_progress_plain_for_masking():
    assert TARGET.up() == BASE + ["--progress", "plain", "up", "-d"]


def test_on_a_terminal_up_asks_for_json_events_with_the_same_global_flag():
    assert TARGET.up(progress="json") == BASE + ["--progress", "json", "up", "-d"]


def test_the_local_infisical_waits_with_a_whole_number_of_seconds():
    infisical = compose.Target(Path("/p"), "localai-infisical", (Path("/p/infisical/docker-compose.yml"),),
                               (Path("/p/.env"),))
    assert infisical.up_wait(180.7) == ["docker", "compose", "-p", "localai-infisical", "--project-directory", "/p",
                                        "-f", "/p/infisical/docker-compose.yml", "--env-file", "/p/.env",
                                        "--progress", "plain", "up", "-d", "--wait", "--wait-timeout", "180"]


def test_plan_asks_compose_for_its_dry_run_as_json_events():
    assert TARGET.dry_run_up() == ["docker", "compose", "--dry-run"] + BASE[2:] + ["--progress", "json", "up", "-d"]


def test_every_profile_can_be_resolved_at_once():
    every = compose.Target(Path("/p"), "x", (Path("/p/c.yml"),), (Path("/p/.env"),), ("*",))
    assert every.config_json() == ["docker", "compose", "-p", "x", "--project-directory", "/p", "-f", "/p/c.yml",
                                   "--env-file", "/p/.env", "--profile", "*", "config", "--format", "json"]


def test_down_needs_no_files_and_so_no_secrets():
    assert compose.down_argv("localai", Path("/p")) == [
        "docker", "compose", "-p", "localai", "--project-directory", "/p", "--progress", "plain", "down",
        "--remove-orphans"]


def test_profile_none_beats_a_compose_profiles_in_an_env_file():
    assert compose.compose_env({"COMPOSE_PROFILES": "gpu", "A": "1"}, ()) == {"COMPOSE_PROFILES": "", "A": "1"}
    assert compose.compose_env({"COMPOSE_PROFILES": "gpu", "A": "1"}, ("cpu",)) == {"A": "1"}


# ------------------------------------------------------------------ backup and restore's command lines

INFISICAL = compose.Target(Path("/p"), "localai-infisical", (Path("/p/infisical/docker-compose.yml"),),
                           (Path("/p/.env"),))
INFISICAL_BASE = ["docker", "compose", "-p", "localai-infisical", "--project-directory", "/p",
                  "-f", "/p/infisical/docker-compose.yml", "--env-file", "/p/.env"]


def test_a_dump_streams_from_the_database_container_without_a_tty():
    assert INFISICAL.exec_argv("infisical-db", ["sh", "-c", "pg_dump"]) == INFISICAL_BASE + [
        "exec", "-T", "infisical-db", "sh", "-c", "pg_dump"]
    assert INFISICAL.exec_argv("infisical-db", ["psql"], stdin=False) == INFISICAL_BASE + [
        "exec", "-T", "--interactive=false", "infisical-db", "psql"]


def test_the_database_is_started_alone_and_waited_for():
    assert INFISICAL.up_services(["infisical-db", "infisical-redis"], 120.9) == INFISICAL_BASE + [
        "--progress", "plain", "up", "-d", "--wait", "--wait-timeout", "120", "infisical-db", "infisical-redis"]


def test_services_are_stopped_or_removed_by_name_and_listed_as_json():
    assert INFISICAL.stop(["infisical"]) == INFISICAL_BASE + ["--progress", "plain", "stop", "infisical"]
    assert INFISICAL.remove(["infisical-db"]) == INFISICAL_BASE + [
        "--progress", "plain", "rm", "--stop", "--force", "infisical-db"]
    assert INFISICAL.ps_json(["infisical-db"]) == INFISICAL_BASE + ["ps", "--all", "--format", "json", "infisical-db"]


def test_only_a_scratch_project_is_taken_down_with_its_volumes():
    scratch = compose.Target(Path("/p"), "localai-restore-verify-1a2b", (Path("/p/infisical/docker-compose.yml"),),
                             (Path("/dev/null"),))
    assert scratch.down_volumes() == ["docker", "compose", "-p", "localai-restore-verify-1a2b", "--project-directory",
                                      "/p", "-f", "/p/infisical/docker-compose.yml", "--env-file", "/dev/null",
                                      "--progress", "plain", "down", "--volumes", "--remove-orphans"]


# ------------------------------------------------------------------ swarm's command lines

def test_a_secret_is_created_from_stdin_and_labelled_with_its_stack_and_key_only():
    assert swarm.secret_create_argv("localai", "POSTGRES_PASSWORD", "localai_POSTGRES_PASSWORD_0a1b") == [
        "docker", "secret", "create", "--label", "start-services.stack=localai",
        "--label", "start-services.key=POSTGRES_PASSWORD", "localai_POSTGRES_PASSWORD_0a1b", "-"]


def test_the_stack_is_deployed_with_prune_and_without_asking_a_registry():
    assert swarm.stack_deploy_argv(Path("/tmp/s/stack.json"), "localai") == [
        "docker", "stack", "deploy", "--prune", "--resolve-image", "never", "-c", "/tmp/s/stack.json", "localai"]
    assert swarm.stack_rm_argv("localai") == ["docker", "stack", "rm", "localai"]


def test_deploy_env_holds_the_cli_variables_from_the_shell_and_only_the_interpolated_keys():
    shell = {"PATH": "/bin", "HOME": "/root", "DOCKER_HOST": "unix:///run/docker.sock", "UNRELATED": "x"}
    values = {"A": "1", "B": "2", "PATH": "/evil", "DOCKER_HOST": "tcp://evil:2375"}
    assert swarm.deploy_env(shell, values, frozenset({"A", "PATH"})) == {
        "PATH": "/bin", "HOME": "/root", "DOCKER_HOST": "unix:///run/docker.sock", "A": "1"}


def test_a_stack_file_that_interpolates_a_docker_cli_variable_is_refused():
    import pytest

    from stack_launcher.errors import BAD_CONFIG, LauncherError

    with pytest.raises(LauncherError) as caught:
        swarm.deploy_env({"PATH": "/bin"}, {"DOCKER_CONFIG": "/tmp/evil"}, frozenset({"DOCKER_CONFIG"}))
    assert caught.value.exit_code == BAD_CONFIG and "DOCKER_CONFIG" in caught.value.message
