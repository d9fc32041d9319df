"""XLSX exports read back with openpyxl and held cell by cell to the API's JSON for the same
request: the monthly report (its marks as the CSV words them) and the compliance, KPI and QoS
tables (numbers as numbers with their formats, Vietnamese headers, the header row frozen);
text that a spreadsheet would run as a formula stays text."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from openpyxl.cell.cell import Cell
from openpyxl.worksheet.worksheet import Worksheet

from api.app import create_app
from collector.store.sqlite import SQLiteStore
from compliance.report import NOT_CHECKED_VI
from tests.department_data import ADMIN, VIEWER, auth, seed, settings_with_keys
from tests.marks_data import APPROX_SHARE, seed_approximate_share

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# The number formats docs/api.md promises.
DECIMAL, PERCENT, COUNT = "#,##0.000", "0.00%", "#,##0"
STATUS_WORDS = {
    "pass": "Đạt / Pass",
    "fail": "Không đạt / Fail",
    "insufficient_data": "Chưa đủ mẫu / Insufficient data",
    "not_measured": "Chưa đo / Not measured",
    "no_limit": "Chưa có ngưỡng / No limit",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store = SQLiteStore(tmp_path_factory.mktemp("xlsx") / "netqos.db")
    seed(store)
    seed_approximate_share(store)  # one approximate value in the report
    with TestClient(create_app(settings_with_keys(), store)) as c:
        yield c
    store.close()


def get(client: TestClient, path: str, **params: Any) -> Any:
    r = client.get(path, params=params, headers=auth(ADMIN))
    assert r.status_code == 200, r.text
    return r


def workbook(client: TestClient, path: str, **params: Any) -> Any:
    r = get(client, path, format="xlsx", **params)
    assert r.headers["content-type"] == XLSX
    assert r.headers["content-disposition"].endswith('.xlsx"')
    return load_workbook(io.BytesIO(r.content))


def header_and_rows(ws: Worksheet) -> tuple[list[Any], list[tuple[Cell, ...]]]:
    assert ws.freeze_panes == "A2"  # the header row stays in view
    rows = list(ws.iter_rows())
    assert ws.auto_filter.ref == f"A1:{rows[0][-1].column_letter}{len(rows)}"  # a filter on every column
    header = [c.value for c in rows[0]]
    assert all(c.font.b for c in rows[0])
    for c in rows[0]:  # sized to the text, within what a laptop screen shows
        assert 8 <= ws.column_dimensions[c.column_letter].width <= 62
    return header, rows[1:]


def same(x: float) -> Any:
    """Equal to Excel's precision: it keeps 15 significant digits, the file carries 16 or 17."""
    return pytest.approx(x, rel=1e-15, abs=0)


def check_cell(cell: Cell, want: Any, field: str) -> None:
    """A cell holds the JSON's value with the JSON's type: numbers as numbers, formatted."""
    where = f"{cell.coordinate} ({field})"
    if want is None or want == "":  # an empty text is an empty cell
        assert cell.value is None, where
    elif isinstance(want, bool):
        assert (cell.data_type, cell.value) == ("b", want), where
    elif isinstance(want, int):
        assert cell.data_type == "n" and cell.value == want, where
        assert cell.number_format == "General", where
    elif isinstance(want, float):
        assert cell.data_type == "n" and cell.value == same(want), (where, cell.value, want)
        assert cell.number_format == (PERCENT if field.endswith("_ratio") else DECIMAL), where
    else:
        assert isinstance(want, str)
        assert (cell.data_type, cell.value) == ("s", want), where


