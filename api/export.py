"""CSV and XLSX downloads of list endpoints (`format=csv`, `format=xlsx`): the HTTP side.

The cells, the formula guard and the workbook are compliance/tables.py's; here they become
responses with a file name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.responses import Response

from api.errors import XLSX_MEDIA_TYPE
from compliance.tables import Book, csv_text, header_label

Format = Annotated[
    Literal["json", "csv", "xlsx"],
    Query(
        description="json (default), csv (a header row, one row per item) or xlsx (the same table as an"
        " Excel workbook: Vietnamese headers, numbers as numbers)"
    ),
]


def csv_response(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], filename: str) -> Response:
    """A text/csv download (UTF-8 with a byte-order mark, so spreadsheets read the diacritics)."""
    body = "\ufeff" + csv_text(rows, columns)
    return Response(
        body.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def xlsx_download(body: bytes, filename: str) -> Response:
    return Response(
        body,
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def xlsx_response(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    filename: str,
    formats: Mapping[str, str] | None = None,
) -> Response:
    """An Excel workbook of one sheet: the table CSV would give, typed and labelled."""
    book = Book()
    book.sheet(filename.rsplit(".", 1)[0], list(rows), columns, [header_label(c) for c in columns], formats)
    return xlsx_download(book.close(), filename)


def table_response(
    format: Literal["csv", "xlsx"], rows: Iterable[Mapping[str, Any]], columns: Sequence[str], stem: str
) -> Response:
    """The table as CSV or XLSX, downloaded as `<stem>.csv` or `<stem>.xlsx`."""
    if format == "xlsx":
        return xlsx_response(rows, columns, f"{stem}.xlsx")
    return csv_response(rows, columns, f"{stem}.csv")
