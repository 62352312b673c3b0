"""The stack file `--target swarm` deploys, rendered from compose's model: which services,
which compose features are mapped or dropped, which keys become Docker secrets, and how
those are named. Pure functions: no engine needed."""
from __future__ import annotations

import hashlib
import re

from hypothesis import given, strategies as st

from stack_launcher import swarm_file
from support.processes import REPO_ROOT

MODEL = {
    "name": "localai",
    "networks": {"default": {"name": "localai_default"}},
    "volumes": {"pg": {"name": "localai_pg"}, "mine": {"name": "kept-as-named"}},
    "services": {
        "postgres": {"image": "postgres:16.9-alpine", "profiles": ["cpu"], "restart": "unless-stopped",
                     "container_name": "pg",
                     "environment": {"POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}",
                                     "POSTGRES_USER": "${POSTGRES_USER:-postgres}",
                                     "PGDATA": "/var/lib/postgresql/data"},
                     "volumes": [{"type": "volume", "source": "pg", "target": "/var/lib/postgresql/data",
                                  "volume": {}}],
                     "healthcheck": {"test": ["CMD", "pg_isready"], "start_interval": "1s"}},
        "app": {"image": "busybox", "restart": "on-failure:3",
                "depends_on": {"postgres": {"condition": "service_healthy", "required": True},
                               "gpu": {"condition": "service_started"}},
                "environment": {"DB_URL": "postgres://u:${POSTGRES_PASSWORD}@postgres/db"},
                "ports": [{"host_ip": "127.0.0.1", "mode": "ingress", "protocol": "tcp", "published": "8080",
                           "target": 80},
                          {"mode": "ingress", "protocol": "tcp", "published": "8443", "target": 443}]},
        "gpu": {"image": "ollama/ollama", "profiles": ["gpu-nvidia"],
                "deploy": {"resources": {"reservations": {"devices": [{"driver": "nvidia"}]}}}},
    },
}
NAMES = {"POSTGRES_PASSWORD": "localai_POSTGRES_PASSWORD_abc", "POSTGRES_USER": "localai_POSTGRES_USER_def"}


def test_only_the_chosen_profiles_services_and_no_compose_only_keys():
    rendered = swarm_file.render(MODEL, "localai", ("cpu",), NAMES)
    assert rendered.services == ["app", "postgres"]
    stack = rendered.stack
    assert stack["version"] == "3.8" and "name" not in stack
    pg = stack["services"]["postgres"]
    assert "profiles" not in pg and "container_name" not in pg and "restart" not in pg
    assert pg["deploy"]["restart_policy"] == {"condition": "any"}
    assert "start_interval" not in pg["healthcheck"]
    app = stack["services"]["app"]
    assert app["deploy"]["restart_policy"] == {"condition": "on-failure", "max_attempts": 3}
    assert app["depends_on"] == ["postgres"]  # the list form, without the dropped gpu service
    # a port compose binds to 127.0.0.1 is not opened on every interface of every node
    assert app["ports"] == [{"mode": "ingress", "protocol": "tcp", "published": 8443, "target": 443}]
    assert any(note.startswith("app: port 8080 not published") for note in rendered.notes)


def test_names_compose_made_up_are_left_to_the_stack_and_the_users_own_are_kept():
    stack = swarm_file.render(MODEL, "localai", ("cpu",), NAMES).stack
    assert stack["volumes"] == {"pg": None, "mine": {"name": "kept-as-named"}}
    assert stack["networks"] == {"default": None}


def test_an_exact_reference_read_by_the_image_as_a_file_becomes_a_docker_secret():
    rendered = swarm_file.render(MODEL, "localai", ("cpu",), NAMES)
    pg = rendered.stack["services"]["postgres"]
    assert pg["environment"] == {"POSTGRES_PASSWORD_FILE": "/run/secrets/POSTGRES_PASSWORD",
                                 "POSTGRES_USER": "${POSTGRES_USER:-postgres}",  # a default: not exactly the key
                                 "PGDATA": "/var/lib/postgresql/data"}
    assert pg["secrets"] == [{"source": "localai_POSTGRES_PASSWORD_abc", "target": "POSTGRES_PASSWORD"}]
    assert rendered.stack["secrets"] == {"localai_POSTGRES_PASSWORD_abc": {"external": True,
                                                                            "name": "localai_POSTGRES_PASSWORD_abc"}}
    assert rendered.file_keys == {"POSTGRES_PASSWORD": {"postgres"}}
    # app's URL embeds the password: it stays in the environment, so the key is still interpolated
    assert rendered.interpolated == {"POSTGRES_PASSWORD", "POSTGRES_USER"}


def test_a_service_with_a_named_volume_is_placed_by_a_node_label():
    rendered = swarm_file.render(MODEL, "localai", ("cpu",), NAMES)
    assert rendered.constraints == {"postgres": ["localai.volume.pg"]}
    assert rendered.stack["services"]["postgres"]["deploy"]["placement"] == {
        "constraints": ["node.labels.localai.volume.pg == true"]}


