"""The plan's ten indicators for a year: target, value, source and formula.

A heavy query: run in a worker thread (a plain `def` endpoint), under the query gate
(api.max_queries, api.max_queries_per_key: one more is answered 429).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.auth import CurrentPrincipal, require_role
from api.deps import PlanDep, QueryGateDep, SettingsDep, StandardsDep, StoreDep
from api.errors import AUTH_ERRORS, CSV_OR_JSON, TOO_MANY
from api.export import Format, table_response
from api.schemas import KpiOut, KpiResponse
from collector.store.store import Store
from compliance.kpi import compute, status_of
from compliance.plan import Plan
from compliance.profiles import VN_TZ, Standards

router = APIRouter(prefix="/api/v1", tags=["kpi"], responses=AUTH_ERRORS)


@router.get(
    "/kpi",
    response_model=KpiResponse,
    responses={**CSV_OR_JSON, **TOO_MANY},
    # The KPIs combine every operator's data: for the department (viewer, admin), not one operator.
    dependencies=[require_role("viewer", "admin")],
    summary="the plan's ten indicators: target, value, source, formula",
)
def get_kpi(
    principal: CurrentPrincipal,
    store: StoreDep,
    standards: StandardsDep,
    plan: PlanDep,
    settings: SettingsDep,
    gate: QueryGateDep,
    year: Annotated[
        int | None, Query(ge=2000, le=2100, description="default: the plan's target year")
    ] = None,
    format: Format = "json",
) -> KpiResponse | Response:
    with gate.hold(principal.name):
        return _kpi(store, standards, plan, settings.kpi.operators, year, format)


def _kpi(
    store: Store, standards: Standards, plan: Plan, operators: list[str], year: int | None, format: Format
) -> KpiResponse | Response:
    y = year or plan.target_year
    out: list[KpiOut] = []
    for ind in sorted(plan.indicators, key=lambda i: i.number):
        v = compute(store, standards, plan, ind, y, operators)
        status = status_of(ind, v)
        out.append(
            KpiOut(
                number=ind.number,
                id=ind.id,
                section=ind.section,
                name_vi=ind.name_vi,
                name_en=ind.name_en,
                target=ind.target,
                unit=ind.unit,
                value=v.value,
                progress_ratio=None if v.value is None or not ind.target else v.value / ind.target,
                status=status,
                source=v.source,
                formula=v.formula,
                inputs=v.inputs,
                missing=v.missing,
                note=ind.note,
                coverage=v.coverage,
                reports=v.reports,
            )
        )
    if format != "json":
        cols = ["number", "id", "name_vi", "name_en", "target", "unit", "value", "progress_ratio", "status"]
        rows = (
            {
                **k.model_dump(),
                "missing": "; ".join(k.missing),
                "reports": "; ".join(
                    f"{r['kind']} {r['operator'] or 'department'} v{r['version']}" for r in k.reports
                ),
            }
            for k in out
        )
        return table_response(format, rows, [*cols, "source", "formula", "missing", "reports"], f"kpi-{y}")
    # The inventory (devices, sites, villages) is kept as it is now, not as it was: a past year's
    # inventory-based KPIs use today's, and the answer says so rather than pass it off as then.
    now_ms = int(time.time() * 1000)
    inventory_kpis = sorted(i.number for i in plan.indicators if i.compute.kind != "report_ratio")
    note = (
        f"KPIs {', '.join(map(str, inventory_kpis))} read the device inventory and villages as of now"
        " (the store keeps no history of them)"
    )
    if y < datetime.fromtimestamp(now_ms / 1000, tz=VN_TZ).year:
        note += f": for {y} they are today's inventory, not the inventory of {y}"
    return KpiResponse(
        plan=plan.id,
        plan_version=plan.version,
        reference=plan.reference,
        year=y,
        indicators=out,
        inventory_as_of_ms=now_ms,
        inventory_note=note,
    )
