"""The plan's ten 2025 indicators: targets, values, sources and formulas.

The plan (compliance/standards/plan-225-2023.yaml, read by compliance/plan.py) says, for
each indicator, how its value is computed:
- `report_ratio`: scale x numerator / denominator, each a field of uploaded reports (summed
  over the registered operators' latest versions for operator reports). Each side states
  what it covers (operators, communes, fields); a value is given only when both cover the
  whole province and every registered operator. Otherwise the answer is `incomplete` and
  says what is missing; a share (unit %) above 100 is `inconsistent`. Never `met` either way;
- `village_coverage`: the share of imported villages covered by a technology, where covered
  means measured by probes (service above the plan's stated floors), declared in an
  operator's coverage report, or (FTTH) served by an inventory device placed in the village;
  the answer shows each source side by side and the villages with none;
- `site_sharing`: the share of inventory sites whose elements belong to more than one
  operator.
A value without data is null, and the answer says what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collector.inventory import site_sharing
from collector.store.devices import DeviceRepo
from collector.store.periods import period_totals, select_series, tiers_present
from collector.store.reports import ReportRepo
from collector.store.store import Store
from compliance.plan import Compute, Plan, PlanIndicator, ReportKind
from compliance.profiles import Standards, parse_period

# A share this far above 100 % is float rounding, not an inconsistency.
_SHARE_SLACK = 1e-9

# -- KPI computation -------------------------------------------------------------------------


@dataclass
class KpiValue:
    value: float | None
    source: str
    formula: str
    inputs: dict[str, Any]
    missing: list[str]
    # None: met / not_met from the value; else no_data, incomplete or inconsistent
    status: str | None = None
    coverage: dict[str, Any] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)


def status_of(ind: PlanIndicator, v: KpiValue) -> str:
    if v.status is not None:
        return v.status
    if v.value is None:
        return "no_data"
    return "met" if v.value >= ind.target else "not_met"


def _report_ref(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("report_id", "kind", "operator", "version", "uploaded_ms")}


def _who(r: dict[str, Any]) -> str:
    return f"{r['operator'] or 'the department'}'s {r['kind']} v{r['version']}"


def _listed(items: list[str], most: int = 10) -> str:
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


@dataclass
class _Side:
    """One side of a ratio: the field's total over the reports read, and what it covers."""

    ref: str
    total: float | None = None
    reports: list[dict[str, Any]] = field(default_factory=list)
    operators: list[str] = field(default_factory=list)
    communes: str | list[str] = "province"  # 'province', or the communes every report covers
    missing: list[str] = field(default_factory=list)  # what keeps the ratio from being complete
    notes: list[str] = field(default_factory=list)  # reports left out that would not belong
    # commune -> the field summed over the reports, when every report gives commune rows
    by_commune: dict[str, float] | None = field(default_factory=dict)


def _side(
    repo: ReportRepo, spec: ReportKind, ref: str, year: int, registry: list[str], communes: set[str]
) -> _Side:
    kind, _, fld = ref.partition(".")
    side = _Side(ref)
    latest = repo.latest(kind, year)
    if spec.uploaded_by == "operator":
        by_op = {r["operator"]: r for r in latest}
        for op in sorted(set(by_op) - set(registry)):
            side.notes.append(f"{_who(by_op[op])} not counted: {op!r} is not a registered operator")
        reports = [by_op[op] for op in registry if op in by_op]
        side.missing += [f"no {kind} report of {op} for {year}" for op in registry if op not in by_op]
    else:
        reports = latest[:1]
        if not reports:
            side.missing.append(f"no {kind} report for {year}")
    all_communes = sorted(communes)
    for r in reports:
        vals = [v for v in repo.values(r["report_id"]) if v.field == fld]
        if not vals:
            side.missing.append(f"{_who(r)} leaves {fld} blank")
            continue
        province = [v.value for v in vals if v.commune == ""]
        if province:
            value, how = province[0], "province total"
            side.by_commune = None
        else:
            if side.by_commune is not None:
                for v in vals:
                    side.by_commune[v.commune] = side.by_commune.get(v.commune, 0.0) + v.value
            have = {v.commune for v in vals}
            lacking = [c for c in all_communes if c not in have]
            value, how = sum(v.value for v in vals), f"sum of {len(vals)} communes"
            if lacking:
                side.missing.append(
                    f"{_who(r)} gives {fld} for {len(have)} of {len(all_communes)} communes"
                    f" (not for {_listed(lacking)})"
                )
                side.communes = (
                    sorted(have) if side.communes == "province" else sorted(have & set(side.communes))
                )
        side.total = value if side.total is None else side.total + value
        if r["operator"]:
            side.operators.append(r["operator"])
        side.reports.append({**_report_ref(r), "field": fld, "value": value, "how": how})
    return side


