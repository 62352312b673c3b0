"""How settings are chosen, and what counts as a valid export: no engine needed."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stack_launcher.infisical_source import Request, Unavailable, parse_export
from stack_launcher.settings import resolve
from support.processes import LAUNCHER, minimal_env

REQUEST = Request(environment="dev", path="/", project_id="p", api_url="", timeout=5, cwd=".")


def test_a_flag_beats_the_shell_which_beats_dotenv_which_beats_the_default(tmp_path):
    (tmp_path / ".env").write_text("INFISICAL_ENVIRONMENT=from-dotenv\nINFISICAL_SECRET_PATH=/dotenv\n"
                                   "COMPOSE_PROJECT_NAME=dotenv-name\n")
    shell = {"INFISICAL_ENVIRONMENT": "from-shell"}
    s = resolve(project_dir=tmp_path, shell=shell, infisical_env="from-flag")
    assert s.infisical_env == "from-flag"
    s = resolve(project_dir=tmp_path, shell=shell)
    assert (s.infisical_env, s.infisical_path, s.project_name) == ("from-shell", "/dotenv", "dotenv-name")
    (tmp_path / ".env").write_text("")
    s = resolve(project_dir=tmp_path, shell={})
    assert (s.infisical_env, s.infisical_path, s.project_name) == ("dev", "/", "localai")


def test_the_infisical_json_default_environment_is_used_before_dev(tmp_path):
    (tmp_path / ".infisical.json").write_text(json.dumps({"workspaceId": "w", "defaultEnvironment": "staging"}))
    assert resolve(project_dir=tmp_path, shell={}).infisical_env == "staging"


def test_dotenv_is_never_loaded_into_the_process_environment(tmp_path):
    import os

    (tmp_path / ".env").write_text("SOME_SECRET_FOR_TEST=abcdef123\n")
    resolve(project_dir=tmp_path)
    assert "SOME_SECRET_FOR_TEST" not in os.environ


def test_credentials_are_secrets_that_never_show(tmp_path):
    (tmp_path / ".env").write_text("INFISICAL_TOKEN=super-secret-token\n")
    settings = resolve(project_dir=tmp_path, shell={})
    assert "super-secret-token" not in repr(settings)
    assert settings.credentials["INFISICAL_TOKEN"].reveal() == "super-secret-token"


def test_a_key_infisical_returns_twice_keeps_the_last_value_with_a_warning():
    out = parse_export(json.dumps([{"key": "A", "value": "first"}, {"key": "A", "value": "second"}]), REQUEST)
    assert out.secrets["A"].reveal() == "second"
    assert any("A twice" in w for w in out.warnings)


def test_a_key_compose_cannot_read_is_skipped_with_a_warning():
    out = parse_export(json.dumps([{"key": "GOOD", "value": "v"}, {"key": "bad key", "value": "v"}]), REQUEST)
    assert list(out.secrets) == ["GOOD"]
    assert any("'bad key'" in w for w in out.warnings)


@pytest.mark.parametrize("stdout, reason", [
    ("[]", "no secrets"),
    ("null", "no secrets"),  # Go marshals an empty list as null
    ("<html>login</html>", "other than JSON"),
    ('{"key": "A"}', "not a list"),
    ('[{"key": "A", "value": 1}]', "without a string key and value"),
])
def test_an_export_that_is_not_a_list_of_secrets_counts_as_infisical_unavailable(stdout, reason):
    with pytest.raises(Unavailable, match=reason):
        parse_export(stdout, REQUEST)


def test_a_value_never_appears_in_a_validation_error():
    with pytest.raises(Unavailable) as info:
        parse_export('[{"key": "A", "value": "leaky-value"}, {"key": 5, "value": "other-leak"}]', REQUEST)
    assert "leak" not in str(info.value)


def test_flags_that_exclude_each_other_are_a_usage_error(tmp_path):
    (tmp_path / ".env").write_text("")
    result = subprocess.run([sys.executable, str(LAUNCHER), "--skip-infisical", "--offline"], cwd=tmp_path,
                            env=minimal_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "cannot be used together" in result.stderr


def test_help_and_version_answer_without_a_project(tmp_path):
    for args in (["--help"], ["--version"], ["up", "--help"], ["down", "--help"]):
        result = subprocess.run([sys.executable, str(LAUNCHER), *args], cwd=tmp_path, env=minimal_env(),
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
    assert "-v," not in result.stdout  # no -v: compose users read `down -v` as "remove volumes"
