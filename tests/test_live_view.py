"""The live view on a terminal, read the way a user reads it: real `--progress json` streams
recorded from the engine (tests/support/events/, re-recorded by support/record_events.py)
are replayed through the launcher's own relay (`compose.run`, a real subprocess printing
the recording) into the view, drawn on rich's recording console.

The streams are those of the launcher's own `up` (`up -d`, no `--wait`) on a stack where
worker waits for db to be healthy: compose reports `Healthy` for db alone (a dependency it
waits for), web and worker end `running`, and a failing healthcheck fails `up` only through
the dependency."""
from __future__ import annotations

import io
import json
import re
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from support.record_events import EVENTS, FAKE_SECRETS, ROTATED, record

from stack_launcher import compose, launch, live, status
from stack_launcher.masking import Masker
from stack_launcher.output import Output

WIDTH = 110
SECRETS = list(FAKE_SECRETS.values()) + list(ROTATED.values())


def console():
    from rich.console import Console

    return Console(record=True, width=WIDTH, file=io.StringIO(), force_terminal=True, color_system=None)


def replay(stream: Path, tmp_path: Path, causes=None, lines: int | None = None, project: str = "liveview",
           live_view: bool = False, secrets=SECRETS):
    """Run the recorded stream (its first `lines` lines) through compose.run into a view;
    (screen text, view, outcome). `live_view`: drawn by rich's Live as `up` draws it."""
    text = stream.read_text()
    if lines is not None:
        text = "".join(text.splitlines(keepends=True)[:lines])
    played = tmp_path / "stream.jsonl"
    played.write_text(text)
    screen = console()
    view = live.ServicesView(project, causes, console=screen)
    out = Output(stream=io.StringIO())
    argv = [sys.executable, "-c", "import sys; sys.stderr.write(open(sys.argv[1]).read())", str(played)]
    if live_view:
        out._console = screen
        with live.showing(out, view):
            outcome = compose.run(argv, {}, Masker(secrets), out, tmp_path, sink=view)
    else:
        outcome = compose.run(argv, {}, Masker(secrets), out, tmp_path, sink=view)
        screen.print(view)
    return screen.export_text(), view, outcome


def row(screen: str, service: str) -> str:
    """The line of a table (the view's, or the summary's boxed one) that starts with `service`."""
    return next(line for line in screen.splitlines() if line.replace("│", " ").split()[:1] == [service])


