"""The terminal views built from compose's `--progress json` events: one row per service
while `up` works, and the spinner while the local Infisical gets healthy.

Only on a terminal (`Output.fancy`, and not `--json`): rich is imported here and nowhere
on the plain path. Events reach a view decoded and masked (`compose.decode_event`); a line
that is not an event is printed above the view as it is (masked). The view is drawn by
rich's `Live` at most REFRESH times a second, whatever the rate of events: a pull sends
one event per layer per 0.1 MB or so.
"""
from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

REFRESH = 10  # redraws a second, at most

# Compose's words for a container (v2.40 sends them in "status", newer ones in "text") ->
# the state a row shows, and what `up` did to the service when the word says so.
CONTAINER_WORDS: dict[str, tuple[str, str | None]] = {
    "Creating": ("creating", "created"), "Created": ("created", "created"),
    "Recreate": ("recreating", "recreated"), "Recreated": ("created", "recreated"),
    "Starting": ("starting", None), "Started": ("running", None),
    "Running": ("running", "unchanged"),  # already running, nothing to change
    "Waiting": ("waiting for health", None), "Healthy": ("healthy", None),
    "Stopping": ("stopping", None), "Stopped": ("stopped", None),
    "Removing": ("removing", None), "Removed": ("removed", None),
    "Exited": ("exited", None), "Error": ("failed", None),
}
STATE_COLOURS = {"running": "green", "healthy": "green", "pulled": "green", "failed": "bold red",
                 "exited": "red", "unhealthy": "bold red"}
# An error the command ends with names the container: `container P-web-1 is unhealthy`,
# `dependency failed to start: container P-db-1 exited (1)`.
# Compose before 2.29 knows --progress but not json (compose.progress_unsupported).
REFUSED_JSON = 'unsupported --progress value "json"'
FAILED_CONTAINER = re.compile(r"container (\S+?) (is unhealthy|exited \(\d+\)|has run to completion|.*)$")


@dataclass
class Row:
    name: str
    state: str = "waiting"
    action: str = ""  # created / recreated / unchanged, once compose says
    reason: str = ""  # why it failed
    layers: dict[str, list[int]] = field(default_factory=dict)  # layer -> [bytes done, bytes in all]

    @property
    def done_bytes(self) -> tuple[int, int]:
        return sum(d for d, _ in self.layers.values()), sum(t for _, t in self.layers.values())