def test_a_gpu_reservation_is_dropped_with_a_note():
    rendered = swarm_file.render(MODEL, "localai", ("gpu-nvidia",), NAMES)
    assert rendered.services == ["app", "gpu"]
    assert "devices" not in rendered.stack["services"]["gpu"]["deploy"]["resources"]["reservations"]
    assert any("GPU" in note for note in rendered.notes)


def test_image_names_are_matched_without_registry_tag_or_digest():
    assert swarm_file.image_repository("postgres:16.9-alpine") == "postgres"
    assert swarm_file.image_repository("docker.io/library/postgres:16@sha256:" + "0" * 64) == "postgres"
    assert swarm_file.image_repository("n8nio/n8n:1.94.1") == "n8nio/n8n"
    assert swarm_file.image_repository("localhost:5000/n8nio/n8n") == "n8nio/n8n"
    assert swarm_file.image_repository("ollama/ollama") == "ollama/ollama"


KEYS = st.text(alphabet="ABCXYZ_09.-[] ", min_size=1, max_size=120)


@given(KEYS, st.text(max_size=50), st.text(alphabet="abc-_9", min_size=1, max_size=40))
def test_a_secret_name_is_at_most_64_characters_of_the_allowed_ones(key, value, stack):
    name = swarm_file.secret_name(stack, key, value, b"k" * 32)
    assert len(name) <= 64
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9]", name), name


@given(KEYS, KEYS, st.text(max_size=20))
def test_keys_that_sanitise_alike_still_get_different_names(a, b, value):
    if a != b:
        assert swarm_file.secret_name("s", a, value, b"k" * 32) != swarm_file.secret_name("s", b, value, b"k" * 32)


def test_a_changed_value_gives_a_new_name_and_the_name_is_no_plain_hash_of_the_value():
    one = swarm_file.secret_name("localai", "POSTGRES_PASSWORD", "hunter2", b"k" * 32)
    assert one != swarm_file.secret_name("localai", "POSTGRES_PASSWORD", "hunter3", b"k" * 32)
    assert one == swarm_file.secret_name("localai", "POSTGRES_PASSWORD", "hunter2", b"k" * 32)
    assert one != swarm_file.secret_name("localai", "POSTGRES_PASSWORD", "hunter2", b"j" * 32)
    assert hashlib.sha256(b"hunter2").hexdigest()[:24] not in one


def test_interpolation_for_the_plan_follows_the_stack_loaders_forms():
    values = {"A": "x$y", "E": ""}
    assert swarm_file.interpolate("${A}/$A/${A:?m}/$$A", values) == "x$y/x$y/x$y/$A"
    assert swarm_file.interpolate("${E:-d}|${E-d}|${U-d}|${A:+set}|${U:+set}", values) == "d||d|set|"


def test_env_files_are_handed_to_the_stack_loader_as_paths_and_a_missing_optional_one_is_left_out(tmp_path):
    present = tmp_path / "app.env"
    present.write_text("A=1\n")
    model = {"name": "p", "services": {"app": {"image": "busybox", "env_file": [
        {"path": str(present), "required": True}, {"path": str(tmp_path / "absent.env"), "required": False}]}}}
    assert swarm_file.render(model, "p", (), {}).stack["services"]["app"]["env_file"] == [str(present)]


