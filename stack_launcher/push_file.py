"""The YAML file `infisical secrets set --file=<temp>.yaml` reads: one line per secret.

Why not JSON strings (JSON is YAML, after all)? The CLI reads a `.yaml` push file with
go-yaml (gopkg.in/yaml.v3: `yaml.Unmarshal` into `map[string]interface{}` in
packages/util/secrets.go, parseSecrets), and go-yaml is not a JSON parser:

- it rejects the `\\uD800`-`\\uDFFF` escapes JSON uses for characters outside the Basic
  Multilingual Plane, so `json.dumps("🔑")` (`"\\ud83d\\udd11"`) fails the whole push with
  "found invalid Unicode character escape code" (yaml.v3 scannerc.go,
  yaml_parser_scan_flow_scalar);
- its reader refuses raw DEL, C1 controls, U+FFFE and U+FFFF anywhere in the file, quoted
  or not: "control characters are not allowed" (readerc.go, yaml_parser_update_buffer
  allows only TAB, LF, CR, 0x20-0x7E, NEL, 0xA0-0xD7FF, 0xE000-0xFFFD, 0x10000-0x10FFFF);
- it treats raw CR, LF, NEL (U+0085), U+2028 and U+2029 inside a quoted scalar as line
  breaks and folds them: one NEL becomes a space, two become a newline, and the blanks
  around a raw U+2028 disappear;
- it knows YAML's escapes only: `\\xXX`, `\\uXXXX`, `\\UXXXXXXXX` and the short ones, but not
  JSON's `\\/` (yaml.v3 3.0.1: "found unknown escape character").

So every value is written as a YAML double-quoted scalar on one line, with `\\\\`, `\\"`,
every C0 control, DEL, every C1 control (NEL included), U+2028, U+2029, U+FEFF and every
Unicode noncharacter (U+FDD0-U+FDEF, U+xFFFE, U+xFFFF) escaped; everything else, the
characters outside the BMP included, is written raw as UTF-8. go-yaml reads each value
back exactly (tests/test_push_file.py checks this against the real go-yaml). Keys are
quoted the same way, so a name such as `true`, `null` or `1` stays a string.

Two things cannot be written: a lone surrogate (not a Unicode character; there is no
UTF-8 for it and go-yaml refuses its escape), and a key whose quoted form is longer than
1024 characters (go-yaml only looks that far for the `:` of a one-line key). Both raise
ValueError naming the key, never the value.
"""
from __future__ import annotations

import re
from typing import Mapping

# go-yaml drops a one-line ("simple") key whose ':' is more than 1024 characters past the
# key's first character (yaml.v3 scannerc.go, yaml_parser_stale_simple_keys).
MAX_QUOTED_KEY = 1024

_SHORT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}

_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))

# Characters written as escapes; the surrogate range is here only to be refused.
_ESCAPED = re.compile(
    '[\\\\"\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff' + _NONCHARACTERS + "\ud800-\udfff]")


class _LoneSurrogate(Exception):
    pass


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short:
        return short
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        raise _LoneSurrogate
    if code <= 0xFF:
        return f"\\x{code:02X}"
    if code <= 0xFFFF:
        return f"\\u{code:04X}"
    return f"\\U{code:08X}"


def quote(text: str) -> str:
    """`text` as a YAML double-quoted scalar that go-yaml reads back unchanged.

    Raises ValueError for a lone surrogate (the message names no part of `text`)."""
    try:
        return '"' + _ESCAPED.sub(_escape, text) + '"'
    except _LoneSurrogate:
        raise ValueError("contains a lone surrogate (not a Unicode character)") from None


def render(values: Mapping[str, str]) -> str:
    """The push file's text: `"KEY": "value"` per line, in the mapping's order.

    An empty mapping gives `{}` (an empty YAML map). Raises ValueError naming the key when
    a key or value holds a lone surrogate or a key is too long to be a YAML key, and
    TypeError naming the key for a value that is not a str; a value never appears in a
    message.
    """
    lines = []
    for key, value in values.items():
        if not isinstance(key, str):
            raise TypeError(f"secret name {key!r} is not a string")
        if not isinstance(value, str):
            raise TypeError(f"the value of secret {key!r} is not a string")
        try:
            quoted_key = quote(key)
        except ValueError:
            raise ValueError(f"secret name {key!r} contains a lone surrogate, which no "
                             "YAML file (nor Infisical) can hold") from None
        if len(quoted_key) > MAX_QUOTED_KEY:
            raise ValueError(f"secret name {key[:40]!r}... is {len(key)} characters long; "
                             f"go-yaml reads names up to {MAX_QUOTED_KEY - 2} characters")
        try:
            quoted_value = quote(value)
        except ValueError:
            raise ValueError(f"the value of secret {key!r} contains a lone surrogate "
                             "(half of a UTF-16 pair), which cannot be stored in Infisical") from None
        lines.append(f"{quoted_key}: {quoted_value}\n")
    return "".join(lines) if lines else "{}\n"