def service_of(ident: str, project: str) -> tuple[str, str]:
    """(kind, service) of an event's id: "Container P-web-1" -> ("container", "web"); a
    pull's id is the service itself; networks and volumes are not services."""
    kind, _, name = ident.partition(" ")
    if not name:
        return "service", ident
    kind = kind.lower()
    if kind == "container":
        m = re.fullmatch(rf"{re.escape(project)}[-_](.+?)[-_]\d+", name)
        return kind, m.group(1) if m else name
    return kind, name


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class ServicesView:
    """One row per service, from the events of `docker compose --progress json up`.

    `causes`: service -> the changed secret keys it uses, said on a recreated row."""

    def __init__(self, project: str, causes: Mapping[str, list[str]] | None = None, console=None) -> None:
        self.project = project
        self.causes = dict(causes or {})
        self.console = console  # where a line that is not an event goes (above the view)
        self.rows: dict[str, Row] = {}
        self.errors: list[str] = []
        self.exit_code: int | None = None
        self._lock = threading.Lock()
        self._pending: list[str] = []  # lines waiting for the next print (`line`)
        self._flushed = 0.0

    def row(self, name: str) -> Row:
        if name not in self.rows:
            self.rows[name] = Row(name)
        return self.rows[name]

    @property
    def failed(self) -> bool:
        return bool(self.errors) or any(r.state == "failed" for r in self.rows.values())

    @property
    def stays(self) -> bool:
        """Leave the rows on screen at the end: something failed, with or without an error event."""
        return self.failed or self.exit_code not in (None, 0)

    def ended(self, code: int) -> None:
        """Compose's exit code: a failure with no error event (killed, out of memory) must
        leave the rows on screen too."""
        self.exit_code = code

    # -- events in --------------------------------------------------------------------------

    def event(self, event: dict[str, Any]) -> None:
        # The rows change under the lock that drawing takes; printing waits until it is
        # released (rich's refresh thread holds the console while it draws: two locks, one order).
        with self._lock:
            self._take(event)
        if event.get("error"):
            self.line(str(event.get("message", "")))
        elif "msg" in event:  # compose's warnings, as it logs them in json mode
            self.line(f"{event.get('level', 'info')}: {event['msg']}")
        elif event.get("tail") and event.get("text"):  # a closing message compose addresses to the user
            self.line(str(event["text"]))

    def _take(self, event: dict[str, Any]) -> None:
        if event.get("error"):
            message = str(event.get("message", ""))
            self.errors.append(message)
            m = FAILED_CONTAINER.search(message)
            if m:
                _, name = service_of(f"Container {m.group(1)}", self.project)
                if name in self.rows:
                    row = self.rows[name]
                    row.state, row.reason = "failed", m.group(2).removeprefix("is ")
            return
        text, status = str(event.get("text") or ""), str(event.get("status") or "")
        parent = event.get("parent_id")
        if parent:  # a layer of a service's image being pulled
            self._layer(self.row(str(parent)), str(event.get("id", "")), text or status, event)
            return
        if not event.get("id"):
            return  # a log line or a tail message: printed, not a row
        kind, name = service_of(str(event.get("id", "")), self.project)
        if kind not in ("container", "service") or not name:
            return  # networks, volumes: not what a user waits for
        row = self.row(name)
        word = text if text in CONTAINER_WORDS or text in ("Pulling", "Pulled") else status
        detail = status if word == text else text
        if word == "Pulling":
            row.state = "pulling"
        elif word == "Pulled":
            row.state = "pulled"
        elif word == "Error":
            row.state, row.reason = "failed", detail or "error"
        elif word in CONTAINER_WORDS:
            row.state, action = CONTAINER_WORDS[word]
            if action and not (action == "created" and row.action == "recreated") and \
                    not (action == "unchanged" and row.action):
                row.action = action
        elif word:
            row.state = word.lower()

    def _layer(self, row: Row, layer: str, word: str, event: Mapping[str, Any]) -> None:
        progress = row.layers.setdefault(layer, [0, 0])
        total, current = event.get("total"), event.get("current")
        if word == "Downloading" and isinstance(total, int) and total > 0:
            progress[0], progress[1] = (current if isinstance(current, int) and current > 0 else 0), total
        elif word in ("Download complete", "Pull complete", "Already exists") and progress[1]:
            progress[0] = progress[1]
        if row.state not in ("failed", "pulled"):
            row.state = "pulling"

    def line(self, text: str) -> None:
        """A line of compose's output that is not an event (already masked): above the view.

        Every print redraws the whole view under rich's Live, so lines are printed together
        at most REFRESH times a second (`flush`), however fast compose writes them."""
        if self.console is None or not text.strip() or REFUSED_JSON in text:
            return  # (a Compose before 2.29 refusing json: `up` runs again in plain mode, said once)
        with self._lock:
            self._pending.append(text)
            due = time.monotonic() - self._flushed >= 1 / REFRESH
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
            self._flushed = time.monotonic()
        if lines and self.console is not None:
            self.console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)

    # -- drawing ----------------------------------------------------------------------------

    def __rich__(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        if not self.rows:
            return Text("")  # nothing yet (or compose failed first): no empty header left behind
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        # Names whole (langfuse-web and langfuse-worker must not both read `langfuse-w…`);
        # the detail column gives way on a narrow terminal, one line a row.
        table.add_column("service", no_wrap=True, min_width=max(len(name) for name in self.rows))
        table.add_column("state", no_wrap=True)
        table.add_column("action", no_wrap=True)
        table.add_column("progress", no_wrap=True, overflow="ellipsis")
        with self._lock:
            for row in self.rows.values():
                colour = STATE_COLOURS.get(row.state, "yellow")
                detail: Any = ""
                done, total = row.done_bytes
                if row.state == "failed":  # the whole reason is printed above the view
                    detail = Text(row.reason.splitlines()[0] if row.reason else "", style="red")
                elif row.state == "pulling" and total:
                    detail = Table.grid(padding=(0, 1))
                    detail.add_row(ProgressBar(total=total, completed=done, width=30),
                                   Text(f"{human_bytes(done)} / {human_bytes(total)}"))
                elif row.action == "recreated" and self.causes.get(row.name):
                    detail = Text(f"changed: {', '.join(self.causes[row.name])}")
                elif row.state == "pulled" and total:
                    detail = Text(human_bytes(total))
                action = Text(row.action, style="dim" if row.action == "unchanged" else "bold")
                table.add_row(row.name, Text(row.state, style=colour), action, detail)
        return table


@contextmanager
def showing(out, view: ServicesView | None) -> Iterator[None]:
    """Draw `view` live while the block runs. The rows vanish at the end when all went well
    (the summary table replaces them); after a failure they stay, with the reasons."""
    if view is None:
        yield
        return
    from rich.live import Live

    console = out.console()
    view.console = console
    live = Live(view, console=console, refresh_per_second=REFRESH, transient=True,
                redirect_stdout=False, redirect_stderr=False)
    ok = False
    with live:
        try:
            yield
            view.flush()
            ok = not view.stays
            if ok:  # an empty last frame: a view taller than the terminal leaves nothing behind
                from rich.text import Text

                live.update(Text(""), refresh=True)
        finally:
            view.flush()  # what compose said last (an error, a signal's lines) is never held back
            if not ok:
                live.transient = False  # leave the last frame, failed rows and reasons, on screen


class WaitView:
    """The spinner's text while the local Infisical starts: elapsed seconds and each
    container's health (starting, unhealthy, healthy), from `up --wait`'s events."""

    def __init__(self, title: str, project: str, verbose: bool = False) -> None:
        self.title = title
        self.project = project
        self.verbose = verbose
        self.console = None
        self.started = time.monotonic()
        self.health: dict[str, str] = {}

    def event(self, event: dict[str, Any]) -> None:
        if event.get("error"):
            m = FAILED_CONTAINER.search(str(event.get("message", "")))
            if m:
                _, name = service_of(f"Container {m.group(1)}", self.project)
                self.health[name] = "unhealthy" if "unhealthy" in m.group(2) else m.group(2)
            return
        if self.verbose and "msg" in event:  # compose's own log lines (warnings), with --verbose
            self.line(f"{event.get('level', 'info')}: {event['msg']}")
        kind, name = service_of(str(event.get("id", "")), self.project)
        if kind != "container":
            return
        text, status = str(event.get("text") or ""), str(event.get("status") or "")
        word = text if text in CONTAINER_WORDS else status  # as ServicesView reads it (v2.40 and v5)
        if word == "Healthy":
            self.health[name] = "healthy"
        elif word in ("Creating", "Recreate", "Starting", "Started", "Waiting", "Running"):
            self.health.setdefault(name, "starting")
            if self.health[name] != "healthy":
                self.health[name] = "starting"

    def line(self, text: str) -> None:
        if self.verbose and self.console is not None and text.strip():
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def flush(self) -> None:
        """Lines are printed as they come: the spinner is one line, cheap to redraw."""

    def describe(self) -> str:
        elapsed = int(time.monotonic() - self.started)
        states = ", ".join(f"{name} {state}" for name, state in sorted(self.health.items()))
        return f"{self.title} {elapsed} s" + (f" · {states}" if states else "")

    def __rich__(self):
        from rich.text import Text

        return Text(self.describe())


@contextmanager
def waiting(out, view: WaitView) -> Iterator[None]:
    """A spinner whose text is `view`, redrawn (elapsed time, health) as it spins."""
    console = out.console()
    view.console = console
    with console.status(view, refresh_per_second=REFRESH):
        yield
