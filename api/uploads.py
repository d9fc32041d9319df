"""Uploaded files (reports, unit lists): size-limited, rate-limited, parsed with line numbers.

The body is read on the event loop (counted against api.max_upload_bytes as it arrives);
parsing, validating and storing run in a worker thread (`off_loop`), so a 100k-row file
delays nobody else's request or a probe's batch.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import HTTPException, Request

from api.auth import Principal
from api.errors import ApiError
from api.schemas import ErrorItem, ErrorOut
from collector.inventory.tabular import Table, TableError, TableFormat, read_table

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        },
    }
}


def format_of(request: Request, given: str | None) -> TableFormat:
    """csv or json: the `format` parameter, else the Content-Type."""
    if given in ("csv", "json"):
        return "json" if given == "json" else "csv"
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return "json" if ctype.endswith("json") else "csv"


async def read_upload(request: Request, principal: Principal) -> bytes:
    """The body, at most api.max_upload_bytes; counts against the key's upload rate."""
    request.app.state.upload_limiter.check(principal.name)
    limit: int = request.app.state.settings.api.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"larger than {limit} bytes (the limit api.max_upload_bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"larger than {limit} bytes (the limit api.max_upload_bytes)")
    return bytes(body)


T = TypeVar("T")


async def off_loop(fn: Callable[[], T]) -> T:
    """Run `fn` (parse, validate, store) in a worker thread: the event loop stays free."""
    return await asyncio.to_thread(fn)


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def table_error(exc: TableError, what: str) -> ApiError:
    """422 whose body lists the errors line by line (ErrorOut.errors)."""
    return ApiError(
        422,
        ErrorOut(
            detail=f"{what} refused, nothing stored: {exc}",
            errors=[ErrorItem(line=e.line, column=e.column, message=e.message) for e in exc.errors],
            errors_total=exc.total,
        ),
    )


def parse(body: bytes, fmt: TableFormat, what: str, max_rows: int) -> Table:
    """The uploaded table, at most `max_rows` rows (api.max_upload_rows); 422 line by line."""
    try:
        return read_table(body, fmt, max_rows)
    except TableError as exc:
        raise table_error(exc, what) from None
