"""Central measurement schedules end to end: the whole service (API, store, schedule publisher)
and a running probe agent, through a real mosquitto with the production ACL (deploy/mosquitto).

* A schedule change made through the API reaches the running agent and changes what it
  measures (which TCP listener it connects to) within one interval of the new test.
* A bad schedule is refused by the agent, which keeps running the last good one; the refusal
  (version and reason) reaches the server and shows on GET /api/v1/probes.
* The monthly data budget stops throughput tests once spent (exact byte counts).
* The fleet view carries the agent's fields and filters by commune, operator and state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import orjson
import pytest
import yaml

import probes.agent
from api.routers.ingest import token_sha256
from collector.model import ProbeInfo
from collector.probe_schedules import parse_doc, probe_schedule
from collector.store.store import open_store
from netqos.config import Settings, StoreSettings
from netqos.serve import serve
from probes.agent.agent import ProbeAgent
from probes.agent.config import config_from_dict
from probes.agent.schedule import parse_schedule, schedule_digest
from tests.conftest import LOOPBACK, Broker, free_port
from tests.integration.test_mosquitto_acl import V5, Conn
from tests.integration.test_probe_agent_mqtt import fixed_clock, running, subscriber, unique_id
from tests.integration.test_probe_agent_support import local_http
from tests.integration.test_probe_enroll import NOT_AUTHORIZED
from tests.mqtt_broker import MosquittoBroker

pytestmark = pytest.mark.integration

PID = "th-16021-sched"
OTHER = "th-16021-other"
INGEST = "netqos-ingest"
ADMIN = "schedules-admin-token-0123456789"
INTERVAL_S = 2.0  # the new test's interval: the bound on "within one interval"
SLACK_S = 2.0  # the API -> broker -> agent path on a loaded 2-core machine


class Listener:
    """A TCP listener on loopback recording when each connection came (what the agent measures)."""

    def __init__(self) -> None:
        self.accepted: list[float] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Listener:
        async def on_conn(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.accepted.append(time.monotonic())
            w.close()

        self.server = await asyncio.start_server(on_conn, LOOPBACK, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def since(self, t: float) -> list[float]:
        return [a for a in self.accepted if a >= t]


def tcp(port: int, interval_s: float) -> dict[str, Any]:
    return {
        "kind": "tcp",
        "target": LOOPBACK,
        "port": port,
        "interval_s": interval_s,
        "count": 1,
        "timeout_s": 1,
    }


async def until(pred: Callable[[], Awaitable[bool] | bool], timeout_s: float, what: str) -> float:
    """Poll `pred` every 0.05 s; the monotonic time it came true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if not isinstance(got, bool):
            got = await got
        if got:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def broker() -> Iterator[MosquittoBroker]:
    users = {INGEST: f"pw-{secrets.token_hex(8)}", PID: f"pw-{secrets.token_hex(8)}"}
    users[OTHER] = f"pw-{secrets.token_hex(8)}"
    with MosquittoBroker(users) as b:
        yield b


@contextlib.asynccontextmanager
async def service(
    tmp_path: Path, b: MosquittoBroker, schedules: dict[str, Any]
) -> AsyncIterator[httpx.AsyncClient]:
    probes_file = tmp_path / "probes.yaml"
    probes_file.write_text(
        yaml.safe_dump(
            [
                {
                    "probe_id": PID,
                    "commune": "16021",
                    "village": "1602101",
                    "operator": "viettel",
                    "technology": "4G",
                    "expected_interval_s": 1,
                }
            ]
        )
    )
    sched_file = tmp_path / "schedules.yaml"
    sched_file.write_text(yaml.safe_dump(schedules))
    api_port = free_port()
    settings = Settings.model_validate(
        {
            "mqtt": {"host": LOOPBACK, "port": b.port, "username": INGEST, "password": b.password(INGEST)},
            "store": {"sqlite_path": str(tmp_path / "netqos.db")},
            "api": {"port": api_port, "keys": [{"name": "dept", "role": "admin", "token": ADMIN}]},
            "ingest": {"probe_check_interval_s": 0.5},
            "probes": {"file": str(probes_file), "schedules_file": str(sched_file), "schedules_check_s": 0.5},
        }
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop, install_signals=False))
    try:
        async with httpx.AsyncClient(
            base_url=f"http://{LOOPBACK}:{api_port}", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5
        ) as api:

            async def up() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    return (await api.get("/readyz")).status_code == 200
                return False

            await until(up, 60, "the service to answer")
            yield api
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def agent_for(tmp_path: Path, b: MosquittoBroker, tests: list[dict[str, Any]], **over: Any) -> ProbeAgent:
    data: dict[str, Any] = {
        "probe_id": PID,
        "operator": "viettel",
        "technology": "4G",
        "broker": {"host": LOOPBACK, "port": b.probe_port, "username": PID, "password": b.password(PID)},
        "queue": {"path": str(tmp_path / "probe" / "queue.db")},
        "batch": {"max_wait_s": 0.2},
        "schedule_jitter_ratio": 0,
        "tests": tests,
        **over,
    }
    return ProbeAgent(config_from_dict(data), clock=fixed_clock, grace_s=2)


