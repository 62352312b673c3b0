"""A user backs up the local Infisical (its database and bootstrap secrets) into one age file,
checks it, and restores it, on the same machine or a new one.

Real engine, real compose, real PostgreSQL (postgres-test:15, tests/support/pg_image) with a
real volume; busybox stands in for Infisical (healthy once /api/status answers) and for Redis
(a tiny `redis-cli` script that logs what it was asked, never the password). Every launcher
run goes through a `docker` shim that logs its argv, and keeps its output, so the last test
can show that no secret value reached either.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import re
import select
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from dotenv import dotenv_values

from support.docker_stack import TEST_IMAGE
from support.processes import REPO_ROOT, minimal_env, run_launcher

PG_IMAGE = "postgres-test:15"
PG_BUILD = REPO_ROOT / "tests" / "support" / "pg_image" / "build.sh"
PASSPHRASE = "correct horse battery staple"
ARCHIVE = re.compile(r"infisical-backup-\d{8}T\d{6}Z\.(age|tar)")
BOOTSTRAP = ("INFISICAL_ENCRYPTION_KEY", "INFISICAL_AUTH_SECRET", "INFISICAL_POSTGRES_PASSWORD",
             "INFISICAL_REDIS_PASSWORD", "INFISICAL_ADMIN_PASSWORD")

REDIS_CLI = """#!/bin/sh
# Stands in for redis-cli: logs its arguments and whether the password came in REDISCLI_AUTH.
echo "$* auth=${REDISCLI_AUTH:+set}" >> /log/redis-cli.log
echo OK
"""

SEED = """
create table projects(id serial primary key, name text);
insert into projects(name) select 'project ' || g from generate_series(1, 3) g;
create table secrets(id serial primary key, project int, ciphertext bytea);
insert into secrets(project, ciphertext) select g % 3 + 1, decode(md5(g::text), 'hex') from generate_series(1, 17) g;
create schema audit;
create table audit."log entries"(id bigserial primary key, what text);
insert into audit."log entries"(what) select 'event ' || g from generate_series(1, 40) g;
create table empty_one(x int);
"""
TABLES = ("public.projects", "public.secrets", 'audit."log entries"', "public.empty_one")
ROWS_SQL = " union all ".join(
    f"select '{t}', count(*), md5(coalesce(string_agg(r::text, '|' order by r::text), '')) from {t} r" for t in TABLES)


def infisical_compose(image: str = TEST_IMAGE) -> dict:
    """The test's infisical/docker-compose.yml: the real file's services, names, variables
    and volume, with local images."""
    return {
        "services": {
            "infisical": {
                "image": image, "init": True,
                "environment": {
                    "ENCRYPTION_KEY": "${INFISICAL_ENCRYPTION_KEY:?INFISICAL_ENCRYPTION_KEY is not set}",
                    "AUTH_SECRET": "${INFISICAL_AUTH_SECRET:?INFISICAL_AUTH_SECRET is not set}",
                    "DB_CONNECTION_URI": "postgres://infisical:${INFISICAL_POSTGRES_PASSWORD:?missing}@infisical-db:5432/infisical",
                    "REDIS_URL": "redis://:${INFISICAL_REDIS_PASSWORD:?missing}@infisical-redis:6379",
                },
                "command": ["sh", "-c", "mkdir -p /www/api; echo ok > /www/api/status; exec httpd -f -p 8080 -h /www"],
                "healthcheck": {"test": ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/api/status"],
                                "interval": "1s", "timeout": "2s", "retries": 30},
                "depends_on": {"infisical-db": {"condition": "service_healthy"},
                               "infisical-redis": {"condition": "service_healthy"}},
            },
            "infisical-db": {
                "image": PG_IMAGE,
                "environment": {"POSTGRES_USER": "infisical", "POSTGRES_DB": "infisical",
                                "POSTGRES_PASSWORD": "${INFISICAL_POSTGRES_PASSWORD:?missing}"},
                "volumes": ["infisical_pg_data:/var/lib/postgresql/data"],
                "healthcheck": {"test": ["CMD-SHELL", "pg_isready -U infisical -d infisical"],
                                "interval": "1s", "timeout": "5s", "retries": 60},
            },
            "infisical-redis": {
                "image": TEST_IMAGE, "init": True, "command": ["sleep", "3600"],
                "environment": {"REDIS_PASSWORD": "${INFISICAL_REDIS_PASSWORD:?missing}", "PATH": "/opt/redis-bin:/bin"},
                "volumes": ["./redis-bin:/opt/redis-bin:ro", "./redis-log:/log"],
                "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "timeout": "2s", "retries": 30},
            },
        },
        "volumes": {"infisical_pg_data": {}},
    }


def lay_out(folder: Path) -> None:
    """A clone's files: .env.example, the Infisical compose file, the stand-in redis-cli."""
    (folder / "infisical").mkdir(parents=True)
    shutil.copy(REPO_ROOT / ".env.example", folder / ".env.example")
    (folder / "infisical" / "docker-compose.yml").write_text(json.dumps(infisical_compose(), indent=1))
    (folder / "redis-bin").mkdir()
    (folder / "redis-bin" / "redis-cli").write_text(REDIS_CLI)
    (folder / "redis-bin" / "redis-cli").chmod(0o755)
    (folder / "redis-log").mkdir()
    (folder / "redis-log").chmod(0o777)