def report_ratio(store: Store, plan: Plan, ind: PlanIndicator, year: int, registry: list[str]) -> KpiValue:
    c = ind.compute
    assert c.numerator and c.denominator
    repo = ReportRepo(store)
    communes = {r[0] for r in store.reader().execute("SELECT code FROM communes")}
    sides = [
        _side(repo, plan.reports[ref.partition(".")[0]], ref, year, registry, communes)
        for ref in (c.numerator, c.denominator)
    ]
    num, den = sides
    missing = list(dict.fromkeys(num.missing + den.missing))
    value: float | None = None
    status: str | None = None
    if num.total is None or den.total is None:
        status = "no_data" if not (num.reports or den.reports) else "incomplete"
    elif missing:
        status = "incomplete"
    elif den.total == 0:
        missing.append(f"{c.denominator} is 0")
        status = "inconsistent" if ind.unit == "%" and num.total > 0 else "no_data"
    else:
        value = c.scale * num.total / den.total
        if ind.unit == "%":
            # A share of its denominator: more than it, in the province or in any commune that
            # both sides give, is an inconsistency between the reports, never a result.
            over = []
            if num.total > den.total * (1 + _SHARE_SLACK):
                over.append(
                    f"inconsistent: {c.numerator} ({num.total:g}) is more than {c.denominator}"
                    f" ({den.total:g}), a share of {value:.4g} %; a share cannot pass 100 %"
                )
            if num.by_commune is not None and den.by_commune is not None:
                bad = [
                    f"{code} ({n:g} > {den.by_commune[code]:g})"
                    for code, n in sorted(num.by_commune.items())
                    if code in den.by_commune and n > den.by_commune[code] * (1 + _SHARE_SLACK)
                ]
                if bad:
                    over.append(
                        f"inconsistent: {c.numerator} is more than {c.denominator} in"
                        f" {len(bad)} commune(s): {_listed(bad)}"
                    )
            if over:
                missing += over
                value, status = None, "inconsistent"
    missing += list(dict.fromkeys(num.notes + den.notes))
    kinds = sorted({c.numerator.partition(".")[0], c.denominator.partition(".")[0]})
    scale = f"{c.scale:g} × " if c.scale != 1 else ""
    used = num.reports + den.reports
    coverage = {
        side_name: {
            "field": s.ref,
            "operators": s.operators
            if plan.reports[s.ref.partition(".")[0]].uploaded_by == "operator"
            else None,
            "operators_expected": (
                registry if plan.reports[s.ref.partition(".")[0]].uploaded_by == "operator" else None
            ),
            "communes": s.communes,
            "total": s.total,
        }
        for side_name, s in (("numerator", num), ("denominator", den))
    }
    return KpiValue(
        value,
        "reports: " + ", ".join(kinds) + f" ({year}, latest version not withdrawn of each)",
        f"{scale}Σ {c.numerator} ÷ Σ {c.denominator}"
        " (each over the whole province and every registered operator)",
        {"numerator": num.total, "denominator": den.total, "reports": used},
        missing,
        status,
        coverage,
        [{k: r[k] for k in ("report_id", "kind", "operator", "version", "field")} for r in used],
    )


def _measured_villages(
    store: Store, c: Compute, year: int
) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """village -> {"operator technology"} whose probes showed service (see Measured), and
    village -> reasons where probes had data but showed no service by the method."""
    m = c.measured
    assert m is not None
    period = parse_period(str(year))
    tiers = tiers_present(store)
    # (village, operator, technology, metric) -> [count, sum]
    acc: dict[tuple[str, str, str, str], list[float]] = {}
    for tech in c.technologies:
        labels = select_series(store, list(m.floors), {"kind": "probe", "technology": tech})
        totals = period_totals(
            store, list(labels), period.from_ms, period.to_ms, sketches=False, tiers_s=tiers
        )
        for sid, n, total in zip(
            totals.series_id.tolist(), totals.count.tolist(), totals.sum.tolist(), strict=True
        ):
            lab = labels[sid]
            key = (lab.get("village", ""), lab.get("operator", ""), tech, lab["metric"])
            a = acc.setdefault(key, [0.0, 0.0])
            a[0] += n
            a[1] += total
    groups: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for (village, op, tech, metric), a in acc.items():
        if village:
            groups.setdefault((village, op, tech), {})[metric] = a
    served: dict[str, set[str]] = {}
    below: dict[str, list[str]] = {}
    for (village, op, tech), by_metric in sorted(groups.items()):
        judged = {k: a[1] / a[0] for k, a in by_metric.items() if a[0] >= m.min_samples}
        low = [f"{k} mean {v:g} < {m.floors[k]:g}" for k, v in judged.items() if v < m.floors[k]]
        if judged and not low:
            served.setdefault(village, set()).add(f"{op} {tech}")
        elif low:
            below.setdefault(village, []).append(f"{op} {tech}: " + ", ".join(low))
        else:
            counts = ", ".join(f"{int(a[0])} {k}" for k, a in by_metric.items())
            below.setdefault(village, []).append(f"{op} {tech}: {counts} (fewer than {m.min_samples})")
    return served, below


