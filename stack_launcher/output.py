"""What the user sees: one place decides colour, verbosity and where lines go.

Plain text when not on a terminal or when NO_COLOR is set; ANSI colour codes otherwise, and
rich only for a spinner while waiting, which keeps start-up fast.
"""
from __future__ import annotations

import os
import sys
from typing import TextIO


_SGR = {"bold": "1", "dim": "2", "green": "32", "yellow": "33", "bold red": "1;31"}


class Output:
    def __init__(self, verbose: bool = False, quiet: bool = False, stream: TextIO | None = None,
                 json_report: bool = False) -> None:
        self.verbose = verbose
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.color = self.stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        self._console = None
        # --json: stdout holds one JSON document, written at the end (`emit_report`); what
        # would go to stdout otherwise goes to stderr. None without --json.
        self.report: dict | None = {} if json_report else None

    @property
    def fancy(self) -> bool:
        """Tables and live views: on a terminal, with colour, not --quiet."""
        return self.color and not self.quiet

    def console(self):
        """rich's Console on our stream; imported only when a terminal view needs it."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)
        return self._console

    def _print(self, text: str, style: str = "") -> None:
        # Plain ANSI colour codes: importing rich for a coloured line cost about 45 ms a run
        # (docs/benchmarks.md); rich stays for the spinner, which only a wait needs.
        if self.color and style:
            text = f"\033[{_SGR[style]}m{text}\033[0m"
        print(text, file=self.stream, flush=True)

    def info(self, text: str) -> None:
        """A line of what happened; hidden by --quiet."""
        if not self.quiet:
            self._print(text, "bold")

    def detail(self, text: str) -> None:
        """Only with --verbose: full commands (never values)."""
        if self.verbose:
            self._print(text, "dim")

    def relay(self, line: str) -> None:
        """A (masked) line of a subprocess's output, passed through as it is."""
        if not self.quiet:
            print(line, file=self.stream, flush=True)

    def failure_lines(self, lines) -> None:
        """A failed program's last (masked) lines: what `--quiet` hid is what explains the
        failure, so they are shown then; otherwise they are already above."""
        if self.quiet:
            for line in lines:
                print(line, file=self.stream, flush=True)

    def success(self, text: str) -> None:
        if not self.quiet:
            self._print(text, "green")

    def warn(self, text: str) -> None:
        self._print(f"warning: {text}", "yellow")

    def error(self, text: str) -> None:
        self._print(f"error: {text}", "bold red")

    def status(self, text: str):
        """A spinner while waiting, on a terminal; a plain line otherwise."""
        import contextlib

        if self.fancy:
            return self.console().status(text)
        self.info(text)
        return contextlib.nullcontext()

    def result(self, text: str) -> None:
        """Data the user asked for (dry-run, plan, doctor): stdout, even with --quiet (stderr
        with --json, whose document owns stdout)."""
        print(text, file=sys.stdout if self.report is None else self.stream, flush=True)

    def record(self, **fields) -> None:
        """Fields of the --json document (names and states, never a value)."""
        if self.report is not None:
            self.report.update(fields)

    def emit_report(self, code: int, error: str | None = None) -> None:
        """The --json document on stdout, once, at the end."""
        if self.report is None:
            return
        import json

        document = {**self.report, "exit_code": code, "error": error}
        print(json.dumps(document, indent=2, ensure_ascii=False), file=sys.stdout, flush=True)
        self.report = None
