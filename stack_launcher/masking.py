"""One masker for everything relayed from a subprocess: known secret values become ***.

Values shorter than 6 characters are not masked: they would blank out ordinary words and
numbers, and a secret that short protects nothing anyway. A value that spans lines is
caught by holding back the trailing lines that could be the start of one. JSON events
(compose's `--progress json`, the CLI's output) are decoded, masked, and encoded again,
since JSON escapes quotes, backslashes and newlines inside a value.
"""
from __future__ import annotations

import json
from typing import Iterable

MIN_LENGTH = 6
MASK = "***"


def go_quote(value: str) -> str:
    """The inside of Go's strconv.Quote (`%q`), as compose and the daemon print values in
    errors (`parsing "Tr0ub4dor\\"&3"`): `\\` and `"` escaped, controls as \\n \\t \\xNN or \\uNNNN."""
    quoted = value.translate(_GO_ASCII)
    if quoted.isascii() or quoted.isprintable():
        return quoted  # the common case in one C-level pass; the loop below is 20x slower
    out = []
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable() and ch != " ":
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
# go_quote's answer for every ASCII character (the same rules as its loop, as one table).
_GO_ASCII = {code: ("\\" + chr(code) if chr(code) in '"\\' else _GO_ESCAPES.get(chr(code)) or
                    (f"\\x{code:02x}" if code < 0x20 or code == 0x7F else chr(code))) for code in range(128)}


_ESCAPED = frozenset('"\\&<>')


def printed_forms(value: str) -> set[str]:
    """Every form a subprocess may print a value in: raw, JSON-escaped (ASCII and not; Go's
    encoding/json also escapes & < >), and Go-quoted."""
    if value.isascii() and value.isprintable() and not _ESCAPED.intersection(value):
        return {value}  # every encoder prints it as it is (most generated secrets): skip the work
    forms = {value, go_quote(value), json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    for text in (json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]):  # Go's encoding/json
        forms.add(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))
    return forms


class Masker:
    """Values are looked up by their first MIN_LENGTH characters, so building a masker and
    masking a line cost the same for 10 secrets as for 10,000 (one alternation regex of
    every value took 0.4 s to compile at 10,000)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._by_prefix: dict[str, list[str]] = {}
        self._multiline_prefixes: list[str] = []
        self._buffer = ""
        self._added: set[str] = set()
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        changed = set()
        multiline = []
        # A run adds the same values more than once (the last export, then the fresh one that
        # mostly repeats it): each is worked out once.
        fresh = {v for v in values if len(v) >= MIN_LENGTH} - self._added
        # A multi-line value can reach us cut into separate strings (compose's JSON events:
        # one line in an error's message, the next in a warning): each line is a value too.
        fresh |= {line for v in fresh if "\n" in v for line in v.splitlines() if len(line) >= MIN_LENGTH}
        fresh -= self._added
        for value in {form for v in fresh for form in printed_forms(v)}:
            if len(value) < MIN_LENGTH:
                continue
            bucket = self._by_prefix.setdefault(value[:MIN_LENGTH], [])
            if value not in bucket:
                bucket.append(value)
                changed.add(value[:MIN_LENGTH])
                if "\n" in value:
                    multiline.append(value)
        self._added |= fresh  # only once every form of them is in the table
        for prefix in changed:
            self._by_prefix[prefix].sort(key=len, reverse=True)  # longest first: no half-masks
        if multiline:
            # Prefixes of multi-line values that end a line: what a held-back tail may be.
            new = {v[: i + 1] for v in multiline for i, ch in enumerate(v) if ch == "\n" and i + 1 < len(v)}
            self._multiline_prefixes = sorted(set(self._multiline_prefixes) | new, key=len, reverse=True)

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """Where known values stand in `text`: leftmost first, the longest at each place."""
        table = self._by_prefix
        spans: list[tuple[int, int]] = []
        if not table:
            return spans
        i, end = 0, len(text) - MIN_LENGTH
        while i <= end:
            candidates = table.get(text[i:i + MIN_LENGTH])
            value = next((v for v in candidates if text.startswith(v, i)), None) if candidates else None
            if value is None:
                i += 1
            else:
                spans.append((i, i + len(value)))
                i += len(value)
        return spans

    def _sub(self, text: str) -> str:
        spans = self._spans(text)
        if not spans:
            return text
        parts, start = [], 0
        for begin, end in spans:
            parts += (text[start:begin], MASK)
            start = end
        parts.append(text[start:])
        return "".join(parts)

    def mask(self, text: str) -> str:
        """Mask a complete piece of text (a message, a whole output)."""
        if not self._by_prefix or not text:
            return text
        if text.lstrip().startswith(("{", "[")):
            decoded = self._mask_json(text)
            if decoded is not None:
                return decoded
        return self._sub(text)

    def _mask_json(self, text: str) -> str | None:
        try:
            data = json.loads(text)
        except ValueError:
            return None
        masked = self._mask_value(data)
        if masked == data:
            return text
        return json.dumps(masked, ensure_ascii=False) + ("\n" if text.endswith("\n") else "")

    def _mask_value(self, value):
        if isinstance(value, str):
            return self._sub(value)
        if isinstance(value, list):
            return [self._mask_value(v) for v in value]
        if isinstance(value, dict):
            return {k: self._mask_value(v) for k, v in value.items()}
        return value

    def feed(self, chunk: str) -> list[str]:
        """Take a chunk of a stream; return the masked complete lines safe to show now."""
        self._buffer += chunk
        cut = self._buffer.rfind("\n") + 1
        if cut == 0:
            return []
        region = self._buffer[:cut]
        if self._multiline_prefixes:
            # Hold back the lines where a multi-line value may have begun but not yet ended...
            held = next((cut - len(p) for p in self._multiline_prefixes if region.endswith(p)), cut)
            cut = region.rfind("\n", 0, held) + 1 if held < cut else cut
            # ...and never cut through a value already complete.
            for begin, end in reversed(self._spans(region)):
                if begin < cut < end:
                    cut = region.rfind("\n", 0, begin) + 1
        ready, self._buffer = self._buffer[:cut], self._buffer[cut:]
        if not ready:
            return []
        masked = self._sub(ready)
        return [self.mask(line) if line.lstrip().startswith("{") else line for line in masked.splitlines()]

    def flush(self) -> list[str]:
        """End of stream: whatever was held back, masked."""
        rest, self._buffer = self._buffer, ""
        return self.mask(rest).splitlines() if rest else []