def test_the_stacks_neo4j_minio_and_n8n_read_their_secrets_from_files_and_clickhouse_keeps_its_password():
    """The images the stack pins, as docker-compose.yml names them (docs/swarm.md cites each
    image's source); ClickHouse is left out on purpose (a known login bug with the file)."""
    pinned = {line.split("image:", 1)[1].strip().split("@")[0]
              for line in (REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8").splitlines()
              if line.strip().startswith("image:")}
    image = {repo: next(i for i in pinned if swarm_file.image_repository(i) == repo)
             for repo in ("neo4j", "minio/minio", "clickhouse/clickhouse-server", "n8nio/n8n")}
    model = {"services": {
        "neo4j": {"image": image["neo4j"], "environment": {"NEO4J_AUTH": "${NEO4J_AUTH:?x}"}},
        "minio": {"image": image["minio/minio"], "environment": {
            "MINIO_ROOT_USER": "${MINIO_ROOT_USER:-minio}", "MINIO_ROOT_PASSWORD": "${MINIO_ROOT_PASSWORD:?x}"}},
        "clickhouse": {"image": image["clickhouse/clickhouse-server"],
                       "environment": {"CLICKHOUSE_PASSWORD": "${CLICKHOUSE_PASSWORD:?x}"}},
        "n8n": {"image": image["n8nio/n8n"], "environment": {"N8N_ENCRYPTION_KEY": "${N8N_ENCRYPTION_KEY:?x}"}},
    }}
    names = {key: f"localai_{key}_0" for key in ("NEO4J_AUTH", "MINIO_ROOT_PASSWORD", "CLICKHOUSE_PASSWORD",
                                                 "N8N_ENCRYPTION_KEY")}
    services = swarm_file.render(model, "localai", (), names).stack["services"]
    assert services["neo4j"]["environment"] == {"NEO4J_AUTH_FILE": "/run/secrets/NEO4J_AUTH"}
    assert services["minio"]["environment"] == {"MINIO_ROOT_USER": "${MINIO_ROOT_USER:-minio}",  # has a default
                                                "MINIO_ROOT_PASSWORD_FILE": "/run/secrets/MINIO_ROOT_PASSWORD"}
    assert services["n8n"]["environment"] == {"N8N_ENCRYPTION_KEY_FILE": "/run/secrets/N8N_ENCRYPTION_KEY"}
    assert services["clickhouse"]["environment"] == {"CLICKHOUSE_PASSWORD": "${CLICKHOUSE_PASSWORD:?x}"}


def test_a_list_form_environment_keeps_every_value_and_a_bare_key_is_handed_to_the_stack():
    """Compose prints `environment:` as written; `- KEY` (or `KEY:` with no value) means the
    value from the env files or the shell, which only reaches the container as `${KEY}`."""
    model = {"name": "p", "services": {
        "pg": {"image": "postgres:16", "environment": ["POSTGRES_PASSWORD=${POSTGRES_PASSWORD}", "BARE_SECRET",
                                                        "URL=a=b=${EXACT_KEY}", "DOLLAR=$$literal"]},
        "app": {"image": "busybox", "environment": {"NULL_SECRET": None, "MODE": "plain"}}}}
    names = {"POSTGRES_PASSWORD": "p_POSTGRES_PASSWORD_0"}
    rendered = swarm_file.render(model, "p", (), names)
    pg = rendered.stack["services"]["pg"]
    assert pg["environment"] == {"POSTGRES_PASSWORD_FILE": "/run/secrets/POSTGRES_PASSWORD",
                                 "BARE_SECRET": "${BARE_SECRET}", "URL": "a=b=${EXACT_KEY}", "DOLLAR": "$$literal"}
    assert pg["secrets"] == [{"source": "p_POSTGRES_PASSWORD_0", "target": "POSTGRES_PASSWORD"}]
    assert rendered.stack["services"]["app"]["environment"] == {"NULL_SECRET": "${NULL_SECRET}", "MODE": "plain"}
    assert rendered.interpolated == {"BARE_SECRET", "EXACT_KEY", "NULL_SECRET"}


def test_a_variable_the_services_own_healthcheck_or_command_reads_keeps_its_plain_value():
    """The stack's postgres healthcheck runs `pg_isready -U "$$POSTGRES_USER"`: with only
    POSTGRES_USER_FILE set it would ask for the wrong user and never get healthy."""
    model = {"services": {"pg": {
        "image": "postgres:16.9-alpine",
        "environment": {"POSTGRES_USER": "${POSTGRES_USER}", "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD}"},
        "healthcheck": {"test": ["CMD-SHELL", 'pg_isready -U "$$POSTGRES_USER"']},
        "command": ["sh", "-c", "echo $${POSTGRES_USERNAME}"]}}}  # another variable: no match
    names = {"POSTGRES_USER": "s_U_0", "POSTGRES_PASSWORD": "s_P_0"}
    rendered = swarm_file.render(model, "s", (), names)
    assert rendered.stack["services"]["pg"]["environment"] == {
        "POSTGRES_USER": "${POSTGRES_USER}", "POSTGRES_PASSWORD_FILE": "/run/secrets/POSTGRES_PASSWORD"}
    assert rendered.file_keys == {"POSTGRES_PASSWORD": {"pg"}}


def test_top_level_extension_sections_are_dropped_and_their_keys_not_handed_over():
    model = {"x-shared": {"environment": {"UNUSED_SECRET": "${UNUSED_SECRET}"}},
             "services": {"app": {"image": "busybox", "environment": {"A": "${A}"}}}}
    rendered = swarm_file.render(model, "s", (), {})
    assert "x-shared" not in rendered.stack
    assert rendered.interpolated == {"A"}


def test_a_bare_environment_entry_without_a_value_anywhere_stays_unset_as_in_compose():
    model = {"services": {"app": {"image": "busybox", "environment": ["KNOWN", "UNKNOWN", "EMPTY"]}}}
    rendered = swarm_file.render(model, "s", (), {}, defined=frozenset({"KNOWN", "EMPTY"}))
    assert rendered.stack["services"]["app"]["environment"] == {"KNOWN": "${KNOWN}", "EMPTY": "${EMPTY}"}
    assert rendered.interpolated == {"KNOWN", "EMPTY"}
