"""The monthly compliance report: a printable HTML page, a CSV and an Excel workbook, labelled in
Vietnamese and English.

Every row whose limit, minimum or method is our interpretation (or rests on example data, as
the FTTH contracted speed does) is marked "unverified" with its note, in both forms: a
figure the department signs must say what it rests on. So is a value that is not exact
("≈ xấp xỉ / approximate": read from the quantile sketch) and every method condition
of the regulation the data cannot show ("not checked"). Times are printed in Vietnam's time.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Any

from compliance.answer import Answer, Row
from compliance.profiles import VN_TZ
from compliance.tables import COUNT, DECIMAL, Book

STATUS_LABELS = {
    "pass": ("Đạt", "Pass"),
    "fail": ("Không đạt", "Fail"),
    "insufficient_data": ("Chưa đủ mẫu", "Insufficient data"),
    "not_measured": ("Chưa đo", "Not measured"),
    "no_limit": ("Chưa có ngưỡng", "No limit"),
    "not_judged": ("Không đánh giá", "Not judged"),
}
UNVERIFIED_LABEL = ("Chưa kiểm chứng", "Unverified")
UNVERIFIED_MEANING = (
    "Ngưỡng, số mẫu tối thiểu hoặc phương pháp do chúng tôi diễn giải (văn bản quy chuẩn không quy định rõ)"
    " hoặc dựa trên số liệu ví dụ; xem ghi chú",
    "the limit, minimum sample count or method is our interpretation where the regulation leaves it open,"
    " or rests on example data; see the note",
)
APPROXIMATE_LABEL = ("Xấp xỉ", "Approximate")
APPROXIMATE_MARK = "≈"
APPROXIMATE_MEANING = (
    "giá trị không chính xác tuyệt đối: tỷ lệ tính từ bản phác phân vị, mẫu trong khoảng quanh ngưỡng"
    " tính là không đạt (cận dưới), hoặc trung vị ước lượng (sai số khoảng 1 %)",
    "the value is not exact: a share read from the quantile sketch with the samples of the threshold's"
    " bucket counted as failing (a lower bound), or a median estimated from it (within about 1 %)",
)
NOT_CHECKED_LABEL = ("Chưa kiểm tra", "Not checked")
NOT_CHECKED_MEANING = (
    "điều kiện phương pháp đo của quy chuẩn mà số liệu không thể hiện được; kết quả không xác nhận"
    " các điều kiện này",
    "method conditions of the regulation the data cannot show; the verdict does not vouch for them",
)
# The Vietnamese of every method condition a profile (compliance/standards/profiles/*.yaml) or the
# evaluation lists as not checked; api/web/app.js keeps the same table for the page. A
# condition missing here is printed in English alone (a test checks that none is missing).
NOT_CHECKED_VI = {
    "measured to the regulation's test server": "đo tới máy chủ đo kiểm theo quy chuẩn",
    "samples taken outdoors while moving (the regulation's drive test)": (
        "mẫu đo ngoài trời khi di chuyển (đo kiểm lưu động theo quy chuẩn)"
    ),
    "samples spread over all hours of the day": "mẫu phân bố trên mọi giờ trong ngày",
    "the 1,500 samples split 500 indoor, 500 outdoor fixed, 500 moving": (
        "1.500 mẫu chia 500 trong nhà, 500 ngoài trời cố định, 500 di động"
    ),
    "samples spread over the hours of the day (the hour-level rollups of this period are no longer kept)": (
        "mẫu phân bố trên các giờ trong ngày (số liệu tổng hợp theo giờ của kỳ này không còn được lưu)"
    ),
}
# (field of Row, Vietnamese label, English label)
_COLUMNS = (
    ("operator", "Doanh nghiệp", "Operator"),
    ("commune", "Mã xã/phường", "Commune code"),
    ("commune_name", "Xã/phường", "Commune"),
    ("technology", "Công nghệ", "Technology"),
    ("profile", "Quy chuẩn", "Regulation"),
    ("name_vi", "Chỉ tiêu", "Indicator (vi)"),
    ("name_en", "Chỉ tiêu (tiếng Anh)", "Indicator"),
    ("value", "Giá trị đo", "Measured"),
    ("approximate", *APPROXIMATE_LABEL),
    ("op", "So sánh", "Comparison"),
    ("limit", "Ngưỡng", "Limit"),
    ("unit", "Đơn vị", "Unit"),
    ("sample_count", "Số mẫu", "Samples"),
    ("min_samples", "Số mẫu tối thiểu", "Minimum samples"),
    ("status", "Kết quả", "Result"),
    ("unverified", *UNVERIFIED_LABEL),
    ("not_checked", "Điều kiện chưa kiểm tra", "Conditions not checked"),
    ("note", "Ghi chú", "Note"),
)
# Shown within another column of the HTML table (the English name under the Vietnamese, the
# approximate mark beside the value), their own column in the CSV.
_BESIDE = ("name_en", "approximate")
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


def _unverified(r: Row) -> str:
    return "Chưa kiểm chứng / Unverified" if r.unverified else "Không / No"


def _approximate(r: Row) -> str:
    return " / ".join(APPROXIMATE_LABEL) if r.approximate else "Không / No"


def not_checked_text(condition: str) -> str:
    """A not-checked condition in Vietnamese first, English beside (English alone if untranslated)."""
    vi = NOT_CHECKED_VI.get(condition)
    return f"{vi} / {condition}" if vi else condition


def local_time(ms: int) -> str:
    """A time in Vietnam's time, as printed in the report ('2025-07-01 00:00')."""
    return datetime.fromtimestamp(ms / 1000, tz=VN_TZ).strftime("%Y-%m-%d %H:%M")