def ensure_pg_image() -> None:
    if subprocess.run(["docker", "image", "inspect", PG_IMAGE], capture_output=True).returncode == 0:
        return
    built = subprocess.run(["bash", str(PG_BUILD)], capture_output=True, text=True, timeout=1200,
                           stdin=subprocess.DEVNULL)
    if built.returncode != 0:
        reason = f"cannot build {PG_IMAGE}: {(built.stderr or built.stdout).strip()[-300:]}"
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


class Machine:
    """A project folder with its own compose project name; every launcher run is recorded."""

    def __init__(self, folder: Path, name: str, shim: Path, outputs: list) -> None:
        self.dir, self.name, self.shim, self.outputs = folder, name, shim, outputs

    @property
    def infisical(self) -> str:
        return f"{self.name}-infisical"

    def run(self, *args: str, passphrase: str | None = PASSPHRASE) -> subprocess.CompletedProcess:
        env = minimal_env()
        env["PATH"] = f"{self.shim}{os.pathsep}{env['PATH']}"
        if passphrase is not None:
            env["INFISICAL_BACKUP_PASSPHRASE"] = passphrase
        result = run_launcher([*args, "-p", self.name], cwd=self.dir, env=env, timeout=240)
        self.outputs.append(result.stdout + result.stderr)
        return result

    def compose(self, *args: str, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["docker", "compose", "-p", self.infisical, "--project-directory", str(self.dir),
                "-f", str(self.dir / "infisical" / "docker-compose.yml"), "--env-file", str(self.dir / ".env"), *args]
        result = subprocess.run(argv, input=stdin, capture_output=True, timeout=180, env=minimal_env(),
                                stdin=None if stdin is not None else subprocess.DEVNULL)
        if check:
            assert result.returncode == 0, result.stderr.decode(errors="replace")
        return result

    def psql(self, sql: str, database: str = "infisical") -> str:
        return self.compose("exec", "-T", "infisical-db", "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-U", "infisical", "-d", database, stdin=sql.encode()).stdout.decode()

    def rows(self) -> list[str]:
        """Every row of every seeded table, as count and checksum per table."""
        return self.psql(ROWS_SQL + ";").split()

    def state(self, service: str) -> tuple[str, str]:
        out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={self.infisical}",
                              "--filter", f"label=com.docker.compose.service={service}", "--format",
                              "{{.ID}} {{.State}}"], capture_output=True, text=True, check=True).stdout.split()
        return (out[0], out[1]) if out else ("", "")

    def dotenv(self) -> dict:
        return dotenv_values(self.dir / ".env")

    def archives(self, folder: str = "backups") -> set[Path]:
        return {p for p in (self.dir / folder).glob("*") if ARCHIVE.fullmatch(p.name)} \
            if (self.dir / folder).is_dir() else set()

    def remove(self) -> None:
        subprocess.run(["docker", "compose", "-p", self.infisical, "down", "-v", "--remove-orphans", "-t", "0"],
                       capture_output=True, cwd="/", env=minimal_env(), timeout=120)


