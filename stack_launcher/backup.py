"""`backup` and `restore`: the local Infisical's database and bootstrap secrets in one archive.

An archive is one file, `infisical-backup-<UTC time>.age` (`.tar` with --no-encrypt), mode
0600, written atomically. Inside, a tar of three members:
    manifest.json        what it is: Infisical's image, this tool's version, the time, the
                         dump's size and sha256, the row count of every table; no secret
    infisical.dump       `pg_dump -Fc` of Infisical's database
    bootstrap-keys.json  `.env`'s bootstrap secrets (keys.classify's "bootstrap" category)
The tar is encrypted with age's passphrase mode (pyrage), which Debian's `age -d` reads too.

How it stays trustworthy (restic and borg are the models):
- one consistent moment: the row counts and the dump come from one snapshot (a REPEATABLE
  READ transaction exports it, `pg_dump --snapshot` uses it), so a restore can be proved
  against the counts even while Infisical kept writing during the backup;
- no plaintext dump on disk: it travels from the container into memory, then into the
  encrypted archive. (process.py captures output as text, so it travels base64-encoded.)
- no value in argv: every program in a container reads the container's own environment
  (POSTGRES_USER, REDIS_PASSWORD) through `sh -c '... "$VAR" ...'`, and the dump goes to
  pg_restore on stdin;
- retention deletes only files this tool names (`infisical-backup-<stamp>.<age|tar>`,
  regular files, never a symlink);
- a restore checks everything it can before changing anything (passphrase, checksums,
  Infisical's image, conflicting keys), takes a backup of what is there first, and proves
  itself by the row counts; `--verify` restores into a scratch project and removes it.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import secrets as _random
import stat
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

from . import __version__, compose, engine
from .envfile import TEMP_MARK, backup_copy, quote, with_keys, write_private
from .errors import BAD_CONFIG, DOCKER_UNAVAILABLE, FAILED, OK, USAGE, LauncherError
from .keys import BOOTSTRAP, LAUNCHER_SETTINGS, Classes, classify, referenced_variables
from .masking import Masker
from .output import Output
from .process import Result, Timeout, run_captured
from .secret import Secret
from .settings import Settings, require_dotenv

APP, DB, REDIS = "infisical", "infisical-db", "infisical-redis"
DEFAULT_FOLDER = "backups"
PASSPHRASE_VAR = "INFISICAL_BACKUP_PASSPHRASE"
ARCHIVE_NAME = re.compile(r"infisical-backup-(\d{8}T\d{6}Z)\.(age|tar)")
STAMP = "%Y%m%dT%H%M%SZ"
FORMAT, FORMAT_VERSION = "start_services/infisical-backup", 1
MANIFEST, DUMP, KEYS = "manifest.json", "infisical.dump", "bootstrap-keys.json"
AGE_HEADERS = (b"age-encryption.org/v1\n", b"-----BEGIN AGE ENCRYPTED FILE-----")
DUMP_MAGIC = b"PGDMP"  # the first bytes of every pg_dump custom-format archive
DB_WAIT = 120.0  # seconds for the database (and Redis) to be healthy
APP_WAIT = 180.0  # seconds for Infisical to be healthy after a restore
EXEC_TIMEOUT = 1800.0  # a dump or a restore of a large database

# --- what runs inside the containers: values from the container's own environment ------------

# psql and pg_restore connect as the container's POSTGRES_USER over the local socket (no
# password: the images trust local connections), to its POSTGRES_DB.
_PSQL = 'exec psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"'
# One query, exact counts: count(*) of every table, run through query_to_xml.
_COUNTS_SQL = """\
select coalesce(json_object_agg(t.name, t.n order by t.name), '{}')
from (select format('%s.%s', table_schema, table_name) as name,
             (xpath('/row/n/text()', query_to_xml(format('select count(*) as n from %I.%I', table_schema, table_name),
                                                  false, true, '')))[1]::text::bigint as n
      from information_schema.tables
      where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')) t;
"""
# The dump and the counts from one snapshot: psql holds a REPEATABLE READ transaction open,
# exports its snapshot, runs pg_dump with it (`\!`), then counts in the same transaction.
# pg_dump's bytes are base64 lines; its exit status follows as `#status N` (no pipefail in
# dash or busybox sh, hence the fd juggling); the counts' JSON is the last line.
_DUMP_SQL = """\
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_export_snapshot() AS snap \\gset
\\setenv START_SERVICES_SNAPSHOT :snap
\\! exec 3>&1; s=$( { { pg_dump -U "$POSTGRES_USER" -d "$POSTGRES_DB" -Fc --snapshot="$START_SERVICES_SNAPSHOT"; echo $? >&4; } | base64 >&3; } 4>&1 ); echo "#status ${s:-1}"
""" + _COUNTS_SQL + "COMMIT;\n"
# Drop and create the database, connected to `postgres`; then the role's password follows
# the container's POSTGRES_PASSWORD (from .env), read by psql itself (`printenv` has only the
# name in its argv): a volume initialised with another password would lock Infisical out.
_RECREATE = ('if [ -n "${POSTGRES_PASSWORD:-}" ]; then p=1; else p=0; fi; '
             'exec psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres '
             '-v db="$POSTGRES_DB" -v owner="$POSTGRES_USER" -v setpw="$p"')
_RECREATE_SQL = """\
DROP DATABASE IF EXISTS :"db" WITH (FORCE);
CREATE DATABASE :"db" OWNER :"owner";
\\if :setpw
\\set pw `printenv POSTGRES_PASSWORD`
ALTER ROLE CURRENT_USER PASSWORD :'pw';
\\endif
"""
_RESTORE = ('exec pg_restore -U "$POSTGRES_USER" -d "$POSTGRES_DB" --exit-on-error --no-owner --no-privileges')
# The Redis password reaches redis-cli in its environment (REDISCLI_AUTH), never its argv.
_FLUSH = 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli FLUSHALL'


# ------------------------------------------------------------------------------ passphrases

def passphrase_from(file: Path | None, shell: Mapping[str, str], *, confirm: bool,
                    ask: Callable[[str], str] | None = None) -> Secret:
    """--passphrase-file, else INFISICAL_BACKUP_PASSPHRASE, else a prompt (twice when
    `confirm`) on a terminal; exit 2 naming the options when there is none."""
    if file is not None:
        return _read_passphrase_file(file)
    if shell.get(PASSPHRASE_VAR):
        return Secret(shell[PASSPHRASE_VAR])
    import sys

    if ask is None and not sys.stdin.isatty():
        raise LauncherError(f"no passphrase: pass --passphrase-file FILE, set {PASSPHRASE_VAR}, or run on a terminal "
                            "to be asked" + (" (or --no-encrypt)" if confirm else ""), USAGE)
    if ask is None:
        import getpass

        ask = getpass.getpass
    try:
        first = ask("Passphrase for the backup: " if confirm else "Passphrase of the archive: ")
        if not first:
            raise LauncherError("the passphrase is empty", USAGE)
        if confirm and ask("Same passphrase again: ") != first:
            raise LauncherError("the two passphrases differ; nothing was written", USAGE)
    except EOFError:  # Ctrl-D at the prompt
        raise LauncherError("no passphrase was typed", USAGE) from None
    return Secret(first)


def _read_passphrase_file(path: Path) -> Secret:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LauncherError(f"--passphrase-file {path}: no such file", BAD_CONFIG) from None
    except OSError as exc:
        raise LauncherError(f"--passphrase-file {path}: {exc.strerror or exc.__class__.__name__}", BAD_CONFIG) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LauncherError(f"--passphrase-file {path} is not UTF-8 text", BAD_CONFIG) from None
    text = text.removesuffix("\n").removesuffix("\r")  # one line, as `echo pw > file` writes it
    if not text:
        raise LauncherError(f"--passphrase-file {path} is empty", BAD_CONFIG)
    return Secret(text)


def _pyrage():
    try:
        from pyrage import passphrase
    except ImportError:
        raise LauncherError("pyrage (age encryption) is not installed in this Python", BAD_CONFIG,
                            "install the launcher's dependencies: .venv/bin/pip install -e .") from None
    return passphrase


# ------------------------------------------------------------------------------ the archive

@dataclass(frozen=True)
class Archive:
    manifest: dict
    dump: bytes
    keys: dict[str, str]
    encrypted: bool

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.manifest["tables"])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack(manifest: dict, dump: bytes, keys: Mapping[str, str]) -> bytes:
    """The tar (in memory): manifest first, so `tar -tvf` and a reader see it at once."""
    keys_bytes = json.dumps(dict(keys), indent=2, sort_keys=True).encode("utf-8") + b"\n"
    manifest = dict(manifest, bootstrap_keys={"file": KEYS, "names": sorted(keys), "size": len(keys_bytes),
                                              "sha256": _sha256(keys_bytes)})
    members = ((MANIFEST, json.dumps(manifest, indent=2).encode("utf-8") + b"\n"), (DUMP, dump), (KEYS, keys_bytes))
    buffer = io.BytesIO()
    mtime = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, mtime
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def is_encrypted(data: bytes) -> bool:
    return data.startswith(AGE_HEADERS)


def seal(tar_bytes: bytes, passphrase: Secret | None) -> bytes:
    if passphrase is None:
        return tar_bytes
    return _pyrage().encrypt(tar_bytes, passphrase.reveal())


def read_archive(path: Path, passphrase: Callable[[], Secret], shown: str) -> tuple[Archive, Secret | None]:
    """The archive at `path`, decrypted and checked; exit 6 (one line) when it cannot be
    opened, the passphrase is wrong, or a checksum or the manifest does not match."""
    if not path.is_file():
        raise LauncherError(f"no archive at {shown}" if not path.exists() else f"{shown} is not a file", BAD_CONFIG)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LauncherError(f"cannot read {shown}: {exc.strerror or exc.__class__.__name__}", BAD_CONFIG) from None
    secret = None
    if is_encrypted(data):
        secret = passphrase()
        age = _pyrage()
        from pyrage import DecryptError

        try:
            data = age.decrypt(data, secret.reveal())
        except DecryptError as exc:
            # age says "Decryption failed" when no passphrase stanza opens with this one; a
            # damaged body or header says otherwise ("decryption error", "Header is invalid").
            if str(exc).strip() == "Decryption failed":
                raise LauncherError(f"wrong passphrase for {shown} (nothing was changed)", BAD_CONFIG) from None
            raise LauncherError(f"{shown} is corrupt: age cannot decrypt it ({_one_line(str(exc))}; nothing was "
                                "changed)", BAD_CONFIG) from None
    return unpack(data, shown, encrypted=secret is not None), secret


def _one_line(text: str) -> str:
    return " ".join(text.split())[:120] or "no reason given"


def unpack(tar_bytes: bytes, shown: str, encrypted: bool) -> Archive:
    def corrupt(why: str) -> LauncherError:
        return LauncherError(f"{shown} is corrupt: {why} (nothing was changed)", BAD_CONFIG)

    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for info in tar:
                if info.name in (MANIFEST, DUMP, KEYS) and info.isreg():  # never extracted to disk
                    handle = tar.extractfile(info)
                    members[info.name] = handle.read() if handle else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise corrupt(f"not a readable archive ({exc.__class__.__name__})") from None
    missing = [name for name in (MANIFEST, DUMP, KEYS) if name not in members]
    if missing:
        raise corrupt(f"{', '.join(missing)} missing")
    try:
        manifest = json.loads(members[MANIFEST])
        keys = json.loads(members[KEYS])
    except (ValueError, UnicodeDecodeError):
        raise corrupt("its manifest or key list is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise corrupt("it is not an archive of `start_services.py backup`")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise LauncherError(f"{shown} has archive format {manifest.get('format_version')!r}; this version reads "
                            f"{FORMAT_VERSION} (nothing was changed)", BAD_CONFIG,
                            "restore it with the version of start_services.py named in its manifest")
    try:
        dump_meta, keys_meta, tables = manifest["dump"], manifest["bootstrap_keys"], manifest["tables"]
        checks = ((DUMP, dump_meta), (KEYS, keys_meta))
        for name, meta in checks:
            if len(members[name]) != meta["size"] or _sha256(members[name]) != meta["sha256"]:
                raise corrupt(f"{name} does not match the size and sha256 in its manifest")
        if not isinstance(keys, dict) or sorted(keys) != sorted(keys_meta["names"]) or \
                not all(isinstance(v, str) for v in keys.values()):
            raise corrupt("the bootstrap keys do not match its manifest")
        if not isinstance(tables, dict) or not all(isinstance(n, int) for n in tables.values()) or \
                not isinstance(manifest["infisical_image"], str):
            raise corrupt("its manifest lacks the table counts or the image")
    except (KeyError, TypeError):
        raise corrupt("its manifest lacks a field") from None
    if not members[DUMP].startswith(DUMP_MAGIC):
        raise corrupt("the dump is not a pg_dump custom-format archive")
    return Archive(manifest, members[DUMP], keys, encrypted)


def _write_archive(folder: Path, data: bytes, suffix: str) -> Path:
    """`data` as `folder/infisical-backup-<now>.<suffix>`, 0600, atomically (a temp file in
    the same folder, fsynced, then linked into place, so an archive is never overwritten)."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise LauncherError(f"cannot create {folder}: {exc.strerror or exc.__class__.__name__}", BAD_CONFIG) from None
    if not folder.is_dir():
        raise LauncherError(f"--output {folder} is not a folder", BAD_CONFIG)
    for stale in folder.glob(f"infisical-backup{TEMP_MARK}*"):  # left by a run killed mid-write
        try:
            if stat.S_ISREG(os.lstat(stale).st_mode) and time.time() - os.lstat(stale).st_mtime > 3600:
                stale.unlink()  # an hour old: not another project's backup still being written here
        except OSError:
            pass
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"infisical-backup{TEMP_MARK}", dir=folder)
    except OSError as exc:
        raise LauncherError(f"cannot write in {folder}: {exc.strerror or exc.__class__.__name__}", BAD_CONFIG) from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        for _ in range(5):
            final = folder / f"infisical-backup-{datetime.now(timezone.utc).strftime(STAMP)}.{suffix}"
            try:
                os.link(tmp, final)  # fails rather than replace an archive of the same second
            except FileExistsError:
                time.sleep(1.05 - time.time() % 1)
                continue
            except OSError:  # a file system without hard links: we hold the project lock
                if final.exists() or final.is_symlink():
                    time.sleep(1.05 - time.time() % 1)
                    continue
                os.replace(tmp, final)
            break
        else:
            raise LauncherError(f"cannot find a free archive name in {folder}", BAD_CONFIG)
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return final