def test_monthly_report_xlsx_matches_the_json(client: TestClient) -> None:
    body = get(client, "/api/v1/compliance", period="2025-07").json()
    wb = workbook(client, "/api/v1/compliance/report", month="2025-07")
    assert wb.sheetnames == ["Báo cáo - Report", "Tổng hợp - Summary", "Chi tiết - Indicators"]

    header, rows = header_and_rows(wb["Chi tiết - Indicators"])
    assert header == [
        "Doanh nghiệp / Operator", "Mã xã/phường / Commune code", "Xã/phường / Commune",
        "Công nghệ / Technology", "Quy chuẩn / Regulation", "Chỉ tiêu / Indicator (vi)",
        "Chỉ tiêu (tiếng Anh) / Indicator", "Giá trị đo / Measured", "Xấp xỉ / Approximate",
        "So sánh / Comparison", "Ngưỡng / Limit", "Đơn vị / Unit", "Số mẫu / Samples",
        "Số mẫu tối thiểu / Minimum samples", "Kết quả / Result", "Chưa kiểm chứng / Unverified",
        "Điều kiện chưa kiểm tra / Conditions not checked", "Ghi chú / Note",
    ]  # fmt: skip
    assert len(rows) == len(body["rows"])
    col = {h: i for i, h in enumerate(header)}
    for api, cells in zip(body["rows"], rows, strict=True):  # the same order, row by row
        c = {h: cells[i] for h, i in col.items()}
        for h, f in (("Doanh nghiệp / Operator", "operator"), ("Mã xã/phường / Commune code", "commune"),
                     ("Chỉ tiêu / Indicator (vi)", "name_vi"), ("Đơn vị / Unit", "unit"),
                     ("Ghi chú / Note", "note"), ("So sánh / Comparison", "op")):  # fmt: skip
            assert (c[h].data_type, c[h].value) == ("s", api[f])
        for h, f, fmt in (("Giá trị đo / Measured", "value", DECIMAL), ("Ngưỡng / Limit", "limit", DECIMAL),
                          ("Số mẫu / Samples", "sample_count", COUNT),
                          ("Số mẫu tối thiểu / Minimum samples", "min_samples", COUNT)):  # fmt: skip
            if api[f] is None:
                assert c[h].value is None
            else:  # a number Excel can sum, not the text of one
                assert c[h].data_type == "n" and c[h].value == same(api[f]) and c[h].number_format == fmt
        assert c["Kết quả / Result"].value == STATUS_WORDS[api["status"]]
        # The marks in the CSV's words.
        want = "Chưa kiểm chứng / Unverified" if api["unverified"] else "Không / No"
        assert c["Chưa kiểm chứng / Unverified"].value == want
        assert c["Xấp xỉ / Approximate"].value == (
            "Xấp xỉ / Approximate" if api["approximate"] else "Không / No"
        )
        want = "; ".join(f"{NOT_CHECKED_VI[x]} / {x}" for x in api["not_checked"])
        assert (c["Điều kiện chưa kiểm tra / Conditions not checked"].value or "") == want
    # The fixture holds every mark, so the checks above met each of them.
    marked = [r for r in body["rows"] if r["unverified"]]
    assert marked and [r for r in body["rows"] if r["not_checked"]]
    (approx,) = [r for r in body["rows"] if r["approximate"]]
    assert approx["value"] == pytest.approx(APPROX_SHARE)

    header, groups = header_and_rows(wb["Tổng hợp - Summary"])
    assert header[:8] == ["Doanh nghiệp / Operator", "Mã xã/phường / Commune code", "Xã/phường / Commune",
                          "Công nghệ / Technology", "Kết quả / Result", "Đạt / Passed", "Không đạt / Failed",
                          "Chưa đủ mẫu / Insufficient"]  # fmt: skip
    assert len(groups) == len(body["groups"])
    for api, cells in zip(body["groups"], groups, strict=True):
        assert [cells[0].value, cells[1].value, cells[3].value] == [
            api["operator"],
            api["commune"],
            api["technology"],
        ]
        for cell, n in zip(cells[5:8], (api["passed"], api["failed"], api["insufficient"]), strict=True):
            assert cell.data_type == "n" and cell.value == n and cell.number_format == COUNT

    about = {r[0].value: r for r in list(wb["Báo cáo - Report"].iter_rows())[1:]}
    period = about["Kỳ báo cáo / Period"][1].value
    assert period == "2025-07-01 00:00 – 2025-08-01 00:00 (giờ Việt Nam / Vietnam time, UTC+07:00)"
    unverified = about["Chưa kiểm chứng / Unverified"]
    assert (unverified[2].value, unverified[3].value) == (len(marked), len(body["rows"]))
    assert about["≈ Xấp xỉ / Approximate"][2].value == 1


