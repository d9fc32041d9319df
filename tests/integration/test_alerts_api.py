"""The incident, silence and maintenance endpoints over a real store the engine has written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from alerts.engine import AlertEngine
from alerts.rules import parse_rules
from api.app import create_app
from api.settings import ApiKey
from netqos.config import Settings
from tests.alerting import T0, Net, alert_settings

TOKEN = "alerts-api-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RULES = (
    "rules:\n  - {name: device_down, kind: state, entity_kind: device, states: [down], severity: critical}\n"
)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[TestClient, Net, AlertEngine]]:
    net = Net(tmp_path / "api.db")
    engine = AlertEngine(net.store, alert_settings(), rules=parse_rules(RULES))
    settings = Settings()
    # Acknowledging and silencing need an operator or admin key (api.tokens are viewers).
    settings.api.keys = [ApiKey(name="noc", role="admin", token=SecretStr(TOKEN))]
    with TestClient(create_app(settings, net.store)) as c:
        yield c, net, engine
    net.store.close()


def test_incidents_list_get_acknowledge_comment_resolve(rig: tuple[TestClient, Net, AlertEngine]) -> None:
    c, net, engine = rig
    assert c.get("/api/v1/incidents").status_code == 401
    net.down("rtr", T0, T0 + 20_000)
    for child in net.children:
        net.down(child, T0 + 300, T0 + 20_000)
    engine.tick(T0 + 21_000)
    body = c.get("/api/v1/incidents", headers=AUTH).json()
    assert body["total"] == 1
    inc = body["incidents"][0]
    assert inc["entity"] == "rtr" and inc["state"] == "open" and inc["symptom_count"] == 3
    assert inc["severity"] == "critical" and inc["labels"]["commune"] == "16021"
    iid = inc["id"]
    detail = c.get(f"/api/v1/incidents/{iid}", headers=AUTH).json()
    assert sorted(s["entity"] for s in detail["symptoms"]) == net.children
    assert detail["timeline"][0]["event"] == "opened"

    # Who acts is the key ("noc"); a name typed in the body is only a note in the text.
    r = c.post(f"/api/v1/incidents/{iid}/acknowledge", json={"comment": "on it"}, headers=AUTH)
    assert (
        r.status_code == 200 and r.json()["state"] == "acknowledged" and r.json()["acknowledged_by"] == "noc"
    )
    assert r.json()["timeline"][-1]["actor"] == "noc" and r.json()["timeline"][-1]["detail"] == "on it"
    r = c.post(f"/api/v1/incidents/{iid}/comments", json={"by": "binh", "text": "truck sent"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["timeline"][-1] == {
        "ts_ms": r.json()["timeline"][-1]["ts_ms"],
        "event": "comment",
        "actor": "noc",
        "detail": "truck sent (note: signed 'binh')",
    }
    assert c.get("/api/v1/incidents", params={"state": "active"}, headers=AUTH).json()["total"] == 1
    r = c.post(f"/api/v1/incidents/{iid}/resolve", json={"by": "an", "comment": "power back"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["state"] == "resolved" and r.json()["resolved_by"] == "noc"
    assert all(s["end_ms"] is not None for s in r.json()["symptoms"])
    assert c.post(f"/api/v1/incidents/{iid}/acknowledge", json={"by": "an"}, headers=AUTH).status_code == 409
    assert c.post(f"/api/v1/incidents/{iid}/resolve", json={"by": "an"}, headers=AUTH).status_code == 409
    assert c.get("/api/v1/incidents/999", headers=AUTH).status_code == 404
    assert (
        c.post("/api/v1/incidents/999/comments", json={"by": "a", "text": "x"}, headers=AUTH).status_code
        == 404
    )
    assert (
        c.post(f"/api/v1/incidents/{iid}/comments", json={"by": "a", "text": ""}, headers=AUTH).status_code
        == 422
    )
    assert c.get("/api/v1/incidents", params={"state": "resolved"}, headers=AUTH).json()["total"] == 1
    assert c.get("/api/v1/incidents", params={"state": "bogus"}, headers=AUTH).status_code == 422


@pytest.mark.parametrize("path", ["/api/v1/silences", "/api/v1/maintenance"])
def test_silences_and_maintenance_create_list_expire(
    rig: tuple[TestClient, Net, AlertEngine], path: str
) -> None:
    c, _, _ = rig
    body = {
        "matchers": ['entity="rtr"', 'commune=~"160.*"'],
        "ends_at": "2099-01-01T00:00:00Z",
        "creator": "an",
        "comment": "fibre works",
    }
    r = c.post(path, json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "active" and created["kind"] == (
        "silence" if "silences" in path else "maintenance"
    )
    assert created["matchers"] == [
        {"name": "entity", "op": "=", "value": "rtr"},
        {"name": "commune", "op": "=~", "value": "160.*"},
    ]
    listed = c.get(path, headers=AUTH).json()
    assert [s["id"] for s in listed["silences"]] == [created["id"]]
    other = "/api/v1/maintenance" if "silences" in path else "/api/v1/silences"
    assert c.get(other, headers=AUTH).json()["total"] == 0
    assert c.delete(f"{other}/{created['id']}", headers=AUTH).status_code == 404
    r = c.delete(f"{path}/{created['id']}", headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "expired"
    assert c.get(path, headers=AUTH).json()["total"] == 0
    assert c.get(path, params={"include_expired": True}, headers=AUTH).json()["total"] == 1
    bad = c.post(path, json={**body, "matchers": ['entity=~"("']}, headers=AUTH)
    assert bad.status_code == 422 and "regular expression" in bad.json()["detail"]
    past = c.post(path, json={**body, "ends_at": "2001-01-01T00:00:00Z"}, headers=AUTH)
    assert past.status_code == 422 and "end must be after the start" in past.json()["detail"]


def test_silence_from_the_api_mutes_and_its_expiry_notifies(rig: tuple[TestClient, Net, AlertEngine]) -> None:
    c, net, engine = rig
    # A silence made through the API, with a start and an end in the engine's clock.
    r = c.post(
        "/api/v1/silences",
        json={
            "matchers": ['entity="bts-1"'],
            "starts_at": T0 / 1000,
            "ends_at": (T0 + 60_000) / 1000,
            "creator": "an",
        },
        headers=AUTH,
    )
    assert r.status_code == 201, r.text
    net.down("bts-1", T0, T0 + 20_000)
    net.poll("rtr", T0 + 20_000, ok=True)
    for k in range(0, 30_000, 1000):
        engine.tick(T0 + 21_000 + k)
    rows = net.store.reader().execute("SELECT status FROM outbox").fetchall()
    assert rows == []
    engine.tick(T0 + 61_000)
    rows = net.store.reader().execute("SELECT status FROM outbox").fetchall()
    assert rows == [("firing",)]


REDOS = 'entity=~"(.*.*.*)*Z"'


@pytest.mark.parametrize("path", ["/api/v1/silences", "/api/v1/maintenance"])
def test_redos_pattern_refused_when_written(rig: tuple[TestClient, Net, AlertEngine], path: str) -> None:
    c, net, _ = rig
    body = {"matchers": ['commune="16021"', REDOS], "ends_at": "2099-01-01T00:00:00Z"}
    r = c.post(path, json=body, headers=AUTH)
    assert r.status_code == 422 and "repeated without bound" in r.json()["detail"]
    backref = c.post(path, json={**body, "matchers": [r'entity=~"(a)\\1"']}, headers=AUTH)
    assert backref.status_code == 422 and "RE2" in backref.json()["detail"]
    too_long = c.post(path, json={**body, "matchers": [f'entity=~"{"a" * 1001}"']}, headers=AUTH)
    assert too_long.status_code == 422 and "at most 1000" in too_long.json()["detail"]
    assert net.store.reader().execute("SELECT count(*) FROM silences").fetchone() == (0,)


def test_stored_redos_window_and_silence_freeze_nothing_after_a_restart(tmp_path: Path) -> None:
    """Written before the RE2 rules, a window and a silence with the ReDoS pattern are read back
    after a restart: they match nothing (listed with the reason), nothing hangs."""
    net = Net(tmp_path / "old.db")
    with net.store.transaction() as conn:
        for kind in ("maintenance", "silence"):
            conn.execute(
                "INSERT INTO silences (kind, matchers, starts_ms, ends_ms, creator, comment, created_ms)"
                " VALUES (?, ?, ?, ?, 'old', '', 0)",
                (kind, '[{"name":"entity","op":"=~","value":"(.*.*.*)*Z"}]', T0 - 60_000, T0 + 3_600_000),
            )
    net.store.close()
    net = Net(tmp_path / "old.db")  # the restart: the store opened anew
    engine = AlertEngine(net.store, alert_settings(), rules=parse_rules(RULES))
    settings = Settings()
    settings.api.keys = [ApiKey(name="noc", role="admin", token=SecretStr(TOKEN))]
    with TestClient(create_app(settings, net.store)) as c:
        for path in ("/api/v1/maintenance", "/api/v1/silences"):
            listed = c.get(path, params={"include_expired": True}, headers=AUTH).json()["silences"]
            assert len(listed) == 1 and "repeated without bound" in listed[0]["refused"]
        r = c.get(
            "/api/v1/availability", params={"from": T0 / 1000, "to": (T0 + 60_000) / 1000}, headers=AUTH
        )
        assert r.status_code == 200
        # The window excuses nothing: no entity has maintenance time.
        assert {e["maintenance_s"] for e in r.json()["entities"]} == {0.0}
    # The silence mutes nothing: the router's outage is notified.
    net.down("bts-1", T0, T0 + 20_000)
    net.poll("rtr", T0 + 20_000, ok=True)
    for k in range(0, 30_000, 1000):
        engine.tick(T0 + 21_000 + k)
    assert net.store.reader().execute("SELECT status FROM outbox").fetchall() == [("firing",)]
    net.store.close()
