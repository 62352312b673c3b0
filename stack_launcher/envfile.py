"""Env files: read `.env` for settings and key names, write `.env.infisical` safely.

Compose is the judge of what an env file's values are (python-dotenv differs on some
escapes and silently skips lines compose rejects), so values read here serve settings,
key names and masking; they are never handed to compose.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from .errors import BAD_CONFIG, LauncherError
from .secret import Secret

# What compose-go accepts in a variable name (the reference: letters, digits, _ . - [ ]).
# Use fullmatch: `$` also matches before a final newline ("KEY\n" would pass).
VALID_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-\[\]]*")

HEADER_MARK = "# source:"


MAX_SIZE = 64 * 2**20  # an env file past this is a mistake, not configuration


def refuse_symlink(path: Path, command: str) -> None:
    """Commands that rewrite `.env` never do it through a link: the rewrite would replace the
    link and leave every secret in clear in its target."""
    if os.path.islink(path):
        raise LauncherError(f"{path} is a symlink; {command} does not rewrite through symlinks", BAD_CONFIG,
                            f"replace it with a regular file (cp --remove-destination \"$(readlink -f {path.name})\" "
                            f"{path.name}), then run {command} again")


def read_text(path: Path) -> str | None:
    """The text of an env file as it is on disk (CRLF, BOM and all); None when it is absent.

    Read once per command: a command that writes `.env` decides from, and rewrites, the
    text it read under the project lock."""
    import stat

    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise LauncherError(f"{path} is a directory, not an env file", BAD_CONFIG)
        if not stat.S_ISREG(mode):  # /dev/zero never ends, a FIFO blocks
            raise LauncherError(f"{path} is not a regular file", BAD_CONFIG)
        if os.path.getsize(path) > MAX_SIZE:
            raise LauncherError(f"{path.name} is larger than {MAX_SIZE // 2**20} MiB; not an env file", BAD_CONFIG)
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LauncherError(f"cannot read {path}: {exc.strerror or exc.__class__.__name__}", BAD_CONFIG) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LauncherError(f"{path.name} is not UTF-8 text (line {line})", BAD_CONFIG,
                            f"save {path.name} as UTF-8") from None


def parse_dotenv(text: str, interpolate: bool = False) -> dict[str, str]:
    """Env-file text as a dict, by python-dotenv, the project's one reader of `.env` syntax.

    Never loaded into os.environ (compose would see it as shell). A leading BOM is not part
    of the first key (python-dotenv before 1.0.1 read it into the name). Where compose reads
    a line otherwise (docs/architecture.md), the commands that need exactness ask compose."""
    import io

    from dotenv import dotenv_values

    values = dotenv_values(stream=io.StringIO(text.removeprefix("\ufeff")), interpolate=interpolate)
    return {k: (v if v is not None else "") for k, v in values.items()}


def read_dotenv(path: Path, interpolate: bool = False) -> dict[str, str]:
    """`path` parsed by parse_dotenv; {} when it does not exist."""
    text = read_text(path)
    return {} if text is None else parse_dotenv(text, interpolate)


def unterminated_quote(text: str) -> tuple[int, str] | None:
    """(line, key) of the first assignment whose quote never closes, as compose reads quotes:
    `\\` escapes inside double quotes and `\'` inside single ones. None if every quote closes."""
    lines = text.split("\n")
    number = 0
    while number < len(lines):
        m = re.match(r"\s*(?:export\s+)?([^=\s#]+)\s*=\s*(['\"])", lines[number])
        number += 1
        if not m:
            continue
        key, quote_char = m.group(1), m.group(2)
        rest = lines[number - 1][m.end():]
        start = number
        while True:
            i, closed = 0, False
            while i < len(rest):
                if rest[i] == "\\":
                    i += 2
                    continue
                if rest[i] == quote_char:
                    closed = True
                    break
                i += 1
            if closed:
                break
            if number >= len(lines):
                return start, key
            rest = lines[number]
            number += 1
    return None


def with_keys(text: str, values: Mapping[str, str]) -> str:
    """`.env` text with each key set to its value: the last assignment of a key is rewritten
    in place (its line ending kept), a missing key is appended; every other byte is kept.
    Values must be safe unquoted (ids, generated secrets)."""
    import io

    from dotenv.parser import parse_stream

    bom = "\ufeff" if text.startswith("\ufeff") else ""
    text = text[len(bom):]
    bindings = list(parse_stream(io.StringIO(text)))
    if "".join(b.original.string for b in bindings) != text:
        raise LauncherError("cannot rewrite .env safely: it could not be split into lines exactly", BAD_CONFIG)
    last = {b.key: i for i, b in enumerate(bindings) if b.key in values}
    parts = []
    for i, binding in enumerate(bindings):
        original = binding.original.string
        if last.get(binding.key) == i:
            ending = "\r\n" if original.endswith("\r\n") else "\n"
            original = f"{binding.key}={values[binding.key]}{ending}"
        parts.append(original)
    out = "".join(parts)
    missing = [key for key in values if key not in last]
    if missing:
        ending = "\r\n" if "\r\n" in text else "\n"
        if out and not out.endswith("\n"):
            out += ending
        out += "".join(f"{key}={values[key]}{ending}" for key in missing)
    return bom + out


def quote(value: str) -> str:
    """Double quotes are the one dotenv quoting compose reads back for every value."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("$", "\\$")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )
    return f'"{escaped}"'


