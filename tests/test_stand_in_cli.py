"""The Infisical CLI stand-in behaves like the real CLI (reference/infisical-cli.md),
and the engine fixtures work against the real engine."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import signal
import stat
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from stack_launcher.push_file import render
from support.goyaml import go_yaml_or_skip
from support.infisical_server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TOKEN
from support.processes import STAND_IN_BIN


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


# -- secrets set --file X.yaml reads as go-yaml does -------------------------------------------

OFFLINE_WARNING = ("Warning: Unable to fetch the latest secret(s) due to connection error, serving "
                   "secrets from last successful fetch. For more info, run with --debug")


def load_stand_in():
    """The stand-in as a module, to run its go-yaml reader in-process."""
    loader = importlib.machinery.SourceFileLoader("infisical_stand_in", str(STAND_IN_BIN / "infisical"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


STAND_IN = load_stand_in()


def stand_in_reads(document: str | bytes) -> dict:
    """{"secrets": {...}} or {"error": text}, as the stand-in's parseSecrets gives them."""
    data = document if isinstance(document, bytes) else document.encode("utf-8", "surrogatepass")
    try:
        return {"secrets": STAND_IN.yaml_secrets(data)}
    except STAND_IN.YamlError as exc:
        return {"error": str(exc)}


def go_reads(go_yaml, documents: list[str | bytes]) -> list[dict]:
    return [{"error": str(r)} if isinstance(r, Exception) else {"secrets": r}
            for r in go_yaml.parse_each(documents)]


@pytest.fixture(scope="module")
def go_yaml():
    """The real go-yaml (tests/support/goyaml); skips without Go, fails in CI."""
    return go_yaml_or_skip()


def set_from_file(server, tmp_path, text: str | bytes, name: str = "push.yaml", **env):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return cli(server, "secrets", "set", f"--file={path}", "--projectId=proj-1", token=DEFAULT_TOKEN, **env)


def test_a_push_file_from_the_launcher_is_stored_exactly(infisical_server, tmp_path):
    values = {"EMOJI": "🔑", "QUOTES": 'say "hi" \\ it\'s', "MULTI": "a\nb\r\nc", "NEL": "a\x85b",
              "CONTROLS": "del\x7f c1\x80 nul\x00", "SEPARATORS": "a \u2028 b", "BOM": "\ufeffx",
              "NONCHAR": "\ufffe\uffff", "REF": "${X} $HOME"}
    result = set_from_file(infisical_server, tmp_path, render(values))
    assert result.returncode == 0, result.stderr
    assert infisical_server.secrets() == values


def test_the_old_json_push_file_with_an_emoji_fails_as_the_real_cli_does(infisical_server, tmp_path):
    infisical_server.set_server("down")  # the file is read before any server call
    result = set_from_file(infisical_server, tmp_path, 'OK: "fine"\nKEY: "\\ud83d\\udd11"\n')
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ("error parsing secrets: failed to parse YAML file: yaml: line 2: "
                             "found invalid Unicode character escape code\n")
    infisical_server.set_server("up")
    assert infisical_server.secrets() == {}


@pytest.mark.parametrize("raw", ["\x7f", "\x80", "\x9f", "\ufffe", "\uffff", "\x00", "\x1b"])
def test_a_raw_control_character_fails_the_whole_push_file(infisical_server, tmp_path, raw):
    result = set_from_file(infisical_server, tmp_path, f'A: "fine"\nB: "a{raw}b"\n')
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "error parsing secrets: failed to parse YAML file: yaml: control characters are not allowed\n"
    assert infisical_server.secrets() == {}


def test_a_raw_next_line_in_a_push_file_is_folded_into_a_space(infisical_server, tmp_path):
    result = set_from_file(infisical_server, tmp_path, 'ONE: "a\x85b"\nTWO: "a\x85\x85b"\nLF: "a\n  b"\n')
    assert result.returncode == 0, result.stderr
    assert infisical_server.secrets() == {"ONE": "a b", "TWO": "a\nb", "LF": "a b"}


def test_a_value_that_is_not_a_string_fails_the_push_file(infisical_server, tmp_path):
    for document, key in (("A: 1\n", "A"), ('A: "x"\nB: true\n', "B"), ("C:\n", "C"), ("D: 2024-01-01\n", "D")):
        result = set_from_file(infisical_server, tmp_path, document)
        assert result.returncode == 1
        assert result.stderr == f"error parsing secrets: YAML secret '{key}' must be a string\n"


