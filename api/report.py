"""The monthly compliance report: a printable HTML page and a CSV, labelled in Vietnamese and English."""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from typing import Any

from api.compliance import iso
from api.schemas import ComplianceResponse

STATUS_LABELS = {
    "pass": ("Đạt", "Pass"),
    "fail": ("Không đạt", "Fail"),
    "insufficient_data": ("Chưa đủ mẫu", "Insufficient data"),
    "not_measured": ("Chưa đo", "Not measured"),
    "no_limit": ("Chưa có ngưỡng", "No limit"),
}
# (field of ComplianceRow, Vietnamese label, English label)
_COLUMNS = (
    ("operator", "Doanh nghiệp", "Operator"),
    ("commune", "Mã xã/phường", "Commune code"),
    ("commune_name", "Xã/phường", "Commune"),
    ("technology", "Công nghệ", "Technology"),
    ("profile", "Quy chuẩn", "Regulation"),
    ("name_vi", "Chỉ tiêu", "Indicator (vi)"),
    ("name_en", "Chỉ tiêu (tiếng Anh)", "Indicator"),
    ("value", "Giá trị đo", "Measured"),
    ("op", "So sánh", "Comparison"),
    ("limit", "Ngưỡng", "Limit"),
    ("unit", "Đơn vị", "Unit"),
    ("sample_count", "Số mẫu", "Samples"),
    ("min_samples", "Số mẫu tối thiểu", "Minimum samples"),
    ("status", "Kết quả", "Result"),
    ("note", "Ghi chú", "Note"),
)
REPORT_COLUMNS = [f"{vi} / {en}" for _, vi, en in _COLUMNS]


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def _status(s: str) -> str:
    vi, en = STATUS_LABELS.get(s, (s, s))
    return f"{vi} / {en}"


def report_csv_rows(out: ComplianceResponse) -> Iterator[dict[str, Any]]:
    for r in out.rows:
        d = r.model_dump()
        d["status"] = _status(r.status)
        yield {label: d[f] for (f, _, _), label in zip(_COLUMNS, REPORT_COLUMNS, strict=True)}


_CSS = """
body { font-family: "DejaVu Sans", "Noto Sans", Arial, sans-serif; margin: 2em; color: #111; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
.en { color: #555; font-weight: normal; }
table { border-collapse: collapse; width: 100%; font-size: 0.8em; }
th, td { border: 1px solid #999; padding: 3px 5px; text-align: left; vertical-align: top; }
th { background: #eee; } td.num { text-align: right; white-space: nowrap; }
.pass { background: #e3f6e3; } .fail { background: #fbe0e0; } .insufficient_data { background: #fff5d6; }
.meta td { border: none; padding: 1px 8px 1px 0; }
@media print { body { margin: 0.5cm; } tr { page-break-inside: avoid; } }
"""


def render_monthly_html(out: ComplianceResponse, requested_by: str) -> str:
    """A self-contained printable page: summary per operator, commune and technology, then every row."""
    e = html.escape
    profiles = "; ".join(f"{p.reference} (v{p.version})" for p in out.profiles)
    filters = ", ".join(f"{k}={v}" for k, v in out.filters.items())
    counts = {s: sum(1 for g in out.groups if g.status == s) for s in STATUS_LABELS}
    parts = [
        "<!DOCTYPE html><html lang='vi'><head><meta charset='utf-8'>",
        f"<title>Báo cáo chất lượng dịch vụ {e(out.period)} / QoS compliance report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Báo cáo tuân thủ quy chuẩn chất lượng dịch vụ — tháng {e(out.period)}"
        f"<br><span class='en'>QoS compliance report — {e(out.period)}</span></h1>",
        "<table class='meta'>",
        f"<tr><td>Kỳ báo cáo / Period</td><td>{e(iso(out.from_ms))} – {e(iso(out.to_ms))}"
        " (UTC+07:00)</td></tr>",
        f"<tr><td>Quy chuẩn / Regulations</td><td>{e(profiles) or '—'}</td></tr>",
        f"<tr><td>Tốc độ công bố / Declared speeds</td><td>{e(out.declared_speeds.get('source', ''))} "
        f"({e(out.declared_speeds.get('version', ''))})</td></tr>",
        f"<tr><td>Bộ lọc / Filters</td><td>{e(filters) or '—'}</td></tr>",
        f"<tr><td>Lập lúc / Generated</td><td>{e(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}"
        f" — {e(requested_by)}</td></tr>",
        "<tr><td>Tổng hợp / Summary</td><td>"
        + ", ".join(f"{_status(s)}: {n}" for s, n in counts.items() if n)
        + "</td></tr></table>",
        "<h2>Tổng hợp theo doanh nghiệp, xã/phường và công nghệ <span class='en'>/ Summary by operator, "
        "commune and technology</span></h2>",
        "<table><tr><th>Doanh nghiệp<br><span class='en'>Operator</span></th><th>Xã/phường<br>"
        "<span class='en'>Commune</span></th><th>Công nghệ<br><span class='en'>Technology</span></th>"
        "<th>Kết quả<br><span class='en'>Result</span></th><th>Đạt<br><span class='en'>Passed</span></th>"
        "<th>Không đạt<br><span class='en'>Failed</span></th><th>Chưa đủ mẫu<br>"
        "<span class='en'>Insufficient</span></th></tr>",
    ]
    for g in out.groups:
        parts.append(
            f"<tr class='{e(g.status)}'><td>{e(g.operator)}</td><td>{e(g.commune_name or g.commune)} "
            f"({e(g.commune)})</td><td>{e(g.technology)}</td><td>{e(_status(g.status))}</td>"
            f"<td class='num'>{g.passed}</td><td class='num'>{g.failed}</td>"
            f"<td class='num'>{g.insufficient}</td></tr>"
        )
    parts.append("</table><h2>Chi tiết chỉ tiêu <span class='en'>/ Indicators</span></h2><table><tr>")
    parts += [
        f"<th>{e(vi)}<br><span class='en'>{e(en)}</span></th>" for f, vi, en in _COLUMNS if f != "name_en"
    ]
    parts.append("</tr>")
    for r in out.rows:
        d = r.model_dump()
        cells = []
        for f, _, _ in _COLUMNS:
            if f == "name_en":
                continue
            if f == "name_vi":
                cells.append(f"<td>{e(r.name_vi)}<br><span class='en'>{e(r.name_en)}</span></td>")
            elif f == "status":
                cells.append(f"<td>{e(_status(r.status))}</td>")
            elif f in ("value", "limit", "sample_count", "min_samples"):
                cells.append(f"<td class='num'>{e(_fmt(d[f]))}</td>")
            else:
                cells.append(f"<td>{e(_fmt(d[f]))}</td>")
        parts.append(f"<tr class='{e(r.status)}'>{''.join(cells)}</tr>")
    parts.append("</table></body></html>")
    return "".join(parts)
