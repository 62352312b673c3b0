"""Compose can write hundreds of lines a second (warnings, a failing pull's messages). Under
rich's Live every print redraws the whole view, so the view prints them together, at most
live.REFRESH times a second, and never drops or reorders one."""
from __future__ import annotations

import time

from stack_launcher import live


class CountingConsole:
    def __init__(self) -> None:
        self.prints: list[str] = []

    def print(self, text, **_options) -> None:
        self.prints.append(text)


def test_four_hundred_warnings_in_a_burst_are_printed_in_a_few_batches_all_in_order():
    console = CountingConsole()
    view = live.ServicesView("p", console=console)
    started = time.monotonic()
    for i in range(400):
        view.line(f"warning: line {i}")
    view.flush()
    took = time.monotonic() - started
    assert len(console.prints) <= took * live.REFRESH + 2, f"{len(console.prints)} redraws in {took:.2f} s"
    assert "\n".join(console.prints).splitlines() == [f"warning: line {i}" for i in range(400)]


def test_a_compose_before_2_29_refusing_json_leaves_no_stray_error_above_the_plain_rerun():
    console = CountingConsole()
    view = live.ServicesView("p", console=console)
    view.line('unsupported --progress value "json"')
    view.flush()
    assert console.prints == []
