"""QoS compliance against versioned regulation profiles (QCVN 81/126/34 and policy targets).

A profile (api/standards/profiles/*.yaml) lists indicators: which metric, which
statistic (mean, median, pNN, share of samples at least a threshold, the busiest series'
mean), the limit and the minimum sample count. Limits that depend on the operator (its
declared 4G speeds, the contracted FTTH speed) come from the declared-speeds file, per
operator and service zone. Nothing here hard-codes a limit.

`evaluate` answers, per (operator, place, technology, indicator): the measured value, the
limit, pass/fail and the sample count, or `insufficient_data` when the count is below
the indicator's minimum. Periods are calendar months, quarters or years in Vietnam's
time (UTC+7).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from collector.core import RollupSet, keys_of, merge, quantiles
from collector.store.periods import period_totals, select_series, tiers_present
from collector.store.store import Store
from netqos.config import ConfigError

VN_TZ = timezone(timedelta(hours=7))
PERIOD_PATTERN = r"^(20\d\d|2100)(?:-Q([1-4])|-(0[1-9]|1[0-2]))?$"
_PERIOD_RE = re.compile(PERIOD_PATTERN)
# A value within this relative distance of its limit is at the limit (float sums round).
_AT_LIMIT_REL = 1e-9
_STAT_RE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_NO_GROUP = np.iinfo(np.int32).max  # rows of no group (never looked up)
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
    unverified: bool = False
    note: str = ""
    source: Literal["probes", "devices"] = "probes"
    device_kinds: list[str] = Field(default_factory=list)

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
    default_min_samples: int = Field(ge=1)
    indicators: list[Indicator]

    def min_samples(self, ind: Indicator) -> int:
        return ind.min_samples or self.default_min_samples


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


def _read_yaml(path: Path | Any, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), what, f"cannot read: {exc}") from exc


def _validated(model: type[BaseModel], data: Any, source: str) -> Any:
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
        builtin = resources.files("api") / "standards" / "profiles"
        sources: list[Any] = sorted((p for p in builtin.iterdir() if p.name.endswith(".yaml")), key=str)
        if profiles_dir is not None:
            if not profiles_dir.is_dir():
                raise ConfigError(str(profiles_dir), "compliance.profiles_dir", "not a directory")
            sources += sorted(profiles_dir.glob("*.yaml"))
        for src in sources:
            prof = _validated(Profile, _read_yaml(src, "profile"), str(src))
            found[(prof.id, prof.version)] = prof
        speeds_src: Any = (
            declared_speeds_file or resources.files("api") / "standards" / "declared-speeds.yaml"
        )
        speeds = _validated(DeclaredSpeeds, _read_yaml(speeds_src, "declared speeds"), str(speeds_src))
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


@dataclass(slots=True)
class Result:
    """One (operator, place, technology, indicator) verdict."""

    operator: str
    place: str
    technology: str
    profile: Profile
    indicator: Indicator
    value: float | None
    limit: float | None
    threshold: float | None
    sample_count: int
    min_samples: int
    status: str
    notes: list[str] = field(default_factory=list)


def _share_at_least(rs: RollupSet, r: int, threshold: float) -> float:
    """Share of row r's samples >= threshold, from its sketch. Exact when every sample is on one
    side (min >= threshold or max < threshold); otherwise samples in the threshold's own bucket
    (up to 2 % below it) count as at least it, never the other way round."""
    n = int(rs.count[r])
    if rs.min[r] >= threshold:
        return 1.0
    if rs.max[r] < threshold:
        return 0.0
    key = int(keys_of(np.array([threshold]))[0])
    lo, hi = int(rs.sketch_offsets[r]), int(rs.sketch_offsets[r + 1])
    keys, counts = rs.sketch_keys[lo:hi], rs.sketch_counts[lo:hi]
    return int(counts[keys >= key].sum()) / n


def _resolve(
    ref: float | LimitRef | None, speeds: DeclaredSpeeds, technology: str, operator: str, commune: str
) -> tuple[float | None, str]:
    if ref is None or isinstance(ref, int | float):
        return (None if ref is None else float(ref)), ""
    if ref.by_technology is not None:
        v = ref.by_technology.get(technology)
        return (None, f"no limit for technology {technology}") if v is None else (v * ref.factor, "")
    assert ref.declared is not None
    v = speeds.value(technology, operator, commune, ref.declared)
    if v is None:
        zone = speeds.zone_of(commune)
        return None, f"no declared {ref.declared} for {operator} {technology} in zone {zone!r}"
    return v * ref.factor, ""


def verdict(value: float | None, op: str, limit: float | None, count: int, min_samples: int) -> str:
    """pass / fail / insufficient_data / no_limit for one measured value."""
    if limit is None:
        return "no_limit"
    if count < min_samples or value is None:
        return "insufficient_data"
    slack = abs(limit) * _AT_LIMIT_REL
    ok = value >= limit - slack if op == ">=" else value <= limit + slack
    return "pass" if ok else "fail"


@dataclass(slots=True)
class Scope:
    """What to evaluate: one technology, optional operator and commune filters, grouping level."""

    technology: str
    operator: str | None = None
    commune: str | None = None
    place: Literal["commune", "village"] = "commune"
    indicators: Sequence[str] | None = None  # None: all of the profile's
    min_samples: int | None = None  # overrides the profile's (village coverage)


def evaluate(
    store: Store, standards: Standards, profile: Profile, period: Period, scope: Scope
) -> list[Result]:
    """Every indicator of `profile` for every (operator, place) with probes or data in scope."""
    tiers = tiers_present(store)
    tech = scope.technology
    base = {"technology": tech}
    if scope.operator is not None:
        base["operator"] = scope.operator
    if scope.commune is not None:
        base["commune"] = scope.commune
    groups: dict[tuple[str, str], int] = {}
    # Registered probes define the groups even without data: 'no data' must show, not vanish.
    # Only the probes in scope, and only their placement (a commune's request reads its own).
    where, args = "technology = ?", [tech]
    for name, only in (("operator", scope.operator), ("commune", scope.commune)):
        if only:
            where += f" AND {name} = ?"
            args.append(only)
    for p_operator, p_commune, p_village in store.reader().execute(
        f"SELECT operator, commune, village FROM probes WHERE {where} ORDER BY probe_id", args
    ):
        place = p_commune if scope.place == "commune" else p_village
        if place:
            groups.setdefault((p_operator, place), len(groups))
    inds = [i for i in profile.indicators if scope.indicators is None or i.id in scope.indicators]
    # Per indicator: (group index -> merged row) over the period.
    measured: dict[str, tuple[RollupSet, dict[int, int], dict[int, float], np.ndarray]] = {}
    cache: dict[
        tuple[tuple[str, ...], str, tuple[str, ...], bool], tuple[RollupSet, dict[int, dict[str, str]]]
    ] = {}
    for ind in inds:
        if not ind.metrics:
            continue
        key = (tuple(ind.metrics), ind.source, tuple(ind.device_kinds), ind.needs_sketch)
        if key not in cache:
            filters = (
                dict(base) if ind.source == "probes" else {k: v for k, v in base.items() if k != "technology"}
            )
            if ind.source == "probes":
                filters["kind"] = "probe"
            labels = select_series(store, ind.metrics, filters)
            if ind.source == "devices":
                labels = {s: lab for s, lab in labels.items() if lab.get("kind") in ind.device_kinds}
            totals = period_totals(
                store, list(labels), period.from_ms, period.to_ms, sketches=ind.needs_sketch, tiers_s=tiers
            )
            cache[key] = (totals, labels)
        totals, labels = cache[key]
        gid = np.empty(len(totals), dtype=np.int32)
        for r, sid in enumerate(totals.series_id.tolist()):
            lab = labels[sid]
            place = lab.get("commune", "") if scope.place == "commune" else lab.get("village", "")
            group = (lab.get("operator", ""), place)
            if ind.source == "devices" and group not in groups:
                # Devices serve a group, they do not make one: an operator's router in a commune
                # where it has no probe of this technology is no (operator, commune) to judge.
                gid[r] = _NO_GROUP
                continue
            gid[r] = groups.setdefault(group, len(groups))
        max_mean: dict[int, float] = {}
        if ind.stat == "max_series_mean" and len(totals):
            with np.errstate(invalid="ignore", divide="ignore"):
                means = totals.sum / totals.count
            for gi, m in zip(gid.tolist(), means.tolist(), strict=True):
                if m == m:  # not NaN
                    max_mean[gi] = max(max_mean.get(gi, -np.inf), m)
        merged = merge(totals, gid, np.zeros(len(totals), dtype=np.int64))
        row_of = {int(gi): r for r, gi in enumerate(merged.series_id.tolist())}
        with np.errstate(invalid="ignore", divide="ignore"):
            if ind.stat == "mean":
                values = merged.sum / merged.count
            elif ind.stat in ("median",) or _STAT_RE.match(ind.stat):
                q = 0.5 if ind.stat == "median" else float(ind.stat[1:]) / 100.0
                values = quantiles(merged, np.array([q]))[:, 0]
            else:  # share_at_least (threshold per group) and max_series_mean: below
                values = np.full(len(merged), np.nan)
        measured[ind.id] = (merged, row_of, max_mean, values)

    village_commune = _village_communes(store) if scope.place == "village" else {}
    out: list[Result] = []
    for (operator, place), g in sorted(groups.items()):
        commune = place if scope.place == "commune" else village_commune.get(place, "")
        for ind in inds:
            min_n = scope.min_samples or profile.min_samples(ind)
            notes = [ind.note] if ind.note else []
            limit, why = _resolve(ind.limit, standards.speeds, tech, operator, commune)
            threshold, why_t = _resolve(ind.threshold, standards.speeds, tech, operator, commune)
            notes += [w for w in (why, why_t) if w]
            if not ind.metrics:
                out.append(
                    Result(
                        operator,
                        place,
                        tech,
                        profile,
                        ind,
                        None,
                        limit,
                        threshold,
                        0,
                        min_n,
                        "not_measured",
                        notes,
                    )
                )
                continue
            merged, row_of, max_mean, values = measured[ind.id]
            row = row_of.get(g)
            count = int(merged.count[row]) if row is not None else 0
            value: float | None = None
            if row is not None and count > 0:
                if ind.stat == "max_series_mean":
                    raw = max_mean.get(g, float("nan"))
                elif ind.stat == "share_at_least":
                    raw = _share_at_least(merged, row, threshold) if threshold is not None else float("nan")
                else:
                    raw = float(values[row])
                value = raw * ind.scale if raw == raw else None
            if ind.stat == "share_at_least" and threshold is None:
                status = "no_limit"
            else:
                status = verdict(value, ind.op, limit, count, min_n)
            out.append(
                Result(
                    operator, place, tech, profile, ind, value, limit, threshold, count, min_n, status, notes
                )
            )
    return out


def _village_communes(store: Store) -> dict[str, str]:
    return {r[0]: r[1] for r in store.reader().execute("SELECT code, commune FROM villages")}


def overall(statuses: Sequence[str]) -> str:
    """A group's verdict: fail if any indicator fails, else insufficient_data if any lacks data,
    else pass if any passed, else not_measured."""
    for s in ("fail", "insufficient_data", "pass"):
        if s in statuses:
            return s
    return "not_measured"
