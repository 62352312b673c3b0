"""`migrate`: move the secrets out of `.env` into Infisical, verified, with nothing lost.

Order, so that an interruption at any point leaves `.env` whole: decide what moves ->
push from a 0600 temp file -> export again and compare every value exactly -> back up
`.env` (0600, read back) -> rewrite `.env` atomically without the verified keys. The values
pushed are the values docker compose uses for that `.env` (compose is asked, not
python-dotenv: they differ on escapes and interpolation).
"""
from __future__ import annotations

import io
import json
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Mapping

from . import compose, infisical_source, keys
from .envfile import VALID_KEY, backup_copy, refuse_symlink, render, write_private
from .errors import BAD_CONFIG, FAILED, INFISICAL_UNAVAILABLE, OK, LauncherError
from .masking import Masker
from .output import Output
from .prepare import seed_masker
from .secret import Secret
from .secrets_source import request_for
from .settings import Settings, require_dotenv

INTERPOLABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class MigrationPlan:
    move: dict[str, Secret] = field(default_factory=dict)
    stay: dict[str, str] = field(default_factory=dict)  # key -> why it stays


def compose_values(settings: Settings, keys: list[str], masker: Masker) -> dict[str, str]:
    """Each key's value as docker compose reads `.env` (its quoting and interpolation rules)."""
    keys = [k for k in keys if INTERPOLABLE.fullmatch(k)]
    if not keys:
        return {}
    with tempfile.TemporaryDirectory(prefix="start-services-migrate-") as tmp:
        probe = Path(tmp) / "probe.json"
        service = {"image": "probe", "environment": {k: "${%s}" % k for k in keys}}
        probe.write_text(json.dumps({"services": {"probe": service}}), encoding="utf-8")
        # The shell beats env files in compose; drop .env's own keys so we read .env's values,
        # while `$OTHER` inside a value still resolves from the shell as it would at launch.
        env = {k: v for k, v in settings.shell.items() if k not in settings.dotenv}
        target = compose.Target(settings.project_dir, "start-services-migrate", (probe,), (settings.env_file,))
        result = compose.capture(target.config_json(), env, settings.project_dir, timeout=60)
    if result.returncode != 0:
        m = compose.LOAD_ERROR.search(result.stderr)
        if m:
            raise LauncherError(compose.load_error_message(m), BAD_CONFIG,
                                "fix that line (see docs/troubleshooting.md on quoting); nothing changed")
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        raise LauncherError(f"docker compose cannot load {settings.env_file.name}: "
                            f"{masker.mask(compose.redact(last))}", BAD_CONFIG)
    environment = json.loads(result.stdout)["services"]["probe"].get("environment") or {}
    return {k: (v or "").replace("$$", "$") for k, v in environment.items()}


def decide(settings: Settings, classes: keys.Classes, masker: Masker) -> MigrationPlan:
    plan = MigrationPlan()
    candidates = []
    for key, raw in settings.dotenv.items():
        why = classes.stays(key)
        if why:
            plan.stay[key] = why
        elif not raw:
            plan.stay[key] = "empty"
        elif "${" in raw:
            plan.stay[key] = "refers to another variable (${...}); Infisical would expand it on export"
        elif not INTERPOLABLE.fullmatch(key) or not VALID_KEY.fullmatch(key):
            plan.stay[key] = "name docker compose cannot interpolate"
        else:
            candidates.append(key)
    values = compose_values(settings, candidates, masker)
    for key in candidates:
        value = values.get(key, "")
        if not value:
            plan.stay[key] = "empty as docker compose reads it"
        elif not value.strip():
            plan.stay[key] = "only whitespace, which the Infisical CLI refuses to store"
        elif "${" in value:
            plan.stay[key] = "contains ${...}, which Infisical would expand on export"
        else:
            plan.move[key] = Secret(value)
    # Compose interpolates `.env` before it reads the export: a value left in `.env` that
    # refers to a moved key would silently lose it (DATABASE_URL=...${DB_PASSWORD}... -> empty).
    changed = True
    while changed:
        changed = False
        for referrer, raw in settings.dotenv.items():
            if referrer in plan.move:
                continue
            for key in sorted(keys.referenced_variables(raw) & set(plan.move)):
                del plan.move[key]
                plan.stay[key] = f"{referrer} in .env refers to it, and compose reads .env before Infisical's values"
                changed = True
    return plan


def resolved_environments(settings: Settings, dotenv: Path, export: Mapping[str, Secret]) -> dict[str, dict]:
    """Every service's environment as compose resolves it from `dotenv` plus `export`: every
    profile, the compose file and each docker-compose.override.*.yml; {} without a stack."""
    files = tuple(f for f in settings.compose_files if f.is_file())
    files += tuple(sorted(settings.project_dir.glob("docker-compose.override.*.yml")))
    if not files:
        return {}
    with tempfile.TemporaryDirectory(prefix="start-services-migrate-") as tmp:
        env_files = [dotenv]
        if export:
            exported = Path(tmp) / ".env.infisical"
            write_private(exported, render(export, request_for(settings).source))
            env_files.append(exported)
        target = compose.Target(settings.project_dir, settings.project_name, files, tuple(env_files), ("*",))
        result = compose.capture(target.config_json(), compose.compose_env(settings.shell, ("*",)), settings.project_dir)
    if result.returncode != 0:
        m = compose.LOAD_ERROR.search(result.stderr)
        why = compose.load_error_message(m) if m else compose.redact(
            (result.stderr.strip().splitlines() or ["no message"])[-1])
        raise LauncherError(f"cannot resolve the stack's configuration to check the move ({why}); nothing changed",
                            BAD_CONFIG, "fix what docker compose reports, then run migrate again")
    services = json.loads(result.stdout).get("services") or {}
    return {name: dict(service.get("environment") or {}) for name, service in services.items()}


