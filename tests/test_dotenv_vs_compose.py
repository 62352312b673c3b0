"""A `.env` line as python-dotenv reads it and as docker compose reads it.

The launcher reads `.env` with python-dotenv, and docker compose reads the same file with its
own parser; where the two read a line differently, the launcher must know it (`migrate`
pushes values "as docker compose reads them"). This file holds what we know, as two tables:

- DIFFERENCES: every known way the two read a line differently, each with an example line
  and the three readings (python-dotenv with interpolate=False, with interpolate=True, and
  compose). `test_each_documented_difference_shows_in_its_example_line` checks each example
  against the real readers, so the table cannot go stale.
- TOKENS: what each piece of a value reads as, per reader and per kind of value (unquoted,
  "double-quoted", 'single-quoted'). Where the readers differ the token names its rule in
  DIFFERENCES. The property test builds `.env` lines from these pieces (quotes of both kinds,
  backslashes, $VAR, ${VAR}, #, spaces, tabs, CR, `export `, unicode), predicts each reading
  from the table, and compares with the real readers: any reading the tables do not predict
  is an unknown difference (or an unknown agreement) and fails the test.

Compose runs as `docker compose config --format json` on a probe file whose one service has
`environment: {KEY: "${KEY}"}` for every line's key, with a minimal environment (REF_UNSET
is never set; REF_SET is set by the first line of the file).
"""
from __future__ import annotations

import io
import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings, strategies as st

from support.processes import minimal_env

REF = "ref-value"
PRELUDE = f"REF_SET={REF}\n"
ABSENT = "<no such key>"  # python-dotenv could not parse the line and dropped it
REFUSED = "<compose refuses the file>"


# ------------------------------------------------------------------------------ the differences

@dataclass(frozen=True)
class Difference:
    rule: str
    says: str
    line: str  # always for the key K
    dotenv: str | None  # dotenv_values(interpolate=False)
    dotenv_interpolated: str | None  # dotenv_values(interpolate=True)
    compose: str