async def fleet(api: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    resp = await api.get("/api/v1/probes", params=params)
    assert resp.status_code == 200, resp.text
    rows: list[dict[str, Any]] = resp.json()["probes"]
    return rows


async def test_schedule_change_reaches_the_agent_bad_one_refused_and_reported(
    tmp_path: Path, broker: MosquittoBroker
) -> None:
    async with Listener() as a, Listener() as b_listener:
        v1 = {"version": 1, "schedules": [{"name": "all", "match": {}, "tests": [tcp(a.port, 1.0)]}]}
        async with service(tmp_path, broker, v1) as api:
            agent = agent_for(tmp_path, broker, [tcp(a.port, 30.0)])
            try:
                async with running(agent):
                    # Version 1 arrives (retained) and is what the fleet view says the agent runs.
                    async def runs(version: int) -> bool:
                        rows = await fleet(api)
                        return (
                            rows[0]["schedule_version"] == version and rows[0]["schedule_state"] == "current"
                        )

                    await until(lambda: runs(1), 20, "the agent to report schedule version 1")
                    await until(lambda: len(a.accepted) >= 2, 10, "v1's test to run")

                    # The department gives commune 16021 its own test set (more specific than "all").
                    v2 = [
                        *v1["schedules"],
                        {
                            "name": "c16021",
                            "match": {"commune": "16021"},
                            "budget_bytes_month": 10**9,
                            "tests": [tcp(b_listener.port, INTERVAL_S)],
                        },
                    ]
                    resp = await api.put("/api/v1/schedules", json={"schedules": v2, "expected_version": 1})
                    changed = time.monotonic()
                    assert resp.status_code == 200, resp.text
                    assert resp.json()["version"] == 2
                    first_b = await until(
                        lambda: bool(b_listener.accepted), INTERVAL_S + SLACK_S, "v2's test"
                    )
                    assert first_b - changed <= INTERVAL_S + SLACK_S
                    assert agent.schedule is not None and agent.schedule.version == 2
                    # The old test stopped: no connection to A once v2 ran (1 s interval before).
                    await asyncio.sleep(1.5)
                    assert a.since(first_b + 0.1) == []
                    await until(lambda: runs(2), 10, "the fleet view to show version 2")

                    # A second writer with a stale version is refused; nothing changes.
                    stale = await api.put(
                        "/api/v1/schedules", json={"schedules": v1["schedules"], "expected_version": 1}
                    )
                    assert stale.status_code == 409, stale.text
                    # The server refuses a test no agent can run, and keeps version 2.
                    bad_put = await api.put(
                        "/api/v1/schedules", json={"schedules": [{"name": "x", "tests": [{"kind": "twamp"}]}]}
                    )
                    assert bad_put.status_code == 422, bad_put.text
                    got = (await api.get("/api/v1/schedules")).json()
                    assert got["version"] == 2 and [s["name"] for s in got["schedules"]] == ["all", "c16021"]

                    # A bad schedule reaches the probe anyway (as from a newer server): a test kind
                    # this agent does not know, under a correct digest. It is refused, v2 kept.
                    bad_tests = [{"kind": "twamp", "target": LOOPBACK, "interval_s": 1}]
                    bad = {
                        "v": 1,
                        "probe_id": PID,
                        "name": "c16021",
                        "version": 3,
                        "digest": schedule_digest(bad_tests, None),
                        "tests": bad_tests,
                        "budget_bytes_month": None,
                    }
                    async with aiomqtt.Client(
                        LOOPBACK,
                        broker.port,
                        identifier=unique_id("sched-writer"),
                        username=INGEST,
                        password=broker.password(INGEST),
                    ) as writer:
                        await writer.publish(
                            f"netqos/v1/probes/{PID}/schedule", orjson.dumps(bad), qos=1, retain=True
                        )

                    async def refusal_shown() -> bool:
                        row = (await fleet(api))[0]
                        return row["schedule_refused_version"] == 3

                    await until(refusal_shown, 10, "the refusal to reach the fleet view")
                    row = (await fleet(api))[0]
                    assert row["schedule_version"] == 2 and row["schedule_name"] == "c16021"
                    assert row["schedule_refused_reason"].startswith("tests.0: "), row
                    assert agent.schedule.version == 2
                    # Still measuring what v2 says, and v2 is what a restart would run.
                    refused_at = time.monotonic()
                    await until(
                        lambda: bool(b_listener.since(refused_at)), INTERVAL_S + SLACK_S, "v2 running on"
                    )
                    kept = parse_schedule(
                        (tmp_path / "probe" / "schedule.json").read_bytes(),
                        probe_id=PID,
                        running_version=None,
                    )
                    assert kept.version == 2

                    # The fleet view: the agent's fields, and the filters.
                    assert row["agent_version"] == probes.agent.__version__
                    assert row["schedule_expected_version"] == 2
                    assert row["data_budget_bytes"] == 10**9 and row["data_used_bytes"] == 0
                    assert isinstance(row["queue_batches"], int) and row["queue_batches"] >= 0
                    assert row["data_month"] == time.strftime("%Y-%m", time.gmtime())
                    await until(lambda: _seen(api), 10, "a batch stored")
                    row = (await fleet(api))[0]
                    assert row["clock_offset_ms"] == 1.5 and row["clock_synced"] is True  # fixed_clock
                    state = row["status"]
                    assert len(await fleet(api, commune="16021", operator="viettel", state=state)) == 1
                    other_state = "offline" if state != "offline" else "online"
                    assert await fleet(api, state=other_state) == []
                    assert await fleet(api, commune="16022") == []
                    assert await fleet(api, operator="vnpt") == []
                    assert len(await fleet(api, schedule_state="current")) == 1
                    csv = await api.get("/api/v1/probes", params={"format": "csv"})
                    assert "schedule_refused_reason" in csv.text.splitlines()[0]
            finally:
                agent.close()

            # The production ACL: another probe reads nothing of this one's schedule.
            got_other: list[str] = []
            async with aiomqtt.Client(
                LOOPBACK, broker.probe_port, identifier=OTHER, username=OTHER, password=broker.password(OTHER)
            ) as spy:
                await spy.subscribe("netqos/v1/probes/#", qos=1)
                await spy.subscribe(f"netqos/v1/probes/{OTHER}/schedule", qos=1)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        async for msg in spy.messages:
                            got_other.append(str(msg.topic))
            assert got_other == []
            # ... and no probe may write a schedule, not even its own (MQTT 5: PUBACK 0x87).
            forger = Conn(
                LOOPBACK, broker.probe_port, OTHER, broker.password(OTHER), protocol=V5, client_id=OTHER
            )
            assert not forger.connect().is_failure
            try:
                for pid in (PID, OTHER):
                    assert forger.publish(f"netqos/v1/probes/{pid}/schedule", b"{}") == NOT_AUTHORIZED
            finally:
                forger.close()

            # HTTPS fallback: the probe's own token fetches its schedule and sends its status.
            token = secrets.token_urlsafe(32)
            store = open_store(StoreSettings(sqlite_path=tmp_path / "netqos.db"))
            try:
                assert store.set_probe_token_sha256(PID, token_sha256(token))
            finally:
                store.close()
            probe_auth = {"Authorization": f"Bearer {token}"}
            resp = await api.get("/api/v1/probe/schedule", headers=probe_auth)
            assert resp.status_code == 200, resp.text
            assert parse_schedule(resp.content, probe_id=PID, running_version=2).name == "c16021"
            assert (
                await api.get("/api/v1/probe/schedule", headers={"Authorization": "Bearer nope"})
            ).status_code == 401
            report = {"v": 1, "probe_id": PID, "agent_version": "9.9.9", "schedule": {"version": 2}}
            assert (
                await api.post("/api/v1/probe/status", headers=probe_auth, content=json.dumps(report))
            ).status_code == 204
            forged = {**report, "probe_id": OTHER}
            assert (
                await api.post("/api/v1/probe/status", headers=probe_auth, content=json.dumps(forged))
            ).status_code == 422
            assert (await fleet(api))[0]["agent_version"] == "9.9.9"
            # An agent cut off from the broker gets its schedule over HTTPS and reports there.
            cut_off = agent_for(
                tmp_path,
                broker,
                [tcp(a.port, 3600.0)],
                broker={"host": LOOPBACK, "port": free_port(), "reconnect_min_s": 5, "reconnect_max_s": 5},
                queue={"path": str(tmp_path / "cut-off" / "queue.db")},
                https_fallback={"enabled": True, "url": str(api.base_url), "token": token, "after_s": 0},
                schedule={"https_poll_s": 1},
            )
            try:
                async with running(cut_off):
                    await until(lambda: cut_off.schedule is not None, 10, "the schedule over HTTPS")
                    assert cut_off.schedule is not None and cut_off.schedule.version == 2

                    async def reported() -> bool:
                        return (await fleet(api))[0]["agent_version"] == probes.agent.__version__

                    await until(reported, 10, "the status over HTTPS")
            finally:
                cut_off.close()
            # Every accepted schedule write is in the audit log, with who and which version.
            audit = (await api.get("/api/v1/audit")).json()
            writes = [e for e in audit["entries"] if e["action"] == "schedules.replace"]
            assert [(e["actor"], e["detail"]["version"]) for e in writes] == [("dept", 2)]


async def _seen(api: httpx.AsyncClient) -> bool:
    return bool((await fleet(api))[0]["last_seen_ms"])


async def test_data_budget_stops_throughput_tests(mosquitto: Broker, tmp_path: Path) -> None:
    size = 100_000
    budget = 3 * size  # three uploads fit exactly; the fourth would be one byte over... and more
    with local_http() as http:
        data = {
            "probe_id": unique_id("budget"),
            "operator": "viettel",
            "technology": "4G",
            "broker": {"host": mosquitto.host, "port": mosquitto.port},
            "queue": {"path": str(tmp_path / "queue.db")},
            "batch": {"max_wait_s": 0.2},
            "tests": [tcp(1, 3600)],
        }
        agent = ProbeAgent(config_from_dict(data), clock=fixed_clock, grace_s=2)
        pid = agent.config.probe_id
        doc = parse_doc(
            {
                "version": 5,
                "schedules": [
                    {
                        "name": "metered",
                        "budget_bytes_month": budget,
                        "tests": [
                            {
                                "kind": "http_upload",
                                "url": f"{http.url}/upload",
                                "bytes": size,
                                "interval_s": 0.2,
                            }
                        ],
                    }
                ],
            },
            "test",
        )
        ps = probe_schedule(doc, ProbeInfo(pid), now_ms=0)
        assert ps is not None
        agent.on_schedule_message(ps.message, "test")
        try:
            topic = f"netqos/v1/probes/{pid}/agent"
            async with subscriber(mosquitto.host, mosquitto.port, [topic]) as col, running(agent):
                await until(lambda: agent.budget.skipped >= 2, 15, "two tests skipped for the budget")
            assert http.state.uploads == [size, size, size]
            assert agent.budget.used_bytes == budget
            assert agent.stats.tests_run["http_upload"] == 3
            assert agent.stats.tests_skipped_budget["http_upload"] >= 2
            last = orjson.loads(col.on(f"netqos/v1/probes/{pid}/agent")[-1].payload)
            assert last["budget"]["used_bytes"] == budget and last["budget"]["budget_bytes"] == budget
            assert last["budget"]["skipped_tests"] >= 2 and last["schedule"]["version"] == 5
        finally:
            agent.close()
        # The month's use is kept across a restart: a new agent skips at once.
        again = ProbeAgent(config_from_dict(data), clock=fixed_clock, grace_s=2)
        try:
            assert again.schedule is not None and again.schedule.version == 5  # the last good schedule
            assert await again.run_test_once(again.tests[0]) is None
            assert http.state.uploads == [size, size, size]
        finally:
            again.close()
