"""`init`: write `.env` from `.env.example`, generating every secret that declares a format.

Rules (issue 3):
- a value already set in `.env` is never changed; an empty value for a key with a format
  counts as missing and is filled (what a user expects after copying .env.example by hand);
- on an existing `.env`, only missing keys are added, after a 0600 timestamped backup;
- `.env` is written 0600 whatever the umask, atomically (temp file in the same folder,
  fsync, os.replace), and never through a symlink;
- an init-only secret (a database keeps it from its first start) is never generated while
  its volume exists: that would lock services out of their data. When Docker cannot be
  asked, init generates none of them and writes nothing (see `_existing_volumes`).
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from stack_launcher import engine, errors
from stack_launcher.catalog import ASSIGNMENT, Entry, parse_catalog
from stack_launcher.envfile import backup_copy, parse_dotenv, read_text, write_private
from stack_launcher.generate import generate

DOCKER_TIMEOUT = 30
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX only; the symlink check above covers Windows


@dataclass
class _Plan:
    """What init is about to do to the env file; values only ever live in `values`."""

    values: dict[str, str] = field(default_factory=dict)  # key -> text to write after `=`
    generated: list[str] = field(default_factory=list)  # keys that get a new random value
    added: list[str] = field(default_factory=list)  # keys not in the file yet
    filled: list[str] = field(default_factory=list)  # keys present but empty, now filled


def init_env(
    project_dir: Path,
    env_file: Path,
    example: Path,
    project_name: str,
    out,
    *,
    docker: str = "docker",  # the program asked which volumes exist (tests give a stand-in)
) -> int:
    """Write or complete `env_file` from `example`. Returns 0; raises LauncherError."""
    env_file = project_dir / env_file
    example = project_dir / example
    example_text = read_text(example)
    if example_text is None:
        raise errors.LauncherError(f"no {example.name} in {example.parent}", errors.BAD_CONFIG,
                                   "restore it with git (`git checkout .env.example`)")
    example_text = example_text.removeprefix("\ufeff")
    catalog = parse_catalog(example_text, str(example))

    if os.path.islink(env_file):
        raise errors.LauncherError(
            f"{env_file} is a symlink; init does not write through symlinks",
            errors.BAD_CONFIG,
            hint="replace it with a regular file (or remove it) and run init again",
        )
    existing_text = _read_existing(env_file)
    existing = None if existing_text is None else _values(existing_text)

    plan = _plan(catalog, existing)
    _refuse_init_only(catalog, plan, project_name, docker)

    if existing_text is None:
        write_private(env_file, _fresh_text(example_text, catalog, plan))
        out.success(f"Wrote {env_file.name} (mode 0600) with {len(plan.generated)} generated secrets.")
    elif not plan.values:
        _tighten_mode(env_file, out)
        out.info(f"{env_file.name} already has every key of {example.name}; nothing changed.")
    else:
        backup = backup_copy(env_file, existing_text)
        write_private(env_file, _completed_text(existing_text, example_text, catalog, plan))
        out.info(f"Backup of the previous {env_file.name}: {backup.name} (mode 0600)")
        if plan.added:
            out.success(f"Added to {env_file.name}: {', '.join(plan.added)}")
        if plan.filled:
            out.success(f"Filled empty values in {env_file.name}: {', '.join(plan.filled)}")

    empty_bootstrap = [
        e.key for e in catalog.values()
        if e.category == "bootstrap" and e.fmt is None and not (existing or {}).get(e.key)
    ]
    if empty_bootstrap:
        out.info(
            f"Left empty, issued by Infisical: {', '.join(empty_bootstrap)} "
            "(see docs/setup.md)"
        )
    return errors.OK


def _values(text: str) -> dict[str, str]:
    """Raw values, not interpolated: `KEY=${FROM_ELSEWHERE}` is set, however it resolves. A
    line python-dotenv cannot parse (`K="a"b`, which compose reads as `a`) still assigns its
    key: it counts as set, so init never appends a second value that compose would use."""
    values = parse_dotenv(text)
    for line in text.removeprefix("\ufeff").splitlines():
        m = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s*(\S)", line)
        if m and m.group(1) not in values:
            values[m.group(1)] = "(a line only docker compose reads)"
    return values


def _plan(catalog: dict[str, Entry], existing: dict[str, str] | None) -> _Plan:
    plan = _Plan()
    for entry in catalog.values():
        present = existing is not None and entry.key in existing
        if present and existing[entry.key]:
            continue  # set: never changed
        if present and entry.fmt is None:
            continue  # empty on purpose (or to be filled by hand): leave it
        if entry.fmt is not None:
            plan.values[entry.key] = generate(entry.fmt)
            plan.generated.append(entry.key)
        elif existing is not None:
            plan.values[entry.key] = entry.default
        if existing is not None:
            (plan.filled if present else plan.added).append(entry.key)
    return plan


def _refuse_init_only(catalog: dict[str, Entry], plan: _Plan, project_name: str, docker: str) -> None:
    """Raise unless every init-only secret about to be generated has no volume yet."""
    wanted = [catalog[k] for k in plan.generated if catalog[k].init_only]
    if not wanted:
        return
    project = _normalize_project(project_name)
    present = _existing_volumes(docker, [e.key for e in wanted])
    clashes = []
    for entry in wanted:
        for volume in entry.volumes:
            # The AI stack's volumes are `<project>_<v>`, Infisical's `<project>-infisical_<v>`.
            for name in (f"{project}_{volume}", f"{project}-infisical_{volume}"):
                if name in present:
                    clashes.append((entry, name))
    if not clashes:
        return
    lines = [f"{e.key} (kept by {e.init_only} in volume {name})" for e, name in clashes]
    raise errors.LauncherError(
        "refusing to generate secrets that existing volumes were initialised with: "
        + "; ".join(lines)
        + ". A new value would lock the service out of its data or make it unreadable.",
        errors.BAD_CONFIG,
        hint=(
            "put the old value back into .env (from a .env.bak-* backup or from Infisical), "
            "or, to start that service from scratch and lose its data, remove the volume "
            "deliberately (docker volume rm " + " ".join(sorted({n for _, n in clashes})) + ") "
            "and run init again"
        ),
    )


def _normalize_project(name: str) -> str:
    # What compose does to -p: lower case, only [a-z0-9_-].
    return re.sub(r"[^a-z0-9_-]", "", name.lower())


def _existing_volumes(docker: str, keys: list[str]) -> set[str]:
    """Names of all Docker volumes. When Docker cannot be asked, init refuses to generate
    the init-only secrets: the volumes may well exist (a stopped daemon keeps them), and a
    wrong guess is unrecoverable. Setting those keys in .env by hand needs no Docker."""
    try:
        return engine.volumes(timeout=DOCKER_TIMEOUT, docker=docker)
    except engine.Unanswered as exc:
        reason = str(exc)
    raise errors.LauncherError(
        f"cannot ask Docker which volumes exist ({reason}); init will not generate "
        f"{', '.join(keys)} without knowing that no database already keeps them",
        errors.DOCKER_UNAVAILABLE,
        hint=(
            "start Docker and run init again, or set these keys in .env yourself "
            "(e.g. restored from a backup or from Infisical)"
        ),
    )


def _read_existing(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise errors.LauncherError(f"cannot read {path}: {exc.strerror}", errors.BAD_CONFIG) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise errors.LauncherError(f"{path} is not a regular file", errors.BAD_CONFIG)
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.LauncherError(f"{path} is not UTF-8 text", errors.BAD_CONFIG) from None


def _fresh_text(example_text: str, catalog: dict[str, Entry], plan: _Plan) -> str:
    """The example file with the generated values in place; config lines copied as they are."""
    header = (
        f"# Written by `start_services.py init` on {datetime.now():%Y-%m-%d %H:%M:%S} "
        "from .env.example. Keep it secret: it holds passwords.\n"
    )
    lines = []
    for line in example_text.splitlines(keepends=True):
        match = ASSIGNMENT.match(line)
        if match and match.group(1) in plan.values and catalog[match.group(1)].fmt:
            line = f"{match.group(1)}={plan.values[match.group(1)]}\n"
        lines.append(line)
    return header + "".join(lines)


def _comment_above(example_lines: list[str], entry: Entry) -> list[str]:
    """The example's comment block (marker included) directly above a variable."""
    block = []
    index = entry.line - 2
    while index >= 0 and example_lines[index].lstrip().startswith("#"):
        block.insert(0, example_lines[index].rstrip("\n") + "\n")
        index -= 1
    return block