def scratch_leftovers(name: str) -> list[str]:
    """Containers, volumes and networks of any `restore --verify` scratch project of `name`."""
    found = []
    for kind, fmt in (("ps", "{{.Names}}"), ("volume", "{{.Name}}"), ("network", "{{.Name}}")):
        argv = ["docker", "ps", "-a", "--format", fmt] if kind == "ps" else ["docker", kind, "ls", "--format", fmt]
        found += [f"{kind}: {n}" for n in subprocess.run(argv, capture_output=True, text=True).stdout.split()
                  if f"{name}-restore-verify-" in n]
    return found


@pytest.fixture(scope="module")
def world(engine, tmp_path_factory):
    """The module's temp folder, the docker shim (logs every argv, then runs docker), and
    the output of every launcher run."""
    ensure_pg_image()
    root = tmp_path_factory.mktemp("backup")
    shim = root / "shim"
    shim.mkdir()
    log = root / "docker-argv.log"
    real = shutil.which("docker")
    (shim / "docker").write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {shlex.quote(str(log))}\n"
                                 f"exec {shlex.quote(real)} \"$@\"\n")
    (shim / "docker").chmod(0o755)
    machines: list[Machine] = []
    world = {"root": root, "shim": shim, "log": log, "outputs": [], "machines": machines}
    yield world
    for machine in machines:
        machine.remove()
        for leftover in scratch_leftovers(machine.name):
            kind, name = leftover.split(": ")
            subprocess.run(["docker", "rm" if kind == "ps" else kind, *(["-f"] if kind == "ps" else ["rm"]), name],
                           capture_output=True)


def new_machine(world, label: str) -> Machine:
    folder = world["root"] / label
    folder.mkdir()
    lay_out(folder)
    machine = Machine(folder, "bk" + os.urandom(4).hex(), world["shim"], world["outputs"])
    world["machines"].append(machine)
    return machine


@pytest.fixture(scope="module")
def installation(world):
    """A running test Infisical with rows in several tables, and its .env from `init`."""
    machine = new_machine(world, "installation")
    assert machine.run("init").returncode == 0
    machine.compose("up", "-d", "--wait")
    machine.psql(SEED)
    return machine


@pytest.fixture(scope="module")
def baseline(installation, world) -> Path:
    """An archive of the seeded installation, kept outside its backups/ folder."""
    result = installation.run("backup", "--output", str(world["root"] / "baseline"))
    assert result.returncode == 0, result.stderr
    (archive,) = (world["root"] / "baseline").iterdir()
    return archive


def decrypt(path: Path, passphrase: str = PASSPHRASE) -> bytes:
    from pyrage import passphrase as age

    return age.decrypt(path.read_bytes(), passphrase)


