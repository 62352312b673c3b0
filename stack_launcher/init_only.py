"""Secrets a database keeps from its first start: changing one in Infisical does not change it
in the database, so the service would be locked out. Warn before `up`, with a fix that holds
no secret value (it reads the new one from the recreated container's own environment).
"""
from __future__ import annotations

from . import engine
from .settings import Settings

# How to change the credential in place, by the service that keeps it. Each command runs
# inside the recreated container, whose environment already holds the new value.
FIXES = {
    "postgres": "docker compose -p {project} exec postgres sh -c "
                "'psql -U \"$POSTGRES_USER\" -d postgres -c \"ALTER USER \\\"$POSTGRES_USER\\\" WITH PASSWORD '\\''$POSTGRES_PASSWORD'\\''\"'",
    "infisical-db": "docker compose -p {project}-infisical exec infisical-db sh -c "
                    "'psql -U \"$POSTGRES_USER\" -d postgres -c \"ALTER USER \\\"$POSTGRES_USER\\\" WITH PASSWORD '\\''$POSTGRES_PASSWORD'\\''\"'",
    "neo4j": "set the old value back in Infisical, start, then in Neo4j Browser run "
             "ALTER CURRENT USER SET PASSWORD FROM '<old>' TO '<new>'",
    "minio": "set the old value back in Infisical, start, then change it with "
             "`docker compose -p {project} exec minio mc admin user ...`, or keep the old one",
}
DATA_KEYS = "this value encrypts stored data: the old data cannot be read with a new one; set the old value back in Infisical"


def warnings_for(settings: Settings, changed: list[str]) -> list[str]:
    """One warning per changed init-only secret whose volume already exists."""
    example = settings.project_dir / ".env.example"
    if not changed or not example.is_file():
        return []
    from .catalog import load_catalog
    from .errors import LauncherError

    try:
        catalog = load_catalog(example)
    except LauncherError:
        return []  # the classifier has already said why the catalog cannot be used
    entries = [catalog[k] for k in changed if k in catalog and catalog[k].init_only]
    if not entries:
        return []
    try:
        volumes = engine.volumes(settings.shell, timeout=20)
    except engine.Unanswered:
        volumes = set()  # compose, which runs next, will say what is wrong with Docker
    found = []
    for entry in entries:
        names = {f"{p}_{v}" for v in entry.volumes for p in (settings.project_name, settings.infisical_project_name)}
        kept = sorted(names & volumes)
        if not kept:
            continue
        fix = FIXES.get(entry.init_only, DATA_KEYS if entry.fmt and entry.fmt.startswith(("hex", "base64")) else
                        "set the old value back in Infisical, or change it inside the service first")
        found.append(f"{entry.key} changed, but {entry.init_only} keeps the old value in volume {kept[0]} "
                     f"from its first start. Fix: {fix.format(project=settings.project_name)}")
    return found
