"""Operator isolation over the API, on SQLite and PostgreSQL: an operator key reads and acts only on
its operator's incidents, silences, maintenance windows and availability (403 with the reason on
another's, 200 on its own); viewers read everything and change nothing; admins do everything.
Who acknowledged or resolved is the key, never a name typed in the body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from alerts.engine import AlertEngine
from alerts.rules import parse_rules
from api.app import create_app
from api.settings import ApiKey
from collector.events import StateChange
from collector.inventory import Device
from collector.store.devices import DeviceRepo, PollRecord
from collector.store.settings import StoreSettings
from collector.store.store import Store, open_store
from netqos.config import Settings
from tests.alerting import T0, alert_settings

RULES = (
    "rules:\n  - {name: device_down, kind: state, entity_kind: device, states: [down], severity: critical}\n"
)
KEYS = {  # name -> (role, operator)
    "noc": ("admin", None),
    "dept": ("viewer", None),
    "vnpt-noc": ("operator", "vnpt"),
    "viettel-noc": ("operator", "viettel"),
}


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-token-0123456789"}


@pytest.fixture
def rig(store_settings: StoreSettings) -> Iterator[tuple[TestClient, Store, dict[str, int]]]:
    """Two operators' routers, both down: the engine opens one incident each."""
    store = open_store(store_settings)
    repo = DeviceRepo(store)
    devs = [
        Device(id=f"rtr-{op}", host="127.0.0.1", credentials="c", kind="router", operator=op, commune="16021")
        for op in ("vnpt", "viettel")
    ]
    repo.sync_inventory(devs, {d.id: d.kind for d in devs}, {d.id: 10.0 for d in devs})
    for d in devs:
        repo.write([PollRecord(d.id, T0 - 5_000, True, 0.01)], [])
        repo.write([PollRecord(d.id, T0 + 20_000, False, 0.01, error="timeout")], [])
        repo.write([], [StateChange("device", d.id, "down", T0, "poll", "", d.id)])
    AlertEngine(store, alert_settings(), rules=parse_rules(RULES)).tick(T0 + 21_000)
    settings = Settings()
    settings.api.keys = [
        ApiKey(name=name, role=role, operator=op, token=SecretStr(auth(name)["Authorization"][7:]))
        for name, (role, op) in KEYS.items()
    ]
    with TestClient(create_app(settings, store)) as c:
        listed = c.get("/api/v1/incidents", headers=auth("noc")).json()["incidents"]
        ids = {i["labels"]["operator"]: i["id"] for i in listed}
        assert sorted(ids) == ["viettel", "vnpt"]
        yield c, store, ids
    store.close()


def refused(r: Any, *words: str) -> bool:
    """A 403 whose reason names every one of `words`."""
    return bool(r.status_code == 403 and all(w in r.json()["detail"] for w in words))


def test_incidents_of_another_operator_are_refused(rig: tuple[TestClient, Store, dict[str, int]]) -> None:
    c, _, ids = rig
    vnpt, viettel = auth("vnpt-noc"), ids["viettel"]

    body = c.get("/api/v1/incidents", headers=vnpt).json()
    assert body["total"] == 1 and [i["id"] for i in body["incidents"]] == [ids["vnpt"]]
    assert refused(c.get("/api/v1/incidents", params={"operator": "viettel"}, headers=vnpt), "vnpt-noc")
    assert c.get("/api/v1/incidents", params={"operator": "vnpt"}, headers=vnpt).json()["total"] == 1
    # Viewers read every operator's; their operator filter is exact on both backends.
    assert c.get("/api/v1/incidents", headers=auth("dept")).json()["total"] == 2
    for op in ("vnpt", "viettel"):
        found = c.get("/api/v1/incidents", params={"operator": op}, headers=auth("dept")).json()
        assert [i["id"] for i in found["incidents"]] == [ids[op]]
    assert c.get("/api/v1/incidents", params={"operator": "vnp_"}, headers=auth("dept")).json()["total"] == 0

    assert refused(c.get(f"/api/v1/incidents/{viettel}", headers=vnpt), "vnpt-noc", f"incident {viettel}")
    assert c.get(f"/api/v1/incidents/{ids['vnpt']}", headers=vnpt).status_code == 200

    def record() -> dict[str, Any]:  # all but the outage so far, which grows with the clock
        got: dict[str, Any] = c.get(f"/api/v1/incidents/{viettel}", headers=auth("noc")).json()
        return {k: v for k, v in got.items() if k != "outage_s"}

    before = record()
    signed = {"by": "viettel-noc (Nguyen Van A)", "comment": "fixed"}
    assert refused(c.post(f"/api/v1/incidents/{viettel}/acknowledge", json=signed, headers=vnpt), "vnpt")
    assert refused(c.post(f"/api/v1/incidents/{viettel}/resolve", json=signed, headers=vnpt), "vnpt")
    assert refused(c.post(f"/api/v1/incidents/{viettel}/comments", json={"text": "x"}, headers=vnpt), "vnpt")
    assert record() == before and before["state"] == "open"  # nothing changed
    # A viewer changes nothing, even its own view's.
    assert (
        c.post(f"/api/v1/incidents/{viettel}/acknowledge", json={}, headers=auth("dept")).status_code == 403
    )

    # Its own: done, and signed by the key whatever the body says.
    r = c.post(f"/api/v1/incidents/{ids['vnpt']}/resolve", json=signed, headers=vnpt)
    assert r.status_code == 200 and r.json()["resolved_by"] == "vnpt-noc"
    last = r.json()["timeline"][-1]
    assert last["event"] == "resolved" and last["actor"] == "vnpt-noc"
    assert last["detail"] == "fixed (note: signed 'viettel-noc (Nguyen Van A)')"


