"""One masker for everything relayed from a subprocess: known secret values become ***.

Values shorter than 6 characters are not masked: they would blank out ordinary words and
numbers, and a secret that short protects nothing anyway. A value that spans lines is
caught by holding back the trailing lines that could be the start of one. JSON events
(compose's `--progress json`, the CLI's output) are decoded, masked, and encoded again,
since JSON escapes quotes, backslashes and newlines inside a value.
"""
from __future__ import annotations

import json
import re
from typing import Iterable

MIN_LENGTH = 6
MASK = "***"


class Masker:
    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._multiline_prefixes: list[str] = []
        self._buffer = ""
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        new = {v for v in values if len(v) >= MIN_LENGTH} - self._values
        if not new:
            return
        self._values |= new
        ordered = sorted(self._values, key=len, reverse=True)  # longest first: no half-masks
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
        # Prefixes of multi-line values that end a line: what a held-back tail may be.
        self._multiline_prefixes = sorted(
            {v[: i + 1] for v in self._values for i, ch in enumerate(v) if ch == "\n" and i + 1 < len(v)},
            key=len, reverse=True,
        )

    def mask(self, text: str) -> str:
        """Mask a complete piece of text (a message, a whole output)."""
        if self._pattern is None or not text:
            return text
        if text.lstrip().startswith(("{", "[")):
            decoded = self._mask_json(text)
            if decoded is not None:
                return decoded
        return self._pattern.sub(MASK, text)

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
            return self._pattern.sub(MASK, value) if self._pattern else value
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
        if self._multiline_prefixes:
            # A multi-line value may have begun in the tail we hold: keep the lines it spans.
            masked_so_far = self._pattern.sub(MASK, self._buffer[:cut]) if self._pattern else self._buffer[:cut]
            for prefix in self._multiline_prefixes:
                if masked_so_far.endswith(prefix):
                    start = self._buffer.rfind(prefix, 0, cut)
                    cut = self._buffer.rfind("\n", 0, start) + 1
                    break
        ready, self._buffer = self._buffer[:cut], self._buffer[cut:]
        if not ready:
            return []
        masked = self._pattern.sub(MASK, ready) if self._pattern else ready
        return [self.mask(line) if line.lstrip().startswith("{") else line for line in masked.splitlines()]

    def flush(self) -> list[str]:
        """End of stream: whatever was held back, masked."""
        rest, self._buffer = self._buffer, ""
        return self.mask(rest).splitlines() if rest else []