@pytest.mark.parametrize("document, message", [
    ('"1A": "x"\n', "secret key '1A' cannot start with a number"),
    ('"MY KEY": "x"\n', "secret key 'MY KEY' cannot contain spaces"),
    ('"": "x"\n', "secret keys cannot be empty"),
    ('E: ""\n', "Secret key 'E' has an empty value"),
    ('W: " \\t\\n\\x85\\u00a0\\u3000"\n', "Secret key 'W' has an empty value"),  # Go's unicode.IsSpace
    ("{}\n", "no valid secrets found in the file"),
    ("# nothing\n", "no valid secrets found in the file"),
])
def test_secrets_set_file_validation_matches_the_real_cli(infisical_server, tmp_path, document, message):
    result = set_from_file(infisical_server, tmp_path, document)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", message + "\n")
    assert infisical_server.secrets() == {}


def test_secrets_set_file_accepts_what_go_accepts_but_python_would_strip(infisical_server, tmp_path):
    # U+001C..U+001F are whitespace to Python's str.strip() but not to Go's strings.TrimSpace;
    # only an ASCII digit counts as "starts with a number" (the CLI looks at the first byte).
    result = set_from_file(infisical_server, tmp_path, '"SEP": "\\x1c"\n"\u0663A": "x"\n')
    assert result.returncode == 0, result.stderr
    assert infisical_server.secrets() == {"SEP": "\x1c", "\u0663A": "x"}


def test_a_duplicate_key_fails_the_push_file(infisical_server, tmp_path):
    result = set_from_file(infisical_server, tmp_path, 'A: "x"\n"A": "y"\n')
    assert result.returncode == 1
    assert result.stderr == ("error parsing secrets: failed to parse YAML file: yaml: unmarshal errors:\n"
                             '  line 2: mapping key "A" already defined at line 1\n')


def test_a_dotenv_push_file_is_still_read_naively(infisical_server, tmp_path):
    result = set_from_file(infisical_server, tmp_path, 'A="x\\ny"\n// c\nB = \'two words\' \n', name="push.env")
    assert result.returncode == 0, result.stderr
    assert infisical_server.secrets() == {"A": "x\\ny", "B": "two words"}


# Pieces of double- and single-quoted scalars: raw characters go-yaml folds or keeps, valid
# escapes, and now and then one fault (a raw character it refuses, a bad escape, a document
# marker). Every piece is whole (no lone backslash), so no quote closes early: the documents
# stay flat mappings of quoted scalars, the subset the launcher writes, and what goes wrong
# in it. (Text after a closing quote is an error whose wording depends on how far go-yaml's
# scanner looks ahead; the stand-in matches it only in simple cases, see FIXED_DOCUMENTS.)
CLEAN_PIECES = ["a", "b", " ", "  ", "\t", "\n", "\r", "\r\n", "\n\n", "\n  ", " \n ", "\x85", "\x85\x85",
                "\u2028", "\u2029", "\ufeff", "é", "🔑", "\ufdd0", "#", " #", ":", ": ", "$", "${X}", "-", "'",
                "\\n", "\\\\", '\\"', "\\'", "\\x41", "\\x7F", "\\xe9", "\\u00e9", "\\u2028", "\\U0001F511",
                "\\\n", "\\\r\n", "\\ ", "\\\t", "\\N", "\\L", "\\P", "\\_", "\\e", "\\0", "\\t", "\\r"]
FAULTS = ["\x7f", "\x80", "\x9f", "\ufffe", "\uffff", "\x00", "\x1b", "\x0c", "\\ud83d", "\\udd11", "\\U00110000",
          "\\q", "\\/", "\\x4", "\\u12", "\n---\n", "\n...\n", "\n--- x"]


@st.composite
def quoted_documents(draw):
    lines = []
    entries = draw(st.integers(1, 4))
    fault_at = draw(st.integers(0, 3 * entries))  # most documents have no fault
    for index in range(entries):
        name = "K0" if index and draw(st.integers(0, 9)) == 0 else f"K{index}"  # now and then a duplicate
        key = draw(st.sampled_from([name, f'"{name}"', f"'{name}'", "~", '"1X"', "null"]
                                   if draw(st.integers(0, 9)) == 0 else [name, f'"{name}"', f"'{name}'"]))
        pieces = draw(st.lists(st.sampled_from(CLEAN_PIECES), max_size=10))
        if index == fault_at:
            pieces.insert(draw(st.integers(0, len(pieces))), draw(st.sampled_from(FAULTS)))
        body = "".join(pieces)
        if draw(st.integers(0, 3)):  # double-quoted
            value = f'"{body}"'
        else:  # single-quoted: no escapes, '' is a quote
            value = "'" + body.replace("'", "''") + "'"
        lines.append(f"{key}:{draw(st.sampled_from([' ', '  ', chr(9)]))}{value}"
                     f"{draw(st.sampled_from(['', ' # note', '  ', '#x']))}")
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n", "\r\n"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(quoted_documents(), min_size=1, max_size=30))
def test_the_stand_in_reads_quoted_push_files_exactly_as_go_yaml(go_yaml, documents):
    assert [stand_in_reads(d) for d in documents] == go_reads(go_yaml, documents)


