"""Whatever a secret holds, the push file reaches Infisical with exactly that value.

`infisical secrets set --file=<temp>.yaml` reads the file with go-yaml (gopkg.in/yaml.v3),
so every check here runs the real go-yaml (tests/support/goyaml: the CLI's parseSecrets,
built from Debian's Go and yaml.v3), never a Python YAML library.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from stack_launcher.push_file import render
from support.goyaml import GoYamlError, go_yaml_or_skip


@pytest.fixture(scope="module")
def go_yaml():
    """The real go-yaml; skips without Go, fails in CI (REQUIRE_DOCKER=1 or CI=true)."""
    return go_yaml_or_skip()


def pushed(go_yaml, values: dict[str, str]) -> dict[str, str]:
    """What the CLI reads from the push file written for `values`."""
    return go_yaml.parse(render(values))


def roundtrips(go_yaml, value: str) -> bool:
    return pushed(go_yaml, {"SECRET": value}) == {"SECRET": value}


# -- user scenarios --------------------------------------------------------------------------

def test_an_emoji_in_a_secret_reaches_infisical_unchanged(go_yaml):
    assert roundtrips(go_yaml, "key 🔑 and 𝄞 and 🏳️‍🌈")


def test_quotes_and_backslashes_reach_infisical_unchanged(go_yaml):
    assert roundtrips(go_yaml, 'say "hi" \\ it\'s C:\\path\\ \\"\\n \\x41 ends with \\')


def test_a_dollar_or_a_secret_reference_is_pushed_as_written(go_yaml):
    # Infisical expands ${X} when it is read back; the push itself must not touch it.
    assert roundtrips(go_yaml, "pa$$word $HOME ${X} ${prod.db.PASSWORD} $")


def test_a_multi_line_certificate_keeps_its_line_breaks(go_yaml):
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n  indented\n\n-----END CERTIFICATE-----\n"
    assert roundtrips(go_yaml, pem)
    assert roundtrips(go_yaml, "windows\r\nline\rends\r\n")


def test_tabs_and_spaces_at_either_end_are_kept(go_yaml):
    assert roundtrips(go_yaml, " \t lead and trail \t ")
    assert roundtrips(go_yaml, "   ")


def test_a_next_line_character_is_not_folded_into_a_space(go_yaml):
    # go-yaml folds a raw NEL (U+0085) in a quoted scalar into a space, two into a newline.
    assert roundtrips(go_yaml, "a\x85b")
    assert roundtrips(go_yaml, "a\x85\x85b")


def test_del_nul_and_c1_control_characters_are_escaped_not_refused(go_yaml):
    assert roundtrips(go_yaml, "del\x7f nul\x00 esc\x1b c1\x80\x9f bell\x07")
    assert roundtrips(go_yaml, "".join(chr(c) for c in range(0x00, 0x20)) + "".join(chr(c) for c in range(0x7F, 0xA1)))


def test_line_and_paragraph_separators_survive(go_yaml):
    # Raw, go-yaml would drop the blanks around them (they are line breaks to it).
    assert roundtrips(go_yaml, "a \u2028 b \u2029 c")


def test_a_byte_order_mark_inside_a_value_survives(go_yaml):
    assert roundtrips(go_yaml, "\ufeffstarts with a BOM\ufeff")


def test_noncharacters_survive(go_yaml):
    # Raw U+FFFE/U+FFFF make go-yaml refuse the whole file ("control characters are not allowed").
    assert roundtrips(go_yaml, "\ufffe\uffff\ufdd0\ufdef\U0001fffe\U0010ffff")


def test_an_empty_value_reads_back_empty(go_yaml):
    # The CLI rejects it afterwards ("has an empty value"); the file itself must stay exact.
    assert roundtrips(go_yaml, "")


def test_yaml_keywords_and_numbers_stay_strings(go_yaml):
    values = {"true": "false", "null": "~", "NO": "yes", "A1": "1", "B": "1.5e3", "C": "0x1F",
              "D": "2024-01-01", "E": "- item", "F": "[1, 2]", "G": "{a: b}", "H": "# not a comment",
              "I": "key: value", "J": "&anchor *alias !tag |block >folded", "K": "---", "L": "..."}
    assert pushed(go_yaml, values) == values


def test_many_secrets_in_one_push_keep_their_names_and_values(go_yaml):
    values = {f"SECRET_{i}": f"value {i} é 🔑 \"{i}\"\n" for i in range(2000)}
    assert pushed(go_yaml, values) == values


def test_every_secret_is_one_line_in_the_file():
    text = render({"A": "x\ny\r\nz\x85\u2028", "B": "plain"})
    assert text == '"A": "x\\ny\\r\\nz\\x85\\u2028"\n"B": "plain"\n'


def test_no_secrets_give_an_empty_mapping(go_yaml):
    assert render({}) == "{}\n"
    assert go_yaml.parse(render({})) == {}


def test_a_lone_surrogate_is_refused_naming_the_key_but_never_the_value():
    for value in ("\ud83d", "prefix \udd11 suffix", "\ud83d\udd11"):  # the last: JSON's pair, unjoined
        with pytest.raises(ValueError) as info:
            render({"OK": "fine", "BROKEN_KEY": value})
        assert "BROKEN_KEY" in str(info.value)
        assert "prefix" not in str(info.value) and "suffix" not in str(info.value)
        assert "fine" not in str(info.value)


def test_a_value_that_is_not_text_is_refused_naming_the_key():
    with pytest.raises(TypeError, match="NUMBER"):
        render({"NUMBER": 5})  # type: ignore[dict-item]


def test_a_name_longer_than_go_yaml_reads_is_refused(go_yaml):
    longest = "K" * 1022
    assert pushed(go_yaml, {longest: "v"}) == {longest: "v"}
    with pytest.raises(ValueError, match="1023 characters"):
        render({"K" * 1023: "v"})
    with pytest.raises(GoYamlError):  # what go-yaml would have said
        go_yaml.parse(f'"{"K" * 1023}": "v"\n')


# -- why: what the old writer (JSON strings, ASCII-escaped) gave go-yaml ----------------------

def old_writer(values: dict[str, str]) -> str:
    return "".join(f"{key}: {json.dumps(value, ensure_ascii=True)}\n" for key, value in values.items())


def test_the_old_json_writer_lost_every_push_with_an_emoji(go_yaml):
    with pytest.raises(GoYamlError, match="found invalid Unicode character escape code"):
        go_yaml.parse(old_writer({"A": "ok", "KEY": "🔑"}))
    assert pushed(go_yaml, {"A": "ok", "KEY": "🔑"}) == {"A": "ok", "KEY": "🔑"}


def test_go_yaml_refuses_raw_controls_and_folds_a_raw_next_line(go_yaml):
    # The reference's facts, checked: each raw character alone in a double-quoted scalar.
    results = go_yaml.parse_each([f'A: "a{c}b"\n' for c in ("\x7f", "\x80", "\x9f", "\ufffe", "\uffff", "\x85")])
    for refused in results[:5]:
        assert isinstance(refused, GoYamlError) and "control characters are not allowed" in str(refused)
    assert results[5] == {"A": "a b"}


# -- properties ------------------------------------------------------------------------------

NAMES = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.\-]{0,20}\Z")
# Characters go-yaml treats specially, mixed into arbitrary text so that they come up often.
SPECIAL = list("\\\"'\n\r\t\x00\x1b\x7f\x80\x85\x9f\xa0\u2028\u2029\ufeff\ufffe\uffff\ufdd0 #:-{}[]&*!|>%@`$") + [
    "\U0001f511", "\U0001fffe", "\U0010ffff", "\r\n", "\\n", "\\u00e9", "\\ud83d", "\n---\n", "\n...\n"]
TEXT = st.lists(st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(SPECIAL)),
                max_size=30).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(NAMES, TEXT, min_size=1, max_size=40))
def test_any_secret_reaches_infisical_exactly(go_yaml, values):
    assert pushed(go_yaml, values) == values


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(TEXT, min_size=1, max_size=20), min_size=1, max_size=25))
def test_any_secret_reaches_infisical_exactly_many_pushes_at_once(go_yaml, pushes):
    documents = [{f"K{i}": value for i, value in enumerate(values)} for values in pushes]
    assert go_yaml.parse_each([render(values) for values in documents]) == documents


@given(st.lists(st.one_of(st.characters(), st.sampled_from(["\ud800", "\udfff", "\ud83d\udd11"])),
                max_size=30).map("".join))
def test_a_value_is_refused_exactly_when_it_holds_a_lone_surrogate(value):
    has_surrogate = any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    try:
        text = render({"NAME": value})
    except ValueError as exc:
        assert has_surrogate
        assert "NAME" in str(exc)
    else:
        assert not has_surrogate
        text.encode("utf-8")  # always valid UTF-8
