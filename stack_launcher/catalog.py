"""The variable catalog: `.env.example`, where a marker line above each variable says what
it is (config, bootstrap or secret) and how `init` makes a value for it.

    # Password of the shared PostgreSQL. By hand: openssl rand -hex 16
    #@ secret format=password:32 init-only=postgres volume=postgres_data
    POSTGRES_PASSWORD=

The format is documented in docs/env-example-format.md. The parser is strict: a variable
without a marker, a marker without a variable, an unknown category or attribute is an error
naming file:line, so a mistake in the catalog cannot silently drop a secret from `init` or
from the migration.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stack_launcher import errors
from stack_launcher.generate import parse_format

CATEGORIES = ("config", "bootstrap", "secret")
ATTRIBUTES = ("format", "init-only", "volume")
MARKER = "#@"
ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Entry:
    key: str
    category: str  # "config" | "bootstrap" | "secret"
    default: str
    fmt: str | None
    init_only: str | None  # the compose service that keeps the value from its first start
    volume: str | None  # that service's volume(s), comma-separated, without project prefix
    line: int  # 1-based line of the variable in .env.example

    @property
    def volumes(self) -> tuple[str, ...]:
        return tuple(v for v in (self.volume or "").split(",") if v)

    @property
    def sensitive(self) -> bool:
        return self.category != "config"


def _parse_marker(text: str, where: str) -> tuple[str, dict[str, str]]:
    words = text[len(MARKER):].split()
    if not words:
        raise _bad(where, "marker without a category (expected config, bootstrap or secret)")
    category, attrs = words[0], {}
    if category not in CATEGORIES:
        raise _bad(where, f"unknown category {category!r} (expected config, bootstrap or secret)")
    for word in words[1:]:
        name, sep, value = word.partition("=")
        if not sep or not value:
            raise _bad(where, f"attribute {word!r} is not name=value")
        if name not in ATTRIBUTES:
            raise _bad(where, f"unknown attribute {name!r} (expected one of {', '.join(ATTRIBUTES)})")
        if name in attrs:
            raise _bad(where, f"attribute {name!r} given twice")
        attrs[name] = value
    return category, attrs


def _bad(where: str, what: str) -> errors.LauncherError:
    return errors.LauncherError(f"{where}: {what}", errors.BAD_CONFIG)


def _check(entry: Entry, where: str) -> None:
    if entry.fmt is not None:
        if entry.category == "config":
            raise _bad(where, f"{entry.key}: a config value has a default, not a format")
        try:
            parse_format(entry.fmt)
        except ValueError as exc:
            raise _bad(where, f"{entry.key}: {exc}") from None
    if entry.category != "config" and entry.default:
        raise _bad(where, f"{entry.key}: a {entry.category} must be empty in the example file")
    if (entry.init_only is None) != (entry.volume is None):
        raise _bad(where, f"{entry.key}: init-only= and volume= go together")
    if entry.init_only is not None:
        if entry.category == "config":
            raise _bad(where, f"{entry.key}: only a secret or bootstrap value can be init-only")
        for name in (entry.init_only, *entry.volumes):
            if not _NAME.match(name):
                raise _bad(where, f"{entry.key}: {name!r} is not a compose service or volume name")
        if not entry.volumes:
            raise _bad(where, f"{entry.key}: volume= names no volume")


def parse_catalog(text: str, source: str = ".env.example") -> dict[str, Entry]:
    from .envfile import parse_dotenv

    values = parse_dotenv(text)  # defaults as python-dotenv reads them; the markers are ours
    entries: dict[str, Entry] = {}
    pending: tuple[int, str, dict[str, str]] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        stripped = line.strip()
        if stripped.startswith(MARKER):
            if pending is not None:
                raise _bad(f"{source}:{pending[0]}", "marker not directly above a variable")
            category, attrs = _parse_marker(stripped, where)
            pending = (number, category, attrs)
            continue
        match = ASSIGNMENT.match(line)
        if match is None:
            if stripped and not stripped.startswith("#"):
                raise _bad(where, "not a comment, a marker or KEY=value")
            if pending is not None:
                raise _bad(f"{source}:{pending[0]}", "marker not directly above a variable")
            continue
        key = match.group(1)
        if pending is None:
            raise _bad(where, f"{key} has no '#@ <category>' marker on the line above")
        if key in entries:
            raise _bad(where, f"{key} is already defined at line {entries[key].line}")
        _, category, attrs = pending
        pending = None
        entry = Entry(
            key=key,
            category=category,
            default=values.get(key, ""),
            fmt=attrs.get("format"),
            init_only=attrs.get("init-only"),
            volume=attrs.get("volume"),
            line=number,
        )
        _check(entry, where)
        entries[key] = entry
    if pending is not None:
        raise _bad(f"{source}:{pending[0]}", "marker at the end of the file, above no variable")
    return entries


def load_catalog(path: Path) -> dict[str, Entry]:
    """Entries of `path` by key, in file order. LauncherError(BAD_CONFIG) naming file:line."""
    from .envfile import read_text

    text = read_text(path)
    if text is None:
        raise errors.LauncherError(f"no {path.name} in {path.parent}", errors.BAD_CONFIG)
    return parse_catalog(text.removeprefix("\ufeff"), str(path))
