"""The Infisical CLI stand-in behaves like the real CLI (reference/infisical-cli.md),
and the engine fixtures work against the real engine."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time

import pytest

from support.infisical_server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TOKEN


def cli(server, *args, token=None, cwd=None, timeout=20, **env):
    run_env = dict(server.env)
    if token:
        run_env["INFISICAL_TOKEN"] = token
    run_env.update(env)
    return subprocess.run(["infisical", *args], env=run_env, cwd=cwd, capture_output=True,
                          text=True, encoding="utf-8", stdin=subprocess.DEVNULL, timeout=timeout)


def test_version(infisical_server):
    result = cli(infisical_server, "--version")
    assert (result.returncode, result.stdout) == (0, "infisical version 0.43.121\n")


def test_json_export_is_one_line_with_go_escaping_sorted_by_key(infisical_server):
    infisical_server.set_secrets({"B": "<a href='x'>&</a>", "A": "line\u2028sep\u2029 é ☃ \"q\" \\ \n"})
    result = cli(infisical_server, "export", "--format=json", "--projectId", "proj-1", token=DEFAULT_TOKEN)
    assert result.returncode == 0, result.stderr
    assert "\n" not in result.stdout  # one line, no trailing newline
    assert "\\u003ca href='x'\\u003e\\u0026\\u003c/a\\u003e" in result.stdout
    assert "line\\u2028sep\\u2029 é ☃ \\\"q\\\" \\\\ \\n" in result.stdout
    records = json.loads(result.stdout)
    assert [r["key"] for r in records] == ["A", "B"]
    assert list(records[0]) == ["key", "workspace", "value", "type", "_id", "secretPath", "tags",
                                "comment", "Etag", "skipMultilineEncoding"]
    assert records[1]["value"] == "<a href='x'>&</a>"


def test_dotenv_export_does_no_escaping(infisical_server):
    infisical_server.set_secrets({"Q": "it's", "M": {"value": "a\nb", "skipMultilineEncoding": True},
                                  "R": "x\ny"})
    result = cli(infisical_server, "export", "-f", "dotenv", "--projectId=proj-1", token=DEFAULT_TOKEN)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "M='a\\nb'\nQ='it's'\nR='x\ny'\n"


def test_references_are_expanded_unless_expand_false(infisical_server):
    infisical_server.set_secrets({"USER": "bob", "URL": "postgres://${USER}@db/${prod.NAME}"})
    infisical_server.set_secrets({"NAME": "main"}, env="prod")
    expanded = cli(infisical_server, "export", "-f", "json", "--projectId", "proj-1", token=DEFAULT_TOKEN)
    raw = cli(infisical_server, "export", "-f", "json", "--expand=false", "--projectId", "proj-1",
              token=DEFAULT_TOKEN)
    assert {r["key"]: r["value"] for r in json.loads(expanded.stdout)}["URL"] == "postgres://bob@db/main"
    assert {r["key"]: r["value"] for r in json.loads(raw.stdout)}["URL"] == "postgres://${USER}@db/${prod.NAME}"


def test_bad_token_gives_the_401_block(infisical_server):
    result = cli(infisical_server, "export", "-f", "json", "--projectId", "proj-1", token="wrong")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Response Code: 401 Unauthorized" in result.stderr
    assert "Message: " in result.stderr and "Check your credentials" in result.stderr


def test_token_flag_beats_environment(infisical_server):
    result = cli(infisical_server, "export", "--token", DEFAULT_TOKEN, "--projectId", "proj-1",
                 token="wrong")
    assert result.returncode == 0, result.stderr
    result = cli(infisical_server, "export", "--projectId", "proj-1",
                 INFISICAL_UNIVERSAL_AUTH_ACCESS_TOKEN="wrong", INFISICAL_TOKEN=DEFAULT_TOKEN)
    assert result.returncode == 1  # the universal-auth variable comes first


def test_bare_TOKEN_variable_is_taken_as_a_token(infisical_server):
    result = cli(infisical_server, "export", "--projectId", "proj-1", TOKEN="unrelated")
    assert result.returncode == 1 and "401 Unauthorized" in result.stderr


def test_unknown_environment_gives_the_404_block(infisical_server):
    result = cli(infisical_server, "export", "-e", "staging", "--projectId", "proj-1", token=DEFAULT_TOKEN)
    assert result.returncode == 1
    assert "Response Code: 404 Not Found" in result.stderr
    assert "Message: Environment with slug 'staging' in project with ID proj-1 not found" in result.stderr


def test_unknown_path_is_an_empty_success(infisical_server):
    result = cli(infisical_server, "export", "--path", "/nope", "-f", "json", "--projectId", "proj-1",
                 token=DEFAULT_TOKEN)
    assert (result.returncode, result.stdout) == (0, "[]")


def test_machine_identity_needs_a_project_id(infisical_server):
    result = cli(infisical_server, "export", token=DEFAULT_TOKEN)
    assert result.returncode == 1
    assert result.stderr.strip() == "Project ID is required when using machine identity"
    result = cli(infisical_server, "export", token=DEFAULT_TOKEN, INFISICAL_PROJECT_ID="proj-1")
    assert result.returncode == 0, result.stderr


def test_user_session_uses_workspace_file_and_needs_a_project(infisical_server, tmp_path):
    infisical_server.set_user_session(default_project=None)
    infisical_server.set_secrets({"K": "v"}, env="prod")
    result = cli(infisical_server, "export", cwd=tmp_path)
    assert result.returncode == 1
    assert "Please either run infisical init to connect to a project or pass in project id with --projectId flag" in result.stderr
    infisical_server.write_workspace_file(tmp_path, default_environment="prod")
    result = cli(infisical_server, "export", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "K='v'\n")


def test_not_logged_in_prompts_on_stdout_and_fails_without_stdin(infisical_server, tmp_path):
    result = cli(infisical_server, "export", "--projectId", "proj-1", cwd=tmp_path)
    assert result.returncode == 1
    assert "Select your hosting option" in result.stdout


def test_server_down_gives_the_dial_error(infisical_server):
    infisical_server.set_server("down")
    result = cli(infisical_server, "export", "--projectId", "proj-1", "--domain", "http://127.0.0.1:8010",
                 token=DEFAULT_TOKEN)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith('error: CallGetRawSecretsV3: Unable to complete api request [err=Get "http://127.0.0.1:8010/api/v3/secrets/raw')
    assert "dial tcp 127.0.0.1:8010: connect: connection refused" in result.stderr
    assert result.stderr.rstrip().endswith("Unable to fetch secrets")


def test_probe_domain_fails_when_nothing_listens(infisical_server):
    infisical_server.update(probe_domain=True)
    result = cli(infisical_server, "export", "--projectId", "proj-1", token=DEFAULT_TOKEN,
                 INFISICAL_API_URL="http://127.0.0.1:9")
    assert result.returncode == 1 and "dial tcp 127.0.0.1:9" in result.stderr


def test_garbage_server_prints_non_json_and_succeeds(infisical_server):
    infisical_server.set_server("garbage")
    result = cli(infisical_server, "export", "-f", "json", "--projectId", "proj-1", token=DEFAULT_TOKEN)
    assert result.returncode == 0
    with pytest.raises(ValueError):
        json.loads(result.stdout)


def test_universal_auth_login_prints_only_the_token(infisical_server):
    result = cli(infisical_server, "login", "--method=universal-auth", "--silent", "--plain",
                 INFISICAL_UNIVERSAL_AUTH_CLIENT_ID=DEFAULT_CLIENT_ID,
                 INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET=DEFAULT_CLIENT_SECRET)
    assert (result.returncode, result.stdout) == (0, DEFAULT_TOKEN + "\n")
    wrong = cli(infisical_server, "login", "--method", "universal-auth", "--plain",
                INFISICAL_UNIVERSAL_AUTH_CLIENT_ID=DEFAULT_CLIENT_ID,
                INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET="nope")
    assert wrong.returncode == 1 and wrong.stdout == "" and "401 Unauthorized" in wrong.stderr


def test_login_status(infisical_server):
    assert cli(infisical_server, "login", "status", "--json").returncode == 1
    infisical_server.set_user_session()
    result = cli(infisical_server, "login", "status", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["authenticated"] is True


def test_secrets_set_from_file_writes_the_server(infisical_server, tmp_path):
    source = tmp_path / "new.env"
    source.write_text("A=1\nB='two words'\n# comment\n")
    result = cli(infisical_server, "secrets", "set", "--file", str(source), "--projectId", "proj-1",
                 "--env", "prod", token=DEFAULT_TOKEN)
    assert result.returncode == 0, result.stderr
    assert infisical_server.secrets(env="prod") == {"A": "1", "B": "two words"}
    source.write_text("1A=x\n")
    bad = cli(infisical_server, "secrets", "set", f"--file={source}", "--projectId", "proj-1", token=DEFAULT_TOKEN)
    assert bad.returncode == 1 and "cannot start with a number" in bad.stderr
    source.write_text("E=\n")
    empty = cli(infisical_server, "secrets", "set", f"--file={source}", "--projectId", "proj-1", token=DEFAULT_TOKEN)
    assert empty.returncode == 1 and "has an empty value" in empty.stderr


def test_secrets_set_args_and_delete(infisical_server):
    result = cli(infisical_server, "secrets", "set", "X=1", "Y=2", "--projectId", "proj-1", token=DEFAULT_TOKEN)
    assert result.returncode == 0, result.stderr
    assert infisical_server.secrets() == {"X": "1", "Y": "2"}
    # The real `secrets delete` defaults to --type personal: a shared secret needs --type shared.
    personal = cli(infisical_server, "secrets", "delete", "X", "--projectId", "proj-1", token=DEFAULT_TOKEN)
    assert personal.returncode == 1
    shared = cli(infisical_server, "secrets", "delete", "X", "--type=shared", "--projectId", "proj-1",
                 token=DEFAULT_TOKEN)
    assert shared.returncode == 0, shared.stderr
    assert infisical_server.secrets() == {"Y": "2"}


def test_output_file_is_world_readable(infisical_server, tmp_path):
    infisical_server.set_secrets({"K": "v"})
    target = tmp_path / "out.env"
    result = cli(infisical_server, "export", "-o", str(target), "--projectId", "proj-1", token=DEFAULT_TOKEN)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == "K='v'\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 & ~umask


def test_hang_mode_needs_a_process_group_kill(infisical_server):
    infisical_server.set_server("hang")
    env = dict(infisical_server.env, INFISICAL_TOKEN=DEFAULT_TOKEN)
    proc = subprocess.Popen(["infisical", "export", "--projectId", "proj-1"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.communicate(timeout=1)
        proc.kill()  # the CLI alone: its child still holds stdout open
        with pytest.raises(subprocess.TimeoutExpired):
            proc.communicate(timeout=1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    started = time.monotonic()
    proc.communicate(timeout=5)
    assert time.monotonic() - started < 5


def test_log_records_argv_and_token_variables(infisical_server):
    cli(infisical_server, "export", "--projectId", "proj-1", token="tok-secret-1")
    (call,) = infisical_server.calls_of("export")
    assert call["argv"] == ["export", "--projectId", "proj-1"]
    assert call["env_token_vars"]["INFISICAL_TOKEN"] == "tok-secret-1"
    assert call["env_token_vars"]["TOKEN"] is None
    assert call["stdin_is_closed_or_devnull"] is True
    assert "tok-secret-1" not in json.dumps(call["argv"])


def test_minimal_env_does_not_leak_the_shell(infisical_server, monkeypatch):
    monkeypatch.setenv("TOKEN", "from-my-shell")
    assert "TOKEN" not in infisical_server.env
    assert infisical_server.env["PATH"].split(os.pathsep)[0].endswith("tests/support/bin")


def test_stack_fixture_runs_a_busybox_service(stack):
    stack.write_compose({"app": {"environment": {"GREETING": "${GREETING}", "FIXED": "x=1"}},
                         "other": {}})
    stack.write_env({"GREETING": "hello"})
    stack.compose("up", "-d")
    assert set(stack.running_services()) == {"app", "other"}
    env = stack.container_env("app")
    assert env["GREETING"] == "hello" and env["FIXED"] == "x=1"
    assert len(stack.container_id("app")) == 64
    assert stack.config_hash("app")
