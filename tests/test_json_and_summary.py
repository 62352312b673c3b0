"""`--json` on `up` and `plan`: one document a script can read, holding names and states,
never a secret value; and the terminal summary's data (state, URL, what changed)."""
from __future__ import annotations

import json

import pytest

from test_launch import TRICKY, assert_no_secret_shown, launch, project, shown  # noqa: F401 (fixture)

from stack_launcher import status


def document(result) -> dict:
    return json.loads(result.stdout)


def test_up_json_is_one_document_with_origin_services_and_urls(project):
    project.write_compose({
        "api": {"profiles": ["cpu"], "ports": ["127.0.0.1:0:80"],
                "environment": {"DB_PASSWORD": "${DB_PASSWORD:?DB_PASSWORD is not set}"}},
        "cache": {"profiles": ["cpu"], "environment": {"CACHE_TOKEN": "${CACHE_TOKEN:?x}", "API_KEY": "${API_KEY:?x}"}},
    })
    result = launch(project, "--json")
    assert result.returncode == 0, shown(result)
    doc = document(result)
    assert doc["command"] == "up" and doc["exit_code"] == 0 and doc["error"] is None
    assert doc["secrets"]["origin"] == "infisical" and doc["secrets"]["count"] == 3
    services = {s["name"]: s for s in doc["services"]}
    assert set(services) == {"api", "cache"}
    assert services["api"]["action"] == "created" and services["api"]["state"] == "running"
    (url,) = services["api"]["urls"]
    assert url.startswith("http://localhost:")
    assert "Stack" in result.stderr  # the human lines stay on stderr
    assert_no_secret_shown(result)

    project.infisical.set_secrets({**TRICKY, "CACHE_TOKEN": "rotated-cache-token-2"})
    result = launch(project, "--json")
    doc = document(result)
    assert doc["secrets"]["changes"] == {"added": [], "changed": ["CACHE_TOKEN"], "removed": []}
    services = {s["name"]: s for s in doc["services"]}
    assert services["cache"]["action"] == "recreated" and services["cache"]["changed_keys"] == ["CACHE_TOKEN"]
    assert services["api"]["action"] == "unchanged" and services["api"]["changed_keys"] == []
    assert "rotated-cache-token-2" not in shown(result)
    assert_no_secret_shown(result)


def test_up_json_says_why_infisical_was_not_used(project):
    project.infisical.set_server("down")
    result = launch(project, "--json", "--infisical-timeout", "2")
    assert result.returncode == 0, shown(result)
    doc = document(result)
    assert doc["secrets"]["origin"] == ".env only" and doc["secrets"]["reason"]
    assert "from-dotenv-db" not in result.stdout


def test_a_failed_up_still_gives_the_document_with_its_exit_code(project):
    project.infisical.set_secrets({**TRICKY, "PORT_SECRET": "s3cr3t-port-value"})
    project.write_compose({"api": {"profiles": ["cpu"], "ports": ["${PORT_SECRET}:80"]}})
    result = launch(project, "--json")
    assert result.returncode != 0
    doc = document(result)
    assert doc["exit_code"] == result.returncode and doc["error"]
    assert "s3cr3t-port-value" not in shown(result)


def test_no_dotenv_json_still_parses(project):
    (project.dir / ".env").unlink()
    result = launch(project, "--json")
    assert result.returncode == 6
    doc = document(result)
    assert doc["command"] == "up" and doc["exit_code"] == 6 and doc["error"]


def test_plan_json_names_the_action_and_the_keys_behind_it(project):
    assert launch(project).returncode == 0
    project.infisical.set_secrets({**TRICKY, "CACHE_TOKEN": "rotated-cache-token-3"})
    result = launch(project, "plan", "--json")
    assert result.returncode == 0, shown(result)
    doc = document(result)
    assert doc["command"] == "plan"
    assert doc["secrets"]["changes"]["changed"] == ["CACHE_TOKEN"]
    services = {s["name"]: s for s in doc["services"]}
    assert services["cache"]["action"] == "recreate" and services["cache"]["changed_keys"] == ["CACHE_TOKEN"]
    assert services["api"]["action"] == "untouched"
    assert "Services:" in result.stderr  # the plain plan moved to stderr
    assert "rotated-cache-token-3" not in shown(result)
    assert_no_secret_shown(result)