def test_compliance_table_xlsx_matches_the_json(client: TestClient) -> None:
    body = get(client, "/api/v1/compliance", period="2025-07", technology="4G").json()
    wb = workbook(client, "/api/v1/compliance", period="2025-07", technology="4G")
    header, rows = header_and_rows(wb.active)
    fields = list(body["rows"][0])
    assert len(header) == len(fields)
    assert header[:4] == ["Doanh nghiệp / Operator", "Mã xã/phường / Commune code", "Xã/phường / Commune",
                          "Công nghệ / Technology"]  # fmt: skip
    assert header[fields.index("value")] == "Giá trị / Value"
    assert header[fields.index("unverified")] == "Chưa kiểm chứng / Unverified"
    assert header[fields.index("approximate")] == "Xấp xỉ / Approximate"
    assert len(rows) == len(body["rows"]) > 0
    for api, cells in zip(body["rows"], rows, strict=True):
        for f, cell in zip(fields, cells, strict=True):
            want = api[f]
            check_cell(cell, "; ".join(want) if isinstance(want, list) else want, f)


def test_kpi_table_xlsx_matches_the_json(client: TestClient) -> None:
    body = get(client, "/api/v1/kpi", year=2025).json()
    header, rows = header_and_rows(workbook(client, "/api/v1/kpi", year=2025).active)
    assert header == [
        "STT / No.", "Mã / ID", "Chỉ tiêu / Indicator (vi)", "Chỉ tiêu (tiếng Anh) / Indicator",
        "Mục tiêu / Target", "Đơn vị / Unit", "Giá trị / Value", "Tỷ lệ hoàn thành / Progress",
        "Trạng thái / Status", "Nguồn số liệu / Source", "Công thức / Formula", "Còn thiếu / Missing",
        "Báo cáo sử dụng / Reports used",
    ]  # fmt: skip
    fields = ["number", "id", "name_vi", "name_en", "target", "unit", "value", "progress_ratio", "status",
              "source", "formula", "missing", "reports"]  # fmt: skip
    assert len(rows) == len(body["indicators"]) == 10
    assert any(k["progress_ratio"] is not None for k in body["indicators"])
    for api, cells in zip(body["indicators"], rows, strict=True):
        for f, cell in zip(fields, cells, strict=True):
            want = api[f]
            if f == "missing":
                want = "; ".join(want) or None
            elif f == "reports":
                want = (
                    "; ".join(f"{r['kind']} {r['operator'] or 'department'} v{r['version']}" for r in want)
                    or None
                )
            check_cell(cell, want, f)


def test_qos_table_xlsx_matches_the_json(client: TestClient) -> None:
    params = {
        "metric": "dl_bps",
        "stat": "mean",
        "group_by": "operator,commune",
        "from": "2025-07-01T00:00:00Z",
        "to": "2025-07-01T06:00:00Z",
        "step": "1h",
    }
    body = get(client, "/api/v1/qos", **params).json()
    header, rows = header_and_rows(workbook(client, "/api/v1/qos", **params).active)
    assert header == ["Doanh nghiệp / Operator", "Mã xã/phường / Commune code", "Thời điểm / Time",
                      "Thời điểm (ms) / Time (ms)", "Giá trị / Value", "Số mẫu / Samples",
                      "Số mẫu dự kiến / Expected samples", "Tỷ lệ đầy đủ / Completeness"]  # fmt: skip
    flat = [(s["labels"], p) for s in body["series"] for p in s["points"]]
    assert len(rows) == len(flat) and any(p["value"] is not None for _, p in flat)
    assert any(p["completeness_ratio"] is not None for _, p in flat)
    for (labels, p), cells in zip(flat, rows, strict=True):
        want = [labels["operator"], labels["commune"], p["ts"], p["ts_ms"], p["value"], p["count"],
                p["expected_count"], p["completeness_ratio"]]  # fmt: skip
        fields = [
            "operator",
            "commune",
            "ts",
            "ts_ms",
            "value",
            "count",
            "expected_count",
            "completeness_ratio",
        ]
        for f, w, cell in zip(fields, want, cells, strict=True):
            check_cell(cell, w, f)