DIFFERENCES = [
    Difference("braceless-variable", "compose substitutes `$NAME` in unquoted and double-quoted values; python-dotenv "
               "never does, not even with interpolate=True", "K=pre-$REF_SET/post",
               "pre-$REF_SET/post", "pre-$REF_SET/post", f"pre-{REF}/post"),
    Difference("braced-variable", "`${NAME}` and `${NAME:-default}` (unquoted or double-quoted): compose substitutes; "
               "python-dotenv keeps the text with interpolate=False and agrees with compose with interpolate=True",
               "K=${REF_SET}", "${REF_SET}", REF, REF),
    Difference("single-quotes-interpolated", "python-dotenv with interpolate=True substitutes `${NAME}` even inside "
               "single quotes; compose takes single-quoted text literally", "K='${REF_SET}'",
               "${REF_SET}", REF, "${REF_SET}"),
    Difference("dash-default", "`${NAME-default}` (no colon): compose uses the default when NAME is unset; "
               "python-dotenv (interpolate=True) reads `NAME-default` as the variable's name", "K=${REF_UNSET-dflt}",
               "${REF_UNSET-dflt}", "", "dflt"),
    Difference("alternative-value", "`${NAME:+alt}` (and `${NAME:?err}`, `${NAME+alt}`): compose knows them; "
               "python-dotenv leaves them as text", "K=${REF_SET:+alt}", "${REF_SET:+alt}", "${REF_SET:+alt}", "alt"),
    Difference("double-dollar", "`$$` (unquoted or double-quoted): compose reads one `$`; python-dotenv keeps `$$`",
               "K=a$$b", "a$$b", "a$$b", "a$b"),
    Difference("backslash-dollar", 'inside double quotes `\\$` is an escaped `$` for compose (no substitution '
               "after it); python-dotenv keeps the backslash (and interpolate=True still substitutes a `${NAME}` "
               "after it)", 'K="a\\$b"', "a\\$b", "a\\$b", "a$b"),
    Difference("escaped-single-quote-in-double-quotes", "inside double quotes python-dotenv reads `\\'` as `'`; "
               "compose keeps the backslash", 'K="it\\\'s"', "it's", "it's", "it\\'s"),
    Difference("backslash-in-single-quotes", "inside single quotes python-dotenv reads `\\\\` as one backslash; "
               "compose keeps both (both read `\\'` as `'`)", "K='a\\\\b'", "a\\b", "a\\b", "a\\\\b"),
    Difference("comment-after-tab", "unquoted: compose starts an inline comment only at a space followed by `#`; "
               "python-dotenv at any whitespace (tab, no-break space, em space, ...) followed by `#`", "K=a\t#note",
               "a", "a", "a\t#note"),
    Difference("unicode-space-after-equals", "after `=` python-dotenv skips any whitespace; compose skips only "
               "space, tab, \\v, \\f, NEL and no-break space, and keeps a leading em space (U+2003), ideographic space "
               "or line separator (U+2028) in the value (trailing ones both drop)", "K=\u2003a", "a", "a", "\u2003a"),
    Difference("comment-right-after-equals", "`K= #note` (whitespace after `=`, then `#`): python-dotenv reads an "
               "empty value and a comment; compose reads `#note` as the value", "K= #note", "", "", "#note"),
    Difference("text-after-closing-quote", "text after the closing quote: compose ignores it; python-dotenv cannot "
               "parse the line, logs a warning and drops the key", 'K="a" junk', ABSENT, ABSENT, "a"),
    Difference("bare-key", "a line with a key and no `=`: python-dotenv reads the key with no value (None); compose "
               "takes the key's value from the shell environment (empty when unset)", "K", None, None, ""),
    Difference("carriage-return-in-unquoted-value", "a bare CR inside an unquoted value: python-dotenv ends the line "
               "there (the rest is read as a new line); compose keeps the CR in the value", "K=a\rb", "a", "a",
               "a\rb"),
    Difference("empty-braces", "`${}`: compose refuses the whole file (invalid template); python-dotenv keeps the "
               "text (interpolate=True: an empty string)", "K=a${}b", "a${}b", "ab", REFUSED),
    Difference("unterminated-quote", "a quote that never closes (`\\'` does not close a single-quoted value in "
               "either): compose refuses the whole file; python-dotenv logs a warning and drops only that key",
               "K='a\\'", ABSENT, ABSENT, REFUSED),
]
RULES = {d.rule: d for d in DIFFERENCES}


# ------------------------------------------------------------------------------ what each piece reads as

LIT = object()  # the token's own text
SAME = (LIT, LIT, LIT)


@dataclass(frozen=True)
class Token:
    """A piece of a value. `reads[kind]` is (dotenv, dotenv interpolated, compose) for kind
    "u" (unquoted), "d" (double-quoted), "s" (single-quoted), or absent where not allowed;
    `rules[kind]` names the DIFFERENCES rule where the readings differ."""

    text: str
    reads: dict[str, tuple]
    rules: dict[str, str]

    def __repr__(self) -> str:
        return repr(self.text)

    def reading(self, kind: str, reader: int) -> str:
        value = self.reads[kind][reader]
        return self.text if value is LIT else value


def token(text: str, u=SAME, d=SAME, s=SAME, rule_u=None, rule_d=None, rule_s=None) -> Token:
    reads = {k: v for k, v in (("u", u), ("d", d), ("s", s)) if v is not None}
    rules = {k: r for k, r in (("u", rule_u), ("d", rule_d), ("s", rule_s)) if r}
    return Token(text, reads, rules)


def literal(text: str) -> Token:
    return token(text)