def test_a_first_start_shows_the_pull_with_its_bytes(tmp_path):
    stream = EVENTS / "first_start.jsonl"
    downloading = [i for i, line in enumerate(stream.read_text().splitlines()) if '"Downloading"' in line]
    screen, view, _ = replay(stream, tmp_path, lines=downloading[len(downloading) // 2] + 1)
    web = row(screen, "web")
    assert "pulling" in web and re.search(r"\d (kB|MB) / 1\.5 MB", web), screen
    assert "━" in web  # the progress bar


def test_a_first_start_ends_with_every_service_created_the_dependency_healthy_the_others_running(tmp_path):
    """`up -d` waits for db's health only because worker depends on it: db ends healthy, web
    and worker running (compose never says Healthy for a service nothing waits for)."""
    screen, view, outcome = replay(EVENTS / "first_start.jsonl", tmp_path)
    assert outcome.code == 0 and not view.failed
    assert row(screen, "db").split()[:3] == ["db", "healthy", "created"], screen
    for service in ("web", "worker"):
        assert row(screen, service).split()[:3] == [service, "running", "created"], screen
    assert "liveview_default" not in screen  # a network is not a service


def test_a_rotated_secret_names_the_recreated_service_and_the_key(tmp_path):
    screen, view, _ = replay(EVENTS / "recreate.jsonl", tmp_path, causes={"web": ["WEB_TOKEN"]})
    assert "recreated" in row(screen, "web") and "changed: WEB_TOKEN" in row(screen, "web"), screen
    assert "unchanged" in row(screen, "db") and "WEB_TOKEN" not in row(screen, "db")


def test_nothing_to_do_says_unchanged_for_every_service(tmp_path):
    screen, _, _ = replay(EVENTS / "unchanged.jsonl", tmp_path)
    assert all("unchanged" in row(screen, s) for s in ("web", "db", "worker")), screen


def test_a_failing_healthcheck_marks_that_service_failed_with_the_reason(tmp_path):
    """`up -d` fails on a healthcheck only through a service that depends on it (worker on db)."""
    screen, view, _ = replay(EVENTS / "unhealthy.jsonl", tmp_path)
    assert view.failed
    assert json.loads((EVENTS / "unhealthy.json").read_text())["exit_code"] != 0  # `up -d` failed on it
    assert row(screen, "db").split()[:4] == ["db", "failed", "recreated", "unhealthy"], screen
    for service in ("web", "worker"):  # left as they were: running, nothing changed
        assert row(screen, service).split()[:3] == [service, "running", "unchanged"], screen
    # compose's own last line, above the view
    assert "dependency failed to start: container liveview-db-1 is unhealthy" in screen


def test_a_pull_failure_is_diagnosed_as_in_plain_mode(tmp_path):
    screen, view, outcome = replay(EVENTS / "pull_failure.jsonl", tmp_path)
    assert "failed" in row(screen, "ghost") and "connection refused" in screen, screen
    assert compose.pull_failure("\n".join(outcome.tail)) == ("ghost", "registry unreachable")


def test_a_value_compose_quotes_in_an_error_is_masked(tmp_path):
    screen, view, outcome = replay(EVENTS / "quoted_value.jsonl", tmp_path)
    assert FAKE_SECRETS["PORT_SECRET"] in (EVENTS / "quoted_value.jsonl").read_text()  # the test can fail
    assert "invalid hostPort: ***" in screen, screen
    assert not any(value in screen or value in "\n".join(outcome.tail) for value in SECRETS)


def test_while_live_a_failure_prints_compose_s_error_without_freezing_the_view(tmp_path):
    """rich redraws from its own thread; an error printed above the view must not deadlock."""
    import threading

    result = []
    worker = threading.Thread(target=lambda: result.append(
        replay(EVENTS / "unhealthy.jsonl", tmp_path, live_view=True)), daemon=True)
    worker.start()
    worker.join(20)
    assert result, "the live view froze on compose's error"
    screen, view, _ = result[0]
    assert "dependency failed to start: container liveview-db-1 is unhealthy" in screen
    assert "failed" in row(screen, "db") and row(screen, "web").split()[1] == "running", screen


def test_a_missing_variable_is_named_as_in_plain_mode(tmp_path):
    screen, view, outcome = replay(EVENTS / "missing_variable.jsonl", tmp_path)
    assert "required variable LIVEVIEW_NEEDED is missing a value" in screen and view.failed
    assert outcome.missing_variables() == ["LIVEVIEW_NEEDED"]


@pytest.mark.parametrize("known", [True, False], ids=["masked", "cut-off-even-when-unknown"])
def test_an_env_file_compose_cannot_read_shows_the_line_never_the_value(tmp_path, known):
    value = FAKE_SECRETS["DB_PASSWORD"]
    assert value in (EVENTS / "bad_env_file.jsonl").read_text()
    screen, view, outcome = replay(EVENTS / "bad_env_file.jsonl", tmp_path, secrets=SECRETS if known else ())
    assert "unterminated quoted value" in screen and value not in screen, screen
    with pytest.raises(compose.LauncherError) as raised:
        compose.diagnose(outcome)
    assert raised.value.exit_code == 6 and "line 3" in raised.value.message and value not in raised.value.message


def test_compose_s_warnings_json_logged_in_this_mode_are_still_shown(tmp_path):
    screen, view, outcome = replay(EVENTS / "warning.jsonl", tmp_path)
    assert 'warning: The "LIVEVIEW_UNSET_VARIABLE" variable is not set' in screen, screen
    assert "recreated" in row(screen, "worker") and "unchanged" in row(screen, "web")
    assert len(view.rows) == 3 and not view.failed
    assert any(line.startswith("warning: The") for line in outcome.tail)  # diagnosis reads it too


def test_a_line_that_is_not_an_event_is_relayed_masked_and_the_view_goes_on(tmp_path):
    stream = tmp_path / "mixed.jsonl"
    lines = (EVENTS / "unchanged.jsonl").read_text().splitlines(keepends=True)
    stream.write_text("".join(lines[:2]) + f"WARN[0000] odd: {FAKE_SECRETS['DB_PASSWORD']}\n{{not json\n"
                      + "".join(lines[2:]))
    screen, view, outcome = replay(stream, tmp_path)
    assert "WARN[0000] odd: ***" in screen and "{not json" in screen, screen
    assert FAKE_SECRETS["DB_PASSWORD"] not in screen
    assert all("unchanged" in row(screen, s) for s in ("web", "db", "worker"))


def test_an_event_of_an_unexpected_shape_is_shown_as_a_line_and_compose_runs_to_its_end(tmp_path):
    stream = tmp_path / "odd.jsonl"
    lines = (EVENTS / "unchanged.jsonl").read_text().splitlines(keepends=True)
    odd = '{"id":"l1","parent_id":"web","text":"Downloading","current":"5 MB","total":-1}\n'
    weird = '{"id":["not","a","name"],"status":{"odd":1}}\n'
    stream.write_text(lines[0] + odd + weird + "".join(lines[1:]))
    screen, view, outcome = replay(stream, tmp_path)
    assert outcome.code == 0, "compose was not stopped by the view"
    assert all("unchanged" in row(screen, s) for s in ("web", "db", "worker")), screen
    assert "-1 B" not in screen


def test_a_compose_that_fails_without_an_error_event_leaves_its_rows_on_screen(tmp_path):
    stream = tmp_path / "killed.jsonl"
    stream.write_text("".join((EVENTS / "recreate.jsonl").read_text().splitlines(keepends=True)[:4]))
    screen = console()
    view = live.ServicesView("liveview", console=screen)
    out = Output(stream=io.StringIO())
    out._console = screen
    argv = [sys.executable, "-c", "import sys; sys.stderr.write(open(sys.argv[1]).read()); sys.exit(137)",
            str(stream)]
    with live.showing(out, view):
        outcome = compose.run(argv, {}, Masker(SECRETS), out, tmp_path, sink=view)
        view.ended(outcome.code)
    assert outcome.code == 137 and not view.errors and not view.failed
    assert view.stays, "the rows would vanish although compose failed"
    _, done, ok = replay(EVENTS / "recreate.jsonl", tmp_path)
    done.ended(ok.code)
    assert not done.stays, "after a good run the summary replaces the rows"


def test_on_a_narrow_terminal_the_summary_is_one_line_a_service_with_whole_urls():
    from rich.console import Console

    recorded = json.loads((EVENTS / "first_start.json").read_text())
    services = status.after_up({}, status.parse_ps(recorded["ps"]), "private", {})
    out = Output(stream=io.StringIO())
    out._console = Console(record=True, width=40, file=io.StringIO(), force_terminal=True, color_system=None)
    settings = SimpleNamespace(project_name="liveview", environment="private")
    prepared = SimpleNamespace(obtained=SimpleNamespace(origin="infisical"), changes=None)
    launch.show_summary(out, settings, prepared, services)
    screen = out._console.export_text()
    web = next(s for s in services if s.name == "web")
    assert web.urls and all(url in screen for url in web.urls), screen
    assert "  web: created, running" in screen and "…" not in screen


def test_the_summary_after_the_view_gives_each_url(tmp_path):
    recorded = json.loads((EVENTS / "first_start.json").read_text())
    services = status.after_up({}, status.parse_ps(recorded["ps"]), "private", {})
    out = Output(stream=io.StringIO())
    out._console = console()
    settings = SimpleNamespace(project_name="liveview", environment="private")
    prepared = SimpleNamespace(obtained=SimpleNamespace(origin="infisical"), changes=None)
    launch.show_summary(out, settings, prepared, services)
    screen = out._console.export_text()
    web = next(line.split("\t") for line in recorded["ps"].splitlines() if line.split("\t")[1] == "web")
    port = re.search(r"127\.0\.0\.1:(\d+)->80/tcp", web[4]).group(1)  # the engine picked it
    assert f"http://localhost:{port}" in row(screen, "web"), screen
    assert "created" in row(screen, "db") and "healthy" in row(screen, "db")
    assert "Secrets from infisical" in screen


# What the engine says about a pulled layer (the view counts bytes from "Downloading").
LAYER_WORDS = {"Pulling fs layer", "Waiting", "Downloading", "Verifying Checksum", "Download complete",
               "Extracting", "Pull complete", "Already exists"}


@pytest.mark.engine
@pytest.mark.parametrize("cli", ["docker", "/usr/bin/docker"])
def test_compose_still_emits_the_events_the_recordings_hold(tmp_path, cli):
    """Recorded live now (a first start with a real pull, then nothing to do): a new compose
    that renames a field or a state word fails here. Also through Debian 12's docker CLI
    (20.10), which runs the same compose plugin."""
    import shutil

    if not shutil.which(cli):
        pytest.skip(f"{cli} is not installed")
    project = f"liveview-{uuid.uuid4().hex[:8]}"  # unique: other runs may share the engine
    work = tmp_path / "stack"
    ran = record(tmp_path, pull=True, only=2, project=project, cli=cli, workdir=work)
    # The launcher's own `up` on a terminal (launch.py), not `up --wait`: the CLI binary aside.
    launcher = compose.Target(work, project, (work / "docker-compose.yml",), (work / ".env",)).up(progress="json")
    assert ran == {name: [cli, *launcher[1:]] for name in ("first_start", "unchanged")}, ran
    assert "--wait" not in ran["first_start"]
    for name in ("first_start", "unchanged"):
        now = [json.loads(line.replace(project, "liveview"))
               for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        then = [json.loads(line) for line in (EVENTS / f"{name}.jsonl").read_text().splitlines()]

        def words(events):
            """(what the event is about, its word, the fields it carries), ids aside; layers
            apart, since how many steps a download reports depends on timing."""
            return {(e.get("id", "").split(" ")[0], e.get("text") or e.get("status"), tuple(sorted(e)))
                    for e in events if not e.get("parent_id")}
        assert words(now) == words(then), name
        layers = [e for e in now if e.get("parent_id")]
        assert {e.get("text") for e in layers} <= LAYER_WORDS, name
        assert not layers or any(e.get("text") == "Downloading" and e.get("current") and e.get("total")
                                 for e in layers), "a download without its bytes: the bar would stay empty"
        screen_now, _, _ = replay(tmp_path / f"{name}.jsonl", tmp_path, project=project)
        screen_then, _, _ = replay(EVENTS / f"{name}.jsonl", tmp_path)
        assert [row(screen_now, s).split()[:3] for s in ("web", "db", "worker")] == \
               [row(screen_then, s).split()[:3] for s in ("web", "db", "worker")]


def test_a_compose_without_json_progress_is_recognised_by_its_own_words(tmp_path):
    """Compose before 2.29 refuses `--progress json` as 2.40 refuses any unknown mode: the
    launcher then runs the same `up` in plain mode. The words are compose's own, asked now."""
    import subprocess

    if not __import__("shutil").which("docker"):
        pytest.skip("no docker CLI")
    said = subprocess.run(["docker", "compose", "--progress", "json-but-unknown", "ls"], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    wording = (said.stdout + said.stderr).strip().replace('"json-but-unknown"', '"json"')
    assert compose.progress_unsupported(compose.Outcome(1, (wording,))), wording
    assert not compose.progress_unsupported(compose.Outcome(1, ("container liveview-db-1 is unhealthy",)))
