"""Label matchers: Alertmanager's syntax with RE2 regular expressions, fully anchored, bounded in
length; refused patterns name their reason; a refused pattern read back from the store matches
nothing (logged once, counted) instead of raising or hanging."""

from __future__ import annotations

import logging
import time

import pytest
from prometheus_client import REGISTRY

from ground.matchers import (
    MAX_MATCHER_CHARS,
    MAX_PATTERN_CHARS,
    MatcherError,
    all_match,
    parse_matcher,
    stored_matcher,
)

CATASTROPHIC = "(.*.*.*)*Z"


@pytest.mark.parametrize(
    ("text", "value", "hit"),
    [
        # Anchored at both ends, as Alertmanager's ^(?:pattern)$.
        ('commune=~"160.*"', "16021", True),
        ('commune=~"160.*"', "116021", False),
        ('name=~"abc"', "abcd", False),
        ('name=~"a|ab"', "ab", True),  # the alternation is inside the anchors
        ('name=~"(?i)RTR-.*"', "rtr-1", True),
        ('name=~"[[:digit:]]{5}"', "16021", True),
        (r'name=~"\\pL+"', "Hà", True),  # Unicode classes: H and à are letters
        ('name!~"bts-.*"', "rtr-1", True),
        ('name!~"bts-.*"', "bts-1", False),
        ('absent=~""', "", True),  # a missing label is the empty string
        ('name=~"."', "\n", False),  # . does not match a newline (RE2's default, as Go)
    ],
)
def test_regular_expressions_are_anchored_re2(text: str, value: str, hit: bool) -> None:
    m = parse_matcher(text)
    assert m.matches({"commune": value, "name": value}) is hit


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "invalid escape sequence"),  # backreference: needs backtracking
        ("(?=a)a", "invalid perl operator"),  # lookahead
        ("(?<=a)b", "invalid perl operator"),  # lookbehind
        ("a++", "bad repetition operator"),  # possessive
        (r"end\Z", "invalid escape sequence"),  # Python's \Z; RE2 has \z
        ("a{1001}", "invalid repetition size"),  # RE2's limit is 1000
        ("(", "missing )"),
        (CATASTROPHIC, "repeated without bound"),
        ("(a+)+", "repeated without bound"),
        ("(?:x*y)*", "repeated without bound"),
        ("(a{2,})*", "repeated without bound"),
    ],
)
def test_refused_when_written_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(MatcherError, match="entity=~") as exc:
        parse_matcher(f'entity=~"{pattern.replace(chr(92), chr(92) * 2)}"')
    assert reason in str(exc.value)


@pytest.mark.parametrize("pattern", ["(a|b)*", "(a+){2}", "(a*)?", "a{1000}", r"\Q(a*)*\E", "[(]*x"])
def test_bounded_or_flat_repetition_is_accepted(pattern: str) -> None:
    assert parse_matcher(f'entity=~"{pattern.replace(chr(92), chr(92) * 2)}"').op == "=~"


def test_length_limits() -> None:
    assert MAX_PATTERN_CHARS == 1000 and MAX_MATCHER_CHARS == 2000
    for n in (999, 1000):
        assert parse_matcher(f'x=~"{"a" * n}"').matches({"x": "a" * n})
    with pytest.raises(MatcherError, match="1001 characters; at most 1000"):
        parse_matcher(f'x=~"{"a" * 1001}"')
    # A whole matcher's text: x="..." is 4 characters around the value.
    for n in (1999, 2000):
        assert parse_matcher(f'x="{"a" * (n - 4)}"').value == "a" * (n - 4)
    with pytest.raises(MatcherError, match="2001 characters; at most 2000"):
        parse_matcher(f'x="{"a" * 1997}"')


def test_catastrophic_pattern_evaluates_in_linear_time() -> None:
    # Even a pattern refused when written cannot hang what evaluates it: RE2 matches in time
    # linear in the value. A backtracking engine tries every split of the value among the .* of
    # every iteration, exponentially many: Python's re took 4 s at 10 characters and 64 s at 12
    # (about 16 times longer per 2 more); at 30 it would run for years.
    from ground.matchers import _compile

    program = _compile(CATASTROPHIC)
    start = time.monotonic()
    for n in (29, 30, 31, 100_000):
        assert program.fullmatch("a" * n) is None and program.fullmatch("a" * n + "Z") is not None
    assert time.monotonic() - start < 5  # a generous bound; it takes milliseconds


def test_a_stored_refused_pattern_matches_nothing_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def counted() -> float:
        return REGISTRY.get_sample_value("netqos_matchers_refused_total", {"where": "stored"}) or 0.0

    before = counted()
    item = {"name": "entity", "op": "=~", "value": CATASTROPHIC}
    with caplog.at_level(logging.WARNING, logger="ground.matchers"):
        ms = [stored_matcher(item, "maintenance 7") for _ in range(3)]
        negated = stored_matcher({**item, "op": "!~"}, "maintenance 7")
    assert counted() == before + 2  # once per distinct matcher, not per read
    assert [r.getMessage().startswith("maintenance 7: stored matcher refused") for r in caplog.records] == [
        True,
        True,
    ]
    for m in (*ms, negated):
        assert "repeated without bound" in m.refused
        # Neither =~ nor !~ selects anything: its silence or window selects nothing.
        for value in ("Z", "aZ", "", "x"):
            assert not m.matches({"entity": value})
    assert not all_match([ms[0], stored_matcher({"name": "a", "op": "=", "value": "1"}, "x")], {"a": "1"})
    unknown_op = stored_matcher({"name": "a", "op": "~", "value": "1"}, "silence 3")
    assert unknown_op.refused and not unknown_op.matches({"a": "1"})
    fine = stored_matcher({"name": "a", "op": "=~", "value": "1|2"}, "silence 3")
    assert fine.refused == "" and fine.matches({"a": "2"})


def test_lone_surrogates_are_refused_or_matched_never_raised() -> None:
    # JSON may carry "\ud800": not valid Unicode, which RE2 (UTF-8) cannot take.
    with pytest.raises(MatcherError, match="lone surrogate"):
        parse_matcher('x=~"a\ud800"')
    m = parse_matcher('x=~"a."')
    assert m.matches({"x": "a\udc00"}) and m.matches({"x": "aé"}) and not m.matches({"x": "aéé"})
