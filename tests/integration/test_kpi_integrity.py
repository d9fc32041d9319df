"""The plan's KPIs refuse figures that do not add up: mismatched coverage, blank fields, shares
above 100 %, unknown operators, withdrawn reports; and coverage KPIs that mean coverage.

A small province of three communes (A, B, C) and, for the coverage KPIs, four villages. The
registry is viettel and vnpt. Every expected value is worked out by hand in the comments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from collector.ingest_settings import IngestSettings
from collector.inventory import Device
from collector.inventory.units import CommuneUnit, VillageUnit
from collector.model import ProbeInfo
from collector.mqtt.schema import validate_batch
from collector.pipeline import IngestPipeline
from collector.store.devices import DeviceRepo
from collector.store.settings import StoreSettings
from collector.store.store import Store, open_store
from collector.store.units import UnitRepo
from tests.department_data import ADMIN, JULY_START_MS, VIETTEL, VIEWER, auth, settings_with_keys

A, B, C = "16021", "15301", "16045"
SUBS = (
    "commune,mobile_subscriptions,mobile_broadband_subscriptions,smartphone_subscriptions,ftth_households\n"
)
POP = "commune,population,adult_population,adults_with_smartphone,households\n"


def _units(store: Store) -> None:
    with store.transaction() as conn:
        UnitRepo.upsert_communes(
            conn,
            [
                CommuneUnit(A, "Xã Triệu Sơn", "xa", 19.8, 105.6),
                CommuneUnit(B, "Xã Thọ Xuân", "xa", 19.9, 105.5),
                CommuneUnit(C, "Xã Hà Long", "xa", 20.1, 105.7),
            ],
        )
        UnitRepo.upsert_villages(
            conn,
            [
                VillageUnit(f"{A}-v01", "Thôn 1", A),
                VillageUnit(f"{A}-v02", "Thôn 2", A),
                VillageUnit(f"{B}-v01", "Thôn 1", B),
                VillageUnit(f"{C}-v01", "Thôn 1", C),
            ],
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(StoreSettings(sqlite_path=tmp_path / "netqos.db"))
    _units(s)
    yield s
    s.close()


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings_with_keys(), store)) as c:  # registry: viettel, vnpt
        yield c


def upload(client: TestClient, body: str, token: str = ADMIN, **params: Any) -> Any:
    return client.post(
        "/api/v1/reports",
        params={"year": 2025, **params},
        content=body,
        headers={**auth(token), "Content-Type": "text/csv"},
    )


def kpis(client: TestClient) -> dict[int, dict[str, Any]]:
    body = client.get("/api/v1/kpi", params={"year": 2025}, headers=auth(VIEWER)).json()
    return {k["number"]: k for k in body["indicators"]}


def ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_a_population_of_two_communes_against_province_totals_is_incomplete(client: TestClient) -> None:
    # Both operators give province totals: 1,000,000 + 900,000 mobile broadband subscriptions.
    ok(
        upload(
            client, SUBS + ",1000000,1000000,800000,400000\n", kind="operator_subscribers", operator="viettel"
        )
    )
    ok(upload(client, SUBS + ",1000000,900000,800000,350000\n", kind="operator_subscribers", operator="vnpt"))
    # The population report covers A and B only (100,000 + 36,800 inhabitants): the old answer was
    # 100 x 1.9M / 136,800 = 1,389 per 100 inhabitants, "met". Now: incomplete, no value.
    ok(
        upload(
            client, POP + f"{A},100000,70000,56000,25000\n{B},36800,26000,20800,10000\n", kind="population"
        )
    )
    k = kpis(client)
    assert (k[1]["value"], k[1]["status"]) == (None, "incomplete")
    assert k[1]["missing"] == [
        f"the department's population v1 gives population for 2 of 3 communes (not for {C})"
    ]
    assert k[1]["coverage"]["numerator"]["communes"] == "province"
    assert k[1]["coverage"]["denominator"]["communes"] == sorted([A, B])
    assert k[1]["coverage"]["numerator"]["operators"] == ["viettel", "vnpt"]
    # KPI 3 reads population alone, both sides over A and B: still not the province.
    assert k[3]["status"] == "incomplete" and k[3]["value"] is None
    # The same report with C (3,563,200 inhabitants): 3.7M in all; 100 x 1.9M / 3.7M = 51.35 per 100.
    pop = (
        POP
        + f"{A},100000,70000,56000,25000\n{B},36800,26000,20800,10000\n{C},3563200,2504000,2003200,965000\n"
    )
    ok(upload(client, pop, kind="population"))
    k = kpis(client)
    assert k[1]["value"] == pytest.approx(100 * 1_900_000 / 3_700_000) and k[1]["status"] == "not_met"
    assert k[1]["missing"] == [] and k[1]["coverage"]["denominator"]["communes"] == "province"
    # 3: adults with a smartphone (56,000 + 20,800 + 2,003,200) / adults (70,000 + 26,000 + 2,504,000)
    #    = 2,080,000 / 2,600,000 = 80 %: met, exactly at the target
    assert k[3]["value"] == pytest.approx(80.0) and k[3]["status"] == "met"
    # Every KPI names the report versions it read: population v2, each operator's v1
    used = {(r["kind"], r["operator"], r["version"]) for r in k[1]["reports"]}
    assert used == {
        ("operator_subscribers", "viettel", 1),
        ("operator_subscribers", "vnpt", 1),
        ("population", "", 2),
    }


def test_a_blank_field_or_a_missing_operator_makes_the_ratio_incomplete(client: TestClient) -> None:
    # viettel leaves smartphone_subscriptions blank for commune C: its 145 % KPI 2 of old came from
    # summing smartphones of some communes over subscriptions of all.
    viettel = SUBS + f"{A},400000,300000,350000,1\n{B},300000,200000,250000,1\n{C},300000,200000,,1\n"
    ok(upload(client, viettel, kind="operator_subscribers", operator="viettel"))
    k = kpis(client)
    assert (k[2]["value"], k[2]["status"]) == (None, "incomplete")
    assert k[2]["missing"] == [
        "no operator_subscribers report of vnpt for 2025",
        f"viettel's operator_subscribers v1 gives smartphone_subscriptions for 2 of 3 communes (not for {C})",
    ]
    # vnpt files without the smartphone column at all: "leaves it blank"
    ok(
        upload(
            client,
            SUBS.replace(",smartphone_subscriptions", "") + ",500000,400000,1\n",
            kind="operator_subscribers",
            operator="vnpt",
        )
    )
    k = kpis(client)
    assert "vnpt's operator_subscribers v1 leaves smartphone_subscriptions blank" in k[2]["missing"]
    assert k[2]["status"] == "incomplete"
    # Both complete: (350k + 250k + 200k + 300k) / (1.0M + 0.5M) ... written out:
    # smartphones 350,000 + 250,000 + 200,000 (viettel) + 400,000 (vnpt) = 1,200,000;
    # subscriptions 400,000 + 300,000 + 300,000 + 500,000 = 1,500,000 -> 80 % exactly: met
    ok(
        upload(
            client,
            viettel.replace(f"{C},300000,200000,,1", f"{C},300000,200000,200000,1"),
            kind="operator_subscribers",
            operator="viettel",
        )
    )
    vnpt = SUBS + ",500000,400000,400000,1\n"
    ok(upload(client, vnpt, kind="operator_subscribers", operator="vnpt"))
    k = kpis(client)
    assert k[2]["value"] == pytest.approx(80.0) and k[2]["status"] == "met" and k[2]["missing"] == []


def test_a_share_above_100_percent_is_inconsistent(client: TestClient) -> None:
    pop = POP + ",3700000,2600000,2080000,1000\n"  # 1,000 households
    ok(upload(client, pop, kind="population"))
    # FTTH households 600 + 400 = 1,000 of 1,000: 100 % exactly is a share (met, target 75)
    ok(upload(client, SUBS + ",10,10,10,600\n", kind="operator_subscribers", operator="viettel"))
    ok(upload(client, SUBS + ",10,10,10,400\n", kind="operator_subscribers", operator="vnpt"))
    k = kpis(client)
    assert (k[6]["value"], k[6]["status"]) == (pytest.approx(100.0), "met")
    # One household more: 1,001 of 1,000 = 100.1 %: refused as inconsistent, never "met"
    ok(upload(client, SUBS + ",10,10,10,401\n", kind="operator_subscribers", operator="vnpt"))
    k = kpis(client)
    assert (k[6]["value"], k[6]["status"]) == (None, "inconsistent")
    assert k[6]["missing"] == [
        "inconsistent: operator_subscribers.ftth_households (1001) is more than population.households (1000),"
        " a share of 100.1 %; a share cannot pass 100 %"
    ]
    # KPI 1 (per 100 inhabitants) is not a share: 100 x 20 / 3.7M is just small
    assert k[1]["status"] == "not_met"


def test_unknown_operators_are_refused_with_the_registry(store: Store, tmp_path: Path) -> None:
    s = settings_with_keys()
    s.kpi.operators = ["viettel", "vnpt", "viettell"]  # an old registry with a typo in it
    with TestClient(create_app(s, store)) as c:
        ok(upload(c, SUBS + ",10,10,10,10\n", kind="operator_subscribers", operator="viettell"))
    with TestClient(create_app(settings_with_keys(), store)) as c:
        r = upload(c, SUBS + ",10,10,10,10\n", kind="operator_subscribers", operator="viettell")
        assert r.status_code == 422
        assert (
            r.json()["detail"]
            == "operator 'viettell' is not registered; registered: viettel, vnpt (kpi.operators)"
        )
        # The report filed while 'viettell' was registered is not counted, and the answer says so
        ok(upload(c, SUBS + ",100,50,50,10\n", kind="operator_subscribers", operator="viettel"))
        ok(upload(c, SUBS + ",100,50,30,10\n", kind="operator_subscribers", operator="vnpt"))
        k = kpis(c)
        # (50 + 30) / (100 + 100) = 40 %, not (50 + 30 + 10) / 210
        assert k[2]["value"] == pytest.approx(40.0) and k[2]["status"] == "not_met"
        assert k[2]["missing"] == [
            "viettell's operator_subscribers v1 not counted: 'viettell' is not a registered operator"
        ]


def test_withdrawn_reports_stop_counting_and_are_audited(store_settings: StoreSettings) -> None:
    st = open_store(store_settings)
    _units(st)
    try:
        with TestClient(create_app(settings_with_keys(), st)) as c:
            ok(upload(c, SUBS + ",1000,700,800,1\n", kind="operator_subscribers", operator="vnpt"))
            v1 = ok(upload(c, SUBS + ",1000,700,800,1\n", VIETTEL, kind="operator_subscribers"))
            v2 = ok(upload(c, SUBS + ",1000,700,100,1\n", VIETTEL, kind="operator_subscribers"))
            # v2 in force: (800 + 100) / 2000 = 45 %
            assert kpis(c)[2]["value"] == pytest.approx(45.0)
            # Only an admin withdraws, and needs a reason
            r = c.post(
                f"/api/v1/reports/{v2['report_id']}/withdraw", params={"reason": "x"}, headers=auth(VIETTEL)
            )
            assert r.status_code == 403
            assert (
                c.post(f"/api/v1/reports/{v2['report_id']}/withdraw", headers=auth(ADMIN)).status_code == 422
            )
            assert (
                c.post(
                    "/api/v1/reports/999999/withdraw", params={"reason": "x"}, headers=auth(ADMIN)
                ).status_code
                == 404
            )
            r = c.post(
                f"/api/v1/reports/{v2['report_id']}/withdraw",
                params={"reason": "smartphones typed as 100"},
                headers=auth(ADMIN),
            )
            assert r.status_code == 200, r.text
            w = r.json()
            assert (w["state"], w["replaced_by"], w["withdrawn_by"]) == (
                "withdrawn",
                v1["report_id"],
                "dept-admin",
            )
            # v1 back in force: (800 + 800) / 2000 = 80 %, and the KPI names viettel v1
            k = kpis(c)[2]
            assert k["value"] == pytest.approx(80.0) and k["status"] == "met"
            assert {(r["operator"], r["version"]) for r in k["reports"]} == {("viettel", 1), ("vnpt", 1)}
            listed = {
                r["report_id"]: r for r in c.get("/api/v1/reports", headers=auth(ADMIN)).json()["reports"]
            }
            assert listed[v1["report_id"]]["state"] == "current"
            assert listed[v2["report_id"]]["withdrawn_reason"] == "smartphones typed as 100"
            audit = c.get("/api/v1/audit", params={"action": "report.withdraw"}, headers=auth(ADMIN)).json()
            entries = audit["entries"] if isinstance(audit, dict) else audit
            assert [e["detail"]["reason"] for e in entries] == ["smartphones typed as 100"]
            # Withdrawing v1 too leaves viettel without a report: incomplete, not a vnpt-only figure
            c.post(
                f"/api/v1/reports/{v1['report_id']}/withdraw", params={"reason": "wrong"}, headers=auth(ADMIN)
            )
            k = kpis(c)[2]
            assert (k["value"], k["status"]) == (None, "incomplete")
            assert k["missing"] == ["no operator_subscribers report of viettel for 2025"]
            # A newer upload supersedes: v3 in force, v1 and v2 stay withdrawn
            v3 = ok(upload(c, SUBS + ",1000,700,600,1\n", VIETTEL, kind="operator_subscribers"))
            assert v3["version"] == 3 and kpis(c)[2]["value"] == pytest.approx(70.0)  # (800 + 600) / 2000
    finally:
        st.close()


def test_vietnamese_numbers_in_an_uploaded_report(client: TestClient) -> None:
    # "3.760.000" settles the file as Vietnamese, so "12.000" on the next line is twelve thousand
    pop = POP + f"{A},3.760.000,2.600.000,2.080.000,1.000.000\n{B},12.000,9.000,7.200,3.000\n{C},0,0,0,0\n"
    r = ok(upload(client, pop, kind="population"))
    vals = {(v["commune"], v["field"]): v["value"] for v in r["values"]}
    assert vals[(A, "population")] == 3_760_000 and vals[(B, "population")] == 12_000
    assert vals[(B, "adults_with_smartphone")] == 7_200
    # A file with nothing but "12.000"-like values cannot tell: refused with line and column
    r = upload(client, POP + f"{A},12.000,9.000,7.200,3.000\n", kind="population")
    assert r.status_code == 422
    first = r.json()["errors"][0]
    assert (first["line"], first["column"]) == (2, "population") and "ambiguous" in first["message"]
    # ... unless the upload says how the file writes numbers
    r = ok(upload(client, POP + f"{A},12.000,9.000,7.200,3.000\n", kind="population", number_format="vi"))
    assert {v["field"]: v["value"] for v in r["values"]}["population"] == 12_000
    # "1.234,5" is 1234.5: a decimal, so not a count
    r = upload(client, POP + f'{A},"1.234,5",1,1,1\n', kind="population")
    assert (
        r.status_code == 422
        and r.json()["errors"][0]["message"] == "1234.5: a count must be a whole number >= 0"
    )
    # One file, two ways: refused, naming both places
    r = upload(client, POP + f'{A},3.760.000,1,1,1\n{B},"1,234,567",1,1,1\n', kind="population")
    assert r.status_code == 422
    e = r.json()["errors"][0]
    assert (e["line"], e["column"]) == (3, "population") and "line 2 (population) writes '3.760.000'" in e[
        "message"
    ]


# -- coverage KPIs 4 and 7 -----------------------------------------------------------------------

T0 = JULY_START_MS + 3_600_000


def _measure(store: Store, probes: list[tuple[str, str, str, str, dict[str, list[float]]]]) -> None:
    """(probe id, village, operator, technology, metric -> values) through the real ingest path."""
    store.register_probes(
        ProbeInfo(pid, village.split("-")[0], village, f"site-{pid}", op, tech)
        for pid, village, op, tech, _ in probes
    )
    pipeline = IngestPipeline(store, IngestSettings())
    for seq, (pid, _, op, tech, samples) in enumerate(probes):
        ms = [
            {"ts": T0 + i * 1000, "target": "t", "technology": tech, "operator": op, "metrics": {metric: v}}
            for metric, values in samples.items()
            for i, v in enumerate(values)
        ]
        pipeline.accept(validate_batch({"v": 1, "probe_id": pid, "seq": seq, "measurements": ms}))
    asyncio.run(pipeline.flush())


def test_coverage_measured_declared_and_inventory_side_by_side(store: Store, client: TestClient) -> None:
    v1, v2, v3, v4 = f"{A}-v01", f"{A}-v02", f"{B}-v01", f"{C}-v01"
    _measure(
        store,
        [
            # v1: viettel 4G, 30 downloads at the 2 Mbit/s floor and RSRP at -115 dBm, both exactly: measured
            ("p1", v1, "viettel", "4G", {"dl_bps": [2e6] * 30, "rsrp_dbm": [-115.0] * 30}),
            # v2: vnpt 4G, 30 downloads at 1.99 Mbit/s, just below the floor: not measured
            ("p2", v2, "vnpt", "4G", {"dl_bps": [1.99e6] * 30}),
            # v3: viettel 5G, 29 downloads at 50 Mbit/s: one short of 30, not judged
            ("p3", v3, "viettel", "5G", {"dl_bps": [50e6] * 29}),
            # v4: viettel 4G, fast downloads but RSRP -115.5 dBm, just below -115: not measured
            ("p4", v4, "viettel", "4G", {"dl_bps": [10e6] * 30, "rsrp_dbm": [-115.5] * 30}),
            # FTTH: v2 vnpt probe, 30 downloads at 2 Mbit/s exactly: measured
            ("p5", v2, "vnpt", "FTTH", {"dl_bps": [2e6] * 30}),
        ],
    )
    olt = Device(
        id="olt-1",
        host="127.0.0.1",
        credentials="c",
        operator="vnpt",
        kind="olt",
        site="O1",
        commune=A,
        village=v1,
    )
    bts = Device(
        id="bts-1",
        host="127.0.0.1",
        credentials="c",
        operator="viettel",
        kind="bts",
        site="S1",
        commune=C,
        village=v4,
    )
    DeviceRepo(store).sync_inventory(
        [olt, bts], {"olt-1": "olt", "bts-1": "bts"}, {"olt-1": 60.0, "bts-1": 60.0}
    )
    # vnpt declares 4G/5G in v2; viettel declares FTTH in v3 (and 0 = no in v4)
    cov = "village,mobile_broadband,ftth\n"
    ok(upload(client, cov + f"{v2},1,0\n", kind="operator_coverage", operator="vnpt"))
    ok(upload(client, cov + f"{v3},0,1\n{v4},0,0\n", kind="operator_coverage", operator="viettel"))
    # Flags are 1 or 0, villages must be imported
    r = upload(client, cov + f"{v2},2,0\n{A}-v99,1,1\n", kind="operator_coverage", operator="vnpt")
    assert [(e["line"], e["column"]) for e in r.json()["errors"]] == [(2, "mobile_broadband"), (3, "village")]

    k = kpis(client)
    m = k[4]["coverage"]
    # KPI 4: v1 measured (viettel 4G), v2 declared (vnpt): 2 of 4 = 50 %; v3 and v4 have neither
    assert k[4]["value"] == pytest.approx(50.0) and k[4]["status"] == "not_met"
    assert (m["measured"], m["declared"], m["measured_and_declared"], m["neither"]) == (1, 1, 0, 2)
    assert m["villages_with_neither"] == [v3, v4]
    by = {v["village"]: v for v in m["by_village"]}
    assert by[v1]["measured"] == ["viettel 4G"] and by[v2]["declared"] == ["vnpt"]
    assert by[v2]["measured_below_method"] == ["vnpt 4G: dl_bps mean 1.99e+06 < 2e+06"]
    assert by[v3]["measured_below_method"] == ["viettel 5G: 29 dl_bps (fewer than 30)"]
    assert by[v4]["measured_below_method"] == ["viettel 4G: rsrp_dbm mean -115.5 < -115"]
    assert by[v4]["other_equipment"] == ["bts-1"] and not by[v4]["covered"]  # a BTS is shown, not counted
    assert m["method"]["measured"]["floors"] == {"rsrp_dbm": -115, "dl_bps": 2_000_000}
    assert m["method"]["measured"]["unverified"] is True and "coverage declaration" in m["method"]["text"]
    # KPI 7: v1 OLT (inventory), v2 measured FTTH, v3 declared by viettel: 3 of 4 = 75 %; v4 neither
    f = k[7]["coverage"]
    assert k[7]["value"] == pytest.approx(75.0)
    assert (f["inventory"], f["measured"], f["declared"], f["villages_with_neither"]) == (1, 1, 1, [v4])
    assert {(r["operator"], r["version"]) for r in k[7]["reports"]} == {("viettel", 1), ("vnpt", 1)}
    assert "contract" not in k[7]["formula"]  # no contracted FTTH speed is judged here


def test_a_commune_share_above_100_percent_is_inconsistent_even_when_the_province_is_not(
    client: TestClient,
) -> None:
    # Households: A 100, B 200, C 300 = 600. FTTH households: A 150 (viettel) + 0 (vnpt) = 150 > 100,
    # B 10, C 10: the province share is 170 / 600 = 28.3 %, but commune A's is 150 %.
    ok(
        upload(
            client, POP + f"{A},1000,800,1,100\n{B},2000,1600,1,200\n{C},3000,2400,1,300\n", kind="population"
        )
    )
    ok(
        upload(
            client,
            SUBS + f"{A},1,1,1,150\n{B},1,1,1,10\n{C},1,1,1,10\n",
            kind="operator_subscribers",
            operator="viettel",
        )
    )
    ok(
        upload(
            client,
            SUBS + f"{A},1,1,1,0\n{B},1,1,1,0\n{C},1,1,1,0\n",
            kind="operator_subscribers",
            operator="vnpt",
        )
    )
    k = kpis(client)[6]
    assert (k["value"], k["status"]) == (None, "inconsistent")
    assert k["missing"] == [
        "inconsistent: operator_subscribers.ftth_households is more than population.households"
        f" in 1 commune(s): {A} (150 > 100)"
    ]
    # Corrected by viettel (A: 100 of 100): 120 / 600 = 20 %, a value again (not met: target 75 %)
    ok(
        upload(
            client,
            SUBS + f"{A},1,1,1,100\n{B},1,1,1,10\n{C},1,1,1,10\n",
            kind="operator_subscribers",
            operator="viettel",
        )
    )
    k = kpis(client)[6]
    assert (k["value"], k["status"]) == (pytest.approx(20.0), "not_met")