def village_coverage(
    store: Store, plan: Plan, ind: PlanIndicator, year: int, registry: list[str]
) -> KpiValue:
    c = ind.compute
    villages = {r[0]: r[1] for r in store.reader().execute("SELECT code, commune FROM villages")}
    missing: list[str] = [] if villages else ["no villages imported (POST /api/v1/units/villages)"]
    measured: dict[str, set[str]] = {}
    below: dict[str, list[str]] = {}
    if c.measured is not None:
        measured, below = _measured_villages(store, c, year)
    declared: dict[str, set[str]] = {}
    used: list[dict[str, Any]] = []
    if c.declared is not None:
        kind, _, fld = c.declared.partition(".")
        repo = ReportRepo(store)
        by_op = {r["operator"]: r for r in repo.latest(kind, year)}
        for op in registry:
            r = by_op.get(op)
            if r is None:
                missing.append(f"no {kind} report of {op} for {year}: its declarations are not counted")
                continue
            used.append({**_report_ref(r), "field": fld})
            for v in repo.values(r["report_id"]):
                if v.field == fld and v.value == 1.0 and v.village:
                    declared.setdefault(v.village, set()).add(op)
    serving: dict[str, set[str]] = {}
    equipped: dict[str, set[str]] = {}
    for d in DeviceRepo(store).devices():
        if d["village"] and d["kind"] in c.serving_device_kinds:
            serving.setdefault(d["village"], set()).add(d["device_id"])
        elif d["village"] and d["kind"] in c.device_kinds:
            equipped.setdefault(d["village"], set()).add(d["device_id"])
    by_village: list[dict[str, Any]] = []
    covered = neither = 0
    counts = {"measured": 0, "declared": 0, "inventory": 0, "measured_and_declared": 0}
    without: list[str] = []
    for code in sorted(villages):
        ms, ds, inv = measured.get(code, set()), declared.get(code, set()), serving.get(code, set())
        counts["measured"] += bool(ms)
        counts["declared"] += bool(ds)
        counts["inventory"] += bool(inv)
        counts["measured_and_declared"] += bool(ms and ds)
        if ms or ds or inv:
            covered += 1
        else:
            neither += 1
            without.append(code)
        if ms or ds or inv or code in below or code in equipped:
            by_village.append(
                {
                    "village": code,
                    "commune": villages[code],
                    "covered": bool(ms or ds or inv),
                    "measured": sorted(ms),
                    "declared": sorted(ds),
                    "inventory": sorted(inv),
                    "measured_below_method": below.get(code, []),
                    "other_equipment": sorted(equipped.get(code, set())),
                }
            )
    value = 100.0 * covered / len(villages) if villages else None
    techs = "/".join(c.technologies)
    sources = [f"field probes ({', '.join(c.technologies)})"] if c.measured else []
    sources += [f"operators' {c.declared.partition('.')[0]} reports"] if c.declared else []
    sources += (
        [f"the device inventory ({', '.join(c.serving_device_kinds)})"] if c.serving_device_kinds else []
    )
    ways = ["measured by probes" if c.measured else ""]
    ways += [f"declared ({c.declared} = 1)" if c.declared else ""]
    ways += [f"served by a {'/'.join(c.serving_device_kinds)} placed in it" if c.serving_device_kinds else ""]
    method: dict[str, Any] = {"text": c.method.strip()}
    if c.measured is not None:
        method["measured"] = {
            "technologies": c.technologies,
            "min_samples": c.measured.min_samples,
            "floors": c.measured.floors,
            "unverified": c.measured.unverified,
            "note": c.measured.note,
        }
    unknown = sorted(set(measured) - set(villages))
    coverage = {
        "method": method,
        "villages": len(villages),
        "covered": covered,
        **counts,
        "neither": neither,
        "villages_with_neither": without[:10000],
        "by_village": by_village[:10000],
        "probe_villages_not_imported": unknown[:100],
    }
    return KpiValue(
        value,
        " + ".join(sources),
        f"100 × villages {techs} covered ({' or '.join(w for w in ways if w)}, year {year})"
        " ÷ imported villages",
        {k: coverage[k] for k in ("villages", "covered", *counts, "neither")},
        missing,
        None if villages else "no_data",
        coverage,
        [{k: r[k] for k in ("report_id", "kind", "operator", "version", "field")} for r in used],
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


def compute(
    store: Store, standards: Standards, plan: Plan, ind: PlanIndicator, year: int, registry: list[str]
) -> KpiValue:
    """One indicator's value for `year`; `registry` is the operators expected to report."""
    c = ind.compute
    if c.kind == "report_ratio":
        return report_ratio(store, plan, ind, year, registry)
    if c.kind == "village_coverage":
        return village_coverage(store, plan, ind, year, registry)
    return bts_site_sharing(store, c)