def members(tar_bytes: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def repack(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in parts.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def one_line(result) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def age_via_pty(args: list[str], typed: str) -> None:
    """Debian's age reads a passphrase only from a terminal: run it in one (`script`)."""
    result = subprocess.run(["script", "-qec", shlex.join(["age", *args]), "/dev/null"], input=typed, text=True,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------ the scenarios

def test_a_database_with_rows_in_several_tables_is_backed_up_wiped_and_restored_equal(installation):
    before = installation.rows()
    result = installation.run("backup")
    assert result.returncode == 0, result.stderr
    (archive,) = installation.archives()
    assert archive.suffix == ".age" and stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert f"Backup written: backups/{archive.name}" in result.stderr
    manifest = json.loads(members(decrypt(archive))["manifest.json"])
    assert manifest["tables"] == {"public.projects": 3, "public.secrets": 17, "audit.log entries": 40,
                                  "public.empty_one": 0}
    assert manifest["infisical_image"] == TEST_IMAGE and manifest["tool_version"]

    installation.compose("down", "--volumes", "-t", "0")  # the volume is wiped
    assert f"{installation.infisical}_infisical_pg_data" not in subprocess.run(
        ["docker", "volume", "ls", "--format", "{{.Name}}"], capture_output=True, text=True).stdout.split()
    (installation.dir / "redis-log" / "redis-cli.log").unlink(missing_ok=True)
    restored = installation.run("restore", f"backups/{archive.name}")
    assert restored.returncode == 0, restored.stderr
    assert "equal to its manifest; Infisical is healthy" in restored.stderr
    assert installation.rows() == before
    assert installation.archives() == {archive}  # no database was there: no backup of it first
    assert (installation.dir / "redis-log" / "redis-cli.log").read_text() == "FLUSHALL auth=set\n"
    assert installation.state("infisical")[1] == "running"


def test_a_restore_of_another_databases_archive_is_caught_by_the_counts(installation, baseline, tmp_path):
    before = installation.rows()
    installation.psql("create database other;", database="postgres")
    installation.psql("create table projects(id int); insert into projects values (1), (2);", database="other")
    other = installation.compose("exec", "-T", "infisical-db", "pg_dump", "-U", "infisical", "-Fc", "-d",
                                 "other").stdout
    installation.psql("drop database other;", database="postgres")
    parts = members(decrypt(baseline))
    manifest = json.loads(parts["manifest.json"])
    manifest["dump"].update(size=len(other), sha256=hashlib.sha256(other).hexdigest())
    parts.update({"manifest.json": json.dumps(manifest).encode(), "infisical.dump": other})
    from pyrage import passphrase as age

    wrong = tmp_path / "another-database.age"
    wrong.write_bytes(age.encrypt(repack(parts), PASSPHRASE))

    result = installation.run("restore", str(wrong))
    assert result.returncode == 1, result.stderr
    assert "the restore did not verify" in result.stderr and "public.secrets: 17 expected, no table found" in result.stderr
    pre = re.search(r"the state before the restore is in (backups/infisical-backup-\S+\.age): "
                    r"python start_services.py restore \1", result.stderr)
    assert pre and (installation.dir / pre.group(1)).is_file(), result.stderr

    back = installation.run("restore", pre.group(1))  # the way back it named
    assert back.returncode == 0, back.stderr
    assert installation.rows() == before


def test_a_wrong_passphrase_or_a_corrupted_archive_gives_one_line_and_changes_nothing(installation, baseline, tmp_path):
    env_before = (installation.dir / ".env").read_bytes()
    rows, db = installation.rows(), installation.state("infisical-db")
    files_before = sorted(p.name for p in installation.dir.iterdir()) + sorted(p.name for p in installation.archives())

    flipped = bytearray(baseline.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    (tmp_path / "corrupt.age").write_bytes(bytes(flipped))
    parts = members(decrypt(baseline))
    parts["infisical.dump"] = parts["infisical.dump"][:-1] + b"?"
    (tmp_path / "corrupt.tar").write_bytes(repack(parts))

    wrong = installation.run("restore", str(baseline), passphrase="not the passphrase")
    assert wrong.returncode == 6
    assert one_line(wrong) == f"error: wrong passphrase for {baseline} (nothing was changed)"
    corrupt = installation.run("restore", str(tmp_path / "corrupt.age"))
    assert corrupt.returncode == 6
    assert one_line(corrupt).startswith(f"error: {tmp_path / 'corrupt.age'} is corrupt: age cannot decrypt it")
    checksum = installation.run("restore", str(tmp_path / "corrupt.tar"), passphrase=None)
    assert checksum.returncode == 6
    assert one_line(checksum) == (f"error: {tmp_path / 'corrupt.tar'} is corrupt: infisical.dump does not match the "
                                  "size and sha256 in its manifest (nothing was changed)")

    compose_file = installation.dir / "infisical" / "docker-compose.yml"
    original = compose_file.read_text()
    compose_file.write_text(json.dumps(infisical_compose("busybox-test:newer")))
    try:
        other_image = installation.run("restore", str(baseline))
    finally:
        compose_file.write_text(original)
    assert other_image.returncode == 6
    assert one_line(other_image) == (
        f"error: {baseline} was made with Infisical {TEST_IMAGE}, but infisical/docker-compose.yml now runs "
        "busybox-test:newer; pass --force to restore it anyway (nothing was changed)")

    assert (installation.dir / ".env").read_bytes() == env_before
    assert installation.rows() == rows and installation.state("infisical-db") == db
    assert sorted(p.name for p in installation.dir.iterdir()) + sorted(
        p.name for p in installation.archives()) == files_before


def test_a_restore_whose_keys_differ_from_env_is_refused_and_with_force_changes_only_those_keys(installation, baseline):
    env_path = installation.dir / ".env"
    original = env_path.read_bytes()
    secret = installation.dotenv()["INFISICAL_AUTH_SECRET"]
    edited = original.replace(f"INFISICAL_AUTH_SECRET={secret}\n".encode(), b"INFISICAL_AUTH_SECRET=rotated-by-hand-1234\n")
    assert edited != original
    env_path.write_bytes(edited)
    baks_before = set(installation.dir.glob(".env.bak-*"))

    refused = installation.run("restore", str(baseline))
    assert refused.returncode == 6
    assert one_line(refused) == ("error: .env's INFISICAL_AUTH_SECRET differs from the archive's; pass --force to "
                                 "write the archive's value (after a backup of .env) (nothing was changed)")
    assert env_path.read_bytes() == edited

    forced = installation.run("restore", str(baseline), "--force")
    assert forced.returncode == 0, forced.stderr
    assert env_path.read_bytes() == original  # that one line, back as it was; every other byte kept
    (bak,) = set(installation.dir.glob(".env.bak-*")) - baks_before
    assert bak.read_bytes() == edited and stat.S_IMODE(bak.stat().st_mode) == 0o600
    assert f"previous file: {bak.name}" in forced.stderr


def test_a_restore_on_a_machine_without_env_works(world, installation, baseline):
    fresh = new_machine(world, "new-machine")
    result = fresh.run("restore", str(baseline))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((fresh.dir / ".env").stat().st_mode) == 0o600
    assert {k: fresh.dotenv()[k] for k in BOOTSTRAP} == {k: installation.dotenv()[k] for k in BOOTSTRAP}
    assert fresh.rows() == installation.rows()
    assert fresh.state("infisical")[1] == "running"
    fresh.remove()


def test_keep_deletes_only_its_own_archives(installation, tmp_path):
    folder = tmp_path / "kept"
    folder.mkdir()
    ours_old = folder / "infisical-backup-20200101T000000Z.age"
    ours_newer = folder / "infisical-backup-20200102T000000Z.tar"
    lookalike = folder / "infisical-backup-20190101T000000Z.age.copy"
    other_name = folder / "my-infisical-backup-20190101T000000Z.age"
    target = tmp_path / "somewhere-else.age"
    link = folder / "infisical-backup-20190102T000000Z.age"
    subfolder = folder / "infisical-backup-20190103T000000Z.age"
    for path in (ours_old, ours_newer, lookalike, other_name, target):
        path.write_bytes(b"not really an archive")
    link.symlink_to(target)
    subfolder.mkdir()
    (subfolder / "inside").write_text("x")

    result = installation.run("backup", "--output", str(folder), "--keep", "2", "--no-encrypt", passphrase=None)
    assert result.returncode == 0, result.stderr
    assert "warning: --no-encrypt" in result.stderr
    assert f"--keep: deleted 1 older archive(s): {ours_old.name}" in result.stderr
    new = {p for p in folder.iterdir() if ARCHIVE.fullmatch(p.name)} - {ours_newer, link, subfolder}
    assert len(new) == 1 and new.pop().suffix == ".tar"
    assert not ours_old.exists()
    assert all(p.exists() for p in (ours_newer, lookalike, other_name, target, subfolder / "inside"))
    assert link.is_symlink() and link.resolve() == target


def test_a_stopped_database_is_started_alone_for_the_backup_and_stopped_again(installation, tmp_path):
    installation.compose("stop", "infisical", "infisical-db")
    try:
        result = installation.run("backup", "--output", str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert "is not running: starting it alone" in result.stderr and "Stopped infisical-db again" in result.stderr
        assert installation.state("infisical-db")[1] == "exited"
        assert installation.state("infisical")[1] == "exited"
    finally:
        installation.compose("up", "-d", "--wait")


def test_verify_restores_into_a_scratch_project_and_leaves_nothing_behind(world, installation, baseline):
    env_before, rows, db = (installation.dir / ".env").read_bytes(), installation.rows(), installation.state("infisical-db")
    result = installation.run("restore", str(baseline), "--verify")
    assert result.returncode == 0, result.stderr
    assert "verified: restored into a scratch database, 4 tables and 60 rows, equal to its manifest" in result.stderr
    assert f"-p {installation.name}-restore-verify-" in world["log"].read_text()
    assert scratch_leftovers(installation.name) == []
    assert (installation.dir / ".env").read_bytes() == env_before
    assert installation.rows() == rows and installation.state("infisical-db") == db


def test_debian_age_decrypts_our_archive_and_restore_verify_reads_one_age_wrote(installation, baseline, tmp_path):
    plain = tmp_path / "decrypted-by-age.tar"
    age_via_pty(["-d", "-o", str(plain), str(baseline)], f"{PASSPHRASE}\n")
    assert list(members(plain.read_bytes())) == ["manifest.json", "infisical.dump", "bootstrap-keys.json"]

    by_age = tmp_path / "encrypted-by-age.age"
    age_via_pty(["-p", "-o", str(by_age), str(plain)], "typed into age\ntyped into age\n")
    result = installation.run("restore", str(by_age), "--verify", passphrase="typed into age")
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stderr
    assert scratch_leftovers(installation.name) == []


def test_without_a_passphrase_off_a_terminal_backup_names_the_options(installation):
    result = installation.run("backup", passphrase=None)
    assert result.returncode == 2
    assert one_line(result) == ("error: no passphrase: pass --passphrase-file FILE, set INFISICAL_BACKUP_PASSPHRASE, "
                                "or run on a terminal to be asked (or --no-encrypt)")


def on_a_terminal(machine: Machine, args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run the launcher with a terminal of its own (pty.fork), typing each answer when a
    prompt (a line ending in ": ") appears; its exit code and everything it printed."""
    env = minimal_env()
    env["PATH"] = f"{machine.shim}{os.pathsep}{env['PATH']}"
    argv = [sys.executable, str(REPO_ROOT / "start_services.py"), *args, "-p", machine.name]
    pid, fd = pty.fork()
    if pid == 0:  # the child: its own session, the pty its controlling terminal
        try:
            os.chdir(machine.dir)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    output, pending, deadline = b"", list(answers), time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                if pending and output.endswith(b": "):  # getpass prompts after turning echo off
                    os.write(fd, pending.pop(0).encode() + b"\n")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_on_a_terminal_backup_asks_the_passphrase_twice(installation, tmp_path):
    code, said = on_a_terminal(installation, ["backup", "--output", str(tmp_path)], ["first try", "second try"])
    assert code == 2 and "the two passphrases differ; nothing was written" in said, said
    assert list(tmp_path.iterdir()) == []
    code, said = on_a_terminal(installation, ["backup", "--output", str(tmp_path)], ["typed here", "typed here"])
    assert code == 0 and "Backup written" in said, said
    assert "typed here" not in said  # not echoed
    (archive,) = tmp_path.iterdir()
    assert "manifest.json" in members(decrypt(archive, "typed here"))


def test_no_secret_value_reaches_argv_output_or_any_other_file(world, installation, baseline, tmp_path):
    pass_file = tmp_path / "passphrase.txt"
    pass_file.write_text(PASSPHRASE + "\n")
    backed_up = installation.run("backup", "--passphrase-file", str(pass_file), passphrase=None)
    assert backed_up.returncode == 0, backed_up.stderr
    restored = installation.run("restore", str(baseline), "--passphrase-file", str(pass_file), passphrase=None)
    assert restored.returncode == 0, restored.stderr

    env = installation.dotenv()
    secrets = [env[k] for k in BOOTSTRAP] + [PASSPHRASE]
    assert all(len(s) >= 12 for s in secrets)
    argv_log = world["log"].read_text()
    assert " exec -T infisical-db " in argv_log and "pg_restore" in argv_log  # the shim saw the runs
    assert [s for s in secrets if s in argv_log] == []
    assert [s for s in secrets if any(s in output for output in world["outputs"])] == []
    allowed = re.compile(r"\.env|\.env\.bak-.*|.*\.age|.*\.tar")
    for folder in (world["root"], tmp_path):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink() and not allowed.fullmatch(path.name) and path != pass_file:
                data = path.read_bytes()
                assert [s for s in secrets if s.encode() in data] == [], path
