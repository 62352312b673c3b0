"""Strong random values in the formats `.env.example` declares (see docs/env-example-format.md).

Every format yields only characters that are safe unquoted in a dotenv file and in YAML;
`password` and `neo4j` yield only [A-Za-z0-9], so they are also safe inside connection URIs
(`@ : / % # ?` break them).
"""
from __future__ import annotations

import string

# secrets, base64 and uuid are imported where a value is made: every launch validates the
# catalog's formats (parse_format), only `init` generates (docs/benchmarks.md: ~4 ms a run).
ALPHANUMERIC = string.ascii_letters + string.digits
KINDS_WITH_SIZE = ("hex", "base64", "password", "neo4j")
MAX_SIZE = 1024


def parse_format(fmt: str) -> tuple[str, int | None]:
    """Split `kind:N` into (kind, N); `uuid` has no size. ValueError on anything else."""
    kind, sep, size = fmt.partition(":")
    if kind == "uuid" and not sep:
        return kind, None
    if kind not in KINDS_WITH_SIZE or not sep:
        raise ValueError(f"unknown format {fmt!r} (expected hex:N, base64:N, password:N, neo4j:N or uuid)")
    if not size.isdigit() or not 1 <= int(size) <= MAX_SIZE:
        raise ValueError(f"bad size in format {fmt!r} (expected a whole number from 1 to {MAX_SIZE})")
    return kind, int(size)


def password(length: int) -> str:
    import secrets

    return "".join(secrets.choice(ALPHANUMERIC) for _ in range(length))


def generate(fmt: str) -> str:
    """A new random value in `fmt`: hex:N (N bytes as 2N hex chars), base64:N (N bytes,
    standard base64), password:N (N chars of [A-Za-z0-9]), neo4j:N (`neo4j/` + password:N),
    uuid (a random UUID4)."""
    import base64
    import secrets
    import uuid

    kind, size = parse_format(fmt)
    if kind == "hex":
        return secrets.token_hex(size)
    if kind == "base64":
        return base64.b64encode(secrets.token_bytes(size)).decode("ascii")
    if kind == "password":
        return password(size)
    if kind == "neo4j":
        return "neo4j/" + password(size)
    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