def report_csv_rows(out: Answer) -> Iterator[dict[str, Any]]:
    for r in out.rows:
        d = asdict(r)
        d["status"] = _status(r.status)
        d["unverified"] = _unverified(r)
        d["approximate"] = _approximate(r)
        d["not_checked"] = "; ".join(not_checked_text(c) for c in r.not_checked)
        yield {label: d[f] for (f, _, _), label in zip(_COLUMNS, REPORT_COLUMNS, strict=True)}


_CSS = """
body { font-family: "DejaVu Sans", "Noto Sans", Arial, sans-serif; margin: 2em; color: #111; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
.en { color: #555; font-weight: normal; }
table { border-collapse: collapse; width: 100%; font-size: 0.8em; }
th, td { border: 1px solid #999; padding: 3px 5px; text-align: left; vertical-align: top; }
th { background: #eee; } td.num { text-align: right; white-space: nowrap; }
.pass { background: #e3f6e3; } .fail { background: #fbe0e0; } .insufficient_data { background: #fff5d6; }
.unverified { font-weight: bold; color: #8a4b00; white-space: nowrap; }
.approx { color: #8a4b00; font-size: 0.9em; white-space: nowrap; }
.not-checked { color: #555; min-width: 14em; } .not-checked ul { margin: 0; padding-left: 1em; }
.meta td { border: none; padding: 1px 8px 1px 0; }
@media print { body { margin: 0.5cm; } tr { page-break-inside: avoid; } }
"""


