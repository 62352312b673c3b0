"""The command line's fixed choices and defaults, with no imports beyond the standard
library's smallest: `cli` needs them to build every command, so `--help` stays fast
(docs/benchmarks.md). `settings` re-exports them.
"""
from __future__ import annotations

import re
from datetime import timedelta
from enum import Enum

DEFAULT_MAX_STALE = "7d"  # the oldest last good export `up` uses without --max-stale


class Profile(str, Enum):
    cpu = "cpu"
    gpu_nvidia = "gpu-nvidia"
    gpu_amd = "gpu-amd"
    none = "none"


class Environment(str, Enum):
    private = "private"
    public = "public"


class DeployTarget(str, Enum):
    compose = "compose"  # `docker compose` on this machine (the default)
    swarm = "swarm"  # `docker stack deploy` to the swarm this engine manages (docs/swarm.md)


class SecretsMode(str, Enum):
    fresh = "fresh"  # export, fall back when it fails
    require = "require"  # export or fail
    skip = "skip"  # `.env` only
    offline = "offline"  # the last good export only


def parse_duration(text: str) -> timedelta:
    """`30m`, `12h`, `7d` (at most 100 years); ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d{1,9})\s*([smhd])\s*", text or "")
    if not m:
        raise ValueError("use a number and a unit: 30m, 12h, 7d")
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if seconds > 100 * 365 * 86400:
        raise ValueError("at most 100 years (36500d)")
    return timedelta(seconds=seconds)
