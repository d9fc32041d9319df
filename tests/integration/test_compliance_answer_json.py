"""The whole JSON of one compliance answer, field by field, for a small store worked out by hand.

Three (operator, commune) groups of QCVN 81:2019 (4G), each judged on all seven indicators:
viettel with data on both sides of its limits, vietnamobile (whose declared speeds, hence
limits and share threshold, differ from the others') one sample short of the speed minimum,
and mobifone with a registered probe and no data. Every expected value comes from the
profile's text (compliance/standards/profiles/qcvn-81-2019.yaml restates the regulation;
declared-speeds.yaml the operators' declarations) and arithmetic written out below; none
from the project's functions. The response is held to its documented field order and to the
bytes the standard JSON encoder makes of the same content (what FastAPI's response model
encoding made of it before the rows were encoded straight from the answer).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from api import schemas
from api.app import create_app
from api.schemas import ComplianceGroup, ComplianceResponse, ComplianceRow
from collector.core import keys_of
from collector.inventory.units import CommuneUnit
from collector.store.sqlite import SQLiteStore
from collector.store.units import UnitRepo
from compliance.answer import Answer, Group, NotJudged, ProfileRef, Row
from tests.department_data import VIEWER, auth, settings_with_keys
from tests.integration.test_compliance_golden import Case, ingest

VT, VNM, MF = "91001", "91003", "91002"  # viettel's, vietnamobile's and mobifone's communes
CASES = {
    # 285 downloads of 20 Mbit/s and 15 of 4.97 (in the 5 Mbit/s sketch bucket: the share
    # comes from the exact counters), 300 uploads of 9 Mbit/s, 1,500 access attempts of which
    # 60 failed and 1,440 took 2.5 s; no RSRP.
    "viettel": Case(
        VT,
        "4G",
        metrics={
            "dl_bps": [(20e6, 285), (4.97e6, 15)],
            "ul_bps": [(9e6, 300)],
            "access_failed": [(1.0, 60), (0.0, 1440)],
            "access_time_ms": [(2500.0, 1440)],
        },
    ),
    # Declared 1 / 0.128 / 0.256 Mbit/s: 299 downloads of 2 Mbit/s (one short of 300),
    # 300 uploads of 0.1 Mbit/s.
    "vietnamobile": Case(
        VNM, "4G", operator="vietnamobile", metrics={"dl_bps": [(2e6, 299)], "ul_bps": [(100e3, 300)]}
    ),
    "mobifone": Case(MF, "4G", operator="mobifone"),  # registered, no data
}

# ComplianceRow's fields in the documented order (docs/api.md, the OpenAPI schema).
ROW_FIELDS = [
    "operator",
    "commune",
    "commune_name",
    "technology",
    "profile",
    "profile_version",
    "indicator",
    "name_vi",
    "name_en",
    "stat",
    "unit",
    "value",
    "op",
    "limit",
    "threshold",
    "status",
    "passed",
    "insufficient_data",
    "sample_count",
    "min_samples",
    "unverified",
    "unverified_what",
    "approximate",
    "not_checked",
    "note",
]

EFFECTIVE = (
    "The texts we hold do not give the day the circular took effect; check it against"
    " Circular 09/2019/TT-BTTTT."
)
OUR_MINIMUM = (
    "min_samples is our choice: 300 samples per group and period is our minimum: the regulation"
    " names none for the speed indicators (it tests them quarterly, per service zone)."
)
OUR_DATE = f"effective_from is our choice: {EFFECTIVE}"
SPLIT = "the 1,500 samples split 500 indoor, 500 outdoor fixed, 500 moving"

# Per indicator, what the profile says whoever is judged: names, statistic, unit, operator,
# minimum, which parts are our choice, the conditions not checked and the note (the
# indicator's own, then one per mark other than the limit's, as "<what> is our choice: ...").
INDICATORS: list[dict[str, Any]] = [
    {
        "indicator": "radio_availability",
        "name_vi": "Độ sẵn sàng của mạng vô tuyến",
        "name_en": "Radio network availability",
        "stat": "share_at_least",
        "unit": "%",
        "op": ">=",
        "min_samples": 100_000,
        "unverified_what": ["limit", "effective_from"],
        "not_checked": [
            "samples taken outdoors while moving (the regulation's drive test)",
            "samples spread over all hours of the day",
        ],
        "note": "A sample counts as 'network available' when RSRP >= threshold dBm; the threshold is"
        " our choice (configurable), the regulation's 100,000 outdoor moving samples are its"
        f" minimum.; {OUR_DATE}",
    },
    {
        "indicator": "access_failure",
        "name_vi": "Tỷ lệ truy nhập không thành công dịch vụ",
        "name_en": "Service access failure rate",
        "stat": "mean",
        "unit": "%",
        "op": "<=",
        "min_samples": 1500,
        "unverified_what": ["effective_from"],
        "not_checked": [SPLIT],
        "note": OUR_DATE,
    },
    {
        "indicator": "access_time",
        "name_vi": "Thời gian trễ trung bình truy nhập dịch vụ",
        "name_en": "Average service access time",
        "stat": "mean",
        "unit": "s",
        "op": "<=",
        "min_samples": 1500,
        "unverified_what": ["effective_from"],
        "not_checked": [SPLIT],
        "note": "LTE limit (WCDMA: 10 s). Seconds to reach the service, not ping RTT. The mean is over"
        " the successful attempts; the 1,500 minimum counts every attempt (successful or failed).;"
        f" {OUR_DATE}",
    },
    {
        "indicator": "dropped_transfer",
        "name_vi": "Tỷ lệ truyền tải dữ liệu bị rơi",
        "name_en": "Dropped data transfer rate",
        "stat": "mean",
        "unit": "%",
        "op": "<=",
        "min_samples": 300,
        "unverified_what": ["min_samples", "effective_from"],
        "not_checked": [],
        "note": "Payload schema v1 has no dropped-transfer metric: not measured by the probes.;"
        f" {OUR_MINIMUM}; {OUR_DATE}",
    },
    {
        "indicator": "dl_mean",
        "name_vi": "Tốc độ tải xuống trung bình (Pd ≥ Vd)",
        "name_en": "Average download speed (Pd >= Vd)",
        "stat": "mean",
        "unit": "Mbit/s",
        "op": ">=",
        "min_samples": 300,
        "unverified_what": ["limit", "min_samples", "effective_from"],
        "not_checked": [],
        "note": "Vd is the operator's declared speed for the commune's service zone. Minimum sample"
        f" count: ours (the regulation tests quarterly).; {OUR_MINIMUM}; {OUR_DATE}",
    },
    {
        "indicator": "ul_mean",
        "name_vi": "Tốc độ tải lên trung bình (Pu ≥ Vu)",
        "name_en": "Average upload speed (Pu >= Vu)",
        "stat": "mean",
        "unit": "Mbit/s",
        "op": ">=",
        "min_samples": 300,
        "unverified_what": ["limit", "min_samples", "effective_from"],
        "not_checked": [],
        "note": "Vu is the operator's declared speed for the commune's service zone.;"
        f" {OUR_MINIMUM}; {OUR_DATE}",
    },
    {
        "indicator": "dl_share_min",
        "name_vi": "Tỷ lệ mẫu có tốc độ tải xuống ≥ Vdmin",
        "name_en": "Share of samples with download >= Vdmin",
        "stat": "share_at_least",
        "unit": "%",
        "op": ">=",
        "min_samples": 300,
        "unverified_what": ["min_samples", "effective_from"],
        "not_checked": [],
        "note": f"Vdmin is the operator's declared minimum for the zone.; {OUR_MINIMUM}; {OUR_DATE}",
    },
]

# Per operator, indicator -> (value, limit, threshold, status, sample count). Limits and
# thresholds: the profile's, or the operator's declared speeds (Vd, Vu; Vdmin x 10^6 bit/s).
NONE = None
MEASURED: dict[str, dict[str, tuple[float | None, float | None, float | None, str, int]]] = {
    "mobifone": {  # declared 15 / 10 / 5; nothing measured: no verdict anywhere
        "radio_availability": (NONE, 95.0, -115.0, "insufficient_data", 0),
        "access_failure": (NONE, 5.0, NONE, "insufficient_data", 0),
        "access_time": (NONE, 5.0, NONE, "insufficient_data", 0),
        "dropped_transfer": (NONE, 5.0, NONE, "not_measured", 0),
        "dl_mean": (NONE, 15.0, NONE, "insufficient_data", 0),
        "ul_mean": (NONE, 10.0, NONE, "insufficient_data", 0),
        "dl_share_min": (NONE, 95.0, 5e6, "insufficient_data", 0),
    },
    "vietnamobile": {  # declared 1 / 0.128 / 0.256
        "radio_availability": (NONE, 95.0, -115.0, "insufficient_data", 0),
        "access_failure": (NONE, 5.0, NONE, "insufficient_data", 0),
        "access_time": (NONE, 5.0, NONE, "insufficient_data", 0),
        "dropped_transfer": (NONE, 5.0, NONE, "not_measured", 0),
        # 2 Mbit/s over 1 would pass, but 299 samples are one short of 300.
        "dl_mean": (2.0, 1.0, NONE, "insufficient_data", 299),
        # 0.1 Mbit/s < 0.128 over 300 samples.
        "ul_mean": (0.1, 0.128, NONE, "fail", 300),
        # Every download >= 0.256 Mbit/s: 100 %, but 299 samples.
        "dl_share_min": (100.0, 95.0, 0.256 * 1e6, "insufficient_data", 299),
    },
    "viettel": {  # declared 15 / 10 / 5
        "radio_availability": (NONE, 95.0, -115.0, "insufficient_data", 0),
        # 60 of 1,500 attempts failed: 4 % <= 5 %.
        "access_failure": (100 * 60 / 1500, 5.0, NONE, "pass", 1500),
        # 1,440 successful attempts of 2.5 s; the minimum counts the 1,500 attempts.
        "access_time": (2.5, 5.0, NONE, "pass", 1500),
        "dropped_transfer": (NONE, 5.0, NONE, "not_measured", 0),
        # (285 x 20 + 15 x 4.97) / 300 = 19.2485 Mbit/s >= 15.
        "dl_mean": ((285 * 20 + 15 * 4.97) / 300, 15.0, NONE, "pass", 300),
        # 9 Mbit/s < 10.
        "ul_mean": (9.0, 10.0, NONE, "fail", 300),
        # 285 of 300 downloads >= 5 Mbit/s: 95 %, at the limit (the 4.97 ones are under it).
        "dl_share_min": (100 * 285 / 300, 95.0, 5e6, "pass", 300),
    },
}

GROUPS = [  # sorted by operator, then commune; passed / failed / insufficient of the 7
    ("mobifone", MF, "Phường Hai", "insufficient_data", 0, 0, 6),
    ("vietnamobile", VNM, "Xã Ba", "fail", 0, 1, 5),
    ("viettel", VT, "Xã Một", "fail", 4, 1, 1),
]


def expected_rows() -> list[dict[str, Any]]:
    rows = []
    for operator, commune, name, *_ in GROUPS:
        for ind in INDICATORS:
            value, limit, threshold, status, count = MEASURED[operator][ind["indicator"]]
            row = {
                "operator": operator,
                "commune": commune,
                "commune_name": name,
                "technology": "4G",
                "profile": "qcvn-81-2019",
                "profile_version": 1,
                **ind,
                "value": None if value is None else pytest.approx(value, rel=1e-12),
                "limit": pytest.approx(limit, rel=1e-12),
                "threshold": threshold,
                "status": status,
                "passed": {"pass": True, "fail": False}.get(status),
                "insufficient_data": status == "insufficient_data",
                "sample_count": count,
                "unverified": True,  # every indicator's date is ours, at least
                "approximate": False,  # the shares come from the exact counters
            }
            rows.append({f: row[f] for f in ROW_FIELDS})
    return rows


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store = SQLiteStore(Path(tmp_path_factory.mktemp("answer")) / "netqos.db")
    try:
        with store.transaction() as conn:
            UnitRepo.upsert_communes(
                conn,
                [
                    CommuneUnit(VT, "Xã Một", "xa", 19.8, 105.6),
                    CommuneUnit(MF, "Phường Hai", "phuong", 19.9, 105.5),
                    CommuneUnit(VNM, "Xã Ba", "xa", 19.7, 105.4),
                ],
            )
        ingest(store, CASES)
        with TestClient(create_app(settings_with_keys(), store)) as c:
            yield c
    finally:
        store.close()


def test_premise_the_under_samples_share_the_threshold_bucket() -> None:
    """4.97 Mbit/s is under 5 but in its sketch bucket: only the counters tell them apart."""
    k = keys_of(np.array([4.97e6, 5e6]))
    assert k[0] == k[1]


def test_the_whole_answer_field_by_field(client: TestClient) -> None:
    r = client.get(
        "/api/v1/compliance", params={"period": "2025-07", "technology": "4G"}, headers=auth(VIEWER)
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    got = r.json()
    # Top level, in ComplianceResponse's order. July 2025 in Vietnam time: 2025-06-30 17:00
    # UTC to 2025-07-31 17:00 UTC.
    assert list(got) == [
        "period",
        "from_ms",
        "to_ms",
        "timezone",
        "filters",
        "profiles",
        "declared_speeds",
        "groups",
        "rows",
        "not_judged",
    ]
    assert (got["period"], got["from_ms"], got["to_ms"], got["timezone"]) == (
        "2025-07",
        1_751_302_800_000,
        1_751_302_800_000 + 31 * 86_400_000,
        "UTC+07:00",
    )
    assert got["filters"] == {"technology": "4G"}
    assert got["profiles"] == [
        {
            "id": "qcvn-81-2019",
            "version": 1,
            "kind": "regulation",
            "reference": "QCVN 81:2019/BTTTT",
            "title_vi": "Chất lượng dịch vụ truy nhập Internet trên mạng viễn thông di động mặt đất (4G)",
            "title_en": "Quality of Internet access service on the land mobile network (4G)",
            "technologies": ["4G"],
            "effective_from": "2019-08-16",
            "effective_from_unverified": True,
            "effective_from_note": EFFECTIVE,
        }
    ]
    assert got["declared_speeds"] == {
        "version": "2023",
        "source": "operators' declared speeds, 2023",
        "FTTH": "example contracted plan (100/100 Mbit/s): set the probes' real contracts",
    }
    assert got["groups"] == [
        {
            "operator": op,
            "commune": commune,
            "commune_name": name,
            "technology": "4G",
            "status": status,
            "passed": passed,
            "failed": failed,
            "insufficient": insufficient,
            "reason": "",
        }
        for op, commune, name, status, passed, failed, insufficient in GROUPS
    ]
    assert got["not_judged"] == []
    want = expected_rows()
    assert len(got["rows"]) == len(want) == 3 * 7
    for g, w in zip(got["rows"], want, strict=True):
        assert list(g) == ROW_FIELDS
        assert g == w, (g["operator"], g["indicator"])
    # Float types as the schema says: a limit of 95 is 95.0, a count is an integer.
    assert all(isinstance(x["limit"], float) and isinstance(x["sample_count"], int) for x in got["rows"])
    # The bytes: what the standard encoder makes of the same content, compact, UTF-8 as is.
    assert r.content == json.dumps(got, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def test_csv_has_the_same_rows(client: TestClient) -> None:
    r = client.get(
        "/api/v1/compliance",
        params={"period": "2025-07", "technology": "4G", "format": "csv"},
        headers=auth(VIEWER),
    )
    assert r.status_code == 200
    table = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert table[0] == ROW_FIELDS
    assert [(x[0], x[6], x[15]) for x in table[1:]] == [
        (op, ind["indicator"], MEASURED[op][ind["indicator"]][3]) for op, *_ in GROUPS for ind in INDICATORS
    ]
    viettel_dl = table[1 + 2 * 7 + 4]
    assert viettel_dl[:7] == ["viettel", VT, "Xã Một", "4G", "qcvn-81-2019", "1", "dl_mean"]
    # Lists joined by "; ", as every table export does.
    assert viettel_dl[ROW_FIELDS.index("unverified_what")] == "limit; min_samples; effective_from"
    radio = table[1]
    assert radio[ROW_FIELDS.index("not_checked")] == "; ".join(INDICATORS[0]["not_checked"])


def test_the_answer_has_the_response_models_fields_in_order() -> None:
    """The API encodes the answer's dataclasses as they are (their fields in order): they must
    be the documented response model's, field for field."""
    pairs: list[tuple[type[Any], type[BaseModel]]] = [
        (Answer, ComplianceResponse),
        (Row, ComplianceRow),
        (Group, ComplianceGroup),
        (ProfileRef, schemas.ProfileRef),
        (NotJudged, schemas.NotJudged),
    ]
    for dc, model in pairs:
        assert [f.name for f in fields(dc)] == list(model.model_fields), dc.__name__
    assert list(ComplianceRow.model_fields) == ROW_FIELDS