def differences(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """`service: VAR` for every variable a container would receive differently (names only)."""
    found = []
    for service in sorted(set(before) | set(after)):
        old, new = before.get(service, {}), after.get(service, {})
        found += [f"{service}: {var}" for var in sorted(set(old) | set(new)) if old.get(var) != new.get(var)]
    return found


def without_keys(text: str, keys: set[str], when: str) -> str:
    """`.env` text with every assignment of `keys` replaced by a note; all else byte for byte."""
    from dotenv.parser import parse_stream

    bom = "\ufeff" if text.startswith("\ufeff") else ""
    text = text[len(bom):]
    bindings = list(parse_stream(io.StringIO(text)))
    if "".join(b.original.string for b in bindings) != text:
        raise LauncherError("cannot rewrite .env safely: it could not be split into lines exactly", BAD_CONFIG)
    parts = [bom]
    for binding in bindings:
        if binding.key in keys:
            original = binding.original.string
            ending = "\r\n" if original.endswith("\r\n") else ("\n" if original.endswith("\n") else "")
            parts.append(f"# {binding.key} moved to Infisical on {when}{ending}")
        else:
            parts.append(binding.original.string)
    return "".join(parts)


def migrate(settings: Settings, out: Output, apply: bool) -> int:
    require_dotenv(settings)
    refuse_symlink(settings.env_file, "migrate")
    classes = keys.classify(settings)
    classes.require()  # judging by names alone could move Infisical's own keys into Infisical
    masker = seed_masker(settings, classes)
    plan = decide(settings, classes, masker)
    out.result(f"Would move to Infisical ({settings.infisical_env}, {settings.infisical_path}):" if not apply else
               f"Moving to Infisical ({settings.infisical_env}, {settings.infisical_path}):")
    for key in plan.move:
        out.result(f"  {key}")
    if not plan.move:
        out.result("  (nothing)")
    out.result("Staying in .env:")
    for key, why in plan.stay.items():
        out.result(f"  {key}: {why}")
    if not apply:
        out.info("Dry run: nothing changed. Run `python start_services.py migrate --apply` to move them.")
        return OK
    if not plan.move:
        return OK

    masker.add(s.reveal() for s in plan.move.values())
    without_keys(settings.dotenv_text, set(plan.move), "")  # can .env be rewritten? ask before pushing
    request = request_for(settings)
    try:
        session = infisical_source.connect(request, settings.shell, masker)
        before = infisical_source.fetch(request, settings.shell, masker, allow_empty=True, session=session).secrets
    except infisical_source.Unavailable as exc:
        raise LauncherError(f"Infisical is unavailable, nothing changed: {exc}", INFISICAL_UNAVAILABLE) from None

    # What every container receives today; the move must leave it exactly the same.
    received = resolved_environments(settings, settings.env_file, before)

    conflicts = sorted(k for k in plan.move if k in before and before[k] != plan.move[k])
    for key in conflicts:
        out.warn(f"{key}: Infisical already holds another value, which wins at launch; left as it is in both places")
        plan.move.pop(key)
    to_push = {k: v for k, v in plan.move.items() if k not in before}
    try:
        if to_push:
            infisical_source.push(request, session, masker, to_push)
        after = infisical_source.fetch(request, settings.shell, masker, allow_empty=True, session=session).secrets
    except infisical_source.Unavailable as exc:
        raise LauncherError(f"pushing to Infisical failed; .env is unchanged: {exc}", INFISICAL_UNAVAILABLE) from None

    verified = {k for k, v in plan.move.items() if after.get(k) == v}
    failed = sorted(set(plan.move) - verified)
    if failed:
        wrong_copies = [k for k in failed if k in to_push and k in after]
        try:
            if wrong_copies:
                infisical_source.delete(request, session, masker, wrong_copies)
                out.warn(f"removed the wrong copies of {', '.join(wrong_copies)} from Infisical")
        except infisical_source.Unavailable as exc:
            out.error(f"Infisical holds WRONG values for {', '.join(wrong_copies)} and removing them failed: {exc}. "
                      "Delete them in the Infisical UI before the next launch.")
        out.error(f"{', '.join(failed)} did not read back exactly from Infisical; they stay in .env")

    if verified:
        text = settings.dotenv_text  # the one read, under the lock, that the plan came from
        new_text = without_keys(text, verified, datetime.now().strftime("%Y-%m-%d"))
        saved = backup_copy(settings.env_file, text)
        write_private(settings.env_file, new_text)
        # Resolved from the real files: an `env_file: .env` in the stack reads .env itself.
        try:
            changed = differences(received, resolved_environments(settings, settings.env_file, after))
        except BaseException:
            write_private(settings.env_file, text)
            raise
        if changed:
            write_private(settings.env_file, text)  # byte for byte what it was (the backup holds it too)
            created = sorted(k for k in to_push if k in after)
            try:
                if created:
                    infisical_source.delete(request, session, masker, created)
            except infisical_source.Unavailable as exc:
                out.error(f"removing this run's copies of {', '.join(created)} from Infisical failed: {exc}")
            out.error(f"the move would change what containers receive ({', '.join(changed)}); undone: "
                      f"{settings.env_file.name} restored" + (", this run's copies removed from Infisical"
                                                            if created else ""))
            return FAILED
        out.success(f"Moved {len(verified)} secrets to Infisical and removed them from .env "
                    f"(backup: {saved.name}, mode 0600): {', '.join(sorted(verified))}")
    return FAILED if failed else OK
