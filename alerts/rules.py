"""Alert rules in YAML: threshold rules over rollups, absence rules, state rules.

```yaml
rules:
  - name: rtt_p95_high              # also the incident kind and the `alertname` label
    kind: threshold
    metric: rtt_ms
    stat: p95                        # mean, min, max, sum, count, last, stddev, pNN
    group_by: [commune, operator]
    window: 10m                      # the aggregate is over the last `window`
    op: ">"
    threshold: 100
    for: 10m                         # true this long before it fires
    keep_firing_for: 5m              # keeps firing this long after it stops being true
    severity: warning
    labels: {team: noc}
  - {name: device_down, kind: state, entity_kind: device, states: [down], severity: critical}
  - {name: commune_silent, kind: absence, metric: rtt_ms, group_by: [commune], absent_for: 15m}
```

`load_rules` reads a file and reports *every* problem with its line number, the way
`netqos check-config` reports a bad setting.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from collector.store.aggregate import GROUP_LABELS, group_rollups, stat_error, stat_values
from collector.store.series import STANDARD_LABELS
from collector.store.store import Store

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
SEVERITIES = ("critical", "major", "warning", "info")
RESOLUTION_S = 60


def parse_duration(v: Any) -> float:
    """'90s', '10m', '1h', '2d', '500ms' or a number of seconds -> seconds."""
    if isinstance(v, bool):
        raise ValueError("expected a duration such as 30s, 10m, 1h")
    if isinstance(v, int | float):
        seconds = float(v)
    else:
        m = _DURATION_RE.match(str(v).strip())
        if m is None:
            raise ValueError(f"{v!r} is not a duration (use e.g. 30s, 10m, 1h, 2d)")
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite number of seconds >= 0")
    return seconds


Duration = Annotated[float, Field(ge=0, le=366 * 86400)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="also the incident kind")
    for_s: Duration = Field(0.0, alias="for")
    keep_firing_for_s: Duration = Field(0.0, alias="keep_firing_for")
    severity: Literal["critical", "major", "warning", "info"] = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str = Field("", max_length=500, description="text; {labels} and {value} are filled in")

    @field_validator("for_s", "keep_firing_for_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("labels")
    @classmethod
    def _label_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
                raise ValueError(f"label name {k!r} must match [A-Za-z_][A-Za-z0-9_]*")
        return v


def _check_labels(v: list[str]) -> list[str]:
    # Any label a series carries may group (interface, sensor, ...); the standard ones always exist.
    bad = [g for g in v if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", g)]
    if bad:
        raise ValueError(f"{bad} are not label names (e.g. {', '.join(GROUP_LABELS)})")
    return v


def _check_filters(v: dict[str, str]) -> dict[str, str]:
    bad = [k for k in v if k not in STANDARD_LABELS]
    if bad:
        raise ValueError(f"cannot filter on {bad}; filterable: {', '.join(STANDARD_LABELS)}")
    return v


class ThresholdRule(_Rule):
    kind: Literal["threshold"]
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    stat: str = "p95"
    group_by: list[str] = Field(default_factory=list)
    filters: dict[str, str] = Field(default_factory=dict)
    window_s: Duration = Field(300.0, alias="window")
    op: Literal[">", ">=", "<", "<="]
    threshold: float
    min_count: int = Field(1, ge=1, description="groups with fewer samples in the window are not judged")
    every_s: Duration = Field(60.0, alias="every", description="how often the rule is evaluated")

    @field_validator("window_s", "every_s", mode="before")
    @classmethod
    def _duration2(cls, v: Any) -> float:
        s = parse_duration(v)
        if s < RESOLUTION_S:
            raise ValueError(f"must be at least {RESOLUTION_S} s (the rollup resolution)")
        return s

    @field_validator("stat")
    @classmethod
    def _stat(cls, v: str) -> str:
        err = stat_error(v)
        if err:
            raise ValueError(err)
        return v

    _labels_ok = field_validator("group_by")(_check_labels)
    _filters_ok = field_validator("filters")(_check_filters)

    def breaches(self, value: float) -> bool:
        return {
            ">": value > self.threshold,
            ">=": value >= self.threshold,
            "<": value < self.threshold,
            "<=": value <= self.threshold,
        }[self.op]


class AbsenceRule(_Rule):
    kind: Literal["absence"]
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    group_by: list[str] = Field(min_length=1)
    filters: dict[str, str] = Field(default_factory=dict)
    absent_for_s: Duration = Field(alias="absent_for", description="no data for this long")
    max_age_s: Duration = Field(
        7 * 86400.0, alias="max_age", description="groups silent longer than this are gone, not absent"
    )
    every_s: Duration = Field(60.0, alias="every")

    @field_validator("absent_for_s", "max_age_s", "every_s", mode="before")
    @classmethod
    def _duration2(cls, v: Any) -> float:
        return parse_duration(v)

    _labels_ok = field_validator("group_by")(_check_labels)
    _filters_ok = field_validator("filters")(_check_filters)


class StateRule(_Rule):
    kind: Literal["state"]
    # device, interface, probe, or a profile table's rows: its name (`onus`) or its row label
    # (`onu`); checked against the profiles in `parse_rules`, since only they know the tables.
    entity_kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    states: list[str] = Field(min_length=1, description="e.g. [down] or [offline]")


BASE_KINDS = ("device", "interface", "probe")
EntityKinds = dict[str, frozenset[str]]


def entity_kinds(profiles_dir: Path | None = None) -> EntityKinds:
    """What a state rule's `entity_kind` may say -> the kinds of state change it matches.

    device, interface and probe; and every profile table other than `interfaces` (whose rows
    are interfaces) by its name, which is the kind the poller gives its rows' state changes,
    and by its `row_label` (`onu`), which may name the tables of several profiles at once.
    Profiles that do not load (`check-config` says why) leave the built-in ones."""
    from collector.snmp.profile import ProfileError, load_profiles

    try:
        profiles = load_profiles(profiles_dir)
    except ProfileError:
        profiles = load_profiles(None)
    out: dict[str, set[str]] = {k: {k} for k in BASE_KINDS}
    for p in profiles.values():
        for t in p.tables:
            if t.name == "interfaces":
                continue
            out.setdefault(t.name, set()).add(t.name)
            if t.row_label != "row" and t.row_label not in BASE_KINDS:
                out.setdefault(t.row_label, set()).add(t.name)
    return {k: frozenset(v) for k, v in out.items()}


_BUILTIN_KINDS: list[EntityKinds] = []


def builtin_kinds() -> EntityKinds:
    """`entity_kinds()` of the built-in profiles, read once."""
    if not _BUILTIN_KINDS:
        _BUILTIN_KINDS.append(entity_kinds(None))
    return _BUILTIN_KINDS[0]


Rule = Annotated[ThresholdRule | AbsenceRule | StateRule, Field(discriminator="kind")]
_RULE = TypeAdapter(Rule)


class RulesError(Exception):
    """A rules file with problems; `problems` holds every one, each naming its line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(problems))


