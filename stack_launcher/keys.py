"""The one classifier of `.env` keys: config, bootstrap or secret.

Every command asks it the same questions (is this value masked? may `migrate` move this
key?) and gets the same answers:
- `.env.example`'s markers decide (docs/env-example-format.md);
- the Infisical CLI's credentials are bootstrap, the launcher's own settings config;
- a key that `.env.example` does not name is a secret when its name looks like one
  (SECRET_NAME), config otherwise;
- a key that `infisical/docker-compose.yml` interpolates is Infisical's own: it never
  moves into Infisical, whatever `.env.example` says (Infisical could not start without
  it, and every secret would be lost), and it is masked only if `.env.example` marks it
  bootstrap or secret (or, unnamed there, by the name rule).
When `.env.example` is missing or cannot be parsed, `problem` says why; the name rule then
serves for masking, and the commands that move or judge keys stop (exit 6).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from .errors import BAD_CONFIG, LauncherError
from .secret import Secret
from .settings import CREDENTIAL_VARS, Settings

if TYPE_CHECKING:
    from .catalog import Entry

# Names that look like secrets, for `.env` keys that .env.example does not categorise.
SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|AUTH|SALT|CREDENTIAL|PRIVATE", re.IGNORECASE)
# Settings the launcher itself reads from `.env`: config, never moved, never masked.
LAUNCHER_SETTINGS = frozenset({"INFISICAL_ENVIRONMENT", "INFISICAL_SECRET_PATH", "INFISICAL_PROJECT_ID",
                               "INFISICAL_API_URL", "INFISICAL_DOMAIN", "COMPOSE_PROJECT_NAME"})
# Keyed by this, `--target swarm` names Docker secrets by an HMAC of their value: it names
# what is in the swarm, so it cannot live in Infisical either (docs/swarm.md).
SWARM_NAME_KEY = "SWARM_SECRET_NAME_KEY"
CONFIG, BOOTSTRAP, SECRET = "config", "bootstrap", "secret"
# `$$` is an escaped dollar; `${NAME...}` and `$NAME` are references (compose's rules).
_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)|\$([A-Za-z_][A-Za-z0-9_]*)")


def referenced_variables(text: str) -> frozenset[str]:
    """The variables a compose file interpolates."""
    return frozenset(m.group(1) or m.group(2) for m in _REFERENCE.finditer(text) if m.group(0) != "$$")


@dataclass(frozen=True)
class Classes:
    entries: Mapping[str, "Entry"] = field(default_factory=dict)  # .env.example's catalog
    infisical_refs: frozenset[str] = frozenset()  # keys infisical/docker-compose.yml interpolates
    problem: str | None = None  # why .env.example could not be used; None when it was

    def category(self, key: str) -> str:
        if key in self.entries:
            return self.entries[key].category
        if key in CREDENTIAL_VARS or key == SWARM_NAME_KEY:
            return BOOTSTRAP
        if key in LAUNCHER_SETTINGS:
            return CONFIG
        return SECRET if SECRET_NAME.search(key) else CONFIG

    def masked(self, key: str) -> bool:
        return self.category(key) != CONFIG

    def stays(self, key: str) -> str | None:
        """Why `key` never moves into Infisical, or None when it may (if it holds a value)."""
        if key in self.infisical_refs:
            return "Infisical's own setting (infisical/docker-compose.yml uses it)"
        category = self.category(key)
        if category == BOOTSTRAP:
            return "bootstrap secret (Infisical's own; stays in .env)"
        if category == CONFIG:
            return "config" if key in self.entries or key in LAUNCHER_SETTINGS else \
                "not in .env.example and not named like a secret"
        return None

    def movable(self, key: str, value: str) -> bool:
        """Would `migrate` move this key? (It also asks compose for the exact value.)"""
        return bool(value) and "${" not in value and self.stays(key) is None

    def require(self) -> None:
        """Stop (exit 6) when the catalog could not be read: moving or judging keys by name
        alone could move Infisical's own keys into Infisical."""
        if self.problem:
            raise LauncherError(self.problem, BAD_CONFIG,
                                "fix .env.example (see docs/env-example-format.md), or restore it with git")


def classify(settings: Settings) -> Classes:
    from .catalog import load_catalog

    refs = frozenset()
    try:
        refs = referenced_variables(settings.infisical_compose_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass  # no local Infisical in this project
    except (OSError, UnicodeDecodeError) as exc:
        return Classes(infisical_refs=refs, problem=f"cannot read {settings.infisical_compose_file}: "
                       f"{getattr(exc, 'strerror', None) or exc.__class__.__name__}")
    path = settings.project_dir / ".env.example"
    if not path.exists():
        return Classes(infisical_refs=refs, problem=f"no .env.example in {settings.project_dir}: "
                       "cannot tell config from secrets")
    try:
        catalog = load_catalog(path)
    except LauncherError as exc:
        return Classes(infisical_refs=refs, problem=f".env.example cannot be used: {exc.message}")
    return Classes(catalog, refs)


def mask_values(settings: Settings, classes: Classes) -> list[str]:
    """Every form in which a masked `.env` value may be printed: as written, as compose reads
    `\\$` (a literal `$`), as python-dotenv interpolates `${VAR}`, and with `$VAR` and
    `${VAR}` expanded as compose does from the shell and `.env`."""
    from .envfile import read_dotenv

    values = []
    interpolated: Mapping[str, str] | None = None
    for key, value in settings.dotenv.items():
        if not value or not classes.masked(key):
            continue
        values += [value, value.replace("\\$", "$")]
        if "$" in value:
            if interpolated is None:
                interpolated = read_dotenv(settings.env_file, interpolate=True)
            values.append(interpolated.get(key, ""))
            values.append(_expand(value, settings.shell, interpolated))
    return [v for v in values if v]


_VARIABLE = re.compile(r"\\\$|\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _expand(value: str, shell: Mapping[str, str], dotenv: Mapping[str, str]) -> str:
    """`$VAR`, `${VAR}` and `${VAR:-default}` as compose expands them (shell first, then
    `.env`); python-dotenv expands only the braced form."""
    def lookup(m: re.Match) -> str:
        if m.group(0) in ("\\$", "$$"):
            return "$"
        name = m.group(1) or m.group(4)
        found = shell.get(name, dotenv.get(name))
        if m.group(2) and m.group(2).endswith("-") and not found:
            return m.group(3) or ""
        return found or ""

    return _VARIABLE.sub(lookup, value)


def shadowed_keys(settings: Settings, secrets: Mapping[str, Secret]) -> list[str]:
    """Keys the user's shell exports with another value: compose would use the shell's."""
    keys = (set(settings.dotenv) | set(secrets)) - LAUNCHER_SETTINGS - set(CREDENTIAL_VARS)
    shadowed = []
    for key in sorted(keys):
        if key not in settings.shell:
            continue
        ours = secrets[key].reveal() if key in secrets else settings.dotenv.get(key)
        if settings.shell[key] != ours:
            shadowed.append(key)
    return shadowed

