"""Regulation profiles, the declared speeds and the report periods (QCVN 81/126/34 and policy targets).

A profile (compliance/standards/profiles/*.yaml) lists indicators: which metric, which
statistic (mean, median, pNN, share of samples at least a threshold, the busiest series'
mean), the limit and the minimum sample count. Limits that depend on the operator (its
declared 4G speeds, the contracted FTTH speed) come from the declared-speeds file, per
operator and service zone. Nothing here hard-codes a limit: the API's judgement
(compliance/evaluate.py) and the Grafana dashboards' lines (deploy/grafana/build.py) both
read them from here.

Periods are calendar months, quarters or years in Vietnam's time (UTC+7).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from collector.core.shares import ShareCounters
from ground.errors import ConfigError

VN_TZ = timezone(timedelta(hours=7))
PERIOD_PATTERN = r"^(20\d\d|2100)(?:-Q([1-4])|-(0[1-9]|1[0-2]))?$"
_PERIOD_RE = re.compile(PERIOD_PATTERN)
STATUSES = ("pass", "fail", "insufficient_data", "not_measured", "no_limit")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitRef(_Model):
    """A limit taken from the declared-speeds file (or per technology), times `factor`."""

    declared: str | None = None
    by_technology: dict[str, float] | None = None
    factor: float = 1.0

    @model_validator(mode="after")
    def _one_source(self) -> LimitRef:
        if (self.declared is None) == (self.by_technology is None):
            raise ValueError("give exactly one of `declared` and `by_technology`")
        return self


class Indicator(_Model):
    id: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    name_vi: str
    name_en: str
    metric: str | list[str] | None = Field(description="null: the probes do not measure it")
    stat: str = Field(pattern=r"^(mean|median|p\d{1,2}(\.\d+)?|share_at_least|max_series_mean)$")
    threshold: float | LimitRef | None = None
    unit: str = ""
    scale: float = 1.0
    op: Literal[">=", "<="]
    limit: float | LimitRef
    min_samples: int | None = Field(None, ge=1)
    # The minimum is our choice, not the regulation's (shown as unverified, with the note).
    min_samples_unverified: bool = False
    min_samples_note: str = ""
    # Count the samples of this metric against min_samples (e.g. every access attempt, failed
    # or not, for an average over the successful ones); default: the indicator's own metric.
    count_metric: str | None = None
    unverified: bool = False
    note: str = ""
    source: Literal["probes", "devices"] = "probes"
    device_kinds: list[str] = Field(default_factory=list)
    # Method conditions of the regulation the data cannot show (indoor/outdoor/moving split,
    # the test server...): every answer lists them as not checked.
    not_checked: list[str] = Field(default_factory=list)
    # "Spread over the hours of the day": at least this many of the 24 hours of the day
    # (Vietnam time) must hold samples, else insufficient_data. The number is ours.
    spread_hours: int | None = Field(None, ge=1, le=24)
    spread_hours_note: str = ""

    @model_validator(mode="after")
    def _threshold_when_needed(self) -> Indicator:
        if (self.stat == "share_at_least") != (self.threshold is not None):
            raise ValueError("share_at_least needs a threshold, and only it has one")
        if self.source == "devices" and not self.device_kinds:
            raise ValueError("source devices needs device_kinds")
        return self

    @property
    def metrics(self) -> list[str]:
        if self.metric is None:
            return []
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    @property
    def needs_sketch(self) -> bool:
        return self.stat in ("median", "share_at_least") or self.stat.startswith("p")


class Profile(_Model):
    id: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    version: int = Field(ge=1)
    kind: Literal["regulation", "target"]
    reference: str
    title_vi: str
    title_en: str
    technologies: list[str]
    effective_from: date
    # The date is ours (e.g. the day the circular took effect is not in the text we have).
    effective_from_unverified: bool = False
    effective_from_note: str = ""
    default_min_samples: int = Field(ge=1)
    default_min_samples_unverified: bool = False
    default_min_samples_note: str = ""
    indicators: list[Indicator]

    def min_samples(self, ind: Indicator) -> int:
        return ind.min_samples or self.default_min_samples

    def unverified_marks(
        self, ind: Indicator, speeds: DeclaredSpeeds | None = None, technology: str = ""
    ) -> list[tuple[str, str]]:
        """(what, note) for every part of `ind`'s judgement that is our choice: its limit or
        method (`unverified`, or a limit from declared speeds the file marks as an example),
        its minimum sample count, the profile's effective date."""
        out: list[tuple[str, str]] = []
        if ind.unverified:
            out.append(("limit", ind.note))
        declared = any(
            isinstance(ref, LimitRef) and ref.declared is not None for ref in (ind.limit, ind.threshold)
        )
        if declared and speeds is not None and technology in speeds.unverified:
            out.append(("declared_speed", speeds.unverified[technology]))
        if ind.spread_hours is not None:
            out.append(("spread_hours", ind.spread_hours_note))
        if ind.min_samples is not None and ind.min_samples_unverified:
            out.append(("min_samples", ind.min_samples_note))
        elif ind.min_samples is None and self.default_min_samples_unverified:
            out.append(("min_samples", self.default_min_samples_note))
        if self.effective_from_unverified:
            out.append(("effective_from", self.effective_from_note))
        return out


class Zones(_Model):
    default: str = "province"
    communes: dict[str, str] = Field(default_factory=dict)


