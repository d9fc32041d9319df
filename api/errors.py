"""One error shape for the whole API: `{"detail": "<what went wrong, readable>"}`.

FastAPI's own validation errors (a list of objects) are rewritten into the same shape,
so every 4xx a client sees, and every one documented in the OpenAPI, is an ErrorOut.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.schemas import ErrorOut

ERR = {"model": ErrorOut}
# Every authenticated route answers these; routers declare them once for all their routes.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {**ERR, "description": "no, unknown or unconfigured bearer token"},
    403: {**ERR, "description": "the key's role (or operator) may not do this"},
    422: {**ERR, "description": "a parameter is missing or wrong; the detail says which and why"},
    429: {**ERR, "description": "too many wrong tokens from this client (api.auth_failures_per_min)"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {**ERR, "description": "no such resource"}}
BAD_BODY: dict[int | str, dict[str, Any]] = {
    400: {**ERR, "description": "the body cannot be parsed (not JSON)"}
}
# Database row ids are signed 64-bit: a larger id in a path is refused (422), never a 500.
ROW_ID_MAX = 2**63 - 1
TOO_MANY: dict[int | str, dict[str, Any]] = {
    429: {**ERR, "description": "over the rate limit; see Retry-After"}
}
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_CONTENT: dict[str, Any] = {XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}
CSV_OR_JSON: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {"schema": {"type": "string"}}, **XLSX_CONTENT},
        "description": "JSON, CSV with format=csv, or an Excel workbook with format=xlsx",
    }
}


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("query", "path", "body", "header"):
        parts = parts[1:] or parts
    return ".".join(parts) or "request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    msgs = [f"{_where(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in exc.errors()[:10]]
    return JSONResponse(status_code=422, content={"detail": "; ".join(msgs) or "invalid request"})


class ApiError(Exception):
    """An error answered with a full ErrorOut body (line-numbered upload errors)."""

    def __init__(self, status_code: int, body: ErrorOut) -> None:
        super().__init__(body.detail)
        self.status_code = status_code
        self.body = body


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(status_code=exc.status_code, content=exc.body.model_dump(exclude_none=True))


# What the datetime module says when arithmetic on a client's date leaves years 1..9999
# (a naive 0001-01-01 shifted to UTC, 9999-12-31 plus a day).
_YEAR_OUT_OF_RANGE = re.compile(r"^year -?\d+ is out of range")


async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
    # A number a parameter let through but the store or the calendar cannot hold (a 40-digit
    # offset, year 0): the client's value is wrong, so a 422, never a 500.
    if isinstance(exc, ValueError) and not _YEAR_OUT_OF_RANGE.match(str(exc)):
        raise exc  # any other ValueError is a fault of ours: a 500, logged
    return JSONResponse(status_code=422, content={"detail": f"a number or date out of range: {exc}"})


def install(app: FastAPI) -> None:
    """Make request-validation errors ErrorOut-shaped; answer ApiError with its body; a number
    or a date out of range (OverflowError, a year outside 1..9999) is the client's 422."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(OverflowError, _out_of_range)
    app.add_exception_handler(ValueError, _out_of_range)
