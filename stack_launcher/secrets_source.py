"""Which secrets the stack starts with: fresh export -> last good export -> `.env` only.

The result says where the secrets came from and why, so the user reads in one line what
happened; the caller never has to guess from side effects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import infisical_source
from .envfile import Source, read_exported, read_header
from .errors import INFISICAL_UNAVAILABLE, LauncherError
from .masking import Masker
from .output import Output
from .secret import Secret
from .settings import SecretsMode, Settings

FRESH, LAST_GOOD, DOTENV_ONLY = "infisical", "last good export", ".env only"
DEPLOYED = "the swarm's deployed versions"  # --target swarm: the swarm is the last good copy


@dataclass(frozen=True)
class Obtained:
    origin: str  # FRESH, LAST_GOOD or DOTENV_ONLY
    secrets: dict[str, Secret] = field(default_factory=dict)
    reason: str = ""  # why a fresh export was not used
    warnings: tuple[str, ...] = ()


def request_for(settings: Settings) -> infisical_source.Request:
    return infisical_source.Request(
        environment=settings.infisical_env,
        path=settings.infisical_path,
        project_id=settings.project_id,
        api_url=settings.api_url,
        timeout=settings.timeout,
        cwd=str(settings.project_dir),
        credentials=settings.credentials,
    )


def humanize_age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def last_good(path: Path, source: Source, max_stale: timedelta) -> tuple[dict[str, Secret], str]:
    """The previous export when it came from the same place and is fresh enough.

    Returns (secrets, note); secrets is empty when it cannot be used, and note says why.
    """
    header = read_header(path)
    if header is None:
        return {}, f"no previous export at {path.name}"
    if header.source != source:
        return {}, f"{path.name} came from another project, environment or path"
    if header.exported_at is None:
        return {}, f"{path.name} does not say when it was exported"
    age = datetime.now(timezone.utc) - header.exported_at
    if age > max_stale:
        return {}, f"{path.name} is {humanize_age(age)} old, older than --max-stale {humanize_age(max_stale)}"
    secrets = read_exported(path)
    if not secrets:
        return {}, f"{path.name} holds no secrets"
    return secrets, f"exported {humanize_age(age)} ago"


def asks_infisical(settings: Settings) -> bool:
    return settings.mode not in (SecretsMode.skip, SecretsMode.offline)


def early_request(settings: Settings) -> infisical_source.Request | None:
    """The export to start before the rest of the launch's work; None when this run exports
    nothing, or must log in first (a login's errors are read at once, and the masker is not
    complete yet)."""
    if not asks_infisical(settings):
        return None
    request = request_for(settings)
    return None if infisical_source.needs_login(request, settings.shell) else request


def start_early(settings: Settings, masker: Masker) -> infisical_source.PendingExport | None:
    """Start the export at once: the rest of the launch's work then runs while the CLI waits
    for the server."""
    request = early_request(settings)
    return None if request is None else infisical_source.start_export(request, settings.shell, masker)


class LastGoodExport:
    """`--target compose`'s fallback: the last good export file, if fresh enough."""

    def __init__(self, settings: Settings, max_stale: timedelta) -> None:
        self.settings, self.max_stale = settings, max_stale
        self.source = request_for(settings).source

    def offline(self) -> Obtained:
        secrets, note = last_good(self.settings.output, self.source, self.max_stale)
        if not secrets:
            raise LauncherError(f"--offline: no usable last good export ({note})", INFISICAL_UNAVAILABLE,
                                "run once with Infisical reachable, or raise --max-stale")
        return Obtained(LAST_GOOD, secrets, reason=f"--offline; {note}")

    def unavailable(self, reason: str) -> Obtained:
        secrets, note = last_good(self.settings.output, self.source, self.max_stale)
        if secrets:
            return Obtained(LAST_GOOD, secrets, reason=f"{reason}; using the last good export, {note}")
        return Obtained(DOTENV_ONLY, reason=f"{reason}; {note}" if self.settings.output.exists() else reason)


class DeployedSwarm:
    """`--target swarm`'s fallback: nothing is written and no `.env.infisical` is read; the
    swarm itself is the last good copy. When Infisical cannot be had and the stack is
    deployed, the result is DEPLOYED (nothing rotates); a first deploy uses `.env`.
    `kept_secrets`: the stack has no service but its Docker secrets are still there (after
    `down`): it was deployed before, so `.env`'s values would silently replace Infisical's;
    refused (exit 3) unless --skip-infisical asks for `.env`."""

    def __init__(self, settings: Settings, deployed: bool, kept_secrets: bool = False) -> None:
        self.settings, self.deployed, self.kept_secrets = settings, deployed, kept_secrets

    def offline(self) -> Obtained:
        if not self.deployed:
            raise LauncherError("--offline --target swarm: the stack is not deployed yet, so there are no deployed "
                                "secret versions to keep", INFISICAL_UNAVAILABLE,
                                "run once with Infisical reachable, or with --skip-infisical to use .env")
        return Obtained(DEPLOYED, reason="--offline")

    def unavailable(self, reason: str) -> Obtained:
        name = self.settings.env_file.name
        if not self.deployed and self.kept_secrets:
            raise LauncherError(
                f"Infisical unavailable: {reason}; the stack has no running services but Docker secrets from an "
                f"earlier deploy, so {name}'s values could replace Infisical's", INFISICAL_UNAVAILABLE,
                f"run again when Infisical is reachable, or with --skip-infisical to deploy {name}'s values")
        return Obtained(DEPLOYED if self.deployed else DOTENV_ONLY, reason=reason)