def render_monthly_html(out: Answer, requested_by: str) -> str:
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
        f"<tr><td>Kỳ báo cáo / Period</td><td>{e(local_time(out.from_ms))} – {e(local_time(out.to_ms))}"
        " (giờ Việt Nam / Vietnam time, UTC+07:00)</td></tr>",
        f"<tr><td>Quy chuẩn / Regulations</td><td>{e(profiles) or '—'}</td></tr>",
        f"<tr><td>Tốc độ công bố / Declared speeds</td><td>{e(out.declared_speeds.get('source', ''))} "
        f"({e(out.declared_speeds.get('version', ''))})</td></tr>",
        *(
            f"<tr><td>Tốc độ {e(t)} / {e(t)} speeds</td><td><span class='unverified'>"
            f"{e(' / '.join(UNVERIFIED_LABEL))}</span>: {e(why)}</td></tr>"
            for t, why in out.declared_speeds.items()
            if t not in ("version", "source")
        ),
        f"<tr><td><span class='unverified'>{e(' / '.join(UNVERIFIED_LABEL))}</span></td>"
        f"<td>{e(UNVERIFIED_MEANING[0])}<br><span class='en'>{e(UNVERIFIED_MEANING[1])}</span>"
        f" — {sum(r.unverified for r in out.rows)} / {len(out.rows)}</td></tr>",
        f"<tr><td><span class='approx'>{APPROXIMATE_MARK} {e(' / '.join(APPROXIMATE_LABEL))}</span></td>"
        f"<td>{e(APPROXIMATE_MEANING[0])}<br><span class='en'>{e(APPROXIMATE_MEANING[1])}</span>"
        f" — {sum(r.approximate for r in out.rows)} / {len(out.rows)}</td></tr>",
        f"<tr><td><span class='not-checked'>{e(' / '.join(NOT_CHECKED_LABEL))}</span></td>"
        f"<td>{e(NOT_CHECKED_MEANING[0])}<br><span class='en'>{e(NOT_CHECKED_MEANING[1])}</span>"
        f" — {sum(bool(r.not_checked) for r in out.rows)} / {len(out.rows)}</td></tr>",
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
        reason = f"<br><span class='en'>{e(g.reason)}</span>" if g.reason else ""
        parts.append(
            f"<tr class='{e(g.status)}'><td>{e(g.operator)}</td><td>{e(g.commune_name or g.commune)} "
            f"({e(g.commune)})</td><td>{e(g.technology)}</td><td>{e(_status(g.status))}{reason}</td>"
            f"<td class='num'>{g.passed}</td><td class='num'>{g.failed}</td>"
            f"<td class='num'>{g.insufficient}</td></tr>"
        )
    parts.append("</table>")
    if out.not_judged:
        parts.append("<h2>Không đánh giá <span class='en'>/ Not judged</span></h2><ul>")
        parts += [f"<li>{e(n.technology)} ({n.probes} probes): {e(n.reason)}</li>" for n in out.not_judged]
        parts.append("</ul>")
    parts.append("<h2>Chi tiết chỉ tiêu <span class='en'>/ Indicators</span></h2><table><tr>")
    parts += [
        f"<th>{e(vi)}<br><span class='en'>{e(en)}</span></th>" for f, vi, en in _COLUMNS if f not in _BESIDE
    ]
    parts.append("</tr>")
    for r in out.rows:
        d = asdict(r)
        cells = []
        for f, _, _ in _COLUMNS:
            if f in _BESIDE:
                continue
            if f == "name_vi":
                cells.append(f"<td>{e(r.name_vi)}<br><span class='en'>{e(r.name_en)}</span></td>")
            elif f == "status":
                cells.append(f"<td>{e(_status(r.status))}</td>")
            elif f == "unverified":
                mark = (
                    f"<span class='unverified'>{e(' / '.join(UNVERIFIED_LABEL))}</span>"
                    if r.unverified
                    else "—"
                )
                cells.append(f"<td data-unverified='{str(r.unverified).lower()}'>{mark}</td>")
            elif f == "value":
                # An estimate says so beside the figure; the legend above says what it means.
                approx = (
                    f"{APPROXIMATE_MARK} {e(_fmt(r.value))}<br><span class='approx'>"
                    f"{e(' / '.join(x.lower() for x in APPROXIMATE_LABEL))}</span>"
                    if r.approximate
                    else e(_fmt(r.value))
                )
                cells.append(f"<td class='num' data-approximate='{str(r.approximate).lower()}'>{approx}</td>")
            elif f == "not_checked":
                items = "".join(f"<li>{e(not_checked_text(c))}</li>" for c in r.not_checked)
                cells.append(
                    f"<td class='not-checked' data-not-checked='{len(r.not_checked)}'>"
                    + (f"<ul>{items}</ul>" if items else "—")
                    + "</td>"
                )
            elif f in ("limit", "sample_count", "min_samples"):
                cells.append(f"<td class='num'>{e(_fmt(d[f]))}</td>")
            else:
                cells.append(f"<td>{e(_fmt(d[f]))}</td>")
        parts.append(f"<tr class='{e(r.status)}'>{''.join(cells)}</tr>")
    parts.append("</table></body></html>")
    return "".join(parts)