def test_without_json_stdout_is_what_it_was(project):
    result = launch(project)
    assert result.returncode == 0
    assert result.stdout == ""
    result = launch(project, "plan")
    assert result.stdout.startswith("Secrets changed") and "Services:" in result.stdout


# What `docker ps` prints in engine.PS_FORMAT (id, service, state, status, ports).
PS = ("abc\tn8n\trunning\tUp 2 minutes (healthy)\t127.0.0.1:5678->5678/tcp\n"
      "def\tdb\trunning\tUp 2 minutes\t5432/tcp\n"
      "0a1\tollama\trunning\tUp 1 second (health: starting)\t0.0.0.0:11434->11434/tcp, :::11434->11434/tcp\n"
      "0b2\tcaddy\texited\tExited (1) 3 seconds ago\t\n"
      "0c3\tweb\trunning\tUp 1 minute (unhealthy)\t10.0.0.5:8000-8001->80-81/tcp, 0.0.0.0:53->53/udp\n"
      # Docker CLI 27.3+ brackets IPv6 hosts
      "0d4\tqdrant\trunning\tUp 5 seconds\t0.0.0.0:6333->6333/tcp, [::]:6333->6333/tcp, [fe80::1]:7000->7000/tcp\n")


def test_urls_come_from_the_published_host_port_or_the_public_hostname():
    now = status.parse_ps(PS)
    assert now["n8n"].urls == ("http://localhost:5678",) and now["db"].urls == ()
    assert now["ollama"].urls == ("http://localhost:11434",), "IPv4 and IPv6 bindings: one URL"
    assert now["web"].urls == ("http://10.0.0.5:8000", "http://10.0.0.5:8001"), "a range; UDP has no URL"
    assert now["qdrant"].urls == ("http://localhost:6333", "http://[fe80::1]:7000")
    assert [(now[s].state, now[s].health) for s in ("ollama", "caddy", "web")] == [
        ("running", "starting"), ("exited", ""), ("running", "unhealthy")]
    private = status.after_up({"db": now["db"]}, {k: now[k] for k in ("db", "n8n")}, "private", {})
    assert [(s.name, s.action, s.health, s.urls) for s in private] == [
        ("db", "unchanged", "", []), ("n8n", "created", "healthy", ["http://localhost:5678"])]
    public = status.after_up({}, {k: now[k] for k in ("db", "n8n")}, "public", {"N8N_HOSTNAME": "n8n.example.org"})
    assert public[1].urls == ["https://n8n.example.org"]


def test_on_a_terminal_up_ends_with_the_summary_table_and_shows_no_secret(project, tmp_path):
    """`up` under tmux (a real pseudo-terminal): the table with state and URL, no value."""
    import shlex
    import shutil
    import subprocess
    import sys
    import time

    from support.processes import LAUNCHER

    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    project.write_compose({
        "api": {"profiles": ["cpu"], "ports": ["127.0.0.1:0:80"],
                "environment": {"DB_PASSWORD": "${DB_PASSWORD:?x}", "API_KEY": "${API_KEY:?x}"}},
        "cache": {"profiles": ["cpu"], "environment": {"CACHE_TOKEN": "${CACHE_TOKEN:?x}"}},
    })
    env = dict(project.infisical.env, TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    done = tmp_path / "done"
    command = (f"cd {shlex.quote(str(project.dir))} && env -i {exports} {shlex.quote(sys.executable)} "
               f"{shlex.quote(str(LAUNCHER))} -p {project.name}; echo $? > {done}; sleep 60")
    sock = str(tmp_path / "tmux.sock")
    tmux = ["tmux", "-S", sock]
    subprocess.run([*tmux, "new-session", "-d", "-x", "200", "-y", "60", "-s", "t", command], check=True,
                   stdin=subprocess.DEVNULL)
    screens = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            screens.append(subprocess.run([*tmux, "capture-pane", "-p", "-t", "t"], capture_output=True,
                                          text=True).stdout)
            if done.exists():
                break
            time.sleep(0.3)
        screens.append(subprocess.run([*tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True).stdout)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    assert done.read_text().strip() == "0", screens[-1]
    final = screens[-1]
    assert "service" in final and "action" in final and "health" in final, final
    assert "created" in final and "running" in final and "http://localhost:" in final, final
    assert "Secrets from infisical" in final
    for screen in screens:
        for value in TRICKY.values():
            for part in value.split("\n"):
                if len(part) >= 6:
                    assert part not in screen