def prune(folder: Path, keep: int, written: Path) -> list[Path]:
    """Delete all but the newest `keep` archives in `folder` (the one just `written` always
    stays). Only regular files named exactly as this tool names them; never a symlink, a
    folder, or anything else."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            m = ARCHIVE_NAME.fullmatch(entry.name)
            if m and entry.is_file(follow_symlinks=False) and entry.name != written.name:
                found.append((m.group(1), entry.name))
    found.sort(reverse=True)
    doomed = [folder / name for _, name in found[max(0, keep - 1):]]
    for path in doomed:
        if stat.S_ISREG(os.lstat(path).st_mode):
            path.unlink()
    return doomed


# ------------------------------------------------------------------------------ the compose project

@dataclass(frozen=True)
class Layout:
    """What infisical/docker-compose.yml says, read without any secret."""

    image: str  # the `infisical` service's image
    db_image: str
    volume: str | None  # the engine's name of the database's named volume


def read_layout(settings: Settings) -> Layout:
    path = settings.infisical_compose_file
    if not path.is_file():
        raise LauncherError(f"no {path.relative_to(settings.project_dir)} in {settings.project_dir}: there is no "
                            "local Infisical here", BAD_CONFIG)
    files_only = compose.Target(settings.project_dir, settings.infisical_project_name, (path,), (Path(os.devnull),))
    result = compose.capture(files_only.config_json(interpolate=False), _env(settings), settings.project_dir, 60)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise LauncherError(f"docker compose cannot read {path.name}: {(lines or ['no message'])[-1].strip()}",
                            BAD_CONFIG)
    try:
        model = json.loads(result.stdout)
        services = model["services"]
        image, db_image = services[APP]["image"], services[DB]["image"]
        volume = None
        for mount in services[DB].get("volumes") or []:
            if mount.get("type") == "volume" and mount.get("source"):
                volume = (model.get("volumes") or {}).get(mount["source"], {}).get("name") or \
                    f"{settings.infisical_project_name}_{mount['source']}"
    except (ValueError, KeyError, TypeError):
        raise LauncherError(f"{path.name} has no `{APP}` and `{DB}` services with images", BAD_CONFIG) from None
    return Layout(str(image), str(db_image), volume)


def _env(settings: Settings) -> dict[str, str]:
    """Compose's environment: the shell's, without the backup passphrase."""
    env = compose.compose_env(settings.shell, ())
    env.pop(PASSPHRASE_VAR, None)
    return env


def _target(settings: Settings) -> compose.Target:
    return compose.Target(settings.project_dir, settings.infisical_project_name, (settings.infisical_compose_file,),
                          (settings.env_file,))


def volume_exists(name: str | None, settings: Settings) -> bool:
    if name is None:
        return False
    try:
        return name in engine.volumes(_env(settings))
    except engine.Unanswered as exc:
        raise LauncherError(f"cannot ask Docker which volumes exist: {exc}", DOCKER_UNAVAILABLE,
                            "start Docker and run again") from None


class Project:
    """One compose project of the local Infisical (the user's, or a scratch one): its
    services started and stopped, and programs run inside its containers."""

    def __init__(self, target: compose.Target, env: dict[str, str], masker: Masker, out: Output) -> None:
        self.target, self.env, self.masker, self.out = target, env, masker, out

    def _captured(self, argv: list[str], what: str, stdin: bytes | None = None,
                  timeout: float = EXEC_TIMEOUT) -> Result:
        self.out.detail(f"$ {compose.display(argv)}")
        try:
            result = run_captured(argv, self.env, timeout, cwd=str(self.target.project_dir), stdin_bytes=stdin)
        except FileNotFoundError:
            raise LauncherError("Docker is not installed: the `docker` command is not on PATH",
                                DOCKER_UNAVAILABLE) from None
        except Timeout as exc:
            raise LauncherError(f"{what} gave {exc}", FAILED) from None
        if result.returncode != 0:
            lines = [line.strip() for line in self.masker.mask(result.stderr).splitlines() if line.strip()]
            compose.diagnose(compose.Outcome(result.returncode, tuple(lines[-60:])))  # the engine, an env file
            reason = next((l for l in lines if "error" in l.lower() or "fatal" in l.lower()), lines[-1] if lines else "")
            raise LauncherError(f"{what} failed (exit {result.returncode}): {compose.redact(reason) or 'no message'}",
                                FAILED)
        return result

    def compose(self, argv: list[str], what: str, timeout: float | None = DB_WAIT + 30) -> None:
        self.out.detail(f"$ {compose.display(argv)}")
        try:
            outcome = compose.run(argv, self.env, self.masker, self.out, self.target.project_dir, timeout=timeout,
                                  quiet=True)
        except Timeout as exc:
            raise LauncherError(f"{what} gave {exc}", FAILED) from None
        if outcome.code != 0:
            self.out.failure_lines(outcome.tail)
            lines = [line.strip() for line in outcome.tail if line.strip()]
            raise LauncherError(f"{what} failed: {(lines or ['no message'])[-1]}", FAILED)

    def state(self, service: str) -> str | None:
        """The service's container state ("running", "exited", ...), None when it has none."""
        result = self._captured(self.target.ps_json([service]), f"`docker compose ps {service}`", timeout=60)
        states = [str(row.get("State", "")).lower() for row in _rows(result.stdout) if row.get("Service") == service]
        if not states:
            return None
        return "running" if "running" in states else states[0]

    def exec(self, service: str, script: str, what: str, stdin: bytes | None = None) -> Result:
        return self._captured(self.target.exec_argv(service, ["sh", "-c", script], stdin=stdin is not None), what,
                              stdin)

    def dump(self) -> tuple[bytes, dict[str, int]]:
        """pg_dump -Fc and the row counts, from one snapshot."""
        result = self.exec(DB, _PSQL, "the dump (pg_dump in infisical-db)", _DUMP_SQL.encode())
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        status = next((line for line in lines if line.startswith("#status ")), None)
        if status is None or not lines or status != "#status 0":
            code = status.split()[-1] if status else "?"
            reason = next((l.strip() for l in self.masker.mask(result.stderr).splitlines() if l.strip()), "no message")
            raise LauncherError(f"pg_dump in {DB} failed (exit {code}): {reason}", FAILED)
        counts = _parse_counts(lines[-1])
        try:
            dump = base64.b64decode("".join(l for l in lines[:-1] if not l.startswith("#")), validate=True)
        except ValueError:
            raise LauncherError(f"the dump from {DB} arrived damaged (not base64)", FAILED) from None
        if not dump.startswith(DUMP_MAGIC):
            raise LauncherError(f"the dump from {DB} is not a pg_dump custom-format archive", FAILED)
        return dump, counts

    def counts(self) -> dict[str, int]:
        result = self.exec(DB, _PSQL, "counting rows (psql in infisical-db)", _COUNTS_SQL.encode())
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        return _parse_counts(lines[-1] if lines else "")

    def load(self, dump: bytes) -> None:
        """Drop and create the database, then pg_restore the dump into it (from stdin)."""
        self.exec(DB, _RECREATE, "recreating the database (psql in infisical-db)", _RECREATE_SQL.encode())
        self.exec(DB, _RESTORE, "pg_restore in infisical-db", dump)

    def start_app(self) -> str | None:
        """Start Infisical and wait until healthy; why not, or None. (bootstrap.ensure_up's
        quick check would pass with the database and Redis alone when Infisical's container
        does not exist, as after a wiped volume or on a new machine.)"""
        status = self.out.status(f"Starting {APP}, waiting until healthy...")
        try:
            with status:
                self.compose(self.target.pull_missing(), "pulling the images", timeout=None)
                self.compose(self.target.up_services([APP], APP_WAIT), f"starting {APP}", timeout=APP_WAIT + 30)
        except LauncherError as exc:
            return exc.message
        # Compose 2.40 exits 0 when --wait-timeout runs out on a container still starting.
        health = self.health(APP)
        return None if health in ("healthy", "running") else f"{APP} is {health or 'not running'}"

    def health(self, service: str) -> str:
        """"healthy", "unhealthy", "starting" (its healthcheck), "running" (none), or the state."""
        result = self._captured(self.target.ps_json([service]), f"`docker compose ps {service}`", timeout=60)
        for row in _rows(result.stdout):
            if row.get("Service") == service:
                state = str(row.get("State", "")).lower()
                return (str(row.get("Health") or "") or state) if state == "running" else state
        return ""

    def flush_redis(self) -> None:
        result = self.exec(REDIS, _FLUSH, "flushing Infisical's Redis (redis-cli FLUSHALL)")
        if "OK" not in result.stdout:
            raise LauncherError(f"redis-cli FLUSHALL in {REDIS} did not answer OK", FAILED)


def _rows(stdout: str) -> list[dict]:
    """`compose ps --format json`: one object a line (2.21 on), or one array (before)."""
    rows: list = []
    for line in stdout.splitlines():
        if line.strip():
            try:
                data = json.loads(line)
            except ValueError:
                continue
            rows += data if isinstance(data, list) else [data]
    return [row for row in rows if isinstance(row, dict)]


def _parse_counts(line: str) -> dict[str, int]:
    try:
        counts = json.loads(line)
    except ValueError:
        counts = None
    if not isinstance(counts, dict) or not all(isinstance(n, int) for n in counts.values()):
        raise LauncherError("the row counts from psql could not be read", FAILED)
    return counts


# ------------------------------------------------------------------------------ backup

@dataclass(frozen=True)
class Written:
    path: Path
    tables: int
    rows: int
    dump_size: int
    keys: int
    pruned: tuple[Path, ...] = ()


def bootstrap_keys(settings: Settings, classes: Classes) -> dict[str, str]:
    """`.env`'s bootstrap secrets that hold a value (names and values as python-dotenv reads them)."""
    return {key: value for key, value in settings.dotenv.items() if value and classes.category(key) == BOOTSTRAP}


def shown(path: Path, settings: Settings) -> str:
    """A path as the user would type it from the project folder."""
    try:
        return str(path.relative_to(settings.project_dir))
    except ValueError:
        return str(path)


def create(settings: Settings, out: Output, masker: Masker, *, folder: Path, passphrase: Secret | None,
           keep: int | None = None) -> Written:
    """Dump the local Infisical's database (starting it alone if it is not running, and
    stopping it again after) and write one archive into `folder`."""
    require_dotenv(settings)
    classes = classify(settings)
    classes.require()
    layout = read_layout(settings)
    if not volume_exists(layout.volume, settings):
        raise LauncherError(f"no Infisical database to back up: the volume {layout.volume} does not exist "
                            f"(project {settings.infisical_project_name})", BAD_CONFIG,
                            "start Infisical once (python start_services.py), or check -p/--project-name")
    keys = bootstrap_keys(settings, classes)
    project = Project(_target(settings), _env(settings), masker, out)
    before = project.state(DB)
    try:
        if before != "running":
            out.info(f"Infisical's database ({DB}) is not running: starting it alone for the dump.")
            project.compose(project.target.up_services([DB], DB_WAIT), f"starting {DB}")
        dump, counts = project.dump()
    finally:
        if before != "running":
            argv = project.target.stop([DB]) if before is not None else project.target.remove([DB])
            project.compose(argv, f"stopping {DB} again")
            out.info(f"Stopped {DB} again, as it was.")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool_version": __version__,
        "project_name": settings.project_name,
        "infisical_image": layout.image,
        "database": {"service": DB, "image": layout.db_image, "volume": layout.volume},
        "dump": {"file": DUMP, "format": "pg_dump -Fc", "size": len(dump), "sha256": _sha256(dump)},
        "tables": counts,
        "rows": sum(counts.values()),
        # Where the launcher finds Infisical (no secret: config keys), so a new machine's
        # export works after a restore: written into a new .env, or where .env has none.
        "settings": {key: settings.dotenv[key] for key in sorted(LAUNCHER_SETTINGS) if settings.dotenv.get(key)},
    }
    data = seal(pack(manifest, dump, keys), passphrase)
    path = _write_archive(folder, data, "age" if passphrase else "tar")
    pruned = tuple(prune(folder, keep, path)) if keep else ()
    return Written(path, len(counts), sum(counts.values()), len(dump), len(keys), pruned)