def _completed_text(existing_text: str, example_text: str, catalog: dict[str, Entry], plan: _Plan) -> str:
    example_lines = example_text.splitlines(keepends=True)
    lines = existing_text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    to_append = list(plan.added)
    for key in plan.filled:
        empty = re.compile(rf"^\ufeff?\s*(?:export\s+)?{re.escape(key)}\s*(?:=\s*(?:''|\"\")?)?\s*(?:#.*)?$")
        hits = [i for i, line in enumerate(lines) if empty.match(line.rstrip("\r\n"))]
        if hits:
            ending = "\r\n" if lines[hits[-1]].endswith("\r\n") else "\n"
            lines[hits[-1]] = f"{key}={plan.values[key]}{ending}"
        # else: a spelling we cannot rewrite in place; never append a second assignment
    if to_append:
        lines.append(f"\n# Added by `start_services.py init` on {datetime.now():%Y-%m-%d %H:%M:%S}\n")
        for key in to_append:
            if key in plan.added:
                lines.extend(["\n", *_comment_above(example_lines, catalog[key])])
            lines.append(f"{key}={plan.values[key]}\n")
    return "".join(lines)


def _tighten_mode(path: Path, out) -> None:
    if not hasattr(os, "fchmod"):
        return  # Windows: the file has the folder's ACL; POSIX modes don't apply
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            os.fchmod(fd, 0o600)
            out.warn(f"{path.name} was readable by others (mode {mode:o}); now 0600")
    finally:
        os.close(fd)