FIXED_DOCUMENTS = [
    "", "{}\n", "# only a comment\n", "---\nA: \"x\"\n", "A: \"x\"\n---\nB: \"y\"\n", "A: \"x\"\n...\n",
    "\ufeffA: \"x\"\n", "  A: \"x\"\n  B: \"y\"\n", "  A: x\n  B: y z\n", "A: \"x\"\n  B: \"y\"\n",
    "A: x\nB: 1\n", "A: x y: z\n", "A: x\n  y: z\n", "A:\nB: \"x\"\n", "A: # c\n  \"x\"\n",
    "A: plain words\n", "A: yes\n", "A: tRUE\n", "A: <<\n", "A: 0x" + "f" * 20 + "\n", "A: 1e400\n",
    "A: 1\n", "A: -1_000\n", "A: 0o17\n", "A: 08\n", "A: 1.5\n", "A: .5\n", "A: .inf\n", "A: ~\n", "A: Null\n",
    "A: 2024-01-01\n", "A: 2024-02-30\n", "A: 2001-12-14t21:59:43.10-05:00\n", "A: 2001-12-14 21:59:43.10\n",
    "A: a\n  b\n\n  c\nB: d\n", "A: a # comment\n", "A: a#b\n", "A: b: c\n", "A: [1, 2]\n", "A: {}\n",
    "A: -\n", "A: - x\n", "A: @x\n", "A:\n  \"x\"\n", "A:\n\"x\"\n", "A: \"x\" y\n", "B: \"x\"\nA: \"x\" y\n",
    "\"A\"x: \"y\"\n", "K0: \"a\\\\\"\"\n", "A: \"x\"\"y\"\n", "A: \"x\" \"\\q\"\n", "hello\n", "A:\"x\"\n", "~: \"x\"\nB: \"y\"\n", "null: \"x\"\n", "\"\": \"x\"\n",
    "1: \"x\"\n", "true: \"x\"\n", "A: \"x\"\nA: \"y\"\nA: \"z\"\n", "\"" + "K" * 1022 + "\": \"x\"\n",
    "\"" + "K" * 1023 + "\": \"x\"\n", "A: \"x\"\n\"" + "K" * 1023 + "\": \"x\"\n",
    b"A: \"a\xffb\"\n", b"A: \"\xed\xa0\x80\"\n", b"A: \"\xe2\x82\"\n", b"A: \"\xc0\x80\"\n", b"A: \"x\"\n\xe2\x82",
    b"A: \"\xf4\x90\x80\x80\"\n",
]


def test_the_stand_in_reads_other_yaml_shapes_as_go_yaml(go_yaml):
    assert [stand_in_reads(d) for d in FIXED_DOCUMENTS] == go_reads(go_yaml, FIXED_DOCUMENTS)


def test_the_stand_in_reports_a_go_yaml_error_as_the_cli_prints_it(go_yaml, infisical_server, tmp_path):
    document = 'A: "fine"\nB: "\\q"\n'
    (expected,) = go_reads(go_yaml, [document])
    result = set_from_file(infisical_server, tmp_path, document)
    assert result.returncode == 1
    assert result.stderr == f"error parsing secrets: {expected['error']}\n"


# -- the CLI's own cache, for machine identities too ----------------------------------------------

def test_a_machine_identity_is_served_the_cli_cache_when_the_server_is_unreachable(infisical_server):
    infisical_server.set_secrets({"K": "live"})
    infisical_server.update(identity_offline_backup={"proj-1": {"dev": {"/": {"K": "cached"}}}})
    infisical_server.set_server("down")
    result = cli(infisical_server, "export", "--format=json", "--projectId=proj-1", token=DEFAULT_TOKEN)
    assert result.returncode == 0, result.stderr
    assert [(r["key"], r["value"]) for r in json.loads(result.stdout)] == [("K", "cached")]
    assert result.stderr.rstrip("\n").rstrip() == OFFLINE_WARNING
    # Offline nothing checks the token: a revoked one is served the copy as well.
    revoked = cli(infisical_server, "export", "--format=json", "--projectId=proj-1", token="revoked")
    assert revoked.returncode == 0 and OFFLINE_WARNING in revoked.stderr


def test_the_cli_cache_is_never_served_for_a_refused_token(infisical_server):
    infisical_server.update(identity_offline_backup={"proj-1": {"dev": {"/": {"K": "cached"}}}})
    result = cli(infisical_server, "export", "--format=json", "--projectId=proj-1", token="wrong")
    assert result.returncode == 1 and "401 Unauthorized" in result.stderr
    assert OFFLINE_WARNING not in result.stderr


