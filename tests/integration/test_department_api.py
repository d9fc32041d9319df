"""Compliance, KPIs, reports, units, roles, audit and exports over a store seeded by hand.

Every expected number is worked out in tests/department_data.py's comments and here.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from collector.store.sqlite import SQLiteStore
from tests.department_data import ADMIN, VIETTEL, VIEWER, VNPT, A, B, auth, seed, settings_with_keys


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store = SQLiteStore(tmp_path_factory.mktemp("dept") / "netqos.db")
    seed(store)
    with TestClient(create_app(settings_with_keys(), store)) as c:
        yield c
    store.close()


def rows_of(body: dict[str, Any]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {(r["operator"], r["commune"], r["technology"], r["indicator"]): r for r in body["rows"]}


def test_compliance_4g_worked_by_hand(client: TestClient) -> None:
    r = client.get(
        "/api/v1/compliance", params={"period": "2025-07", "technology": "4G"}, headers=auth(VIEWER)
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["timezone"] == "UTC+07:00" and body["profiles"][0]["id"] == "qcvn-81-2019"
    rows = rows_of(body)
    v = {k[3]: x for k, x in rows.items() if k[:3] == ("viettel", A, "4G")}
    # dl: (285 x 20 + 15 x 4) / 300 = 19.2 Mbit/s >= Vd 15 (the 1 Mbit/s sample on 30 June is outside July)
    assert v["dl_mean"]["value"] == pytest.approx(19.2) and v["dl_mean"]["limit"] == 15
    assert v["dl_mean"]["status"] == "pass" and v["dl_mean"]["sample_count"] == 300
    # 285 of 300 samples >= Vdmin 5 Mbit/s = 95 %: exactly at the limit passes
    assert v["dl_share_min"]["value"] == pytest.approx(95.0) and v["dl_share_min"]["status"] == "pass"
    assert v["dl_share_min"]["threshold"] == 5e6
    # ul 10 Mbit/s = Vu exactly; 75/1500 failures = 5 % exactly; 5,000 ms = 5 s exactly: all at the limit
    assert (v["ul_mean"]["value"], v["ul_mean"]["status"]) == (pytest.approx(10.0), "pass")
    assert (v["access_failure"]["value"], v["access_failure"]["status"]) == (pytest.approx(5.0), "pass")
    assert (v["access_time"]["value"], v["access_time"]["status"]) == (pytest.approx(5.0), "pass")
    # 200 RSRP samples, all >= -115 dBm, but the profile wants 100,000: insufficient, value still shown
    ra = v["radio_availability"]
    assert ra["status"] == "insufficient_data" and ra["insufficient_data"] is True
    assert (ra["value"], ra["sample_count"], ra["min_samples"]) == (100.0, 200, 100_000)
    assert ra["unverified"] is True and ra["passed"] is None
    assert v["dropped_transfer"]["status"] == "not_measured"

    n = {k[3]: x for k, x in rows.items() if k[:3] == ("vnpt", A, "4G")}
    # 299 dl samples: one short of 300
    assert n["dl_mean"]["status"] == "insufficient_data" and n["dl_mean"]["sample_count"] == 299
    assert n["dl_mean"]["limit"] == 16  # VNPT declared 16 Mbit/s
    # 7.9 < Vu 8 fails; 76/1500 = 5.07 % > 5 % fails
    assert (n["ul_mean"]["status"], n["ul_mean"]["limit"]) == ("fail", 8)
    assert n["access_failure"]["value"] == pytest.approx(100 * 76 / 1500)
    assert n["access_failure"]["status"] == "fail" and n["access_failure"]["passed"] is False
    # viettel in B: registered, no data: every measured indicator is insufficient with 0 samples
    b = [x for k, x in rows.items() if k[:3] == ("viettel", B, "4G") and x["status"] != "not_measured"]
    assert b and all(x["status"] == "insufficient_data" and x["sample_count"] == 0 for x in b)
    groups = {(g["operator"], g["commune"]): g for g in body["groups"]}
    assert groups[("vnpt", A)]["status"] == "fail" and groups[("vnpt", A)]["failed"] == 2
    assert groups[("viettel", A)]["status"] == "insufficient_data"  # only radio availability lacks data
    assert groups[("viettel", A)]["commune_name"] == "Xã Triệu Sơn"


def test_compliance_5g_and_ftth(client: TestClient) -> None:
    body = client.get("/api/v1/compliance", params={"period": "2025-Q3"}, headers=auth(VIEWER)).json()
    rows = rows_of(body)
    g5 = {k[3]: x for k, x in rows.items() if k[:3] == ("viettel", A, "5G")}
    assert (g5["dl_mean"]["value"], g5["dl_mean"]["status"]) == (pytest.approx(100.0), "pass")  # at 100
    assert g5["ul_mean"]["status"] == "fail"  # 29.9 < 30
    assert g5["latency_mean"]["status"] == "pass"  # 50 ms = 50
    assert g5["access_failure"]["status"] == "insufficient_data"
    f = {k[3]: x for k, x in rows.items() if k[:3] == ("vnpt", A, "FTTH")}
    # 0.8 x the contracted 100 Mbit/s = 80: 80 passes
    assert (f["dl_mean"]["limit"], f["dl_mean"]["status"]) == (pytest.approx(80.0), "pass")
    assert f["ul_mean"]["status"] == "insufficient_data" and f["ul_mean"]["sample_count"] == 999
    assert f["service_availability"]["status"] == "not_measured"
    # A quarter with no samples (and a year before the regulations exist for 5G) still answers
    empty = client.get("/api/v1/compliance", params={"period": "2025-Q1"}, headers=auth(VIEWER)).json()
    assert all(r["sample_count"] == 0 for r in empty["rows"])


def test_policy_profile_uses_medians(client: TestClient) -> None:
    r = client.get(
        "/api/v1/compliance",
        params={"period": "2025-07", "profile": "decision-1110-2024", "commune": A},
        headers=auth(VIEWER),
    )
    rows = rows_of(r.json())
    # viettel 4G: the median of 285 x 20 and 15 x 4 is 20 (within the sketch's 1 %), < 40
    med = rows[("viettel", A, "4G", "dl_median")]
    assert med["stat"] == "median" and med["value"] == pytest.approx(20.0, rel=0.01)
    assert med["status"] == "fail" and med["limit"] == 40
    assert rows[("viettel", A, "5G", "dl_median")]["status"] == "pass"  # 100 >= 100


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"period": "2025-13"}, "period"),
        ({"period": "2025-07", "technology": "6G"}, "no regulation profile covers technology '6G'"),
        ({"period": "2025-07", "profile": "qcvn-99"}, "profile 'qcvn-99' unknown"),
        ({}, "period: Field required"),
    ],
)
def test_compliance_bad_queries(client: TestClient, params: dict[str, str], fragment: str) -> None:
    r = client.get("/api/v1/compliance", params=params, headers=auth(VIEWER))
    assert r.status_code == 422 and fragment in r.json()["detail"], r.text


def upload(client: TestClient, token: str, body: str | bytes, **params: Any) -> Any:
    ctype = "application/json" if params.pop("json", False) else "text/csv"
    return client.post(
        "/api/v1/reports", params=params, content=body, headers={**auth(token), "Content-Type": ctype}
    )


def test_reports_and_kpis_worked_by_hand(client: TestClient) -> None:
    pop = (
        "commune,population,adult_population,adults_with_smartphone,households\n"
        ",3700000,2600000,2080000,1000000\n"
    )
    assert upload(client, ADMIN, pop, kind="population", year=2025).status_code == 201
    # viettel's first report, then a corrected second version: the KPIs read version 2.
    header = "commune,mobile_subscriptions,mobile_broadband_subscriptions,"
    header += "smartphone_subscriptions,ftth_households\n"
    v1 = f"{header}{A},1,1,1,1\n"
    r1 = upload(client, VIETTEL, v1, kind="operator_subscribers", year=2025)
    assert r1.status_code == 201 and r1.json()["version"] == 1 and r1.json()["operator"] == "viettel"
    v2 = (
        "commune,mobile_subscriptions,mobile_broadband_subscriptions,smartphone_subscriptions,ftth_households\n"
        f"{A},1000000,700000,800000,400000\n"
        f"{B},500000,300000,350000,200000\n"
    )
    r2 = upload(client, VIETTEL, v2, kind="operator_subscribers", year=2025, note="corrected")
    assert r2.status_code == 201 and r2.json()["version"] == 2 and len(r2.json()["values"]) == 8
    vnpt = json.dumps(
        [
            {
                "commune": "",
                "mobile_subscriptions": 1000000,
                "mobile_broadband_subscriptions": 900000,
                "smartphone_subscriptions": 850000,
                "ftth_households": 150000,
            }
        ]
    )
    r3 = upload(client, ADMIN, vnpt, kind="operator_subscribers", year=2025, operator="vnpt", json=True)
    assert r3.status_code == 201 and r3.json()["format"] == "json", r3.text
    ent = "commune,enterprises,enterprises_on_platforms\n,2000,999\n"
    assert upload(client, ADMIN, ent, kind="enterprise_survey", year=2025).status_code == 201

    body = client.get("/api/v1/kpi", params={"year": 2025}, headers=auth(VIEWER)).json()
    k = {i["number"]: i for i in body["indicators"]}
    assert len(k) == 10 and [k[n]["target"] for n in range(1, 11)] == [
        70,
        80,
        80,
        100,
        15,
        75,
        100,
        100,
        100,
        50,
    ]
    # 1: 100 x (700k + 300k [viettel v2] + 900k [vnpt]) / 3.7M
    assert k[1]["value"] == pytest.approx(100 * 1_900_000 / 3_700_000) and k[1]["status"] == "not_met"
    assert {x["version"] for x in k[1]["inputs"]["reports"] if x["operator"] == "viettel"} == {2}
    # 2: (800k + 350k + 850k) / (1.5M + 1.0M) = 80 % exactly: met
    assert k[2]["value"] == pytest.approx(80.0) and k[2]["status"] == "met"
    # 3: 2.08M / 2.6M = 80 %: met; 6: (400k + 200k + 150k) / 1M = 75 %: met
    assert (k[3]["value"], k[3]["status"]) == (pytest.approx(80.0), "met")
    assert (k[6]["value"], k[6]["status"]) == (pytest.approx(75.0), "met")
    # 4 (coverage, not QCVN speeds): A-v01 viettel 4G dl mean ~19 Mbit/s >= 2 over 300 samples, RSRP
    # -90 >= -115 dBm; A-v02 vnpt 4G dl 20 Mbit/s over 299 samples (>= 30): both measured. B-v01's
    # probe sent nothing and its mobifone BTS is shown, not counted: 2 of 3 villages.
    cov = k[4]["coverage"]
    assert k[4]["value"] == pytest.approx(200 / 3) and (cov["measured"], cov["declared"]) == (2, 0)
    assert cov["villages_with_neither"] == [f"{B}-v01"]
    by = {v["village"]: v for v in cov["by_village"]}
    assert by[f"{A}-v01"]["measured"] == ["viettel 4G", "viettel 5G"] and by[f"{B}-v01"]["other_equipment"]
    # 7: A-v02 vnpt FTTH probe, dl 80 Mbit/s over 1000 samples; B-v01 has olt-1: 2 of 3 (A-v01 neither)
    assert k[7]["value"] == pytest.approx(200 / 3)
    assert k[7]["coverage"]["villages_with_neither"] == [f"{A}-v01"] and k[7]["coverage"]["inventory"] == 1
    # 5: BTS sites S1 (viettel + vnpt), S2, S3: one of three shared; the router at S2 is not a BTS
    assert k[5]["value"] == pytest.approx(100 / 3) and k[5]["status"] == "met"
    assert k[5]["inputs"]["shared"] == {"S1": ["viettel", "vnpt"]}
    # 8, 9: no agency report: no value, and it says so; 10: 999 / 2000 = 49.95 % < 50
    assert k[8]["value"] is None and k[8]["status"] == "no_data"
    assert k[8]["missing"] == ["no agency_platforms report for 2025"]
    assert (k[10]["value"], k[10]["status"]) == (pytest.approx(49.95), "not_met")
    assert all(i["formula"] and i["source"] for i in body["indicators"])
    # The KPIs combine every operator's data: not for an operator key
    assert client.get("/api/v1/kpi", headers=auth(VIETTEL)).status_code == 403


def test_report_errors_name_their_lines_and_store_nothing(client: TestClient) -> None:
    before = client.get("/api/v1/reports", headers=auth(ADMIN)).json()["total"]
    bad = (
        "commune,mobile_subscriptions,smartphone_subscriptions\n"
        f"{A},100,50\n"
        f"{B},lots,5\n"
        "99999,10,5\n"
        "\n"
        f"{A},10,20\n"
    )
    r = upload(client, VIETTEL, bad, kind="operator_subscribers", year=2025)
    assert r.status_code == 422
    errs = [(e["line"], e["column"]) for e in r.json()["errors"]]
    # line 3: not a number; line 4: unknown commune; line 6 (after a blank line): A again, and
    # 20 smartphones > 10 subscriptions
    assert errs == [
        (3, "mobile_subscriptions"),
        (4, "commune"),
        (6, "commune"),
        (6, "smartphone_subscriptions"),
    ]
    assert r.json()["errors_total"] == 4 and "nothing stored" in r.json()["detail"]
    js = '[\n  {"commune": "", "population": 10},\n  {"commune": "", "population": -1}\n]'
    r = upload(client, ADMIN, js, kind="population", year=2025, json=True)
    assert r.status_code == 422
    assert [(e["line"], e["column"]) for e in r.json()["errors"]] == [(3, "commune"), (3, "population")]
    r = upload(client, ADMIN, "commune,district\n,1\n", kind="population", year=2025)
    assert r.status_code == 422 and r.json()["errors"][0]["column"] == "district"
    r = upload(client, ADMIN, b"\xff\xfe", kind="population", year=2025)
    assert r.status_code == 422 and "UTF-8" in r.json()["detail"]
    assert client.get("/api/v1/reports", headers=auth(ADMIN)).json()["total"] == before


def test_roles_and_operator_scope(client: TestClient) -> None:
    assert client.get("/api/v1/compliance", params={"period": "2025-07"}).status_code == 401
    r = client.get("/api/v1/probes", headers=auth("not-a-key"))
    assert r.status_code == 401 and r.json()["detail"] == "invalid bearer token"
    # viewer: reads everything, writes nothing
    r = upload(client, VIEWER, "commune,population\n,1\n", kind="population", year=2025)
    assert r.status_code == 403 and "needs operator or admin" in r.json()["detail"]
    # operator keys: their own data only
    probes = client.get("/api/v1/probes", headers=auth(VIETTEL)).json()["probes"]
    assert probes and {p["operator"] for p in probes} == {"viettel"}
    r = client.get("/api/v1/probes", params={"operator": "vnpt"}, headers=auth(VIETTEL))
    assert r.status_code == 403 and "may read only operator 'viettel'" in r.json()["detail"]
    assert client.get("/api/v1/probes/p-a-vnp-4g", headers=auth(VIETTEL)).status_code == 404
    assert client.get("/api/v1/probes/p-a-vnp-4g", headers=auth(VNPT)).status_code == 200
    assert {d["operator"] for d in client.get("/api/v1/devices", headers=auth(VNPT)).json()["devices"]} == {
        "vnpt"
    }
    rows = client.get("/api/v1/compliance", params={"period": "2025-07"}, headers=auth(VNPT)).json()["rows"]
    assert rows and {x["operator"] for x in rows} == {"vnpt"}
    qos = client.get(
        "/api/v1/qos",
        params={
            "metric": "dl_bps",
            "group_by": "operator",
            "from": "2025-06-30T18:00:00Z",
            "to": "2025-07-01",
        },
        headers=auth(VIETTEL),
    ).json()
    assert [s["labels"]["operator"] for s in qos["series"]] == ["viettel"]
    # an operator uploads its own operator's reports only, and no department report
    r = upload(
        client,
        VIETTEL,
        "commune,mobile_subscriptions\n,5\n",
        kind="operator_subscribers",
        year=2024,
        operator="vnpt",
    )
    assert r.status_code == 403
    r = upload(client, VIETTEL, "commune,population\n,5\n", kind="population", year=2024)
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    # and sees only its own reports
    assert all(
        x["operator"] == "viettel"
        for x in client.get("/api/v1/reports", headers=auth(VIETTEL)).json()["reports"]
    )
    # admin-only things
    assert client.get("/api/v1/audit", headers=auth(VIEWER)).status_code == 403
    r = client.post("/api/v1/units/communes", content=b"code,name,type,lat,lon\n", headers=auth(VIETTEL))
    assert r.status_code == 403


def test_writes_are_audited_and_secrets_never_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = upload(client, VNPT, "commune,mobile_subscriptions\n,7\n", kind="operator_subscribers", year=2023)
    assert r.status_code == 201
    entries = client.get("/api/v1/audit", params={"action": "report.upload"}, headers=auth(ADMIN)).json()[
        "entries"
    ]
    last = entries[0]
    assert (last["actor"], last["role"], last["operator"]) == ("vnpt-noc", "operator", "vnpt")
    assert last["target"] == f"report/{r.json()['report_id']}" and last["detail"]["year"] == 2023
    assert last["ts_ms"] > 0 and last["detail"]["sha256"] == r.json()["sha256"]
    everything = json.dumps(entries) + caplog.text
    for secret in (ADMIN, VIEWER, VIETTEL, VNPT):
        assert secret not in everything


def test_units_import_all_or_nothing(client: TestClient) -> None:
    h = {**auth(ADMIN), "Content-Type": "text/csv"}
    bad = "code,name,type,lat,lon,district\n16500,Xã Mới,xa,19.9,105.5,Thọ Xuân\n"
    r = client.post("/api/v1/units/communes", content=bad.encode(), headers=h)
    assert r.status_code == 422 and "districts no longer exist" in r.json()["errors"][0]["message"]
    bad = "code,name,type,lat,lon\n16500,Xã Mới,huyen,19.9,105.5\n16501,Phường Mới,phường,105.5,19.9\n"
    errs = client.post("/api/v1/units/communes", content=bad.encode(), headers=h).json()["errors"]
    assert [(e["line"], e["column"]) for e in errs] == [(2, "type"), (3, "lat"), (3, "lon")]
    ok = "code,name,type,lat,lon\n16500,Xã Mới,xã,19.9,105.5\n"
    r = client.post("/api/v1/units/communes", content=ok.encode(), headers=h)
    assert r.status_code == 200 and r.json()["imported"] == 1
    r = client.post(
        "/api/v1/units/villages", content=b"code,name,commune\n16500-v01,Thon 1,16500\nx1,X,nope\n", headers=h
    )
    assert r.status_code == 422 and r.json()["errors"][0]["line"] == 3
    assert (
        client.get("/api/v1/villages", params={"commune": "16500"}, headers=auth(VIEWER)).json()["total"] == 0
    )
    communes = {c["code"]: c for c in client.get("/api/v1/communes", headers=auth(VIEWER)).json()["communes"]}
    assert communes["16500"]["type"] == "xa" and communes[A]["villages"] == 2


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


@pytest.mark.parametrize(
    ("path", "params", "column"),
    [
        ("/api/v1/probes", {}, "probe_id"),
        ("/api/v1/devices", {}, "id"),
        (
            "/api/v1/qos",
            {"metric": "dl_bps", "group_by": "operator", "from": "2025-06-30T18:00:00Z", "to": "2025-07-01"},
            "value",
        ),
        ("/api/v1/compliance", {"period": "2025-07"}, "status"),
        ("/api/v1/kpi", {"year": 2025}, "target"),
        ("/api/v1/reports", {}, "report_id"),
        ("/api/v1/communes", {}, "code"),
        ("/api/v1/villages", {}, "commune"),
        ("/api/v1/audit", {}, "actor"),
    ],
)
def test_every_list_exports_csv(client: TestClient, path: str, params: dict[str, Any], column: str) -> None:
    r = client.get(path, params={**params, "format": "csv"}, headers=auth(ADMIN))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = csv_rows(r.text)
    assert rows and column in rows[0]


def test_csv_neutralises_formulas() -> None:
    from compliance.tables import csv_text

    text = csv_text([{"a": "=HYPERLINK(1)", "b": "-95.5", "c": "@x"}], ["a", "b", "c"])
    assert text.splitlines()[1] == "'=HYPERLINK(1),-95.5,'@x"


def test_monthly_report_html_and_csv(client: TestClient, tmp_path: Path) -> None:
    r = client.get("/api/v1/compliance/report", params={"month": "2025-07"}, headers=auth(VIEWER))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for label in ("Báo cáo tuân thủ", "QoS compliance report", "Doanh nghiệp", "Operator", "Không đạt / Fail",
                  "Xã Triệu Sơn", "QCVN 81:2019/BTTTT", "@media print"):  # fmt: skip
        assert label in page
    r = client.get(
        "/api/v1/compliance/report", params={"month": "2025-07", "format": "csv"}, headers=auth(VNPT)
    )
    rows = csv_rows(r.text)
    assert rows and {x["Doanh nghiệp / Operator"] for x in rows} == {"vnpt"}
    assert "Đạt / Pass" in {x["Kết quả / Result"] for x in rows}
    assert (
        client.get("/api/v1/compliance/report", params={"month": "2025-Q3"}, headers=auth(VIEWER)).status_code
        == 422
    )


def test_upload_rate_limit_and_size(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "rl.db")
    s = settings_with_keys()
    s.api.upload_burst = 2
    s.api.upload_rate_per_min = 1
    s.api.max_upload_bytes = 1024
    with TestClient(create_app(s, store)) as c:
        body = "commune,population\n,1\n"
        codes = [upload(c, ADMIN, body, kind="population", year=2025).status_code for _ in range(3)]
        assert codes == [201, 201, 429]
        r = upload(c, ADMIN, body, kind="population", year=2025)
        assert int(r.headers["Retry-After"]) >= 1 and "too many uploads" in r.json()["detail"]
        # another key has its own bucket; an oversized body is refused before it is read whole
        r = upload(c, VIETTEL, "x" * 2000, kind="operator_subscribers", year=2025)
        assert r.status_code == 413
    store.close()


def test_check_config_masks_key_tokens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from netqos.cli import main

    p = tmp_path / "c.yaml"
    p.write_text(
        "api:\n  keys:\n    - {name: ops, role: operator, operator: viettel, token: super-secret-token-123}\n"
        "    - {name: dept, role: admin, token_sha256: " + "ab" * 32 + "}\n",
        encoding="utf-8",
    )
    assert main(["check-config", str(p)]) == 0
    out = capsys.readouterr().out
    assert "super-secret-token-123" not in out and "name: ops" in out
    p.write_text("api:\n  keys:\n    - {name: ops, role: operator, token: super-secret-token-123}\n")
    assert main(["check-config", str(p)]) == 2
    assert "needs `operator`" in capsys.readouterr().err


def test_https_ingest_is_rate_limited_per_probe(tmp_path: Path) -> None:
    import time as _time

    from api.routers.ingest import token_sha256
    from collector.ingest_settings import IngestSettings
    from collector.model import ProbeInfo
    from collector.pipeline import IngestPipeline

    store = SQLiteStore(tmp_path / "ingest.db")
    store.register_probes([ProbeInfo("p-1", commune=A), ProbeInfo("p-2", commune=A)])
    store.set_probe_token_sha256("p-1", token_sha256("probe-one-secret"))
    store.set_probe_token_sha256("p-2", token_sha256("probe-two-secret"))
    s = settings_with_keys()
    s.api.ingest_burst = 2
    s.api.ingest_rate_per_s = 0.01
    app = create_app(s, store, pipeline=IngestPipeline(store, IngestSettings()))

    def body(probe: str, seq: int) -> dict[str, Any]:
        m = {"ts": int(_time.time() * 1000) - 1000, "target": "t", "technology": "4G", "operator": "vnpt"}
        return {"v": 1, "probe_id": probe, "seq": seq, "measurements": [{**m, "metrics": {"rtt_ms": 9.0}}]}

    with TestClient(app) as c:
        one = {"Authorization": "Bearer probe-one-secret"}
        codes = [c.post("/api/v1/ingest", json=body("p-1", i), headers=one).status_code for i in range(3)]
        assert codes == [200, 200, 429]
        # another probe has its own budget; an API key is not a probe token
        r = c.post(
            "/api/v1/ingest", json=body("p-2", 0), headers={"Authorization": "Bearer probe-two-secret"}
        )
        assert r.status_code == 200
        assert c.post("/api/v1/ingest", json=body("p-2", 1), headers=auth(ADMIN)).status_code == 401
    assert store.total_count() == 3
    store.close()
