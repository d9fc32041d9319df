"""Label matchers in Alertmanager's syntax: `name="value"`, `name!="v"`, `name=~"re"`, `name!~"re"`.

Used by routes, inhibit rules, silences and maintenance windows. Regular expressions are
anchored (the whole value must match) and have RE2's syntax and semantics, as in
Alertmanager (Go's regexp is RE2): matching takes time linear in the value whatever the
pattern, so no pattern can freeze the process. RE2 refuses what needs backtracking
(backreferences such as `\\1`, lookarounds `(?=`, `(?!`, `(?<=`, possessive `a++`), `\\Z`
(use `$` or `\\z`), and repetition counts above 1000; `\\d`, `\\w`, `\\b` are ASCII-only.
A pattern is at most `MAX_PATTERN_CHARS` characters. Beyond Alertmanager, a group that repeats
without bound and holds a repetition without bound, such as `(.*.*)*` or `(a+)+`, is refused
when written: harmless under RE2, but catastrophic in any backtracking engine the pattern may
be copied to, and a label value never needs it.

A matcher read back from the store (`stored_matcher`) never raises: one whose pattern
this dialect refuses (written before these rules) matches nothing, so its silence or
window selects nothing; it is logged once and counted in
`netqos_matchers_refused_total{where="stored"}`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import re2
from prometheus_client import Counter

log = logging.getLogger(__name__)

# Only parses the matcher's text (not the user's pattern); its alternatives are disjoint.
_MATCHER_RE = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(\S*))\s*$')
OPS = ("=", "!=", "=~", "!~")
MAX_PATTERN_CHARS = 1000  # a regular expression's length
MAX_MATCHER_CHARS = 2000  # a matcher's whole text (name, operator, quoted value)

REFUSED = Counter(
    "netqos_matchers_refused_total",
    "label matchers refused: where=write (sent, answered 422), where=stored (read back; matches nothing)",
    ["where"],
)

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the reason goes into MatcherError, not to stderr


class MatcherError(ValueError):
    """A matcher that cannot be parsed, with the reason."""


_QUANT = re.compile(r"\{(\d+)(,(\d*))?\}")


def nested_unbounded(pattern: str) -> bool:
    """Whether a group repeated without bound (`*`, `+`, `{n,}`) holds a repetition without bound.

    A linear scan of RE2 syntax (escapes, `\\Q...\\E`, character classes, groups); run on
    patterns RE2 has accepted, so the brackets balance."""
    stack = [False]  # per open group: does it hold an unbounded repetition?
    prev = False  # the atom just read is a group holding an unbounded repetition
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        unbounded: bool | None = None  # set when c starts a quantifier
        if c == "\\":
            if pattern.startswith("\\Q", i):
                end = pattern.find("\\E", i + 2)
                i = n if end < 0 else end + 2
            else:
                i += 2
            prev = False
            continue
        if c == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1  # a leading ] is a member
            while i < n and pattern[i] != "]":
                if pattern[i] == "\\":
                    i += 1
                elif pattern.startswith("[:", i):
                    end = pattern.find(":]", i + 2)
                    i = i if end < 0 else end + 1
                i += 1
            i += 1
            prev = False
            continue
        if c == "(":
            stack.append(False)
            prev = False
        elif c == ")":
            inner = stack.pop() if len(stack) > 1 else False
            stack[-1] = stack[-1] or inner
            prev = inner
        elif c in "*+":
            unbounded = True
        elif c == "?":
            unbounded = False
        elif c == "{" and (q := _QUANT.match(pattern, i)) is not None:
            unbounded = q.group(2) is not None and not q.group(3)
            i = q.end() - 1
        else:
            prev = False
        if unbounded is not None:
            if unbounded and prev:
                return True
            stack[-1] = stack[-1] or unbounded
            prev = False
            if i + 1 < n and pattern[i + 1] == "?":
                i += 1  # lazy: the same repetition
        i += 1
    return False


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> Any:
    """The anchored RE2 program of `pattern` (cached: silences are matched every tick)."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise MatcherError(f"regular expression of {len(pattern)} characters; at most {MAX_PATTERN_CHARS}")
    try:
        # Alertmanager anchors as ^(?:pattern)$; fullmatch does the same.
        return re2.compile(pattern, _OPTIONS)
    except UnicodeEncodeError:  # RE2 takes UTF-8; JSON can carry a lone surrogate (\ud800)
        raise MatcherError("regular expression is not valid Unicode text (a lone surrogate)") from None
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise MatcherError(f"bad regular expression (RE2 syntax): {reason}") from None


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    # Set only by `stored_matcher` for a stored pattern this dialect refuses: matches nothing.
    refused: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.refused:
            return
        if self.op not in OPS:
            raise MatcherError(f"operator {self.op!r} is not one of {', '.join(OPS)}")
        if self.op in ("=~", "!~"):
            try:
                _compile(self.value)
            except MatcherError as exc:
                raise MatcherError(f"{self.name}{self.op}{self.value[:100]!r}: {exc}") from None
            if nested_unbounded(self.value):
                raise MatcherError(
                    f"{self.name}{self.op}{self.value[:100]!r}: a group repeated without bound holds a "
                    "repetition without bound, e.g. (.*.*)* or (a+)+: catastrophic in backtracking "
                    "engines and never needed for a label value; write it without the nesting"
                )

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.refused:
            return False
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        if not v.isascii():
            # RE2 takes UTF-8: a lone surrogate in a value is matched as "?" (never an error).
            v = v.encode("utf-8", "replace").decode()
        hit = _compile(self.value).fullmatch(v) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "op": self.op, "value": self.value}


def parse_matcher(text: str) -> Matcher:
    """One matcher from its text form; raises MatcherError with the reason."""
    if len(text) > MAX_MATCHER_CHARS:
        raise MatcherError(f"matcher of {len(text)} characters; at most {MAX_MATCHER_CHARS}")
    m = _MATCHER_RE.match(text)
    if m is None:
        raise MatcherError(f'{text!r}: expected name="value" (operators {", ".join(OPS)})')
    value = m.group(3) if m.group(3) is not None else (m.group(4) or "")
    if m.group(3) is not None:
        value = re.sub(r"\\(.)", r"\1", value)
    return Matcher(m.group(1), m.group(2), value)


def parse_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(parse_matcher(t) for t in texts)


_logged: set[tuple[str, str, str]] = set()


def stored_matcher(item: Mapping[str, Any], owner: str) -> Matcher:
    """A matcher read back from the store ({"name", "op", "value"}); never raises.

    One this dialect refuses matches nothing (its silence or window then selects nothing:
    notifications go out and availability is not excused, the safe side); logged once per
    process and counted, with `owner` (e.g. "maintenance 12") saying where it is."""
    name, op, value = str(item.get("name", "")), str(item.get("op", "")), str(item.get("value", ""))
    try:
        return Matcher(name, op, value)
    except MatcherError as exc:
        key = (owner, op, value)
        if key not in _logged:
            if len(_logged) >= 10_000:  # bounded; such rows can only come from before these rules
                _logged.clear()
            _logged.add(key)
            REFUSED.labels(where="stored").inc()
            log.warning(
                "%s: stored matcher refused, it matches nothing (expire and recreate it): %s", owner, exc
            )
        return Matcher(name, op, value, refused=str(exc))


def all_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
