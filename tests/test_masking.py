"""No secret value reaches the terminal, whatever shape compose or the CLI print it in."""
from __future__ import annotations

import json

from hypothesis import given, strategies as st

from stack_launcher.masking import Masker
from stack_launcher.secret import Secret


def relay(masker: Masker, chunks: list[str]) -> str:
    lines = []
    for chunk in chunks:
        lines += masker.feed(chunk)
    return "\n".join(lines + masker.flush())


def test_a_secret_in_a_compose_error_is_masked():
    masker = Masker(["s3cr3t-port"])
    assert relay(masker, ["invalid hostPort: s3cr3t-port\n"]) == "invalid hostPort: ***"


def test_short_values_are_left_alone():
    masker = Masker(["abc", "12345"])
    assert relay(masker, ["abc 12345\n"]) == "abc 12345"


def test_a_multi_line_secret_split_over_output_lines_is_masked():
    key = "-----BEGIN KEY-----\nMIIEabc\n-----END KEY-----"
    masker = Masker([key])
    shown = relay(masker, ["value: -----BEGIN KEY-----\n", "MIIEabc\n", "-----END KEY----- done\n", "next\n"])
    assert "MIIEabc" not in shown and "BEGIN KEY" not in shown
    assert "value: *** done" in shown and "next" in shown


def test_lines_that_only_began_like_a_secret_are_shown_in_order():
    masker = Masker(["first\nsecond-line"])
    assert relay(masker, ["a first\n", "not it\n", "end"]) == "a first\nnot it\nend"


def test_a_secret_inside_a_json_event_is_masked_after_decoding():
    value = 'quote"back\\slash\nnewline'
    masker = Masker([value])
    event = json.dumps({"id": "Container x", "text": f"bad value {value}"}) + "\n"
    shown = relay(masker, [event])
    assert json.loads(shown)["text"] == "bad value ***"
    assert "slash" not in shown


def test_the_longest_secret_wins_when_one_contains_another():
    masker = Masker(["passw0rd", "passw0rd-and-more"])
    assert relay(masker, ["x passw0rd-and-more y\n"]) == "x *** y"


def test_a_secret_printed_by_mistake_shows_no_value():
    secret = Secret("hunter2-top-secret")
    assert "hunter2" not in repr(secret) + str(secret) + f"{secret}" + repr({"k": secret}) + repr([secret])


@given(st.text(min_size=6, max_size=30).filter(lambda v: v.strip() and "\r" not in v),
       st.text(max_size=20), st.text(max_size=20), st.integers(1, 7))
def test_a_secret_never_reaches_the_terminal_however_the_output_is_chunked(secret, before, after, size):
    masker = Masker([secret])
    stream = f"{before}{secret}{after}\n"
    chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
    assert secret not in relay(masker, chunks)


def test_a_multi_line_secret_cut_across_two_separate_messages_is_masked_in_both():
    key = "-----BEGIN KEY-----\nMIIEabcdefghij\n-----END KEY-----"
    masker = Masker([key])
    assert masker.mask("error: -----BEGIN KEY-----\nMIIEabcdefghij") == "error: ***\n***"
    assert masker.mask("warning: -----END KEY----- is odd") == "warning: *** is odd"
