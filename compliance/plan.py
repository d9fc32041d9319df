"""The plan's indicators and the reports it reads (compliance/standards/plan-225-2023.yaml).

The plan file says, for each indicator, its target and how its value is computed
(compliance/kpi.py computes it), and for each report kind its fields, checks and rows.
`validate_report` reads an uploaded report against its kind: every error names its line and
column.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collector.inventory.tabular import Errors, NumberFormat, Table, number_format_of, number_of, text_of
from collector.store.reports import ReportValue
from compliance.profiles import read_yaml, validated

_CHECK_RE = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=)\s*([a-z0-9_]+)\s*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportKind(_Model):
    uploaded_by: Literal["operator", "department"]
    title_en: str
    title_vi: str
    fields: dict[str, str]
    checks: list[str] = Field(default_factory=list)
    # commune: one row per commune (blank commune = the province); village: one row per
    # imported village (coverage declarations). count: whole numbers >= 0; flag: 0 or 1.
    rows: Literal["commune", "village"] = "commune"
    values: Literal["count", "flag"] = "count"

    @model_validator(mode="after")
    def _checks_name_fields(self) -> ReportKind:
        for c in self.checks:
            m = _CHECK_RE.match(c)
            if not m or m.group(1) not in self.fields or m.group(3) not in self.fields:
                raise ValueError(f"check {c!r}: expected 'field <= field' with fields of this report")
        return self


class Measured(_Model):
    """When probes in a village show service of a technology over the period: for one
    operator, at least `min_samples` samples of a floor metric, and the period mean of every
    floor metric with that many samples at or above its floor."""

    min_samples: int = Field(ge=1)
    floors: dict[str, float] = Field(min_length=1, description="metric -> lowest period mean")
    unverified: bool = True
    note: str = ""


class Compute(_Model):
    kind: Literal["report_ratio", "village_coverage", "site_sharing"]
    numerator: str | None = None
    denominator: str | None = None
    scale: float = 1.0
    technologies: list[str] = Field(default_factory=list)
    measured: Measured | None = None
    declared: str | None = Field(None, description="report.field of a village report: 1 = covered")
    serving_device_kinds: list[str] = Field(
        default_factory=list, description="inventory devices that cover the village they are placed in"
    )
    device_kinds: list[str] = Field(default_factory=list)
    method: str = ""


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
                    if self.reports[kind].rows != "commune":
                        raise ValueError(f"indicator {ind.id}: {ref!r} is not a report of communes")
            if c.kind == "village_coverage":
                if not (c.measured or c.declared or c.serving_device_kinds):
                    raise ValueError(f"indicator {ind.id}: give measured, declared or serving_device_kinds")
                if c.declared is not None:
                    kind, _, fld = c.declared.partition(".")
                    spec = self.reports.get(kind)
                    if (
                        spec is None
                        or fld not in spec.fields
                        or spec.rows != "village"
                        or spec.values != "flag"
                    ):
                        raise ValueError(
                            f"indicator {ind.id}: {c.declared!r} is not a flag of a village report"
                        )
        return self

    @staticmethod
    def load(path: Path | None = None) -> Plan:
        src: Any = path or resources.files("compliance") / "standards" / "plan-225-2023.yaml"
        plan: Plan = validated(Plan, read_yaml(src, "plan"), str(src))
        return plan


# -- report validation -----------------------------------------------------------------------


def validate_report(
    kind: ReportKind,
    table: Table,
    communes: set[str],
    errors: Errors,
    *,
    villages: dict[str, str] | None = None,
    number_format: NumberFormat = "auto",
) -> list[ReportValue]:
    """The values of an uploaded report, or errors naming line and column.

    `villages` (code -> commune) is needed for reports whose rows are villages. Numbers are
    read as `number_format` says; "auto" settles it from all the file's cells together."""
    key = kind.rows
    if key not in table.columns:
        if key == "commune":
            errors.add(1, "commune", "missing column (leave a cell blank for a province-wide figure)")
        else:
            errors.add(1, "village", "missing column (the code of an imported village on each row)")
    fields = [c for c in table.columns if c not in ("commune", "village")]
    if key == "commune" and "village" in table.columns:
        errors.add(1, "village", "this report's rows are communes")
    for c in fields:
        if c not in kind.fields:
            errors.add(1, c, f"unknown field; this report has {', '.join(kind.fields)}")
    if not fields:
        errors.add(1, "", f"no field columns; this report has {', '.join(kind.fields)}")
    if not table.rows:
        errors.add(0, "", "no rows")
    fmt = number_format_of(table, fields, number_format, errors)
    if errors.total:
        return []
    checks = [m.groups() for m in map(_CHECK_RE.match, kind.checks) if m]
    known_villages = villages or {}
    out: list[ReportValue] = []
    seen: dict[str, int] = {}
    for line, row in table.rows:
        place = text_of(row.get(key))
        commune, village = place, ""
        if key == "village":
            village = place
            commune = known_villages.get(place, "")
            if place not in known_villages:
                errors.add(line, "village", f"{place[:40]!r} is not an imported village")
            if "commune" in table.columns and text_of(row.get("commune")) not in ("", commune):
                errors.add(line, "commune", f"village {place[:40]} is in commune {commune or '?'}")
        elif commune and commune not in communes:
            errors.add(line, "commune", f"{commune[:40]!r} is not an imported commune")
        if place in seen:
            what = "the province total" if not place else f"{key} {place[:40]}"
            errors.add(line, key, f"{what} is already on line {seen[place]}")
        seen[place] = line
        values: dict[str, float] = {}
        for f in fields:
            try:
                x = number_of(row.get(f), fmt)
            except ValueError as exc:
                errors.add(line, f, str(exc))
                continue
            if x is None:
                continue
            if kind.values == "flag" and x not in (0.0, 1.0):
                errors.add(line, f, f"{x:g}: 1 (yes) or 0 (no)")
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
        out += [ReportValue(line, commune, f, v, village) for f, v in values.items()]
    if key == "commune" and "" in seen and len(seen) > 1:
        errors.add(seen[""], "commune", "a province total (blank commune) and per-commune rows in one report")
    return out
