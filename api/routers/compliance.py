"""QoS compliance per operator, commune and technology against the regulation profiles.

`GET /api/v1/compliance?period=2025-Q3&technology=4G&operator=&commune=&profile=`
`GET /api/v1/compliance/report?month=2025-07&format=html|csv|xlsx` (the monthly report)

Both are heavy queries: run in a worker thread (plain `def` endpoints), under the query gate
(api.max_queries, api.max_queries_per_key: one more is answered 429).
"""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from api.auth import CurrentPrincipal
from api.deps import QueryGateDep, StandardsDep, StoreDep
from api.errors import AUTH_ERRORS, CSV_OR_JSON, TOO_MANY, XLSX_CONTENT
from api.export import Format, table_response, xlsx_download
from api.schemas import ComplianceResponse, ComplianceRow
from collector.store.store import Store
from compliance.answer import Answer, QueryError, answer
from compliance.profiles import PERIOD_PATTERN, Standards
from compliance.report import REPORT_COLUMNS, render_monthly_html, render_monthly_xlsx, report_csv_rows

router = APIRouter(prefix="/api/v1", tags=["compliance"], responses=AUTH_ERRORS)

MONTH_PATTERN = r"^(20\d\d|2100)-(0[1-9]|1[0-2])$"
TECH_PATTERN = r"^[A-Za-z0-9]{1,16}$"
ROW_COLUMNS = list(ComplianceRow.model_fields)  # the CSV / XLSX columns, in the JSON's order


def compliance(
    store: Store,
    standards: Standards,
    period_text: str,
    technology: str | None,
    operator: str | None,
    commune: str | None,
    profile_id: str | None,
) -> Answer:
    """compliance/answer.py's answer; a question it cannot answer is a 422 with its reason."""
    try:
        return answer(store, standards, period_text, technology, operator, commune, profile_id)
    except QueryError as exc:
        raise HTTPException(422, str(exc)) from None


def _flat(row: dict[str, object]) -> dict[str, object]:
    """A CSV cell per field: lists joined by '; '."""
    return {k: "; ".join(map(str, v)) if isinstance(v, list | tuple) else v for k, v in row.items()}


Technology = Annotated[
    str | None, Query(pattern=TECH_PATTERN, description="4G, 5G, FTTH, ...; default: every covered one")
]
Operator = Annotated[str | None, Query(pattern=r"^[a-z0-9_-]{1,32}$", description="only this operator")]
Commune = Annotated[str | None, Query(max_length=32, description="only this commune (code)")]


@router.get(
    "/compliance",
    response_model=ComplianceResponse,
    responses={**CSV_OR_JSON, **TOO_MANY},
    summary="QCVN compliance per operator, commune, technology and indicator over a period",
)
def get_compliance(
    principal: CurrentPrincipal,
    store: StoreDep,
    standards: StandardsDep,
    gate: QueryGateDep,
    period: Annotated[str, Query(pattern=PERIOD_PATTERN, description="YYYY, YYYY-Qn or YYYY-MM (UTC+7)")],
    technology: Technology = None,
    operator: Operator = None,
    commune: Commune = None,
    profile: Annotated[
        str | None,
        Query(pattern=r"^[a-z0-9-]{1,64}$", description="another profile, e.g. decision-1110-2024"),
    ] = None,
    format: Format = "json",
) -> Response:
    operator = principal.operator_scope(operator)
    with gate.hold(principal.name):
        out = compliance(store, standards, period, technology, operator, commune, profile)
        if format != "json":
            return table_response(
                format,
                (_flat({k: getattr(r, k) for k in ROW_COLUMNS}) for r in out.rows),
                ROW_COLUMNS,
                f"compliance-{period}",
            )
        # Encoded here, in the worker thread, straight from the answer's dataclasses (orjson
        # writes their fields in order): returned as a model, it would be validated field by
        # field twice (into ComplianceResponse, then by FastAPI against the response model)
        # and encoded on the event loop, thousands of rows for a province. The dataclasses
        # have ComplianceResponse's fields, in its order (response_model: the OpenAPI, and the
        # tests, hold them to it).
        return Response(orjson.dumps(out), media_type="application/json")


@router.get(
    "/compliance/report",
    responses={
        200: {"content": {"text/html": {}, "text/csv": {"schema": {"type": "string"}}, **XLSX_CONTENT}},
        **TOO_MANY,
    },
    response_class=Response,
    summary="the monthly compliance report, printable HTML, CSV or XLSX, Vietnamese and English labels",
)
def monthly_report(
    principal: CurrentPrincipal,
    store: StoreDep,
    standards: StandardsDep,
    gate: QueryGateDep,
    month: Annotated[str, Query(pattern=MONTH_PATTERN, description="YYYY-MM (UTC+7)")],
    technology: Technology = None,
    operator: Operator = None,
    commune: Commune = None,
    format: Annotated[
        Literal["html", "csv", "xlsx"], Query(description="html (printable), csv or xlsx (an Excel workbook)")
    ] = "html",
) -> Response:
    operator = principal.operator_scope(operator)
    with gate.hold(principal.name):
        out = compliance(store, standards, month, technology, operator, commune, None)
        if format == "csv":
            return table_response(format, report_csv_rows(out), REPORT_COLUMNS, f"compliance-report-{month}")
        if format == "xlsx":
            return xlsx_download(render_monthly_xlsx(out, principal.name), f"compliance-report-{month}.xlsx")
        return HTMLResponse(render_monthly_html(out, principal.name))
