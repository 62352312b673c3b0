"""Which `.env` keys are what: config, bootstrap or secret, from `.env.example`'s markers,
and by name where it is silent; and which of them the user's shell overrides.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

from .errors import LauncherError
from .secret import Secret
from .settings import CREDENTIAL_VARS, Settings

# Names that look like secrets, for `.env` keys that .env.example does not categorise.
SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|AUTH|SALT|CREDENTIAL|PRIVATE", re.IGNORECASE)
LAUNCHER_SETTINGS = {"INFISICAL_ENVIRONMENT", "INFISICAL_SECRET_PATH", "INFISICAL_PROJECT_ID",
                     "INFISICAL_API_URL", "COMPOSE_PROJECT_NAME", *CREDENTIAL_VARS}


def example_categories(project_dir: Path) -> dict[str, str]:
    """Each key's category from `.env.example` (config, bootstrap, secret); {} without one."""
    path = project_dir / ".env.example"
    if not path.is_file():
        return {}
    from .catalog import load_catalog

    try:
        return {key: entry.category for key, entry in load_catalog(path).items()}
    except LauncherError:
        return {}


def dotenv_secret_values(settings: Settings) -> list[str]:
    """Values in `.env` to mask: secret and bootstrap keys, and uncategorised ones named like secrets."""
    categories = example_categories(settings.project_dir)
    values = []
    for key, value in settings.dotenv.items():
        category = categories.get(key)
        if value and (category in ("secret", "bootstrap")
                      or (category is None and (key in CREDENTIAL_VARS or SECRET_NAME.search(key)))):
            values.append(value)
            values.append(value.replace("\\$", "$"))  # compose reads "a\$b" as a$b, python-dotenv as a\$b
    return values


def shadowed_keys(settings: Settings, secrets: Mapping[str, Secret]) -> list[str]:
    """Keys the user's shell exports with another value: compose would use the shell's."""
    keys = (set(settings.dotenv) | set(secrets)) - LAUNCHER_SETTINGS
    shadowed = []
    for key in sorted(keys):
        if key not in settings.shell:
            continue
        ours = secrets[key].reveal() if key in secrets else settings.dotenv.get(key)
        if settings.shell[key] != ours:
            shadowed.append(key)
    return shadowed