SPACES = [literal(" "), literal("\t"), literal("\u00a0"), literal("\u2003"), literal("\u2028")]
COMPOSE_TRIMS = SPACES[:3]  # after `=` compose skips these blanks (and \v \f NEL) only, not every Unicode space
TOKENS = [
    # variables
    token("$REF_SET/", u=(LIT, LIT, f"{REF}/"), d=(LIT, LIT, f"{REF}/"),
          rule_u="braceless-variable", rule_d="braceless-variable"),
    token("$REF_UNSET/", u=(LIT, LIT, "/"), d=(LIT, LIT, "/"), rule_u="braceless-variable", rule_d="braceless-variable"),
    token("${REF_SET}", u=(LIT, REF, REF), d=(LIT, REF, REF), s=(LIT, REF, LIT),
          rule_u="braced-variable", rule_d="braced-variable", rule_s="single-quotes-interpolated"),
    token("${REF_UNSET}", u=(LIT, "", ""), d=(LIT, "", ""), s=(LIT, "", LIT),
          rule_u="braced-variable", rule_d="braced-variable", rule_s="single-quotes-interpolated"),
    token("${REF_SET:-dflt}", u=(LIT, REF, REF), d=(LIT, REF, REF), s=(LIT, REF, LIT),
          rule_u="braced-variable", rule_d="braced-variable", rule_s="single-quotes-interpolated"),
    token("${REF_UNSET:-dflt}", u=(LIT, "dflt", "dflt"), d=(LIT, "dflt", "dflt"), s=(LIT, "dflt", LIT),
          rule_u="braced-variable", rule_d="braced-variable", rule_s="single-quotes-interpolated"),
    token("${REF_UNSET-dflt}", u=(LIT, "", "dflt"), d=(LIT, "", "dflt"), s=(LIT, "", LIT),
          rule_u="dash-default", rule_d="dash-default", rule_s="single-quotes-interpolated"),
    token("${REF_SET:+alt}", u=(LIT, LIT, "alt"), d=(LIT, LIT, "alt"),
          rule_u="alternative-value", rule_d="alternative-value"),
    token("$$", u=(LIT, LIT, "$"), d=(LIT, LIT, "$"), rule_u="double-dollar", rule_d="double-dollar"),
    literal("$-"), literal("$."), literal("$1"),
    # backslashes
    token("\\$-", d=(LIT, LIT, "$-"), rule_d="backslash-dollar"),
    token("\\$REF_SET/", u=(LIT, LIT, f"\\{REF}/"), d=(LIT, LIT, "$REF_SET/"),
          rule_u="braceless-variable", rule_d="backslash-dollar"),
    token("\\${REF_SET}", u=(LIT, f"\\{REF}", f"\\{REF}"), d=(LIT, f"\\{REF}", "${REF_SET}"), s=(LIT, f"\\{REF}", LIT),
          rule_u="braced-variable", rule_d="backslash-dollar", rule_s="single-quotes-interpolated"),
    token("\\\\", d=("\\", "\\", "\\"), s=("\\", "\\", LIT), rule_s="backslash-in-single-quotes"),
    token('\\"', d=('"', '"', '"')),
    token("\\'", d=("'", "'", LIT), s=("'", "'", "'"), rule_d="escaped-single-quote-in-double-quotes"),
    *(token(f"\\{c}", d=(v, v, v)) for c, v in zip("ntrabfv", "\n\t\r\a\b\f\v")),
    literal("\\q"), literal("\\u00e9"), literal("\\x41"), literal("\\#"),
    # quotes and line breaks inside a value
    token('"', d=None), token("'", s=None),
    token("\n", u=None), token("\r", u=None),  # raw: only inside quotes (a raw CR unquoted: see below)
]
CHUNK_ALPHABET = "abcxyz019-_.,:/@%+*!?^&()[]<>~|=;#éü✓🎉中"
RAW_CR = token("\r", d=None, s=None)  # unquoted, only right before a last alphanumeric chunk


def differing(tok: Token, kind: str) -> bool:
    readings = {tok.reading(kind, r) for r in range(3)}
    return len(readings) > 1


def test_every_difference_in_the_token_table_names_a_documented_rule():
    for tok in TOKENS:
        for kind in tok.reads:
            if differing(tok, kind):
                assert tok.rules.get(kind) in RULES, f"{tok.text!r} ({kind}) reads differently but names no rule"
            else:
                assert kind not in tok.rules, f"{tok.text!r} ({kind}) names a rule but reads the same"


# ------------------------------------------------------------------------------ lines and their readings

