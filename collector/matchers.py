"""Label matchers in Alertmanager's syntax: `name="value"`, `name!="v"`, `name=~"re"`, `name!~"re"`.

Used by routes, inhibit rules, silences and maintenance windows. Regular expressions are
anchored (the whole value must match), as in Alertmanager.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_MATCHER_RE = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(\S*))\s*$')
OPS = ("=", "!=", "=~", "!~")


class MatcherError(ValueError):
    """A matcher that cannot be parsed, with the reason."""


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise MatcherError(f"operator {self.op!r} is not one of {', '.join(OPS)}")
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise MatcherError(
                    f"{self.name}{self.op}{self.value!r}: bad regular expression: {exc}"
                ) from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = re.fullmatch(self.value, v) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "op": self.op, "value": self.value}


def parse_matcher(text: str) -> Matcher:
    """One matcher from its text form; raises MatcherError with the reason."""
    m = _MATCHER_RE.match(text)
    if m is None:
        raise MatcherError(f'{text!r}: expected name="value" (operators {", ".join(OPS)})')
    value = m.group(3) if m.group(3) is not None else (m.group(4) or "")
    if m.group(3) is not None:
        value = re.sub(r"\\(.)", r"\1", value)
    return Matcher(m.group(1), m.group(2), value)


def parse_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(parse_matcher(t) for t in texts)


def all_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
