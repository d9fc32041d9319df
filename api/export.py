"""CSV exports of list endpoints (`format=csv`).

Cells that a spreadsheet would run as a formula (starting with = + - @, tab or CR) and
that are not plain numbers get a leading apostrophe: a probe or site name from the field
must never become a formula on the department's machine.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.responses import Response

Format = Annotated[
    Literal["json", "csv"], Query(description="json (default) or csv (a header row, one row per item)")
]
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER.match(v):
        return "'" + v
    return v


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def csv_response(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], filename: str) -> Response:
    """A text/csv download (UTF-8 with a byte-order mark, so spreadsheets read the diacritics)."""
    body = "\ufeff" + csv_text(rows, columns)
    return Response(
        body.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
