"""Tables as CSV text and XLSX workbooks: the cells of every export (`format=csv`, `format=xlsx`)
and of the monthly compliance report. api/export.py wraps them in HTTP responses.

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
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from xlsxwriter import Workbook
from xlsxwriter.format import Format as CellFormat

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
# What XML 1.0 cannot carry (control characters but tab, LF and CR).
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
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


def header_label(field: str) -> str:
    """The XLSX header of a field: 'Vietnamese / English', or the field's name if unlabelled."""
    vi_en = FIELD_LABELS.get(field)
    return f"{vi_en[0]} / {vi_en[1]}" if vi_en else field


def _xlsx_value(v: Any) -> Any:
    """The JSON value as a cell holds it: lists joined as in CSV, text Excel can store."""
    if isinstance(v, list | tuple):
        v = "; ".join(map(str, v))
    elif isinstance(v, dict):  # the audit's detail: as JSON, readable and parseable
        v = json.dumps(v, ensure_ascii=False, default=str)
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON says null for these too; Excel has no NaN
    if v == "":
        return None  # an empty cell, as Excel has it
    if isinstance(v, str):
        # XML 1.0 cannot carry control characters: shown as U+FFFD rather than refused.
        v = _ILLEGAL.sub("\ufffd", v)[:_MAX_CELL_CHARS]
    return v


def _width(v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, float):
        return 14
    return len(str(v))


class Book:
    """An Excel workbook built in memory, with the cell formats its sheets share (XlsxWriter
    wants each made once per workbook)."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        # Every text is written as text (write_string): no option may turn one into a
        # formula, a number or a link behind our back.
        self.wb = Workbook(
            self._buf,
            {
                "in_memory": True,
                "strings_to_formulas": False,
                "strings_to_numbers": False,
                "strings_to_urls": False,
            },
        )
        self.header = self.wb.add_format(
            {"bold": True, "bg_color": "#DDDDDD", "text_wrap": True, "valign": "top"}
        )
        # Excel's own apostrophe: the text shows as it is and stays text when edited.
        self.quoted = self.wb.add_format({"quote_prefix": True})
        self._formats: dict[str, CellFormat] = {}

    def number(self, fmt: str) -> CellFormat:
        if fmt not in self._formats:
            self._formats[fmt] = self.wb.add_format({"num_format": fmt})
        return self._formats[fmt]

    def sheet(
        self,
        name: str,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str],
        headers: Sequence[str],
        formats: Mapping[str, str] | None = None,
    ) -> None:
        """One table on a new sheet: header row frozen and filtered, columns sized."""
        ws = self.wb.add_worksheet(re.sub(r"[][:*?/\\]", "_", name)[:31])
        fmts = formats or {}
        values = [[_xlsx_value(r.get(c)) for c in columns] for r in rows]
        for i, h in enumerate(headers):
            # Sized to the header's longest half and the first rows' contents, within bounds
            # a laptop screen shows.
            longest = max((_width(row[i]) for row in values[:500]), default=0)
            head = max(len(part) for part in h.split(" / "))
            ws.set_column(i, i, min(60, max(8, head, longest) + 2))
            ws.write_string(0, i, h, self.header)
        ws.freeze_panes(1, 0)
        if columns:
            ws.autofilter(0, 0, len(values), len(columns) - 1)
        # A float column's format: the field's own, else percent for ratios, else decimals.
        float_fmt = [
            self.number(fmts.get(c) or (PERCENT if c.endswith("_ratio") else DECIMAL)) for c in columns
        ]
        int_fmt = [self.number(fmts[c]) if c in fmts else None for c in columns]
        for r, row in enumerate(values, start=1):
            for c, v in enumerate(row):
                if v is None:
                    continue
                if isinstance(v, str):
                    ws.write_string(r, c, v, self.quoted if v[:1] in _FORMULA_START else None)
                elif isinstance(v, bool):
                    ws.write_boolean(r, c, v)
                elif isinstance(v, float):
                    ws.write_number(r, c, v, float_fmt[c])
                elif isinstance(v, int):
                    ws.write_number(r, c, v, int_fmt[c])
                else:
                    ws.write_string(r, c, str(v))

    def close(self) -> bytes:
        self.wb.close()
        return self._buf.getvalue()
