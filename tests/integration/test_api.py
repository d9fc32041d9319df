"""The API over a real SQLite store filled through the ingest pipeline (and once over PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo
from collector.mqtt.schema import validate_batch
from collector.pipeline import IngestPipeline
from collector.store.settings import StoreSettings
from collector.store.store import Store, open_store
from netqos.config import Settings

TOKEN = "test-token-0123456789"
T0 = 1_795_852_800_000  # 2026-11-28T08:00:00Z, ms
COMMUNES = ("16021", "16030", "16180")
OPERATORS = ("viettel", "vnpt")


def fill(store: Store, rng: np.random.Generator) -> dict[tuple[str, str], list[float]]:
    """Three communes x two operators x 2 probes, 30 minutes of rtt samples; returns the raw values."""
    probes = []
    for c in COMMUNES:
        for o in OPERATORS:
            for k in range(2):
                probes.append(
                    ProbeInfo(f"p-{c}-{o}-{k}", commune=c, village=f"{c}-v01", operator=o, technology="4G")
                )
    store.register_probes(probes)
    pipeline = IngestPipeline(store, IngestSettings())
    raw: dict[tuple[str, str], list[float]] = {}
    for p in probes:
        for minute in range(30):
            vals = rng.lognormal(3.3 if p.commune != "16180" else 4.2, 0.5, size=6)
            raw.setdefault((p.commune, p.operator), []).extend(vals.tolist())
            batch = validate_batch(
                {
                    "v": 1,
                    "probe_id": p.probe_id,
                    "seq": minute,
                    "measurements": [
                        {
                            "ts": T0 + minute * 60_000 + i * 10_000,
                            "target": "speedtest.example.vn",
                            "technology": "4G",
                            "operator": p.operator,
                            "metrics": {"rtt_ms": float(v)},
                        }
                        for i, v in enumerate(vals)
                    ],
                }
            )
            pipeline.accept(batch)
    asyncio.run(pipeline.flush())
    return raw


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, dict[tuple[str, str], list[float]]]]:
    store = Store(tmp_path_factory.mktemp("api") / "netqos.db")
    raw = fill(store, np.random.default_rng(7))
    settings = Settings()
    settings.api.tokens = [SecretStr(TOKEN)]
    app = create_app(settings, store, {"broker": lambda: (False, "not connected (test)")})
    with TestClient(app) as c:
        yield c, raw
    store.close()


AUTH = {"Authorization": f"Bearer {TOKEN}"}
WINDOW = {"from": "2026-11-28T08:00:00Z", "to": "2026-11-28T08:30:00Z"}


def test_api_needs_a_token(client: tuple[TestClient, object]) -> None:
    c, _ = client
    r = c.get("/api/v1/qos", params={"metric": "rtt_ms"})
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    r = c.get("/api/v1/qos", params={"metric": "rtt_ms"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid bearer token"
    assert c.get("/api/v1/probes").status_code == 401


def test_no_configured_token_means_closed(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.db")
    app = create_app(Settings(), store)
    with TestClient(app) as c:
        r = c.get("/api/v1/probes", headers={"Authorization": "Bearer anything"})
        assert r.status_code == 401 and "no API tokens are configured" in r.json()["detail"]
    store.close()


def test_p95_per_commune_matches_numpy_within_1_percent(
    client: tuple[TestClient, dict[tuple[str, str], list[float]]],
) -> None:
    c, raw = client
    r = c.get(
        "/api/v1/qos",
        params={"metric": "rtt_ms", "stat": "p95", "group_by": "commune", "step": "30m", **WINDOW},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unit"] == "ms" and body["step_s"] == 1800 and body["group_by"] == ["commune"]
    got = {s["labels"]["commune"]: s["points"] for s in body["series"]}
    assert set(got) == set(COMMUNES)
    for commune, points in got.items():
        assert len(points) == 1
        values = np.array([v for (cc, _), vs in raw.items() if cc == commune for v in vs])
        exact = float(np.quantile(values, 0.95, method="lower"))
        assert points[0]["count"] == len(values) == 2 * 2 * 30 * 6
        assert abs(points[0]["value"] - exact) <= 0.01 * exact


def test_group_by_two_labels_and_steps(client: tuple[TestClient, dict[tuple[str, str], list[float]]]) -> None:
    c, raw = client
    r = c.get(
        "/api/v1/qos",
        params={"metric": "rtt_ms", "stat": "mean", "group_by": "commune,operator", "step": "5m", **WINDOW},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    series = r.json()["series"]
    assert len(series) == len(COMMUNES) * len(OPERATORS)
    for s in series:
        pts = s["points"]
        assert len(pts) == 6 and all(p["count"] == 2 * 5 * 6 for p in pts)
        assert [p["ts_ms"] for p in pts] == [T0 + i * 300_000 for i in range(6)]
        key = (s["labels"]["commune"], s["labels"]["operator"])
        total = sum(p["value"] * p["count"] for p in pts)
        assert total == pytest.approx(sum(raw[key]), rel=1e-9)


def test_filters_and_counts(client: tuple[TestClient, object]) -> None:
    c, _ = client
    r = c.get(
        "/api/v1/qos",
        params={
            "metric": "rtt_ms",
            "stat": "count",
            "commune": "16030",
            "operator": "vnpt",
            "step": "30m",
            **WINDOW,
        },
        headers=AUTH,
    )
    body = r.json()
    assert body["filters"] == {"operator": "vnpt", "commune": "16030"}
    assert [p["value"] for p in body["series"][0]["points"]] == [2 * 30 * 6]
    # A metric with no data answers with no series, not an error.
    r = c.get("/api/v1/qos", params={"metric": "dl_bps", **WINDOW}, headers=AUTH)
    assert r.status_code == 200 and r.json()["series"] == []


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"metric": "rtt"}, "metric 'rtt' is unknown"),
        ({"metric": "rtt_ms", "stat": "p150"}, "percentile"),
        ({"metric": "rtt_ms", "stat": "median"}, "stat 'median' is unknown"),
        ({"metric": "rtt_ms", "group_by": "district"}, "group_by district: not a label"),
        ({"metric": "rtt_ms", "step": "90s"}, "whole number of minutes"),
        ({"metric": "rtt_ms", "step": "soon"}, "expected a number"),
        ({"metric": "rtt_ms", "from": "2026-11-28T09:00:00Z", "to": "2026-11-28T08:00:00Z"}, "before"),
        ({"metric": "rtt_ms", "from": "2020-01-01T00:00:00Z", "step": "1m"}, "exceed the limit"),
    ],
)
def test_bad_queries_get_clear_422(
    client: tuple[TestClient, object], params: dict[str, str], fragment: str
) -> None:
    c, _ = client
    r = c.get("/api/v1/qos", params=params, headers=AUTH)
    assert r.status_code == 422
    assert fragment in r.json()["detail"]


def test_probes_list(client: tuple[TestClient, object]) -> None:
    c, _ = client
    r = c.get("/api/v1/probes", headers=AUTH)
    body = r.json()
    assert body["total"] == 12
    p = next(x for x in body["probes"] if x["probe_id"] == "p-16021-vnpt-1")
    assert p["commune"] == "16021" and p["messages_total"] == 30 and p["measurements_total"] == 180
    assert p["last_seq"] == 29 and p["last_seen_ms"] == T0 + 29 * 60_000 + 50_000
    r = c.get("/api/v1/probes", params={"commune": "16180"}, headers=AUTH)
    assert r.json()["total"] == 4


def test_health_ready_metrics_openapi(client: tuple[TestClient, object]) -> None:
    c, _ = client
    assert c.get("/healthz").json() == {"status": "ok"}
    r = c.get("/readyz")
    assert r.status_code == 503  # the broker check says not connected
    checks = r.json()["checks"]
    assert checks["store"]["ok"] is True and checks["broker"]["ok"] is False
    m = c.get("/metrics")
    assert m.status_code == 200 and "netqos_ingest_messages_received_total" in m.text
    spec = c.get("/openapi.json").json()
    assert "/api/v1/qos" in spec["paths"] and "/api/v1/probes" in spec["paths"]
    assert c.get("/docs").status_code == 200


def test_one_probe_with_health(client: tuple[TestClient, object]) -> None:
    c, _ = client
    r = c.get("/api/v1/probes/p-16021-vnpt-1", headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["probe_id"] == "p-16021-vnpt-1" and body["expected_interval_s"] == 60.0
    assert len(body["windows"]) >= 24 and all(0 <= w["completeness_ratio"] <= 1 for w in body["windows"])
    assert body["status"] in ("unknown", "online", "offline")
    assert c.get("/api/v1/probes/nope", headers=AUTH).status_code == 404
    assert c.get("/api/v1/probes/p-16021-vnpt-1").status_code == 401


def test_https_ingest_with_a_probe_token(tmp_path: Path) -> None:
    from api.routers.ingest import token_sha256

    store = Store(tmp_path / "ingest.db")
    store.register_probes([ProbeInfo("p-https", commune="16021"), ProbeInfo("p-other")])
    assert store.set_probe_token_sha256("p-https", token_sha256("probe-secret-1"))
    pipeline = IngestPipeline(store, IngestSettings())
    app = create_app(Settings(), store, pipeline=pipeline)
    body = {
        "v": 1,
        "probe_id": "p-https",
        "seq": 5,
        "measurements": [
            {
                "ts": int(time.time() * 1000) - 1000,
                "target": "t",
                "technology": "4G",
                "operator": "vnpt",
                "metrics": {"rtt_ms": 12.0, "dl_bps": 3e7},
            }
        ],
    }
    auth = {"Authorization": "Bearer probe-secret-1"}
    with TestClient(app) as c:
        assert c.post("/api/v1/ingest", json=body).status_code == 401
        assert (
            c.post("/api/v1/ingest", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        )
        r = c.post("/api/v1/ingest", json=body, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "stored", "probe_id": "p-https", "seq": 5, "measurements": 1}
        assert store.total_count() == 2  # stored before the answer
        assert c.post("/api/v1/ingest", json=body, headers=auth).status_code == 409  # a retry
        assert store.total_count() == 2
        other = {**body, "probe_id": "p-other", "seq": 1}
        r = c.post("/api/v1/ingest", json=other, headers=auth)
        assert r.status_code == 403 and r.json()["detail"].startswith("topic_mismatch")
        r = c.post("/api/v1/ingest", content=b"{not json", headers=auth)
        assert r.status_code == 422 and r.json()["detail"].startswith("not_json")
        r = c.post("/api/v1/ingest", content=b"x" * 300_000, headers=auth)
        assert r.status_code == 413
    store.close()


def test_every_point_carries_count_and_completeness(store_settings: StoreSettings) -> None:
    """A probe silent for 10 of 30 minutes: that step says count 0, completeness 0 — not good
    (on SQLite and PostgreSQL, the hour and day tiers included)."""
    from collector.store.tiers import TierRoller

    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p-gap", commune="16021", operator="vnpt", technology="4G")])
    pipeline = IngestPipeline(store, IngestSettings(metric_interval_s={"dl_bps": 600}))
    for minute in [m for m in range(30) if not 10 <= m < 20]:
        metrics = {"rtt_ms": 20.0 + minute}
        if minute % 10 == 0:
            metrics["dl_bps"] = 1e7
        pipeline.accept(
            validate_batch(
                {
                    "v": 1,
                    "probe_id": "p-gap",
                    "seq": minute,
                    "measurements": [
                        {
                            "ts": T0 + minute * 60_000,
                            "target": "t",
                            "technology": "4G",
                            "operator": "vnpt",
                            "metrics": metrics,
                        }
                    ],
                }
            )
        )
    asyncio.run(pipeline.flush())
    settings = Settings()
    settings.api.tokens = [SecretStr(TOKEN)]
    with TestClient(create_app(settings, store)) as c:
        body = c.get(
            "/api/v1/qos", params={"metric": "rtt_ms", "stat": "mean", "step": "10m", **WINDOW}, headers=AUTH
        ).json()
        (s,) = body["series"]
        assert [p["count"] for p in s["points"]] == [10, 0, 10]
        assert [p["expected_count"] for p in s["points"]] == [10, 10, 10]
        assert [p["completeness_ratio"] for p in s["points"]] == [1.0, 0.0, 1.0]
        # rtt is 20 + minute: minutes 20..29 average 44.5; the silent step has no value.
        assert s["points"][1]["value"] is None and s["points"][2]["value"] == pytest.approx(44.5)
        # A metric on its own schedule (configured): one download every 10 minutes expected.
        body = c.get(
            "/api/v1/qos", params={"metric": "dl_bps", "stat": "count", "step": "10m", **WINDOW}, headers=AUTH
        ).json()
        assert [p["completeness_ratio"] for p in body["series"][0]["points"]] == [1.0, 0.0, 1.0]
        # Before the series' first sample nothing was expected: no completeness, not 0.
        early = {"from": "2026-11-28T07:00:00Z", "to": "2026-11-28T08:00:00Z"}
        body = c.get("/api/v1/qos", params={"metric": "rtt_ms", "step": "1h", **early}, headers=AUTH).json()
        (p,) = body["series"][0]["points"]
        assert p["count"] == 0 and p["expected_count"] == 0 and p["completeness_ratio"] is None

        # An hourly step is answered from the hour tier: the same figures before the roller has
        # computed the hour (pending: read from minutes) and after.
        hour = {"from": "2026-11-28T08:00:00Z", "to": "2026-11-28T09:00:00Z", "step": "1h"}
        before = c.get("/api/v1/qos", params={"metric": "rtt_ms", "stat": "p50", **hour}, headers=AUTH).json()
        assert before["resolution_s"] == 3600 and before["retained_from_ms"] is not None
        TierRoller(store).roll(now_ms=T0 + 10 * 3_600_000)
        assert (
            store.reader().execute("SELECT count(*) FROM rollups WHERE resolution_s = 3600").fetchone()[0]
            >= 1
        )
        after = c.get("/api/v1/qos", params={"metric": "rtt_ms", "stat": "p50", **hour}, headers=AUTH).json()
        assert after["series"] == before["series"]
        assert before["series"][0]["points"][0]["count"] == 20
        day = c.get(
            "/api/v1/qos",
            params={
                "metric": "rtt_ms",
                "step": "1d",
                "from": "2026-11-28T00:00:00Z",
                "to": "2026-11-29T00:00:00Z",
            },
            headers=AUTH,
        ).json()
        # A day step is a Vietnam day (17:00-17:00 UTC), as 1-day rows are: 2026-11-28 08:00 UTC
        # is in the local day of the 28th, which began at 17:00 UTC on the 27th.
        assert day["resolution_s"] == 86_400 and day["retained_from_ms"] is None
        assert day["from_ms"] == T0 - 15 * 3_600_000
        assert [p["count"] for p in day["series"][0]["points"]] == [20, 0]
    store.close()


def test_the_api_answers_the_same_from_postgresql(
    client: tuple[TestClient, object], pg_store_settings: StoreSettings
) -> None:
    """The same data ingested into PostgreSQL gives the same answers as SQLite (all but the
    wall-clock time each probe was registered at)."""
    sqlite_client, _ = client
    store = open_store(pg_store_settings)
    fill(store, np.random.default_rng(7))  # the SQLite store's fill, same seed
    settings = Settings()
    settings.api.tokens = [SecretStr(TOKEN)]
    app = create_app(settings, store, {"broker": lambda: (True, "test")})
    queries = [
        (
            "/api/v1/qos",
            {"metric": "rtt_ms", "stat": "p95", "group_by": "commune,operator", "step": "5m", **WINDOW},
        ),
        ("/api/v1/qos", {"metric": "rtt_ms", "stat": "mean", "commune": "16180", "step": "1m", **WINDOW}),
        (
            "/api/v1/qos",
            {"metric": "rtt_ms", "stat": "count", "group_by": "operator", "step": "30m", **WINDOW},
        ),
        ("/api/v1/probes", {}),
        ("/api/v1/probes/p-16021-vnpt-1", {}),
    ]
    with TestClient(app) as c:
        assert c.get("/readyz").json()["checks"]["store"]["ok"] is True
        for path, params in queries:
            want = sqlite_client.get(path, params=params, headers=AUTH)
            got = c.get(path, params=params, headers=AUTH)
            assert want.status_code == got.status_code == 200, (path, got.text)
            assert _same(got.json()) == _same(want.json()), path
            if path == "/api/v1/qos":  # not two empty answers
                assert sum(len(s["points"]) for s in got.json()["series"]) > 0
    store.close()


def _same(answer: object) -> object:
    """The answer without `registered_at_ms` (the clock at registration, not the data)."""
    if isinstance(answer, dict):
        return {k: _same(v) for k, v in answer.items() if k != "registered_at_ms"}
    if isinstance(answer, list):
        return [_same(v) for v in answer]
    return answer