def report_written(written: Written, settings: Settings, out: Output, encrypted: bool) -> None:
    how = "age-encrypted" if encrypted else "NOT encrypted"
    out.success(f"Backup written: {shown(written.path, settings)} ({how}, mode 0600): {written.tables} tables, "
                f"{written.rows} rows, dump {_size(written.dump_size)}, {written.keys} bootstrap keys.")
    if written.pruned:
        out.info(f"--keep: deleted {len(written.pruned)} older archive(s): "
                 f"{', '.join(p.name for p in written.pruned)}")


def _size(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def backup(settings: Settings, out: Output, *, output: str, keep: int | None, passphrase_file: Path | None,
           no_encrypt: bool) -> int:
    from .prepare import seed_masker

    if no_encrypt and passphrase_file is not None:
        raise LauncherError("--no-encrypt and --passphrase-file cannot be used together", USAGE)
    require_dotenv(settings)
    folder = settings.project_dir / output
    secret = None
    if no_encrypt:
        out.warn("--no-encrypt: the archive holds Infisical's bootstrap secrets (its encryption key) and every "
                 "secret's ciphertext in the clear; keep it as safe as .env")
    else:
        secret = passphrase_from(_in(settings, passphrase_file), settings.shell, confirm=True)
    masker = seed_masker(settings, classify(settings))
    if secret is not None:
        masker.add([secret.reveal()])
    written = create(settings, out, masker, folder=folder, passphrase=secret, keep=keep)
    report_written(written, settings, out, secret is not None)
    out.info(f"Check it any time: python start_services.py restore {shown(written.path, settings)} --verify")
    return OK


def _in(settings: Settings, path: Path | None) -> Path | None:
    return None if path is None else settings.project_dir / path


# ------------------------------------------------------------------------------ restore

def _render_value(value: str) -> str:
    """A value as text after `KEY=` that python-dotenv and compose both read back as it is."""
    if re.fullmatch(r"[A-Za-z0-9_+/=.:@,%~^-]*", value):
        return value
    if not re.search(r"['\\\n\r]", value):
        return f"'{value}'"  # single quotes: no escapes, no interpolation, in both readers
    return quote(value)


def _count_lines(expected: Mapping[str, int], found: Mapping[str, int]) -> list[str]:
    diffs = []
    for table in sorted(set(expected) | set(found)):
        want, got = expected.get(table), found.get(table)
        if want != got:
            diffs.append(f"{table}: {'no table' if want is None else want} expected, "
                         f"{'no table' if got is None else got} found")
    return diffs


def restore(settings: Settings, out: Output, *, archive_path: Path, force: bool, verify: bool,
            passphrase_file: Path | None, resolve: Callable[[], Settings]) -> int:
    """`resolve` reads the settings again (after `.env` was written). The caller holds the
    project lock unless `verify`."""
    path = settings.project_dir / archive_path
    name = shown(path, settings)
    archive, secret = read_archive(
        path, lambda: passphrase_from(_in(settings, passphrase_file), settings.shell, confirm=False), name)
    layout = read_layout(settings)
    recorded = archive.manifest["infisical_image"]
    if recorded != layout.image:
        tag = (f"{name} was made with Infisical {recorded}, but {shown(settings.infisical_compose_file, settings)} "
               f"now runs {layout.image}")
        if verify:
            out.warn(f"{tag} (only the database is checked here)")
        elif not force:
            raise LauncherError(f"{tag}; pass --force to restore it anyway (nothing was changed)", BAD_CONFIG)
        else:
            out.warn(f"{tag}; restoring anyway (--force)")
    if verify:
        return _verify(settings, out, archive, name)
    return _restore(settings, out, archive, secret, name, layout, force, resolve)


def _verify(settings: Settings, out: Output, archive: Archive, name: str) -> int:
    """Restore into a scratch compose project (only the database service, its own throwaway
    volume, throwaway passwords), compare the counts, remove the project and its volume."""
    slug = re.sub(r"[^a-z0-9_-]", "", settings.project_name.lower()) or "localai"
    scratch = f"{slug}-restore-verify-{_random.token_hex(4)}"
    target = compose.Target(settings.project_dir, scratch, (settings.infisical_compose_file,), (Path(os.devnull),))
    env = _env(settings)
    # Every variable the compose file interpolates gets a throwaway value: the scratch
    # database never sees a real secret (psql connects over the socket, no password).
    text = settings.infisical_compose_file.read_text(encoding="utf-8")
    env.update({var: _random.token_hex(16) for var in referenced_variables(text)})
    masker = Masker()
    project = Project(target, env, masker, out)
    out.info(f"Verifying {name} in a scratch project {scratch} (its own database and volume, removed after).")
    try:
        project.compose(target.up_services([DB], DB_WAIT), f"starting a scratch {DB}")
        project.load(archive.dump)
        found = project.counts()
    finally:
        try:
            project.compose(target.down_volumes(), f"removing the scratch project {scratch}", timeout=120)
        except LauncherError as exc:
            out.warn(f"{exc.message}; remove it by hand: docker compose -p {scratch} down --volumes")
    diffs = _count_lines(archive.counts, found)
    if diffs:
        out.error(f"{name} did not verify: {len(diffs)} table(s) differ from its manifest: {'; '.join(diffs[:10])}")
        return FAILED
    out.success(f"{name} verified: restored into a scratch database, {len(found)} tables and {sum(found.values())} "
                f"rows, equal to its manifest (made {archive.manifest.get('created', '?')} with "
                f"{archive.manifest['infisical_image']}). The scratch project is removed.")
    return OK


def _restore(settings: Settings, out: Output, archive: Archive, secret: Secret | None, name: str, layout: Layout,
             force: bool, resolve: Callable[[], Settings]) -> int:
    from .prepare import seed_masker

    # --- checks: nothing has changed yet --------------------------------------------------
    current = settings.dotenv if settings.dotenv_text is not None else {}
    conflicts = sorted(k for k, v in archive.keys.items() if current.get(k) and current[k] != v)
    if conflicts and not force:
        raise LauncherError(f"{settings.env_file.name}'s {', '.join(conflicts)} differ"
                            f"{'s' if len(conflicts) == 1 else ''} from the archive's; pass --force to write the "
                            f"archive's value{'s' if len(conflicts) > 1 else ''} (after a backup of "
                            f"{settings.env_file.name}) (nothing was changed)", BAD_CONFIG)
    to_write = {k: v for k, v in archive.keys.items() if current.get(k) != v}
    recorded_settings = {k: v for k, v in (archive.manifest.get("settings") or {}).items()
                         if k in LAUNCHER_SETTINGS and isinstance(v, str)}
    to_write.update({k: v for k, v in recorded_settings.items() if not current.get(k)})  # never overrides
    had_volume = settings.dotenv_text is not None and volume_exists(layout.volume, settings)
    folder = settings.project_dir / DEFAULT_FOLDER

    # --- a way back, then .env ------------------------------------------------------------
    pre: Path | None = None
    if settings.dotenv_text is not None:
        if had_volume:
            pre = _pre_restore_backup(settings, out, folder, secret)
        if to_write:
            saved = backup_copy(settings.env_file, settings.dotenv_text)
            write_private(settings.env_file, with_keys(settings.dotenv_text,
                                                       {k: _render_value(v) for k, v in to_write.items()}))
            out.info(f"{settings.env_file.name}: set {', '.join(sorted(to_write))} from the archive "
                     f"(previous file: {saved.name}, mode 0600).")
    else:
        from .init_env import init_env

        init_env(settings.project_dir, settings.env_file, Path(".env.example"), settings.project_name, out)
        text = settings.env_file.read_bytes().decode("utf-8")
        values = {**recorded_settings, **archive.keys}
        write_private(settings.env_file, with_keys(text, {k: _render_value(v) for k, v in values.items()}))
        out.info(f"{settings.env_file.name}: set {', '.join(sorted(values))} from the archive.")
        # The archive may name the compose project (COMPOSE_PROJECT_NAME): ask again.
        if volume_exists(read_layout(resolve()).volume, settings):
            pre = _pre_restore_backup(resolve(), out, folder, secret)
    settings = resolve()
    masker = seed_masker(settings, classify(settings))
    masker.add(archive.keys.values())
    # Going back changes .env's bootstrap keys again when this restore changed them.
    back_force = " --force" if current and any(k in archive.keys for k in to_write) else ""
    way_back = (f"the state before the restore is in {shown(pre, settings)}: python start_services.py restore "
                f"{shown(pre, settings)}{back_force}") if pre else "there was no Infisical database before the restore"

    # --- the restore ----------------------------------------------------------------------
    project = Project(_target(settings), _env(settings), masker, out)
    try:
        out.info(f"Restoring {name} into {settings.infisical_project_name}: stopping {APP}, recreating its database.")
        project.compose(project.target.stop([APP]), f"stopping {APP}")
        project.compose(project.target.up_services([DB, REDIS], DB_WAIT), f"starting {DB} and {REDIS}")
        project.load(archive.dump)
        # Counted before Infisical starts, so nothing it writes at boot can blur the proof.
        diffs = _count_lines(archive.counts, project.counts())
        if diffs:
            raise LauncherError(f"the restore did not verify: {len(diffs)} table(s) differ from the archive's "
                                f"manifest ({'; '.join(diffs[:10])}); {APP} is left stopped; {way_back}", FAILED)
        project.flush_redis()
    except LauncherError as exc:
        if "did not verify" in exc.message:
            raise
        raise LauncherError(f"the restore stopped: {exc.message}; {way_back}", FAILED) from None
    reason = project.start_app()
    if reason:
        raise LauncherError(f"the database is restored, but Infisical did not come back: {reason}; {way_back}", FAILED)
    export = _export_check(settings, masker)
    if export and export.startswith("failed"):
        raise LauncherError(f"the database is restored and Infisical is healthy, but the export {export}; {way_back}",
                            FAILED)
    counts = archive.counts
    out.success(f"Restored {name}: {len(counts)} tables, {sum(counts.values())} rows, equal to its manifest; "
                f"Infisical is healthy; {export or 'the export was checked'}.")
    if pre:
        out.info(f"The state before the restore stays in {shown(pre, settings)}.")
    return OK


def _pre_restore_backup(settings: Settings, out: Output, folder: Path, secret: Secret | None) -> Path:
    from .prepare import seed_masker

    masker = seed_masker(settings, classify(settings))
    out.info("A database is there: backing it up first.")
    written = create(settings, out, masker, folder=folder, passphrase=secret)
    out.info(f"The current state is in {shown(written.path, settings)} "
             f"({'same passphrase' if secret else 'not encrypted, like the archive'}).")
    return written.path


def _export_check(settings: Settings, masker: Masker) -> str:
    """"" when an export through the launcher succeeded; "failed: why"; or why it was not checked."""
    from . import infisical_source
    from .secrets_source import request_for

    if not settings.infisical_is_local:
        return "the export was not checked (INFISICAL_API_URL does not point at this local Infisical)"
    auth = infisical_source.auth_method(settings.credentials, settings.shell, settings.env_file.name)
    if auth.method not in ("token", "machine identity"):
        return "the export was not checked (no Infisical CLI credentials configured in .env)"
    if infisical_source.cli_path() is None:
        return "the export was not checked (the Infisical CLI is not on PATH)"
    try:
        infisical_source.fetch(request_for(settings), settings.shell, masker, allow_empty=True)
    except infisical_source.Unavailable as exc:
        return f"failed: {exc}"
    return ""
