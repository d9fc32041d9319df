"""CSV and XLSX exports of list endpoints (`format=csv`, `format=xlsx`).

Cells that a spreadsheet would run as a formula (starting with = + - @, tab or CR) and
that are not plain numbers get a leading apostrophe in CSV: a probe or site name from the
field must never become a formula on the department's machine. In XLSX every text is
written as a string cell (never a formula), and one starting so carries the quote-prefix
style too (Excel's own apostrophe), so that editing the cell does not turn it into one.

XLSX keeps the JSON's types: numbers are numbers (ratios formatted as percent, decimals
with three places, integers without), booleans are booleans, lists are joined by '; ' as
in CSV. The header row is in Vietnamese with the English beside, frozen, with a filter;
columns are sized to their contents. The workbook is built in the request's worker thread
(every exporting route is a plain `def`), never on the event loop.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.responses import Response
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from api.errors import XLSX_MEDIA_TYPE

Format = Annotated[
    Literal["json", "csv", "xlsx"],
    Query(
        description="json (default), csv (a header row, one row per item) or xlsx (the same table as an"
        " Excel workbook: Vietnamese headers, numbers as numbers)"
    ),
]
PERCENT = "0.00%"
DECIMAL = "#,##0.000"
INTEGER = "0"
COUNT = "#,##0"
# Excel's limit on a cell's text.
_MAX_CELL_CHARS = 32_767
# (Vietnamese, English) header of the fields the exported tables have; a field not named here
# is headed by its JSON name.
FIELD_LABELS: dict[str, tuple[str, str]] = {
    "operator": ("Doanh nghiệp", "Operator"),
    "commune": ("Mã xã/phường", "Commune code"),
    "commune_name": ("Xã/phường", "Commune"),
    "village": ("Thôn/bản", "Village"),
    "site": ("Trạm", "Site"),
    "kind": ("Loại", "Kind"),
    "target": ("Mục tiêu", "Target"),
    "entity": ("Đối tượng", "Entity"),
    "technology": ("Công nghệ", "Technology"),
    "profile": ("Quy chuẩn", "Regulation"),
    "profile_version": ("Phiên bản quy chuẩn", "Regulation version"),
    "indicator": ("Mã chỉ tiêu", "Indicator code"),
    "name_vi": ("Chỉ tiêu", "Indicator (vi)"),
    "name_en": ("Chỉ tiêu (tiếng Anh)", "Indicator"),
    "stat": ("Thống kê", "Statistic"),
    "unit": ("Đơn vị", "Unit"),
    "value": ("Giá trị", "Value"),
    "op": ("So sánh", "Comparison"),
    "limit": ("Ngưỡng", "Limit"),
    "threshold": ("Ngưỡng mẫu", "Sample threshold"),
    "status": ("Trạng thái", "Status"),
    "passed": ("Đạt", "Passed"),
    "insufficient_data": ("Chưa đủ mẫu", "Insufficient data"),
    "sample_count": ("Số mẫu", "Samples"),
    "min_samples": ("Số mẫu tối thiểu", "Minimum samples"),
    "unverified": ("Chưa kiểm chứng", "Unverified"),
    "unverified_what": ("Phần chưa kiểm chứng", "What is unverified"),
    "approximate": ("Xấp xỉ", "Approximate"),
    "not_checked": ("Điều kiện chưa kiểm tra", "Conditions not checked"),
    "note": ("Ghi chú", "Note"),
    "number": ("STT", "No."),
    "id": ("Mã", "ID"),
    "section": ("Mục", "Section"),
    "progress_ratio": ("Tỷ lệ hoàn thành", "Progress"),
    "source": ("Nguồn số liệu", "Source"),
    "formula": ("Công thức", "Formula"),
    "missing": ("Còn thiếu", "Missing"),
    "reports": ("Báo cáo sử dụng", "Reports used"),
    "ts": ("Thời điểm", "Time"),
    "ts_ms": ("Thời điểm (ms)", "Time (ms)"),
    "count": ("Số mẫu", "Samples"),
    "expected_count": ("Số mẫu dự kiến", "Expected samples"),
    "completeness_ratio": ("Tỷ lệ đầy đủ", "Completeness"),
    "probe_id": ("Mã đầu đo", "Probe ID"),
    "name": ("Tên", "Name"),
    "type": ("Loại", "Type"),
    "lat": ("Vĩ độ", "Latitude"),
    "lon": ("Kinh độ", "Longitude"),
    "villages": ("Số thôn/bản", "Villages"),
    "host": ("Địa chỉ", "Host"),
    "port": ("Cổng", "Port"),
    "report_id": ("Mã báo cáo", "Report ID"),
    "year": ("Năm", "Year"),
    "version": ("Phiên bản", "Version"),
    "actor": ("Người thực hiện", "Actor"),
    "role": ("Vai trò", "Role"),
    "action": ("Thao tác", "Action"),
    "detail": ("Chi tiết", "Detail"),
}
_HEADER_FONT = Font(bold=True)
_HEADER_FILL = PatternFill("solid", fgColor="DDDDDD")
_HEADER_ALIGN = Alignment(wrap_text=True, vertical="top")
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


def header_label(field: str) -> str:
    """The XLSX header of a field: 'Vietnamese / English', or the field's name if unlabelled."""
    vi_en = FIELD_LABELS.get(field)
    return f"{vi_en[0]} / {vi_en[1]}" if vi_en else field