def obtain(settings: Settings, masker: Masker, max_stale: timedelta = timedelta(0), unreachable: str | None = None,
           pending: infisical_source.PendingExport | None = None, ask_again: bool = False, *,
           fallback: LastGoodExport | DeployedSwarm | None = None) -> Obtained:
    """The one decision for both targets: --skip-infisical -> `.env`; --offline -> the
    fallback; else a fresh export, and when Infisical cannot be had, --require-infisical
    stops (exit 3) or the fallback decides (default: the last good export, `max_stale`).
    `unreachable`: a reason known before asking (the local Infisical did not start).
    `pending`: the export `start_early` began, if any; `ask_again`: if it failed, ask once
    more (it began before the local Infisical was known to be healthy)."""
    if settings.mode is SecretsMode.skip:
        if pending is not None:
            pending.cancel()
        return Obtained(DOTENV_ONLY, reason="--skip-infisical")
    fallback = fallback or LastGoodExport(settings, max_stale)
    if settings.mode is SecretsMode.offline:
        return fallback.offline()
    try:
        if unreachable:
            if pending is not None:
                pending.cancel()
            raise infisical_source.Unavailable(unreachable)
        export = _export(request_for(settings), settings, masker, pending, ask_again)
    except infisical_source.Unavailable as exc:
        reason = str(exc)
        if settings.mode is SecretsMode.require:
            raise LauncherError(f"Infisical is required but unavailable: {reason}", INFISICAL_UNAVAILABLE) from None
        return fallback.unavailable(reason)
    return Obtained(FRESH, export.secrets, warnings=tuple(export.warnings))


def _export(request: infisical_source.Request, settings: Settings, masker: Masker,
            pending: infisical_source.PendingExport | None, ask_again: bool) -> infisical_source.Export:
    if pending is not None:
        try:
            return pending.collect()
        except infisical_source.Unavailable:
            if not ask_again:
                raise
    return infisical_source.start_export(request, settings.shell, masker).collect()


def obtain_for_swarm(settings: Settings, masker: Masker, deployed: bool, unreachable: str | None = None, *,
                     kept_secrets: bool = False) -> Obtained:
    """`--target swarm`: fresh export -> the versions the swarm already runs -> `.env`."""
    return obtain(settings, masker, unreachable=unreachable,
                  fallback=DeployedSwarm(settings, deployed, kept_secrets))


@dataclass(frozen=True)
class Diff:
    added: list[str]
    removed: list[str]
    changed: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        parts = [f"{label}: {', '.join(keys)}" for label, keys in
                 (("added", self.added), ("changed", self.changed), ("removed", self.removed)) if keys]
        return "; ".join(parts)


def diff_secrets(old: dict, new: dict) -> Diff:
    return Diff(
        added=sorted(new.keys() - old.keys()),
        removed=sorted(old.keys() - new.keys()),
        changed=sorted(k for k in new.keys() & old.keys() if new[k] != old[k]),
    )


def report_origin(obtained: Obtained, settings: Settings, out: Output) -> None:
    where = f"environment '{settings.infisical_env}', path '{settings.infisical_path}'"
    if obtained.origin == FRESH:
        out.info(f"Secrets: {len(obtained.secrets)} from Infisical ({where}).")
    elif obtained.origin == DEPLOYED:
        out.warn(f"Infisical unavailable: {obtained.reason}." if obtained.reason != "--offline" else
                 "--offline: Infisical is not asked.")
        out.info("Secrets: keeping the versions the swarm already runs; nothing is rotated or redeployed.")
    elif obtained.origin == LAST_GOOD:
        out.warn(f"Infisical unavailable: {obtained.reason}.")
        out.info(f"Secrets: {len(obtained.secrets)} from the last good export {settings.output.name}.")
    elif obtained.reason == "--skip-infisical":
        out.info(f"Secrets: {settings.env_file.name} only (--skip-infisical).")
    else:
        out.warn(f"Infisical unavailable: {obtained.reason}.")
        out.info(f"Secrets: falling back to {settings.env_file.name} only.")
    for warning in obtained.warnings:
        out.warn(warning)