@pytest.mark.parametrize("path", ["/api/v1/silences", "/api/v1/maintenance"])
def test_silences_and_windows_of_another_operator_are_refused(
    rig: tuple[TestClient, Store, dict[str, int]], path: str
) -> None:
    c, _, _ = rig
    vnpt, viettel = auth("vnpt-noc"), auth("viettel-noc")
    body = {"matchers": ['commune="16021"'], "ends_at": "2099-01-01T00:00:00Z", "creator": "an"}
    assert refused(c.post(path, json=body, headers=vnpt), 'operator="vnpt"')
    for other in (['operator="viettel"'], ['operator="vnpt"', 'operator="viettel"'], ['operator=~"vnpt"']):
        assert refused(c.post(path, json={**body, "matchers": other}, headers=vnpt), 'operator="vnpt"')
    assert refused(
        c.post(path, json={**body, "matchers": ['operator="vnpt"']}, headers=auth("dept")), "viewer"
    )

    own = c.post(path, json={**body, "matchers": ['operator="vnpt"', 'commune="16021"']}, headers=vnpt)
    assert own.status_code == 201 and own.json()["creator"] == "vnpt-noc"
    assert own.json()["comment"] == "(note: signed 'an')"
    theirs = c.post(path, json={**body, "matchers": ['operator = "viettel"']}, headers=viettel).json()
    # An admin's selecting a Viettel device by name is not limited to VNPT either.
    admins = c.post(path, json={**body, "matchers": ['entity="rtr-viettel"']}, headers=auth("noc")).json()

    assert [s["id"] for s in c.get(path, headers=vnpt).json()["silences"]] == [own.json()["id"]]
    assert refused(c.get(path, params={"operator": "viettel"}, headers=vnpt), "vnpt-noc")
    assert sorted(s["id"] for s in c.get(path, headers=auth("dept")).json()["silences"]) == sorted(
        [own.json()["id"], theirs["id"], admins["id"]]
    )
    listed = c.get(path, params={"operator": "viettel"}, headers=auth("dept")).json()["silences"]
    assert [s["id"] for s in listed] == [theirs["id"]]
    for sid in (theirs["id"], admins["id"]):
        assert refused(c.get(f"{path}/{sid}", headers=vnpt), "vnpt-noc", str(sid))
        assert refused(c.delete(f"{path}/{sid}", headers=vnpt), "vnpt-noc", str(sid))
    assert c.get(f"{path}/{theirs['id']}", headers=auth("noc")).json()["status"] == "active"  # untouched
    assert c.get(f"{path}/{own.json()['id']}", headers=vnpt).status_code == 200
    assert c.delete(f"{path}/{own.json()['id']}", headers=vnpt).json()["status"] == "expired"


def test_availability_of_another_operator_is_refused(rig: tuple[TestClient, Store, dict[str, int]]) -> None:
    c, _, _ = rig
    vnpt = auth("vnpt-noc")
    window = {"ends_at": "2099-01-01T00:00:00Z", "starts_at": (T0 - 60_000) / 1000}
    c.post("/api/v1/maintenance", json={**window, "matchers": ['operator="vnpt"']}, headers=vnpt)
    c.post("/api/v1/maintenance", json={**window, "matchers": ['operator="viettel"']}, headers=auth("noc"))
    period = {"from": (T0 - 60_000) / 1000, "to": (T0 + 60_000) / 1000}

    assert refused(
        c.get("/api/v1/availability", params={**period, "operator": "viettel"}, headers=vnpt), "vnpt"
    )
    for params in (period, {**period, "operator": "vnpt"}):
        r = c.get("/api/v1/availability", params=params, headers=vnpt)
        assert r.status_code == 200 and [e["entity"] for e in r.json()["entities"]] == ["rtr-vnpt"]
        assert [w["matchers"] for w in r.json()["maintenance"]] == [['operator="vnpt"']]
        assert r.json()["entities"][0]["maintenance_s"] == 120.0  # the window covers the whole period
    seen = c.get("/api/v1/availability", params=period, headers=auth("dept")).json()
    assert sorted(e["entity"] for e in seen["entities"]) == ["rtr-viettel", "rtr-vnpt"]
    assert len(seen["maintenance"]) == 2
    theirs = c.get("/api/v1/availability", params={**period, "kind": "interface"}, headers=vnpt)
    assert theirs.status_code == 200 and theirs.json()["entities"] == []
