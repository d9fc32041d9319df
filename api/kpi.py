"""The plan's ten 2025 indicators: targets, values, sources and formulas.

The plan (api/standards/plan-225-2023.yaml) says, for each indicator, how its value is
computed:
- `report_ratio`: scale x numerator / denominator, each a field of an uploaded report
  (summed over the operators' latest versions for operator reports);
- `village_coverage`: the share of imported villages where probes of one of the
  technologies met the regulation profile's limits (named indicators) over the year;
  villages with equipment in the inventory but no passing probe are counted apart;
- `site_sharing`: the share of inventory sites whose elements belong to more than one
  operator.
A value without data is null, and the answer says what is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.compliance import Scope, Standards, _read_yaml, _validated, evaluate, parse_period
from collector.inventory import site_sharing
from collector.inventory.tabular import Errors, Table, number_of, text_of
from collector.store.devices import DeviceRepo
from collector.store.reports import ReportRepo, ReportValue
from collector.store.store import Store

_CHECK_RE = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=)\s*([a-z0-9_]+)\s*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportKind(_Model):
    uploaded_by: Literal["operator", "department"]
    title_en: str
    title_vi: str
    fields: dict[str, str]
    checks: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checks_name_fields(self) -> ReportKind:
        for c in self.checks:
            m = _CHECK_RE.match(c)
            if not m or m.group(1) not in self.fields or m.group(3) not in self.fields:
                raise ValueError(f"check {c!r}: expected 'field <= field' with fields of this report")
        return self


class Compute(_Model):
    kind: Literal["report_ratio", "village_coverage", "site_sharing"]
    numerator: str | None = None
    denominator: str | None = None
    scale: float = 1.0
    technologies: list[str] = Field(default_factory=list)
    indicators: list[str] = Field(default_factory=list)
    min_samples: int | None = Field(None, ge=1)
    device_kinds: list[str] = Field(default_factory=list)


class PlanIndicator(_Model):
    number: int = Field(ge=1)
    id: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    section: str
    name_vi: str
    name_en: str
    target: float
    unit: str
    note: str = ""
    compute: Compute


class Plan(_Model):
    id: str
    version: int
    title_vi: str
    title_en: str
    reference: str
    target_year: int
    reports: dict[str, ReportKind]
    indicators: list[PlanIndicator]

    @model_validator(mode="after")
    def _references(self) -> Plan:
        for ind in self.indicators:
            c = ind.compute
            if c.kind == "report_ratio":
                for ref in (c.numerator, c.denominator):
                    kind, _, fld = (ref or "").partition(".")
                    if kind not in self.reports or fld not in self.reports[kind].fields:
                        raise ValueError(f"indicator {ind.id}: {ref!r} is not a report field")
        return self

    @staticmethod
    def load(path: Path | None = None) -> Plan:
        src: Any = path or resources.files("api") / "standards" / "plan-225-2023.yaml"
        plan: Plan = _validated(Plan, _read_yaml(src, "plan"), str(src))
        return plan


# -- report validation -----------------------------------------------------------------------


def validate_report(kind: ReportKind, table: Table, communes: set[str], errors: Errors) -> list[ReportValue]:
    """The values of an uploaded report, or errors naming line and column."""
    if "commune" not in table.columns:
        errors.add(1, "commune", "missing column (leave a cell blank for a province-wide figure)")
    fields = [c for c in table.columns if c != "commune"]
    for c in fields:
        if c not in kind.fields:
            errors.add(1, c, f"unknown field; this report has {', '.join(kind.fields)}")
    if not fields:
        errors.add(1, "", f"no field columns; this report has {', '.join(kind.fields)}")
    if not table.rows:
        errors.add(0, "", "no rows")
    if errors.total:
        return []
    checks = [m.groups() for m in map(_CHECK_RE.match, kind.checks) if m]
    out: list[ReportValue] = []
    seen: dict[str, int] = {}
    for line, row in table.rows:
        commune = text_of(row.get("commune"))
        if commune and commune not in communes:
            errors.add(line, "commune", f"{commune[:40]!r} is not an imported commune")
        if commune in seen:
            what = "the province total" if not commune else f"commune {commune}"
            errors.add(line, "commune", f"{what} is already on line {seen[commune]}")
        seen[commune] = line
        values: dict[str, float] = {}
        for f in fields:
            try:
                x = number_of(row.get(f))
            except ValueError as exc:
                errors.add(line, f, str(exc))
                continue
            if x is None:
                continue
            if x < 0 or x != int(x):
                errors.add(line, f, f"{x:g}: a count must be a whole number >= 0")
                continue
            values[f] = x
        for a, op, b in checks:
            if (
                a in values
                and b in values
                and not (values[a] <= values[b] if op == "<=" else values[a] >= values[b])
            ):
                errors.add(line, a, f"{values[a]:g} {a} must be {op} {values[b]:g} {b}")
        out += [ReportValue(line, commune, f, v) for f, v in values.items()]
    if "" in seen and len(seen) > 1:
        errors.add(seen[""], "commune", "a province total (blank commune) and per-commune rows in one report")
    return out


# -- KPI computation -------------------------------------------------------------------------


@dataclass
class KpiValue:
    value: float | None
    source: str
    formula: str
    inputs: dict[str, Any]
    missing: list[str]


def _field_total(repo: ReportRepo, report: dict[str, Any], fld: str) -> tuple[float | None, str]:
    vals = [v for v in repo.values(report["report_id"]) if v.field == fld]
    if not vals:
        return None, ""
    province = [v for v in vals if v.commune == ""]
    if province:
        return province[0].value, ""
    return sum(v.value for v in vals), f"sum of {len(vals)} communes"


def _report_sum(
    repo: ReportRepo, ref: str, year: int
) -> tuple[float | None, list[dict[str, Any]], list[str]]:
    kind, _, fld = ref.partition(".")
    reports = repo.latest(kind, year)
    total: float | None = None
    used: list[dict[str, Any]] = []
    missing: list[str] = []
    for r in reports:
        v, how = _field_total(repo, r, fld)
        who = r["operator"] or "department"
        if v is None:
            missing.append(f"{kind} v{r['version']} of {who} has no {fld}")
            continue
        total = v if total is None else total + v
        used.append(
            {"report_id": r["report_id"], "kind": kind, "operator": r["operator"], "version": r["version"],
             "field": fld, "value": v, "how": how or "province total"}
        )  # fmt: skip
    if not reports:
        missing.append(f"no {kind} report for {year}")
    return total, used, missing


def report_ratio(store: Store, c: Compute, year: int) -> KpiValue:
    assert c.numerator and c.denominator
    repo = ReportRepo(store)
    num, used_n, miss_n = _report_sum(repo, c.numerator, year)
    den, used_d, miss_d = _report_sum(repo, c.denominator, year)
    missing = list(dict.fromkeys(miss_n + miss_d))
    value = None
    if num is not None and den is not None:
        if den == 0:
            missing.append(f"{c.denominator} is 0")
        else:
            value = c.scale * num / den
    kinds = sorted({c.numerator.partition(".")[0], c.denominator.partition(".")[0]})
    scale = f"{c.scale:g} × " if c.scale != 1 else ""
    return KpiValue(
        value,
        "reports: " + ", ".join(kinds) + f" ({year}, latest version of each)",
        f"{scale}Σ {c.numerator} ÷ Σ {c.denominator}",
        {"numerator": num, "denominator": den, "reports": used_n + used_d},
        missing,
    )


def village_coverage(store: Store, standards: Standards, c: Compute, year: int) -> KpiValue:
    period = parse_period(str(year))
    villages = {r[0]: r[1] for r in store.reader().execute("SELECT code, commune FROM villages")}
    covered: set[str] = set()
    measured: set[str] = set()
    unknown: set[str] = set()
    profiles: list[str] = []
    for tech in c.technologies:
        profile = standards.regulation_for(tech, period.start)
        if profile is None:
            continue
        profiles.append(f"{profile.id} v{profile.version}")
        results = evaluate(
            store,
            standards,
            profile,
            period,
            Scope(tech, place="village", indicators=c.indicators, min_samples=c.min_samples),
        )
        by_group: dict[tuple[str, str], list[str]] = {}
        for r in results:
            by_group.setdefault((r.operator, r.place), []).append(r.status)
        for (_, village), statuses in by_group.items():
            if village not in villages:
                unknown.add(village)
                continue
            if any(s in ("pass", "fail") for s in statuses):
                measured.add(village)
            if statuses and all(s == "pass" for s in statuses):
                covered.add(village)
    equipped = {
        d["village"]
        for d in DeviceRepo(store).devices()
        if d["kind"] in c.device_kinds and d["village"] in villages
    }
    missing = [] if villages else ["no villages imported (POST /api/v1/units/villages)"]
    value = 100.0 * len(covered) / len(villages) if villages else None
    indicators = ", ".join(c.indicators)
    return KpiValue(
        value,
        f"field probes ({', '.join(c.technologies)}) and the device inventory ({', '.join(c.device_kinds)})",
        f"100 × villages where one operator's {'/'.join(c.technologies)} probes passed {indicators} "
        f"({' / '.join(profiles)}, at least {c.min_samples} samples each, year {year}) ÷ imported villages",
        {
            "villages": len(villages),
            "covered": len(covered),
            "measured_not_covered": len(measured - covered),
            "equipment_without_passing_probe": len(equipped - covered),
            "no_probe_data": len(set(villages) - measured - covered),
            "uncovered_villages": sorted(set(villages) - covered)[:500],
            "probe_villages_not_imported": sorted(unknown)[:100],
        },
        missing,
    )


def bts_site_sharing(store: Store, c: Compute) -> KpiValue:
    devices = [d for d in DeviceRepo(store).devices() if d["kind"] in c.device_kinds]
    s = site_sharing((d["site"], d["operator"]) for d in devices)
    ratio = s.shared_ratio
    return KpiValue(
        None if ratio is None else 100.0 * ratio,
        f"device inventory ({', '.join(c.device_kinds)} elements with a site)",
        "100 × sites with elements of more than one operator ÷ sites",
        {
            "sites": s.sites,
            "shared_sites": len(s.shared),
            "shared": {k: list(v) for k, v in s.shared.items()},
        },
        [] if s.sites else [f"no {'/'.join(c.device_kinds)} elements with a site in the inventory"],
    )


def compute(store: Store, standards: Standards, plan: Plan, ind: PlanIndicator, year: int) -> KpiValue:
    c = ind.compute
    if c.kind == "report_ratio":
        return report_ratio(store, c, year)
    if c.kind == "village_coverage":
        return village_coverage(store, standards, c, year)
    return bts_site_sharing(store, c)