class DeclaredSpeeds(_Model):
    version: str
    source: str = ""
    zones: Zones = Zones()
    # technology -> operator -> zone -> {dl_mbps, ul_mbps, dl_min_mbps}
    speeds: dict[str, dict[str, dict[str, dict[str, float]]]]
    unverified: dict[str, str] = Field(default_factory=dict)

    def zone_of(self, commune: str) -> str:
        return self.zones.communes.get(commune, self.zones.default)

    def value(self, technology: str, operator: str, commune: str, key: str) -> float | None:
        zone = self.zone_of(commune)
        return self.speeds.get(technology, {}).get(operator, {}).get(zone, {}).get(key)


def read_yaml(path: Path | Any, what: str) -> Any:
    """A standards file (profile, declared speeds, plan) as data; ConfigError naming it."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), what, f"cannot read: {exc}") from exc


def validated(model: type[BaseModel], data: Any, source: str) -> Any:
    """`data` as `model`; ConfigError naming the file, the field and what is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        e = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in e["loc"]) or "-"
        raise ConfigError(source, loc, e["msg"]) from None


@dataclass(frozen=True)
class Standards:
    """Every loaded profile (all versions) and the declared speeds."""

    profiles: tuple[Profile, ...]
    speeds: DeclaredSpeeds

    @staticmethod
    def load(profiles_dir: Path | None = None, declared_speeds_file: Path | None = None) -> Standards:
        """Built-in profiles, then those in `profiles_dir` (same id and version replaces)."""
        found: dict[tuple[str, int], Profile] = {}
        builtin = resources.files("compliance") / "standards" / "profiles"
        sources: list[Any] = sorted((p for p in builtin.iterdir() if p.name.endswith(".yaml")), key=str)
        if profiles_dir is not None:
            if not profiles_dir.is_dir():
                raise ConfigError(str(profiles_dir), "compliance.profiles_dir", "not a directory")
            sources += sorted(profiles_dir.glob("*.yaml"))
        for src in sources:
            prof = validated(Profile, read_yaml(src, "profile"), str(src))
            found[(prof.id, prof.version)] = prof
        speeds_src: Any = (
            declared_speeds_file or resources.files("compliance") / "standards" / "declared-speeds.yaml"
        )
        speeds = validated(DeclaredSpeeds, read_yaml(speeds_src, "declared speeds"), str(speeds_src))
        return Standards(tuple(sorted(found.values(), key=lambda p: (p.id, p.version))), speeds)

    def regulation_for(self, technology: str, on: date) -> Profile | None:
        """The regulation in force for `technology` on `on` (the latest effective version)."""
        cands = [
            p
            for p in self.profiles
            if p.kind == "regulation" and technology in p.technologies and p.effective_from <= on
        ]
        return max(cands, key=lambda p: (p.effective_from, p.version), default=None)

    def by_id(self, profile_id: str, on: date) -> Profile | None:
        cands = [p for p in self.profiles if p.id == profile_id and p.effective_from <= on]
        return max(cands, key=lambda p: p.version, default=None)

    def technologies(self) -> list[str]:
        return sorted({t for p in self.profiles if p.kind == "regulation" for t in p.technologies})


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    from_ms: int
    to_ms: int
    start: date


def parse_period(text: str) -> Period:
    """'2025' (year), '2025-Q3' (quarter), '2025-07' (month), in Vietnam's time (UTC+7)."""
    m = _PERIOD_RE.match(text)
    if not m or not 2000 <= int(m.group(1)) <= 2100:
        raise ValueError(f"period {text!r}: expected YYYY, YYYY-Qn or YYYY-MM (years 2000-2100)")
    year = int(m.group(1))
    if m.group(2):
        first, months = (int(m.group(2)) - 1) * 3 + 1, 3
    elif m.group(3):
        first, months = int(m.group(3)), 1
    else:
        first, months = 1, 12
    start = datetime(year, first, 1, tzinfo=VN_TZ)
    end_month = first + months
    end = datetime(year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1, tzinfo=VN_TZ)
    return Period(text, int(start.timestamp() * 1000), int(end.timestamp() * 1000), start.date())


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def share_counters(standards: Standards) -> ShareCounters:
    """The thresholds ingest must count exactly: every share_at_least indicator's threshold,
    per metric and technology of every loaded profile; a threshold from the declared speeds
    per operator (every zone's value)."""
    rules: dict[tuple[str, str, str], set[float]] = {}
    speeds = standards.speeds
    for prof in standards.profiles:
        for ind in prof.indicators:
            if ind.stat != "share_at_least" or ind.threshold is None:
                continue
            for metric in ind.metrics:
                for tech in prof.technologies:
                    ref = ind.threshold
                    if isinstance(ref, int | float):
                        rules.setdefault((metric, tech, ""), set()).add(float(ref))
                    elif ref.by_technology is not None:
                        if tech in ref.by_technology:
                            v = ref.by_technology[tech] * ref.factor
                            rules.setdefault((metric, tech, ""), set()).add(v)
                    else:
                        assert ref.declared is not None
                        for operator, zones in speeds.speeds.get(tech, {}).items():
                            for values in zones.values():
                                if ref.declared in values:
                                    v = values[ref.declared] * ref.factor
                                    rules.setdefault((metric, tech, operator), set()).add(v)
    return ShareCounters(rules)