def render_monthly_xlsx(out: Answer, requested_by: str) -> bytes:
    """The report as a workbook: the heading and legend, the summary by group, then every row.

    The rows sheet has the CSV's columns and marks (the same texts), with the measured value,
    limit and sample counts as numbers; built in the request's worker thread."""
    book = Book()
    profiles = "; ".join(f"{p.reference} (v{p.version})" for p in out.profiles)
    filters = ", ".join(f"{k}={v}" for k, v in out.filters.items())
    counts = {s: sum(1 for g in out.groups if g.status == s) for s in STATUS_LABELS}
    n = len(out.rows)
    about: list[dict[str, Any]] = [
        {
            "k": "Báo cáo / Report",
            "v": f"Báo cáo tuân thủ quy chuẩn chất lượng dịch vụ — tháng {out.period}"
            f" / QoS compliance report — {out.period}",
        },
        {
            "k": "Kỳ báo cáo / Period",
            "v": f"{local_time(out.from_ms)} – {local_time(out.to_ms)}"
            " (giờ Việt Nam / Vietnam time, UTC+07:00)",
        },
        {"k": "Quy chuẩn / Regulations", "v": profiles or "—"},
        {
            "k": "Tốc độ công bố / Declared speeds",
            "v": f"{out.declared_speeds.get('source', '')} ({out.declared_speeds.get('version', '')})",
        },
        *(
            {"k": f"Tốc độ {t} / {t} speeds", "v": f"{' / '.join(UNVERIFIED_LABEL)}: {why}"}
            for t, why in out.declared_speeds.items()
            if t not in ("version", "source")
        ),
        {
            "k": " / ".join(UNVERIFIED_LABEL),
            "v": f"{UNVERIFIED_MEANING[0]} / {UNVERIFIED_MEANING[1]}",
            "n": sum(r.unverified for r in out.rows),
        },
        {
            "k": f"{APPROXIMATE_MARK} {' / '.join(APPROXIMATE_LABEL)}",
            "v": f"{APPROXIMATE_MEANING[0]} / {APPROXIMATE_MEANING[1]}",
            "n": sum(r.approximate for r in out.rows),
        },
        {
            "k": " / ".join(NOT_CHECKED_LABEL),
            "v": f"{NOT_CHECKED_MEANING[0]} / {NOT_CHECKED_MEANING[1]}",
            "n": sum(bool(r.not_checked) for r in out.rows),
        },
        {"k": "Bộ lọc / Filters", "v": filters or "—"},
        {
            "k": "Lập lúc / Generated",
            "v": f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — {requested_by}",
        },
        {"k": "Tổng hợp / Summary", "v": ", ".join(f"{_status(s)}: {c}" for s, c in counts.items() if c)},
        *(
            {"k": "Không đánh giá / Not judged", "v": f"{nj.technology} ({nj.probes} probes): {nj.reason}"}
            for nj in out.not_judged
        ),
    ]
    for a in about:
        if "n" in a:
            a["of"] = n
    book.sheet(
        "Báo cáo - Report",
        about,
        ["k", "v", "n", "of"],
        ["Mục / Item", "Nội dung / Content", "Số dòng / Rows", "Trên tổng / Of"],
        {"n": COUNT, "of": COUNT},
    )
    groups = [
        {
            "operator": g.operator,
            "commune": g.commune,
            "commune_name": g.commune_name or g.commune,
            "technology": g.technology,
            "status": _status(g.status),
            "passed": g.passed,
            "failed": g.failed,
            "insufficient": g.insufficient,
            "reason": g.reason or "",
        }
        for g in out.groups
    ]
    book.sheet(
        "Tổng hợp - Summary",
        groups,
        list(_GROUP_COLUMNS),
        [f"{vi} / {en}" for vi, en in _GROUP_COLUMNS.values()],
        {"passed": COUNT, "failed": COUNT, "insufficient": COUNT},
    )
    book.sheet(
        "Chi tiết - Indicators",
        list(report_csv_rows(out)),
        REPORT_COLUMNS,
        REPORT_COLUMNS,
        {_LABEL_OF[f]: fmt for f, fmt in _ROW_FORMATS.items()},
    )
    return book.close()


_GROUP_COLUMNS = {
    "operator": ("Doanh nghiệp", "Operator"),
    "commune": ("Mã xã/phường", "Commune code"),
    "commune_name": ("Xã/phường", "Commune"),
    "technology": ("Công nghệ", "Technology"),
    "status": ("Kết quả", "Result"),
    "passed": ("Đạt", "Passed"),
    "failed": ("Không đạt", "Failed"),
    "insufficient": ("Chưa đủ mẫu", "Insufficient"),
    "reason": ("Lý do", "Reason"),
}
_LABEL_OF = {f: label for (f, _, _), label in zip(_COLUMNS, REPORT_COLUMNS, strict=True)}
_ROW_FORMATS = {"value": DECIMAL, "limit": DECIMAL, "sample_count": COUNT, "min_samples": COUNT}