def _xlsx_value(v: Any) -> Any:
    """The JSON value as a cell holds it: lists joined as in CSV, text Excel can store."""
    if isinstance(v, list | tuple):
        v = "; ".join(map(str, v))
    elif isinstance(v, dict):
        v = "; ".join(f"{k}={x}" for k, x in v.items())
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON says null for these too; Excel has no NaN
    if v == "":
        return None  # an empty cell, as Excel has it
    if isinstance(v, str):
        # XML 1.0 cannot carry control characters: shown as U+FFFD rather than refused.
        v = ILLEGAL_CHARACTERS_RE.sub("\ufffd", v)[:_MAX_CELL_CHARS]
    return v


def _number_format(field: str, v: Any, formats: Mapping[str, str]) -> str | None:
    if field in formats:
        return formats[field]
    if isinstance(v, float):
        return PERCENT if field.endswith("_ratio") else DECIMAL
    return None


def _width(v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, float):
        return 14
    return len(str(v))


def write_sheet(
    ws: WriteOnlyWorksheet,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    headers: Sequence[str],
    formats: Mapping[str, str] | None = None,
) -> None:
    """One table on a write-only sheet: header row frozen and filtered, columns sized."""
    fmts = formats or {}
    values = [[_xlsx_value(r.get(c)) for c in columns] for r in rows]
    # The stubs lack these two attributes the write-only sheet has (openpyxl 3.1 lends them
    # from Worksheet); the tests read the widths and the filter back.
    dims = ws.column_dimensions  # type: ignore[attr-defined]
    for i, h in enumerate(headers):
        # Sized to the header's longest half and the first rows' contents, within bounds a
        # laptop screen shows.
        longest = max((_width(row[i]) for row in values[:500]), default=0)
        head = max(len(part) for part in h.split(" / "))
        dims[get_column_letter(i + 1)].width = min(60, max(8, head, longest) + 2)
    ws.freeze_panes = "A2"
    if columns:
        ws.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{len(values) + 1}"  # type: ignore[attr-defined]
    head_cells = []
    for h in headers:
        c = WriteOnlyCell(ws, value=_xlsx_value(h))
        c.data_type = "s"
        c.font, c.fill, c.alignment = _HEADER_FONT, _HEADER_FILL, _HEADER_ALIGN
        head_cells.append(c)
    ws.append(head_cells)
    for row in values:
        cells = []
        for field, v in zip(columns, row, strict=True):
            c = WriteOnlyCell(ws, value=v)
            if isinstance(v, str):
                c.data_type = "s"  # text stays text: never parsed as a formula, date or number
                if v[:1] in _FORMULA_START:
                    c.quotePrefix = True
            else:
                fmt = _number_format(field, v, fmts)
                if fmt is not None and not isinstance(v, bool):
                    c.number_format = fmt
            cells.append(c)
        ws.append(cells)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def xlsx_bytes(wb: Workbook) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


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
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(re.sub(r"[][:*?/\\]", "_", filename.rsplit(".", 1)[0])[:31])
    write_sheet(ws, list(rows), columns, [header_label(c) for c in columns], formats)
    return xlsx_download(xlsx_bytes(wb), filename)


def table_response(
    format: Literal["csv", "xlsx"], rows: Iterable[Mapping[str, Any]], columns: Sequence[str], stem: str
) -> Response:
    """The table as CSV or XLSX, downloaded as `<stem>.csv` or `<stem>.xlsx`."""
    if format == "xlsx":
        return xlsx_response(rows, columns, f"{stem}.xlsx")
    return csv_response(rows, columns, f"{stem}.csv")