@dataclass(frozen=True)
class Line:
    prefix: str  # "", "export ", leading blanks
    equals: str  # "=", " = ", "= ", ...
    kind: str  # "u", "d", "s", or "bare" (no "=" at all)
    tokens: tuple[Token, ...]
    trailing: str  # after a closing quote
    ending: str  # "\n" or "\r\n"

    def text(self, key: str) -> str:
        if self.kind == "bare":
            return key + self.ending
        body = "".join(t.text for t in self.tokens)
        quote = {"u": "", "d": '"', "s": "'"}[self.kind]
        return f"{self.prefix}{key}{self.equals}{quote}{body}{quote}{self.trailing}{self.ending}"

    def expected(self) -> tuple[object, object, object]:
        """(dotenv, dotenv interpolated, compose) as the tables predict them."""
        if self.kind == "bare":
            return None, None, ""
        if self.kind != "u":
            readings = tuple("".join(t.reading(self.kind, r) for t in self.tokens) for r in range(3))
            if self.trailing.strip() and not self.trailing.strip().startswith("#"):
                return ABSENT, ABSENT, readings[2]  # text-after-closing-quote
            return readings
        return tuple(self._unquoted(r) for r in range(3))

    def _unquoted(self, reader: int) -> str:
        tokens = list(self.tokens)
        is_space = [t in SPACES for t in tokens]
        starts_comment = [t.text.startswith("#") for t in tokens]
        lead = 0
        trimmed = SPACES if reader < 2 else COMPOSE_TRIMS + [RAW_CR]  # rule unicode-space-after-equals
        while lead < len(tokens) and tokens[lead] in trimmed:
            lead += 1
        if reader < 2:  # python-dotenv
            if RAW_CR in tokens:  # rule carriage-return-in-unquoted-value: the line ends at the CR
                tokens = tokens[:tokens.index(RAW_CR)]
            if (lead or self.equals[-1].isspace()) and lead < len(tokens) and starts_comment[lead]:
                return ""  # rule comment-right-after-equals
            # any whitespace before `#` starts a comment (rule comment-after-tab)
            end = next((i for i in range(lead + 1, len(tokens)) if starts_comment[i] and is_space[i - 1]), len(tokens))
        else:  # compose: a comment starts at " #" only
            end = next((i for i in range(lead + 1, len(tokens)) if starts_comment[i] and tokens[i - 1].text == " "),
                       len(tokens))
        kept = tokens[lead:end]
        while kept and kept[-1] in SPACES:
            kept.pop()
        return "".join(t.reading("u", reader) for t in kept)


def chunk(alphabet: str = CHUNK_ALPHABET) -> st.SearchStrategy[Token]:
    return st.text(alphabet, min_size=1, max_size=5).map(literal)


def pieces(kind: str) -> st.SearchStrategy[Token]:
    allowed = [t for t in TOKENS if kind in t.reads]
    return st.one_of(chunk(), st.sampled_from(allowed), st.sampled_from(SPACES))


@st.composite
def lines(draw) -> Line:
    kind = draw(st.sampled_from(["u", "u", "d", "d", "s", "s", "bare"]))
    prefix = draw(st.sampled_from(["", "", "export ", "export\t", "  ", "\t"]))
    equals = draw(st.sampled_from(["=", "=", " = ", "= ", " =", "=\t"]))
    ending = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    if kind == "bare":
        return Line("", "", kind, (), "", ending)
    tokens = draw(st.lists(pieces(kind), max_size=8))
    trailing = ""
    if kind == "u":
        first = next((i for i, t in enumerate(tokens) if t not in SPACES), None)
        if first is not None and tokens[first].text in ('"', "'"):
            tokens.insert(first, draw(chunk("abc")))  # a value that starts with a quote is a quoted one
        tail = draw(st.sampled_from(["", "", " ", "\t", " #note", "\t#note", "\u00a0#note", "cr"]))
        if tail == "cr":
            tokens += [RAW_CR, draw(chunk("abc019"))]
        elif tail:
            tokens += [SPACES[[" ", "\t", "\u00a0"].index(tail[0])]] + ([literal("#note")] if tail[1:] else [])
    elif kind in ("d", "s"):
        trailing = draw(st.sampled_from(["", "", " ", "\t", " #note", "\t#note", "#note", " junk"]))
    return Line(prefix, equals, kind, tuple(tokens), trailing, ending)