def test_without_a_cache_for_its_scope_a_machine_identity_fails_offline(infisical_server):
    # An older CLI (or no working keyring): only the user session's copy exists.
    infisical_server.update(offline_backup={"proj-1": {"dev": {"/": {"K": "cached"}}}},
                            identity_offline_backup={"proj-1": {"prod": {"/": {"K": "other env"}},
                                                                "dev": {"/": {}}}})
    infisical_server.set_server("down")
    result = cli(infisical_server, "export", "--format=json", "--projectId=proj-1", token=DEFAULT_TOKEN)
    assert result.returncode == 1 and result.stdout == ""
    assert "dial tcp" in result.stderr and OFFLINE_WARNING not in result.stderr


def test_a_user_session_is_served_its_own_cache(infisical_server):
    infisical_server.set_user_session()
    infisical_server.update(offline_backup={"proj-1": {"dev": {"/": {"K": "user copy"}}}},
                            identity_offline_backup={"proj-1": {"dev": {"/": {"K": "identity copy"}}}})
    infisical_server.set_server("down")
    result = cli(infisical_server, "export", "--format=json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["value"] == "user copy"
    assert OFFLINE_WARNING in result.stderr


def test_infisical_run_is_served_the_cache_too(infisical_server):
    infisical_server.update(identity_offline_backup={"proj-1": {"dev": {"/": {"K": "cached"}}}})
    infisical_server.set_server("down")
    result = cli(infisical_server, "run", "--projectId=proj-1", "--", "sh", "-c", 'printf %s "$K"',
                 token=DEFAULT_TOKEN)
    assert (result.returncode, result.stdout) == (0, "cached")
    assert OFFLINE_WARNING in result.stderr


# -- domain precedence and the update check -----------------------------------------------------

def test_domain_precedence_is_flag_then_infisical_domain_then_api_url_then_workspace_file(infisical_server, tmp_path):
    infisical_server.set_server("down")
    infisical_server.write_workspace_file(tmp_path, domain="http://127.0.0.1:8004")
    everything = {"INFISICAL_DOMAIN": "http://127.0.0.1:8002", "INFISICAL_API_URL": "http://127.0.0.1:8003/api"}

    def dialled(*flags, **env):
        result = cli(infisical_server, "export", "--projectId=proj-1", *flags, token=DEFAULT_TOKEN, cwd=tmp_path, **env)
        assert result.returncode == 1
        return result.stderr.split("dial tcp ")[1].split(":")[1]

    assert dialled("--domain=http://127.0.0.1:8001", **everything) == "8001"
    assert dialled(**everything) == "8002"
    assert dialled(INFISICAL_API_URL=everything["INFISICAL_API_URL"]) == "8003"
    assert dialled() == "8004"
    assert dialled(INFISICAL_DOMAIN="", INFISICAL_API_URL="http://127.0.0.1:8003") == "8003"  # empty is unset


@pytest.mark.parametrize("args, env, expected", [
    (["secrets", "set", "A=1", "--projectId=proj-1"], {}, True),
    (["secrets", "delete", "A", "--type=shared", "--projectId=proj-1"], {}, True),
    (["export", "--projectId=proj-1"], {}, True),  # dotenv: not a structured format
    (["export", "--format=json", "--projectId=proj-1"], {}, False),
    (["export", "-f", "YAML", "--projectId=proj-1"], {}, False),
    (["secrets", "set", "A=1", "--output=json", "--projectId=proj-1"], {}, False),
    (["login", "--method=universal-auth", "--silent", "--plain"], {}, False),
    (["secrets", "set", "A=1", "--projectId=proj-1"], {"INFISICAL_DISABLE_UPDATE_CHECK": "true"}, False),
    (["secrets", "set", "A=1", "--projectId=proj-1"], {"INFISICAL_DISABLE_UPDATE_CHECK": "false"}, False),
    (["secrets", "set", "A=1", "--projectId=proj-1"], {"INFISICAL_DISABLE_UPDATE_CHECK": ""}, True),
    (["--version"], {}, False),
    (["export", "--no-such-flag"], {}, False),
])
def test_the_log_says_whether_the_real_cli_would_check_github_for_an_update(infisical_server, args, env, expected):
    env = {"INFISICAL_UNIVERSAL_AUTH_CLIENT_ID": DEFAULT_CLIENT_ID,
           "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET": DEFAULT_CLIENT_SECRET, **env}
    cli(infisical_server, *args, token=None if args[0] == "login" else DEFAULT_TOKEN, **env)
    (call,) = infisical_server.calls()
    assert call["update_check"] is expected
    assert call["env"]["INFISICAL_DISABLE_UPDATE_CHECK"] == env.get("INFISICAL_DISABLE_UPDATE_CHECK")