@dataclass(frozen=True)
class Source:
    """Where an export came from; written in the file's header, read back for reuse."""

    project: str
    environment: str
    path: str

    def header_line(self) -> str:
        fields = {"project": self.project, "environment": self.environment, "path": self.path}
        return f"{HEADER_MARK} {json.dumps(fields, sort_keys=True)}"


def render(secrets: Mapping[str, Secret], source: Source, when: datetime | None = None) -> str:
    when = when or datetime.now(timezone.utc)
    lines = [
        "# Generated by start_services.py from Infisical. Do not edit; do not commit (it holds secrets).",
        source.header_line(),
        f"# exported-at: {when.strftime('%Y-%m-%dT%H:%M:%SZ')}",
    ]
    lines += [f"{key}={quote(secret.reveal())}" for key, secret in secrets.items()]
    return "\n".join(lines) + "\n"


TEMP_MARK = ".tmp-"  # `<name>.tmp-XXXX`: matched by .gitignore's `.env.*`, and ours alone


def temp_files(path: Path) -> list[Path]:
    """Temp files a write of `path` left behind (killed mid-write)."""
    return sorted(p for p in path.parent.glob(f"{path.name}{TEMP_MARK}*") if not p.is_dir())


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, atomically, never through a symlink.

    A temp file in the same folder, created 0600 whatever the umask, fsynced, then renamed
    over the target: a reader sees the old file or the new one, never half of one, and a
    failed write leaves the old file as it was. os.replace swaps a symlink itself, never its
    target. Callers hold the project lock, so temp files of ours found here are stale (a run
    killed mid-write) and are removed. (0600 is a POSIX guarantee; on Windows the file
    inherits the folder's ACL.)
    """
    if path.is_dir():
        raise LauncherError(f"{path} is a directory; it must be a file", BAD_CONFIG,
                            f"remove or rename the folder {path.name}")
    for stale in temp_files(path):
        try:
            stale.unlink()
        except OSError:
            pass
    import tempfile  # only writers need it (a plan or a dry run never does)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{path.name}{TEMP_MARK}", dir=path.parent)
    except OSError as exc:
        raise LauncherError(f"cannot write {path.name} in {path.parent}: {exc.strerror or exc.__class__.__name__}",
                            BAD_CONFIG, f"check that you may write to {path.parent}") from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # mkstemp already uses 0600; say so against odd platforms
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; Windows cannot open a folder for this)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def backup_copy(path: Path, text: str) -> Path:
    """A 0600 `<name>.bak-<timestamp>` beside `path` holding `text`, verified by reading it back.

    Created with O_EXCL (never overwrites an older backup, never follows a symlink).
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for n in range(100):
        backup = path.with_name(f"{path.name}.bak-{stamp}" + (f"-{n}" if n else ""))
        try:
            fd = os.open(backup, flags, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        if backup.read_bytes() != text.encode("utf-8"):
            raise LauncherError(f"the backup {backup.name} does not read back as written; {path.name} left as it is",
                                BAD_CONFIG)
        return backup
    raise LauncherError(f"cannot find a free backup name next to {path}", BAD_CONFIG)


@dataclass(frozen=True)
class Header:
    source: Source
    exported_at: datetime | None


def read_header(path: Path) -> Header | None:
    """The source and time an exported file names, or None when it has no such header."""
    try:
        with path.open(encoding="utf-8") as handle:
            head = [handle.readline() for _ in range(3)]
    except (OSError, UnicodeDecodeError):
        return None
    fields: object = {}
    exported_at = None
    for line in head:
        line = line.strip()
        if line.startswith(HEADER_MARK):
            try:
                fields = json.loads(line[len(HEADER_MARK):])
            except ValueError:
                return None
        elif line.startswith("# exported-at:"):
            try:
                stamp = line.split(":", 1)[1].strip()
                exported_at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            except ValueError:
                exported_at = None
    if not isinstance(fields, dict) or not all(isinstance(fields.get(k), str) for k in ("project", "environment", "path")):
        return None
    return Header(Source(fields["project"], fields["environment"], fields["path"]), exported_at)


_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\$": "$", "\\n": "\n", "\\r": "\r"}
_ESCAPE = re.compile(r'\\[\\"$nr]')


def _unescape(match: re.Match) -> str:
    return _UNESCAPE[match.group(0)]


def read_exported(path: Path) -> dict[str, Secret]:
    """Values of a file this tool wrote (`render`), for diffs and reuse; {} when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    values: dict[str, Secret] = {}
    for line in text.split("\n"):  # not splitlines(): values may hold U+2028, \x85 unescaped
        key, sep, rest = line.partition("=")
        if not sep or line.startswith("#") or len(rest) < 2 or rest[0] != '"' or rest[-1] != '"':
            continue
        inner = rest[1:-1]
        values[key] = Secret(_ESCAPE.sub(_unescape, inner) if "\\" in inner else inner)
    return values