# ------------------------------------------------------------------------------ the two readers

def python_dotenv_reads(text: str, keys: list[str]) -> tuple[list[object], list[object]]:
    log = logging.getLogger("dotenv.main")
    level = log.level
    log.setLevel(logging.ERROR)  # "could not parse statement starting at line n": expected here
    try:
        raw = dotenv_values(stream=io.StringIO(text), interpolate=False)
        interpolated = dotenv_values(stream=io.StringIO(text), interpolate=True)
    finally:
        log.setLevel(level)
    return [raw.get(k, ABSENT) for k in keys], [interpolated.get(k, ABSENT) for k in keys]


def compose_reads(folder: Path, text: str, keys: list[str]) -> list[str] | str:
    """Each key's value as `docker compose config` reads it, or the error when it refuses."""
    (folder / "probe.env").write_bytes(text.encode("utf-8"))
    service = {"image": "busybox-test:local", "environment": {k: "${%s}" % k for k in keys}}
    (folder / "probe.json").write_text(json.dumps({"name": "dotenvprobe", "services": {"probe": service}}))
    result = subprocess.run(
        ["docker", "compose", "--project-directory", str(folder), "-f", str(folder / "probe.json"),
         "--env-file", str(folder / "probe.env"), "config", "--format", "json"],
        capture_output=True, text=True, env=minimal_env(), stdin=subprocess.DEVNULL, timeout=60, cwd=str(folder),
    )
    if result.returncode != 0:
        return result.stderr.strip()
    environment = json.loads(result.stdout)["services"]["probe"].get("environment") or {}
    return [(environment.get(k) or "").replace("$$", "$") for k in keys]  # config writes `$` as `$$`


# ------------------------------------------------------------------------------ scenarios

@pytest.mark.engine
def test_each_documented_difference_shows_in_its_example_line(tmp_path):
    accepted = [d for d in DIFFERENCES if d.compose != REFUSED]
    keys = [f"D{i}" for i in range(len(accepted))]
    text = PRELUDE + "".join(d.line.replace("K", key, 1) + "\n" for d, key in zip(accepted, keys))
    raw, interpolated = python_dotenv_reads(text, keys)
    composed = compose_reads(tmp_path, text, keys)
    assert isinstance(composed, list), composed
    for d, p, pi, c in zip(accepted, raw, interpolated, composed):
        assert (p, pi, c) == (d.dotenv, d.dotenv_interpolated, d.compose), d.rule
        assert len({p, pi, c}) > 1, f"{d.rule}: both read {c!r} now"
    for d in DIFFERENCES:
        if d.compose == REFUSED:
            text = PRELUDE + d.line + "\nAFTER=after\n"
            raw, interpolated = python_dotenv_reads(text, ["K", "AFTER"])
            assert (raw[0], interpolated[0]) == (d.dotenv, d.dotenv_interpolated), d.rule
            assert raw[1] == "after", f"{d.rule}: python-dotenv lost the next line"
            refused = compose_reads(tmp_path, text, ["K"])
            assert isinstance(refused, str), f"{d.rule}: compose now reads {refused!r}"


@pytest.mark.engine
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines(), min_size=1, max_size=12))
def test_a_dotenv_line_reads_the_same_in_python_dotenv_and_compose_except_where_documented(tmp_path, generated):
    keys = [f"K{i}" for i in range(len(generated))]
    text = PRELUDE + "".join(line.text(key) for line, key in zip(generated, keys))
    raw, interpolated = python_dotenv_reads(text, keys)
    composed = compose_reads(tmp_path, text, keys)
    assert isinstance(composed, list), f"compose refused a file the tables say it reads:\n{text!r}\n{composed}"
    unexplained = []
    for line, key, p, pi, c in zip(generated, keys, raw, interpolated, composed):
        if (p, pi, c) != line.expected():
            unexplained.append(f"{line.text(key)!r}: python-dotenv {p!r}, interpolated {pi!r}, compose {c!r}; "
                               f"the tables say {line.expected()!r}")
    assert not unexplained, "readings no rule explains:\n" + "\n".join(unexplained)
