"""The one timing helper: ways of doing the same thing, measured side by side, taking turns.

Absolute milliseconds do not carry from one machine to another, so every goal is a ratio
of two ways measured in the same run. `interleave` runs each way once per round, reversing
the order every other round (A B, B A, A B, ...), so that drift in the machine (another
process, the page cache, the engine) hits every way alike. It times only the call itself:
`before` and `after` run outside the clock (to rotate a secret, to count containers).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


@dataclass
class Comparison:
    """Samples (seconds) of each way, round by round; the first two ways are A and B."""

    samples: dict[str, list[float]]
    results: dict[str, list[Any]] = field(default_factory=dict)  # what each call returned, per round
    checks: dict[str, list[Any]] = field(default_factory=dict)  # what `after` returned, per round

    @property
    def ways(self) -> list[str]:
        return list(self.samples)

    def median_ms(self, way: str) -> float:
        return ms(statistics.median(self.samples[way]))

    def ratio(self, a: str | None = None, b: str | None = None) -> float:
        """median(A) / median(B); by default the first way over the second."""
        a, b = a or self.ways[0], b or self.ways[1]
        return round(statistics.median(self.samples[a]) / statistics.median(self.samples[b]), 3)

    def round_ratios(self, a: str | None = None, b: str | None = None) -> list[float]:
        """A / B within each round: their spread says how steady the ratio is."""
        a, b = a or self.ways[0], b or self.ways[1]
        return [round(x / y, 3) for x, y in zip(self.samples[a], self.samples[b])]

    def summary(self, a: str | None = None, b: str | None = None) -> dict[str, Any]:
        """{"a": name, "b": name, "a_ms", "b_ms", "ratio", "rounds", "round_ratios": [min, max]}."""
        a, b = a or self.ways[0], b or self.ways[1]
        per_round = self.round_ratios(a, b)
        return {"a": a, "b": b, "a_ms": self.median_ms(a), "b_ms": self.median_ms(b), "ratio": self.ratio(a, b),
                "rounds": len(per_round), "round_ratios": [min(per_round), max(per_round)]}

    def as_dict(self) -> dict[str, Any]:
        return {"median_ms": {w: self.median_ms(w) for w in self.ways},
                "samples_ms": {w: [ms(s) for s in v] for w, v in self.samples.items()}}


def interleave(ways: Mapping[str, Callable[[], Any]], rounds: int, *, warmup: int = 1,
               before: Callable[[str], None] | None = None,
               after: Callable[[str, Any], Any] | None = None) -> Comparison:
    """Run every way `rounds` times, taking turns; `warmup` untimed rounds first.

    `before(way)` and `after(way, returned)` run around each call, off the clock; what
    `after` returns in the timed rounds is kept in `checks`, what the call returned in
    `results`. `Comparison.ratio()` is A over B.
    """
    if len(ways) < 2 or rounds < 1:
        raise ValueError("interleave needs two ways or more and one round or more")
    names = list(ways)
    for _ in range(warmup):
        for name in names:
            if before:
                before(name)
            result = ways[name]()
            if after:
                after(name, result)
    samples: dict[str, list[float]] = {n: [] for n in names}
    results: dict[str, list[Any]] = {n: [] for n in names}
    checks: dict[str, list[Any]] = {n: [] for n in names}
    for round_ in range(rounds):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            if before:
                before(name)
            start = time.perf_counter()
            result = ways[name]()
            samples[name].append(time.perf_counter() - start)
            results[name].append(result)
            if after:
                checks[name].append(after(name, result))
    return Comparison(samples, results, checks)
