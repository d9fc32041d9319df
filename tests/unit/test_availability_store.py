"""Availability from stored state changes, maintenance windows, the API endpoint and the CLI
(on SQLite and PostgreSQL); planned work moved by migration 0011 on both."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.settings import ApiKey
from collector.events import StateChange
from collector.model import ProbeInfo
from collector.store.availability import AvailabilityRepo
from collector.store.db import split_sql
from collector.store.devices import DeviceRepo
from collector.store.settings import StoreSettings
from collector.store.store import Store, backend_of, open_store
from netqos.cli import main
from netqos.config import Settings
from tests.conftest import store_yaml

H = 3_600_000
T0 = 1_790_000_000_000 // H * H  # a whole hour, well before now


def record(store: Store, changes: list[StateChange]) -> None:
    with store.transaction() as conn:
        for c in changes:
            DeviceRepo.record_change(conn, c)


def test_availability_over_stored_changes_with_maintenance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], store_settings: StoreSettings
) -> None:
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p1", commune="16021"), ProbeInfo("p2", commune="16030")])
    record(
        store,
        [
            StateChange("probe", "p1", "online", T0 - 5 * H, "ingest"),  # before the period: its start state
            StateChange("probe", "p1", "offline", T0 + 2 * H, "ingest"),
            StateChange("probe", "p1", "online", T0 + 4 * H, "ingest"),
            StateChange("probe", "p1", "offline", T0 + 8 * H, "ingest"),
            StateChange("probe", "p1", "online", T0 + 9 * H, "ingest"),
        ],
    )
    repo = AvailabilityRepo(store)
    av = repo.availability("probe", ["p1", "p2"], T0, T0 + 10 * H)
    assert av.down_ms.tolist() == [3 * H, 0] and av.outages.tolist() == [2, 0]
    assert av.availability_ratio[0] == pytest.approx(7 / 10)
    assert av.unknown_ms.tolist() == [0, 10 * H]  # p2 never reported: no figure, not 100 %

    # The second outage was planned: recorded through the CLI, it is excluded.
    cfg = tmp_path / "n.yaml"
    cfg.write_bytes(orjson.dumps({"store": store_yaml(store_settings)}))  # JSON is YAML
    args = ["--config", str(cfg), "maintenance", "add", "--kind", "probe", "--entity", "p1"]
    assert (
        main(
            [
                *args,
                "--from",
                str((T0 + 8 * H) // 1000),
                "--to",
                str((T0 + 9 * H) // 1000),
                "--reason",
                "mast",
            ]
        )
        == 0
    )
    assert main(["--config", str(cfg), "maintenance", "list"]) == 0
    assert 'entity_kind="probe",entity="p1"' in capsys.readouterr().out
    assert main([*args, "--from", "1000", "--to", "10"]) == 1  # ends before it starts
    av = repo.availability("probe", ["p1", "p2"], T0, T0 + 10 * H)
    assert av.down_ms.tolist() == [2 * H, 0] and av.maintenance_ms.tolist() == [H, 0]
    assert av.outages.tolist() == [1, 0] and av.availability_ratio[0] == pytest.approx(7 / 9)

    settings = Settings()
    settings.api.tokens = [SecretStr("tok-availability")]
    settings.api.keys = [ApiKey(name="noc", role="admin", token=SecretStr("tok-noc-availability-0001"))]
    with TestClient(create_app(settings, store)) as http:
        r = http.get(
            "/api/v1/availability",
            params={"kind": "probe", "from": T0 // 1000, "to": (T0 + 10 * H) // 1000},
            headers={"Authorization": "Bearer tok-availability"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        p1, p2 = body["entities"]
        assert (p1["entity"], p1["down_s"], p1["outage_minutes"], p1["outages"]) == ("p1", 7200.0, 120.0, 1)
        assert p1["maintenance_s"] == 3600.0 and p1["availability_ratio"] == pytest.approx(7 / 9)
        assert p2["availability_ratio"] is None and p2["unknown_s"] == 36_000.0
        assert [w["reason"] for w in body["maintenance"]] == ["mast"]
        assert body["maintenance"][0]["matchers"] == ['entity_kind="probe"', 'entity="p1"']
        one = http.get(
            "/api/v1/availability",
            params={"kind": "probe", "commune": "16030", "from": T0 // 1000, "to": (T0 + H) // 1000},
            headers={"Authorization": "Bearer tok-availability"},
        ).json()
        assert [e["entity"] for e in one["entities"]] == ["p2"]
    # A window made through the alerting API (label matchers) counts for availability too:
    # one home for planned work. It selects p2 by its commune.
    with TestClient(create_app(settings, store)) as http:
        viewer = {"Authorization": "Bearer tok-availability"}
        auth = {"Authorization": "Bearer tok-noc-availability-0001"}
        refused = http.post(
            "/api/v1/maintenance",
            json={"matchers": ['commune="16030"'], "ends_at": (T0 + 3 * H) // 1000, "creator": "x"},
            headers=viewer,
        )
        assert refused.status_code == 403 and "needs operator or admin" in refused.text
        made = http.post(
            "/api/v1/maintenance",
            json={
                "matchers": ['commune="16030"'],
                "starts_at": (T0 + H) // 1000,
                "ends_at": (T0 + 3 * H) // 1000,
                "creator": "noc",
                "comment": "fibre",
            },
            headers=auth,
        )
        assert made.status_code in (200, 201), made.text
    av = repo.availability("probe", ["p1", "p2"], T0, T0 + 10 * H, labels={"p2": {"commune": "16030"}})
    assert av.maintenance_ms.tolist() == [H, 2 * H]
    wid = repo.maintenance(T0, T0 + 10 * H)[0].id
    assert main(["--config", str(cfg), "maintenance", "delete", str(wid)]) == 0
    assert main(["--config", str(cfg), "maintenance", "delete", str(wid)]) == 1
    with pytest.raises(ValueError, match="kind"):
        repo.add_maintenance("", "p1", 0, 1)
    store.close()


def test_migration_0011_moves_maintenance_windows_into_silences(store_settings: StoreSettings) -> None:
    """Windows recorded under schema 0005 become maintenance silences with the same matchers,
    times and reason on both backends (the PostgreSQL twin builds the JSON with json_build_*)."""
    backend = backend_of(store_settings)
    conn = backend.connect()
    try:
        conn.execute(
            "CREATE TABLE schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)"
        )
        for version, name, sql in backend.migrations():
            if version > 5:
                break
            for statement in split_sql(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, name))
        conn.executemany(
            "INSERT INTO maintenance_windows (entity_kind, entity, start_ms, end_ms, reason, created_ms)"
            " VALUES (?, ?, ?, ?, ?, 1)",
            [
                ("", "", T0, T0 + H, "all"),
                ("device", "", T0, T0 + 2 * H, "devices"),
                ("probe", "p1", T0, T0 + 3 * H, "mast"),
            ],
        )
    finally:
        conn.close()
    store = Store(backend)  # applies 0010 and 0011
    try:
        assert 11 in store.migrate_applied
        windows = AvailabilityRepo(store).maintenance(T0, T0 + H)
        assert [(w.reason, [str(m) for m in w.matchers], w.end_ms - w.start_ms) for w in windows] == [
            ("all", [], H),
            ("devices", ['entity_kind="device"'], 2 * H),
            ("mast", ['entity_kind="probe"', 'entity="p1"'], 3 * H),
        ]
        assert windows[2].applies({"entity_kind": "probe", "entity": "p1"})
        assert not windows[2].applies({"entity_kind": "probe", "entity": "p2"})
    finally:
        store.close()
