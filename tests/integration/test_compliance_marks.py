"""What a signed figure rests on: unverified marks (the FTTH example contract included) in the API,
the monthly report's HTML and CSV; approximate values and the regulation's method conditions not
checked, in the report too; technologies no regulation covers said as not judged; no
device-only groups; an unknown commune refused by name; the report's period in local time; the
share counters ingest derives are not metrics /qos answers for."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from collector.core import SampleBatch, rollup
from collector.core.shares import ShareCounters
from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo, SeriesKey
from collector.mqtt.schema import validate_batch
from collector.pipeline import IngestPipeline
from collector.store.sqlite import SQLiteStore
from compliance.report import NOT_CHECKED_VI
from tests.department_data import T0, VIEWER, A, B, auth, seed, settings_with_keys
from tests.marks_data import APPROX_SHARE, seed_approximate_share

EXAMPLE = "example contracted plan (100/100 Mbit/s)"  # the declared-speeds file's FTTH mark


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store = SQLiteStore(tmp_path_factory.mktemp("marks") / "netqos.db")
    seed(store)
    seed_approximate_share(store)  # viettel's 4G share >= Vdmin in B: from the sketch alone
    # An xDSL line probe in B (no regulation profile covers xDSL).
    store.register_probes([ProbeInfo("p-b-vnp-xdsl", B, f"{B}-v01", "s-x", "vnpt", "xDSL")])
    # SNMP utilisation of two routers in A in July: vnpt's (vnpt has an FTTH probe in A) at 0.5
    # over 300 polls, viettel's (no FTTH probe of viettel anywhere) at 0.95.
    for entity, operator, value in (("rtr-vnpt", "vnpt", 0.5), ("rtr-vtl", "viettel", 0.95)):
        (sid,) = store.series_ids(
            [
                SeriesKey.of(
                    "if_in_utilisation_ratio", entity, {"kind": "router", "operator": operator, "commune": A}
                )
            ]
        )
        ts = T0 + np.arange(300, dtype=np.int64) * 60_000
        store.write_rollups(rollup(SampleBatch(np.full(300, sid, np.int32), ts, np.full(300, value))), 60)
    with TestClient(create_app(settings_with_keys(), store)) as c:
        yield c
    store.close()


def get(client: TestClient, path: str, **params: str) -> Any:
    r = client.get(path, params=params, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    return r


def test_ftth_limits_rest_on_the_example_contract_and_say_so(client: TestClient) -> None:
    body = get(client, "/api/v1/compliance", period="2025-07", technology="FTTH").json()
    rows = {(r["operator"], r["commune"], r["indicator"]): r for r in body["rows"]}
    for ind in ("dl_mean", "ul_mean"):  # 0.8 x the contracted Vd / Vu: the contract is an example
        r = rows["vnpt", A, ind]
        assert r["unverified"] is True and EXAMPLE in r["note"], r
    assert body["declared_speeds"]["FTTH"].startswith(EXAMPLE)
    # Device rows only join groups that probes make: vnpt's router counts for vnpt in A
    # (mean 0.5 -> 50 % <= 80 %, 300 polls = the minimum), viettel's makes no group of its own.
    occ = rows["vnpt", A, "link_occupancy"]
    assert (occ["value"], occ["sample_count"], occ["status"]) == (pytest.approx(50.0), 300, "pass")
    assert {(g["operator"], g["commune"]) for g in body["groups"]} == {("vnpt", A)}
    assert not [r for r in body["rows"] if r["operator"] == "viettel"]


def test_a_technology_no_regulation_covers_is_said_not_judged(client: TestClient) -> None:
    body = get(client, "/api/v1/compliance", period="2025-07").json()
    (nj,) = body["not_judged"]
    assert (nj["technology"], nj["probes"]) == ("xDSL", 1) and "no regulation profile" in nj["reason"]
    g = [g for g in body["groups"] if g["technology"] == "xDSL"]
    assert [(x["operator"], x["commune"], x["status"]) for x in g] == [("vnpt", B, "not_judged")]
    assert "xDSL" in g[0]["reason"]
    assert not [r for r in body["rows"] if r["technology"] == "xDSL"]
    # Asked for by name: the same answer, not an error; a technology no probe can have stays a 422.
    only = get(client, "/api/v1/compliance", period="2025-07", technology="xDSL").json()
    assert [n["technology"] for n in only["not_judged"]] == ["xDSL"] and only["rows"] == []
    r = client.get(
        "/api/v1/compliance", params={"period": "2025-07", "technology": "6G"}, headers=auth(VIEWER)
    )
    assert r.status_code == 422


def test_an_unknown_commune_is_refused_by_name(client: TestClient) -> None:
    for path, params in (
        ("/api/v1/compliance", {"period": "2025-07", "commune": "99999"}),
        ("/api/v1/compliance/report", {"month": "2025-07", "commune": "99999"}),
    ):
        r = client.get(path, params=params, headers=auth(VIEWER))
        assert r.status_code == 422 and "commune '99999' is unknown" in r.json()["detail"], r.text
    # A known commune (imported, with probes) answers.
    assert get(client, "/api/v1/compliance", period="2025-07", commune=B).json()["filters"] == {"commune": B}


def test_the_monthly_report_shows_every_unverified_mark(client: TestClient) -> None:
    body = get(client, "/api/v1/compliance", period="2025-07").json()
    marked = [r for r in body["rows"] if r["unverified"]]
    # At least QCVN 81's radio availability threshold (profile) and the two FTTH speed limits.
    assert {r["indicator"] for r in marked} >= {"radio_availability", "dl_mean", "ul_mean"}

    page = get(client, "/api/v1/compliance/report", month="2025-07").text
    assert page.count("data-unverified='true'") == len(marked)
    assert page.count("data-unverified='false'") == len(body["rows"]) - len(marked)
    assert "Chưa kiểm chứng / Unverified" in page and EXAMPLE in page
    # The period in Vietnam's time, as labelled (July 2025 local: 30 June 17:00 UTC to 31 July 17:00 UTC).
    assert "2025-07-01 00:00 – 2025-08-01 00:00 (giờ Việt Nam / Vietnam time, UTC+07:00)" in page
    assert "2025-06-30" not in page
    assert "Không đánh giá / Not judged" in page and "xDSL" in page

    text = get(client, "/api/v1/compliance/report", month="2025-07", format="csv").text.lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(body["rows"])
    flag = "Chưa kiểm chứng / Unverified"
    assert sum(r[flag] == "Chưa kiểm chứng / Unverified" for r in rows) == len(marked)
    # Every profile's effective date is our choice too (marked), so all rows may carry the mark.
    assert {r[flag] for r in rows} <= {"Chưa kiểm chứng / Unverified", "Không / No"}
    assert sum(r[flag] == "Không / No" for r in rows) == len(body["rows"]) - len(marked)
    speeds = [r for r in rows if "contracted V" in r["Chỉ tiêu (tiếng Anh) / Indicator"]]
    assert len(speeds) == 2  # vnpt's FTTH download and upload in A
    assert all(r[flag] == "Chưa kiểm chứng / Unverified" and EXAMPLE in r["Ghi chú / Note"] for r in speeds)


def test_kpis_of_a_past_year_say_the_inventory_is_todays(client: TestClient) -> None:
    before = int(time.time() * 1000)
    body = get(client, "/api/v1/kpi", year="2025").json()
    assert before <= body["inventory_as_of_ms"] <= int(time.time() * 1000)
    assert "keeps no history" in body["inventory_note"]
    assert "for 2025 they are today's inventory, not the inventory of 2025" in body["inventory_note"]
    later = get(client, "/api/v1/kpi", year="2100").json()  # not past: nothing to warn of
    assert (
        "keeps no history" in later["inventory_note"] and "not the inventory" not in later["inventory_note"]
    )


APPROX = "Xấp xỉ / Approximate"
NOT_CHECKED_COL = "Điều kiện chưa kiểm tra / Conditions not checked"
ROOT = Path(__file__).resolve().parents[2]


def test_the_monthly_report_shows_approximate_values_and_conditions_not_checked(client: TestClient) -> None:
    body = get(client, "/api/v1/compliance", period="2025-07").json()
    # viettel's 4G downloads in B: 297 of 300 are >= Vdmin 5 Mbit/s, but without a counter the
    # 10 samples at exactly 5 Mbit/s (the threshold's bucket) count as failing: 287 / 300.
    (share,) = [
        r
        for r in body["rows"]
        if (r["operator"], r["commune"], r["indicator"]) == ("viettel", B, "dl_share_min")
    ]
    assert share["value"] == pytest.approx(95.6667, abs=1e-3) == pytest.approx(APPROX_SHARE, abs=1e-3)
    assert share["approximate"] is True and share["status"] == "pass"
    approx = [r for r in body["rows"] if r["approximate"]]
    assert approx == [share]  # every other value here is exact (means, one-sided shares)
    # QCVN 81's access rows: the 500 indoor / 500 outdoor / 500 moving split is not checked.
    access = [r for r in body["rows"] if (r["technology"], r["indicator"]) == ("4G", "access_failure")]
    assert access and all(
        r["not_checked"] == ["the 1,500 samples split 500 indoor, 500 outdoor fixed, 500 moving"]
        for r in access
    )
    with_conditions = [r for r in body["rows"] if r["not_checked"]]

    page = get(client, "/api/v1/compliance/report", month="2025-07").text
    # The mark beside the value, its meaning in the legend with the count.
    assert page.count("data-approximate='true'") == 1
    assert page.count("data-approximate='false'") == len(body["rows"]) - 1
    cell = re.search(r"<td class='num' data-approximate='true'>(.*?)</td>", page)
    assert cell and cell.group(1).startswith("≈ 95.667<br>") and "xấp xỉ / approximate" in cell.group(1)
    assert "≈ Xấp xỉ / Approximate</span></td>" in page and "a lower bound" in page
    assert f" — 1 / {len(body['rows'])}</td>" in page
    # The conditions not checked on each row, Vietnamese first with the English beside.
    assert len(re.findall(r"data-not-checked='[1-9]'", page)) == len(with_conditions)
    assert page.count("data-not-checked='0'") == len(body["rows"]) - len(with_conditions)
    assert (
        "<li>1.500 mẫu chia 500 trong nhà, 500 ngoài trời cố định, 500 di động / the 1,500 samples split"
        " 500 indoor, 500 outdoor fixed, 500 moving</li>"
    ) in page
    assert (
        "<li>đo tới máy chủ đo kiểm theo quy chuẩn / measured to the regulation&#x27;s test server</li>"
        in page
    )
    assert "Chưa kiểm tra / Not checked" in page

    text = get(client, "/api/v1/compliance/report", month="2025-07", format="csv").text.lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(body["rows"])
    for api_row, csv_row in zip(body["rows"], rows, strict=True):  # the same order, row by row
        assert csv_row[APPROX] == (APPROX if api_row["approximate"] else "Không / No")
        want = "; ".join(f"{NOT_CHECKED_VI[c]} / {c}" for c in api_row["not_checked"])
        assert csv_row[NOT_CHECKED_COL] == want
    (marked,) = [r for r in rows if r[APPROX] == APPROX]
    assert marked["Giá trị đo / Measured"] == str(share["value"])  # the CSV keeps the number itself


def test_every_condition_not_checked_has_its_vietnamese_on_report_and_page() -> None:
    conditions = {
        c
        for f in (ROOT / "compliance/standards/profiles").glob("*.yaml")
        for ind in yaml.safe_load(f.read_text(encoding="utf-8"))["indicators"]
        for c in ind.get("not_checked", [])
    }
    assert conditions and conditions <= set(NOT_CHECKED_VI), conditions - set(NOT_CHECKED_VI)
    # The page keeps the same table (it reads only the API, which gives the English).
    js = (ROOT / "api/web/app.js").read_text(encoding="utf-8")
    for en, vi in NOT_CHECKED_VI.items():
        assert f'"{en}"' in js and f'"{vi}"' in js, en


def test_share_counters_are_not_metrics_qos_answers_for(tmp_path: Path) -> None:
    """Ingest keeps `dl_bps>=5000000.0` as a series of 0/1 flags; /qos neither lists it among the
    known metrics nor answers for it as if it were a measurement."""
    store = SQLiteStore(tmp_path / "netqos.db")
    store.register_probes([ProbeInfo("p-c", A, f"{A}-v01", "s-c", "viettel", "4G")])
    pipeline = IngestPipeline(
        store, IngestSettings(), share_counters=ShareCounters({("dl_bps", "", ""): [5e6]})
    )
    pipeline.accept(
        validate_batch(
            {
                "v": 1,
                "probe_id": "p-c",
                "seq": 0,
                "measurements": [
                    {
                        "ts": T0 + i * 1000,
                        "target": "speedtest.example.vn",
                        "technology": "4G",
                        "operator": "viettel",
                        "metrics": {"dl_bps": v},
                    }
                    for i, v in enumerate([4e6, 5e6, 6e6])
                ],
            }
        )
    )
    asyncio.run(pipeline.flush())
    assert store.metrics() == {"dl_bps", "dl_bps>=5000000.0"}  # the counter series is there
    with TestClient(create_app(settings_with_keys(), store)) as c:
        frm, to = str(T0 // 1000), str(T0 // 1000 + 3600)
        r = c.get(
            "/api/v1/qos",
            params={"metric": "dl_bps>=5000000.0", "stat": "mean", "from": frm, "to": to},
            headers=auth(VIEWER),
        )
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "'dl_bps>=5000000.0' is unknown" in detail and ">=" not in detail.partition("known:")[2]
        assert "dl_bps" in detail.partition("known:")[2]
        # The measurement itself answers: 3 samples, mean 5 Mbit/s.
        ok = get(
            c, "/api/v1/qos", metric="dl_bps", stat="mean", **{"from": frm, "to": to, "step": "1h"}
        ).json()
        points = [p for s in ok["series"] for p in s["points"] if p["count"]]
        assert [(p["count"], p["value"]) for p in points] == [(3, pytest.approx(5e6))]
    store.close()
