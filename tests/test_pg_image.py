"""The local PostgreSQL test image (tests/support/pg_image) behaves like the official postgres
image where `backup` and `restore` rely on it: the first start creates the user, password and
database; clients on a user network need the password; `pg_dump -Fc` streamed out through
`docker compose exec -T` restores with `pg_restore` into a fresh volume; a later
POSTGRES_PASSWORD does not change an existing database; `docker stop` is quick.

Real Docker engine, real PostgreSQL 15 (Debian's packages). Every container, volume and
network made here carries the label pg-image-test=<this run> and is removed afterwards.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from support.pg_image import pg_image_or_skip
from support.processes import minimal_env

LABEL = "pg-image-test"
READY_TIMEOUT_S = 120   # vfs copies the whole 210 MB layer at each container start


@pytest.fixture(scope="session")
def pg_image(engine) -> str:
    """postgres-test:15, built by tests/support/pg_image/build.sh when missing or outdated;
    skips when it cannot be built, fails in CI."""
    return pg_image_or_skip()


def docker(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
           check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(["docker", *args], env=env or minimal_env(), timeout=timeout,
                            capture_output=True, input=input,
                            stdin=None if input is not None else subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stderr.decode(errors='replace')}")
    return result


def text(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode().strip()


class Docker:
    """Containers, volumes and networks of one test, all removed by cleanup()."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.prefix = f"pgt-{secrets.token_hex(4)}"
        self.label = f"{LABEL}={self.prefix}"
        self._count = 0

    def _name(self, kind: str) -> str:
        self._count += 1
        return f"{self.prefix}-{kind}{self._count}"

    def volume(self) -> str:
        return text(docker("volume", "create", "--label", self.label, self._name("vol")))

    def network(self) -> str:
        name = self._name("net")
        docker("network", "create", "--label", self.label, name)
        return name

    def run(self, *command: str, env: dict[str, str] | None = None, volume: str | None = None,
            network: str | None = None, alias: str | None = None, detach: bool = True,
            extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[bytes] | str:
        """`docker run` the image. Values in `env` reach the container through the docker
        CLI's environment (`-e NAME`), so no password is on a command line here either.
        Detached: returns the container's name; else the finished run's result."""
        name = self._name("c")
        args = ["run", "--name", name, "--label", self.label]
        if detach:
            args.append("-d")
        cli_env = minimal_env()
        for key, value in (env or {}).items():
            args += ["-e", key]
            cli_env[key] = value
        if volume:
            args += ["-v", f"{volume}:/var/lib/postgresql/data"]
        if network:
            args += ["--network", network]
        if alias:
            args += ["--network-alias", alias]
        args += [*extra, self.image, *command]
        result = docker(*args, env=cli_env, check=detach, timeout=READY_TIMEOUT_S)
        return name if detach else result

    def cleanup(self) -> None:
        label = f"label={self.label}"
        containers = text(docker("ps", "-aq", "--filter", label, check=False)).split()
        if containers:
            docker("rm", "-f", "-v", *containers, check=False)
        volumes = text(docker("volume", "ls", "-q", "--filter", label, check=False)).split()
        if volumes:
            docker("volume", "rm", "-f", *volumes, check=False)
        networks = text(docker("network", "ls", "-q", "--filter", label, check=False)).split()
        if networks:
            docker("network", "rm", *networks, check=False)


@pytest.fixture
def dk(pg_image: str):
    d = Docker(pg_image)
    try:
        yield d
    finally:
        d.cleanup()


def logs(container: str) -> str:
    result = docker("logs", container, check=False)
    return (result.stdout + result.stderr).decode(errors="replace")


def wait_ready(container: str, user: str, db: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Until the project's healthcheck (`pg_isready -U user -d db`) passes in `container`."""
    deadline = time.monotonic() + timeout
    while True:
        if docker("exec", container, "pg_isready", "-U", user, "-d", db, check=False).returncode == 0:
            return
        state = json.loads(text(docker("inspect", "--format", "{{json .State}}", container)))
        if not state["Running"] or time.monotonic() > deadline:
            pytest.fail(f"{container} not ready (state {state['Status']}, exit {state['ExitCode']}); "
                        f"its log:\n{logs(container)}", pytrace=False)
        time.sleep(0.3)


def psql(container: str, sql: str, *, user: str, db: str, host: str | None = None,
         password: str | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """psql -tA in `container` (over its socket, or TCP to `host`); the password travels as
    PGPASSWORD in the exec's environment, never on a command line."""
    args, cli_env = ["exec"], minimal_env()
    if password is not None:
        args += ["-e", "PGPASSWORD"]
        cli_env["PGPASSWORD"] = password
    args += [container, "psql", "-X", "-w", "-v", "ON_ERROR_STOP=1", "-tA", "-U", user, "-d", db, "-c", sql]
    if host:
        args += ["-h", host]
    return docker(*args, env=cli_env, check=check)


def ip_of(container: str) -> str:
    networks = json.loads(text(docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", container)))
    return next(n["IPAddress"] for n in networks.values() if n["IPAddress"])


def until_resolved(run, timeout: float = 30):
    """Retry `run()` while the server's name does not resolve yet (seen with --iptables=false
    when a container reuses a just-freed address)."""
    deadline = time.monotonic() + timeout
    while True:
        result = run()
        if b"could not translate host name" not in result.stderr or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


# -- user scenarios --------------------------------------------------------------------------

def test_a_first_start_creates_the_user_and_database_and_answers_pg_isready(dk: Docker, tmp_path: Path):
    password = f"first-{secrets.token_hex(8)} with spaces"
    # Shims first on PATH log every initdb/pg_ctl/psql/postgres/setpriv command line the
    # entrypoint runs, so the test sees what `ps` would have shown.
    shims, argv_log = tmp_path / "shims", tmp_path / "argv"
    shims.mkdir()
    argv_log.mkdir()
    argv_log.chmod(0o777)
    (argv_log / "log").touch(mode=0o666)
    (argv_log / "log").chmod(0o666)
    shim = ('#!/bin/sh\nprintf "%s\\n" "${0##*/} $*" >>/argv/log\n'
            'real="$(PATH="${PATH#/shims:}" command -v "${0##*/}")"\nexec "$real" "$@"\n')
    for name in ("initdb", "pg_ctl", "psql", "postgres", "setpriv", "createdb"):
        (shims / name).write_text(shim)
        (shims / name).chmod(0o755)
    path = "/shims:/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    db = dk.run(env={"POSTGRES_USER": "app", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "appdb",
                     "PATH": path},
                volume=dk.volume(), extra=("-v", f"{shims}:/shims:ro", "-v", f"{argv_log}:/argv"))
    wait_ready(db, "app", "appdb")
    # The healthcheck as the compose files write it: CMD-SHELL needs /bin/sh.
    docker("exec", db, "sh", "-c", 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB"')

    assert text(psql(db, "select current_user, current_database(), "
                         "(select rolsuper from pg_roles where rolname = current_user)",
                     user="app", db="appdb")) == "app|appdb|t"
    assert text(psql(db, "select count(*) from pg_roles where rolname = 'postgres'", user="app", db="appdb")) == "0"
    # The server is PID 1, running as postgres, on a data directory only postgres can read.
    status = dict(line.split(":\t", 1) for line in text(docker("exec", db, "cat", "/proc/1/status")).splitlines()
                  if ":\t" in line)
    assert status["Name"] == "postgres"
    assert status["Uid"].split()[0] == text(docker("exec", db, "id", "-u", "postgres"))
    assert text(docker("exec", db, "stat", "-c", "%a %U", "/var/lib/postgresql/data")) == "700 postgres"
    assert password not in logs(db)

    # No command line held the password, and no file in the container holds it in clear
    # (the pwfile given to initdb is gone; the grep pattern comes from stdin, not argv).
    commands = (argv_log / "log").read_text()
    assert "initdb --username=app --pwfile=" in commands and "setpriv --reuid=postgres" in commands
    assert password not in commands
    assert password not in json.dumps(json.loads(text(docker("inspect", db)))[0]["Args"])
    found = docker("exec", "-i", db, "grep", "-rlF", "-f", "-", "/", "--exclude-dir=proc",
                   "--exclude-dir=sys", "--exclude-dir=dev", input=password.encode(), check=False)
    assert found.returncode == 1, f"the password is stored in clear in: {text(found)}"


def test_a_first_start_without_a_password_refuses_to_initialise(dk: Docker):
    result = dk.run(env={"POSTGRES_USER": "app"}, detach=False, volume=dk.volume())
    assert result.returncode != 0
    assert b"POSTGRES_PASSWORD" in result.stderr


def test_psql_from_another_container_on_the_network_needs_the_right_password(dk: Docker):
    password = "net-" + secrets.token_hex(8)
    net = dk.network()
    server = dk.run(env={"POSTGRES_USER": "infisical", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "infisical"},
                    volume=dk.volume(), network=net, alias="infisical-db")
    # The client: the same image's psql, in a second container on the user network.
    client = dk.run("infinity", network=net, extra=("--entrypoint", "sleep"))
    wait_ready(server, "infisical", "infisical")

    def connect(pw: str | None):
        return until_resolved(lambda: psql(client, "select current_user, inet_client_addr() is not null",
                                           user="infisical", db="infisical", host="infisical-db",
                                           password=pw, check=False))

    right = connect(password)
    assert right.returncode == 0, right.stderr.decode()
    assert text(right) == "infisical|t"   # over TCP, from the other container
    wrong = connect("not-" + password)
    assert wrong.returncode != 0
    assert b'password authentication failed for user "infisical"' in wrong.stderr
    none = connect(None)
    assert none.returncode != 0
    assert b"no password supplied" in none.stderr


def test_a_pg_dump_streamed_through_compose_exec_restores_into_a_fresh_volume(pg_image: str, stack):
    password = "dump-" + secrets.token_hex(8)
    # The project's infisical-db service, with the local image.
    stack.write_compose(text=json.dumps({
        "name": stack.name,
        "services": {"infisical-db": {
            "image": pg_image,
            "environment": {"POSTGRES_USER": "infisical", "POSTGRES_DB": "infisical",
                            "POSTGRES_PASSWORD": "${INFISICAL_POSTGRES_PASSWORD:?not set}"},
            "volumes": ["infisical_pg_data:/var/lib/postgresql/data"],
            "healthcheck": {"test": ["CMD-SHELL", "pg_isready -U infisical -d infisical"],
                            "interval": "1s", "timeout": "5s", "retries": 120},
        }},
        "volumes": {"infisical_pg_data": {}},
    }))
    stack.env["INFISICAL_POSTGRES_PASSWORD"] = password
    stack.compose("up", "-d", "--wait", timeout=240)

    def sql(statement: str) -> str:
        return stack.compose("exec", "-T", "infisical-db", "psql", "-X", "-v", "ON_ERROR_STOP=1", "-tA",
                             "-U", "infisical", "-d", "infisical", "-c", statement).stdout.strip()

    sql("create table secrets (id serial primary key, key text not null, value bytea);"
        "create table audit (at timestamptz default now(), note text);"
        "insert into secrets (key, value) select 'KEY_' || i || ' ключ 🔑', sha256(i::text::bytea)"
        " from generate_series(1, 5000) i;"
        "insert into audit (note) select 'note ' || i from generate_series(1, 321) i;")
    fingerprint = ("select (select count(*) from secrets) || ' ' || (select count(*) from audit) || ' ' ||"
                   " (select md5(string_agg(id || key || encode(value, 'hex'), ',' order by id)) from secrets)")
    before = sql(fingerprint)
    assert before.startswith("5000 321 ")

    def compose_exec(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["docker", "compose", "exec", "-T", "infisical-db", *args], cwd=stack.dir,
                              env=stack.env, capture_output=True, timeout=180, input=stdin,
                              stdin=None if stdin is not None else subprocess.DEVNULL)

    dump = compose_exec("pg_dump", "-U", "infisical", "-d", "infisical", "-Fc")
    assert dump.returncode == 0, dump.stderr.decode()
    assert dump.stdout.startswith(b"PGDMP"), dump.stdout[:40]   # the custom format, unmangled

    # A fresh volume: the old one is gone with `down -v`.
    stack.compose("down", "-v", "--timeout", "10")
    stack.compose("up", "-d", "--wait", timeout=240)
    assert sql("select count(*) from pg_tables where tablename in ('secrets', 'audit')") == "0"

    restore = compose_exec("pg_restore", "-U", "infisical", "-d", "infisical", "--exit-on-error",
                           "--no-owner", stdin=dump.stdout)
    assert restore.returncode == 0, restore.stderr.decode()
    assert sql(fingerprint) == before
    assert sql("select nextval('secrets_id_seq')") == "5001"   # the sequence came along too


def test_a_later_password_on_an_existing_volume_is_ignored_the_first_one_stays(dk: Docker):
    first, later = "first-" + secrets.token_hex(8), "later-" + secrets.token_hex(8)
    volume = dk.volume()
    env = {"POSTGRES_USER": "infisical", "POSTGRES_DB": "infisical"}
    db = dk.run(env={**env, "POSTGRES_PASSWORD": first}, volume=volume)
    wait_ready(db, "infisical", "infisical")
    docker("rm", "-f", db)

    db = dk.run(env={**env, "POSTGRES_PASSWORD": later}, volume=volume)
    wait_ready(db, "infisical", "infisical")
    assert "first start" not in logs(db)
    # TCP to the container's own address: not loopback, so the password is checked.
    address = ip_of(db)
    kept = psql(db, "select 1", user="infisical", db="infisical", host=address, password=first, check=False)
    assert kept.returncode == 0, kept.stderr.decode()
    ignored = psql(db, "select 1", user="infisical", db="infisical", host=address, password=later, check=False)
    assert ignored.returncode != 0
    assert b"password authentication failed" in ignored.stderr


def test_docker_stop_shuts_postgres_down_in_under_two_seconds(dk: Docker):
    db = dk.run(env={"POSTGRES_PASSWORD": "stop-" + secrets.token_hex(4)}, volume=dk.volume())
    wait_ready(db, "postgres", "postgres")
    assert text(docker("inspect", "--format", "{{.Config.StopSignal}}", db)) == "SIGINT"

    started = time.monotonic()
    docker("stop", db)   # the default 10 s grace: a server ignoring the signal would take it all
    took = time.monotonic() - started

    assert took < 2.0, f"docker stop took {took:.1f} s"
    assert text(docker("inspect", "--format", "{{.State.ExitCode}}", db)) == "0"
    assert "received fast shutdown request" in logs(db)