def _key_lines(
    node: yaml.Node | None, prefix: tuple[str | int, ...] = ()
) -> dict[tuple[str | int, ...], int]:
    """Every key path under a composed node -> the line it starts on (1-based)."""
    if node is None:
        return {}
    out = {prefix: int(node.start_mark.line) + 1}
    children: list[tuple[str | int, yaml.Node, yaml.Node]] = []
    if isinstance(node, yaml.MappingNode):
        children = [(k.value, k, v) for k, v in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = [(i, v, v) for i, v in enumerate(node.value)]
    for part, key_node, value in children:
        out.update(_key_lines(value, (*prefix, part)))
        out[(*prefix, part)] = int(key_node.start_mark.line) + 1
    return out


def _line(node: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    """Line of `loc` in a rule; for a missing key, the line of its nearest existing parent."""
    lines = _key_lines(node)
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


_KIND_TAGS = ("threshold", "absence", "state")


def parse_rules(
    text: str, source: str = "<rules>", kinds: EntityKinds | None = None
) -> list[ThresholdRule | AbsenceRule | StateRule]:
    """Rules from YAML text; raises RulesError listing every problem as `source:line: where: reason`.

    `kinds`: the entity kinds a state rule may target (`entity_kinds`); None: the built-in ones."""
    known = builtin_kinds() if kinds is None else kinds
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise RulesError(source, [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("rules", []), list):
        raise RulesError(source, [f"{source}:1: expected a mapping with a `rules:` list"])
    unknown = sorted(set(data) - {"rules"})
    problems = [f"{source}:{_line(root, (k,))}: {k}: unknown key (only `rules:`)" for k in unknown]
    rules_node = next((v for k, v in root.value if k.value == "rules"), None) if root is not None else None
    out: list[ThresholdRule | AbsenceRule | StateRule] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(data.get("rules") or []):
        node = rules_node.value[i] if isinstance(rules_node, yaml.SequenceNode) else None
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"rules[{i}]" + (f" ({name})" if name else "")
        try:
            rule = _RULE.validate_python(raw)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = tuple(err["loc"])
                if loc and loc[0] in _KIND_TAGS:
                    loc = loc[1:]  # pydantic's union tag, not a key of the rule
                loc = tuple(
                    {"for_s": "for", "keep_firing_for_s": "keep_firing_for"}.get(str(p), p) for p in loc
                )
                loc = tuple(str(p)[:-2] if isinstance(p, str) and p.endswith("_s") else p for p in loc)
                field = ".".join(str(p) for p in loc) or "-"
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = "unknown key"
                if err["type"] == "union_tag_invalid" or err["type"] == "union_tag_not_found":
                    msg = "`kind` must be one of threshold, absence, state"
                problems.append(f"{source}:{_line(node, loc)}: {where}: {field}: {msg}")
            continue
        if isinstance(rule, StateRule) and rule.entity_kind not in known:
            problems.append(
                f"{source}:{_line(node, ('entity_kind',))}: {where}: entity_kind: {rule.entity_kind!r}"
                f" is no kind of entity; known: {', '.join(sorted(known))}"
                " (device, interface, probe, or a profile table's name or row label)"
            )
            continue
        if rule.name in seen:
            problems.append(
                f"{source}:{_line(node, ('name',))}: {where}: name: {rule.name!r} is already used"
                f" by rules[{seen[rule.name]}]"
            )
            continue
        seen[rule.name] = i
        out.append(rule)
    if problems:
        raise RulesError(source, problems)
    return out


DEFAULT_RULES = "default_rules.yaml"


def default_rules_text() -> str:
    return (resources.files("alerts") / DEFAULT_RULES).read_text(encoding="utf-8")


def load_rules(
    path: Path | None, kinds: EntityKinds | None = None
) -> list[ThresholdRule | AbsenceRule | StateRule]:
    """Rules from `path` (None: the built-in defaults); RulesError on any problem.

    `kinds`: as for `parse_rules`."""
    if path is None:
        return parse_rules(default_rules_text(), "(built-in rules)", kinds)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(str(path), [f"{path}: cannot read: {exc.strerror or exc}"]) from None
    return parse_rules(text, str(path), kinds)


# -- evaluation of rollup rules ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One group's verdict from one evaluation: its labels, the value and whether the rule holds."""

    labels: dict[str, str]
    value: float
    active: bool


def evaluate_threshold(store: Store, rule: ThresholdRule, now_ms: int) -> list[Sample]:
    """The statistic per group over the last window, compared with the threshold."""
    window_ms = int(rule.window_s * 1000)
    # Whole rollup windows only: the current minute is still filling.
    to_ms = now_ms // (RESOLUTION_S * 1000) * RESOLUTION_S * 1000
    from_ms = to_ms - window_ms
    sel = store.select_rollups(rule.metric, RESOLUTION_S, from_ms, to_ms, rule.filters)
    if not len(sel.rollups):
        return []
    grouped = group_rollups(sel, rule.group_by, 2**62)  # one step: the whole window
    merged = grouped.merged
    values = stat_values(merged, rule.stat)
    out: list[Sample] = []
    for gi, labels in enumerate(grouped.group_labels):
        rows = grouped.rows_of(gi)
        if len(rows) != 1:
            continue  # a group with no rows in the window
        r = rows[0]
        v = float(values[r])
        if int(merged.count[r]) < rule.min_count or not np.isfinite(v):
            continue
        out.append(Sample(labels, v, rule.breaches(v)))
    return out


def evaluate_absence(store: Store, rule: AbsenceRule, now_ms: int) -> list[Sample]:
    """Per group, seconds since its newest sample; active when longer than `absent_for`."""
    conn = store.reader()
    where = ["metric = ?"]
    args: list[Any] = [rule.metric]
    for k, v in rule.filters.items():
        where.append(f"{k} = ?")
        args.append(v)
    # One index seek per series (max over the primary key), not a scan of the rollups.
    cur = conn.execute(
        "SELECT s.entity, s.labels, (SELECT max(r.last_ts_ms) FROM rollups r WHERE r.resolution_s = ?"
        " AND r.series_id = s.series_id AND r.window_start_ms >= ("
        "  SELECT max(r2.window_start_ms) FROM rollups r2"
        "  WHERE r2.resolution_s = ? AND r2.series_id = s.series_id))"
        f" FROM series s WHERE {' AND '.join(where)}",
        (RESOLUTION_S, RESOLUTION_S, *args),
    )
    newest: dict[tuple[str, ...], int] = {}
    for entity, labels_json, last in cur:
        if last is None:
            continue
        lab = {**orjson.loads(labels_json), "entity": entity}
        key = tuple(str(lab.get(g, "")) for g in rule.group_by)
        newest[key] = max(newest.get(key, 0), int(last))
    out = []
    for key, last in newest.items():
        silent_s = max(0.0, (now_ms - last) / 1000)
        if silent_s > rule.max_age_s:
            continue
        out.append(
            Sample(dict(zip(rule.group_by, key, strict=True)), silent_s, silent_s >= rule.absent_for_s)
        )
    return out


_FIELD_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")


def render(template: str, labels: dict[str, str], value: float | None) -> str:
    """Fill `{label}` and `{value:.1f}`-style fields; no attribute access (rules are data, not code)."""

    def repl(m: re.Match[str]) -> str:
        name, spec = m.group(1), m.group(2) or ""
        v: Any = value if name == "value" else labels.get(name, m.group(0))
        try:
            return format(v, spec) if v is not None else ""
        except (ValueError, TypeError):
            return str(v)

    return _FIELD_RE.sub(repl, template)