def test_xlsx_text_never_becomes_a_formula(client: TestClient) -> None:
    names = ['=HYPERLINK("http://example.invalid","x")', "+1+1", "-2+3", "@SUM(1)", "-95.5", "Thôn =1"]
    csv = "code,name,commune\n" + "".join(
        f'16021-f{i},"{n.replace(chr(34), chr(34) * 2)}",16021\n' for i, n in enumerate(names)
    )
    h = {**auth(ADMIN), "Content-Type": "text/csv"}
    r = client.post("/api/v1/units/villages", content=csv.encode(), headers=h)
    assert r.status_code == 200, r.text
    got = get(client, "/api/v1/villages", format="xlsx", commune="16021")
    wb = load_workbook(io.BytesIO(got.content))
    header, rows = header_and_rows(wb.active)
    cells = {row[header.index("Tên / Name")].value: row[header.index("Tên / Name")] for row in rows}
    for n in names:
        cell = cells[n]  # the very text, kept
        assert cell.data_type == "s", n
        # Excel's own apostrophe on those a spreadsheet would read as a formula
        assert cell.quotePrefix is (n[0] in "=+-@"), n
    # And no formula anywhere in the file: every sheet's XML is free of <f> elements.
    with zipfile.ZipFile(io.BytesIO(got.content)) as z:
        sheets = [n for n in z.namelist() if n.startswith("xl/worksheets/")]
        assert sheets and not any(b"<f>" in z.read(n) or b"<f " in z.read(n) for n in sheets)


def test_csv_stays_and_a_viewer_gets_xlsx(client: TestClient) -> None:
    r = client.get("/api/v1/compliance", params={"period": "2025-07", "format": "csv"}, headers=auth(VIEWER))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    r = client.get("/api/v1/probes", params={"format": "xlsx"}, headers=auth(VIEWER))
    assert r.status_code == 200 and r.headers["content-type"] == XLSX
    bad = client.get("/api/v1/probes", params={"format": "xls"}, headers=auth(VIEWER))
    assert bad.status_code == 422


@pytest.mark.parametrize(
    ("path", "key", "field", "header"),
    [
        ("/api/v1/probes", "probes", "probe_id", "Mã đầu đo / Probe ID"),
        ("/api/v1/devices", "devices", "id", "Mã / ID"),
        ("/api/v1/communes", "communes", "code", "code"),  # a field without a label: its JSON name
        ("/api/v1/audit", "entries", "actor", "Người thực hiện / Actor"),
    ],
)
def test_every_other_list_exports_xlsx(
    client: TestClient, path: str, key: str, field: str, header: str
) -> None:
    if key == "entries":  # an audited change, whatever ran before: its detail is an object
        h = {**auth(ADMIN), "Content-Type": "text/csv"}
        r = client.post(
            "/api/v1/units/villages", content=b"code,name,commune\n16021-a1,A 1,16021\n", headers=h
        )
        assert r.status_code == 200, r.text
    items = get(client, path).json()[key]
    head, rows = header_and_rows(workbook(client, path).active)
    assert len(rows) == len(items) > 0
    col = head.index(header)
    assert [r[col].value for r in rows] == [i[field] for i in items]
    if key == "entries":
        detail = head.index("Chi tiết / Detail")
        assert [json.loads(r[detail].value) for r in rows] == [i["detail"] for i in items]
