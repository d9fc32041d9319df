"""What the fleet view keeps across restarts and revocations, and how fast a probe on the HTTPS
fallback tells the server about a schedule (docs/probe-agent.md, "Central schedules").

* An agent report POSTed over HTTPS is kept in the store: a restarted service shows it again
  (SQLite and PostgreSQL). A retained MQTT report the agent stamped earlier does not replace it.
* A revoked probe: the running schedule service stops publishing its schedule and clears its
  retained schedule and agent topics, through a real mosquitto with the production ACL
  (deploy/mosquitto/acl) and the netqos-ingest account the server uses.
* An agent on the HTTPS fallback sends its status right after refusing or applying a schedule,
  and sends it again soon when the server did not take it: not only every https_poll_s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from api.routers.ingest import token_sha256
from collector.model import ProbeInfo
from collector.probe_schedules import AgentReports, ScheduleService
from collector.store.settings import StoreSettings
from collector.store.store import open_store
from netqos.config import Settings
from netqos.enroll import Files, revoke
from netqos.roles.api import schedule_service
from probes.agent.agent import ProbeAgent
from probes.agent.config import config_from_dict
from probes.agent.schedule import schedule_digest
from tests.conftest import LOOPBACK, free_port
from tests.integration.test_probe_agent_mqtt import fixed_clock, running, unique_id
from tests.mqtt_broker import MosquittoBroker

pytestmark = pytest.mark.integration

PID = "th-16021-fleet"
INGEST = "netqos-ingest"
ADMIN = "fleet-admin-token-0123456789abcdef"
TESTS = [{"kind": "tcp", "target": LOOPBACK, "port": 9, "interval_s": 3600}]
DIGEST = schedule_digest(TESTS, None)
SCHEDULES = {"version": 3, "schedules": [{"name": "all", "match": {}, "tests": TESTS}]}


def report(ts_ms: int, agent_version: str, **more: Any) -> bytes:
    return orjson.dumps({"v": 1, "probe_id": PID, "ts": ts_ms, "agent_version": agent_version, **more})


def probe_info() -> ProbeInfo:
    return ProbeInfo(PID, "16021", "1602101", "", "viettel", "4G")


# -- 1. HTTPS reports survive a restart -----------------------------------------------------


def test_https_report_survives_a_restart(store_settings: StoreSettings, tmp_path: Path) -> None:
    sched_file = tmp_path / "schedules.yaml"
    sched_file.write_text(yaml.safe_dump(SCHEDULES))
    settings = Settings.model_validate(
        {
            "api": {"keys": [{"name": "dept", "role": "admin", "token": ADMIN}]},
            "probes": {"schedules_file": str(sched_file)},
        }
    )
    token = secrets.token_urlsafe(24)
    refused = {
        "version": 4,
        "digest": "ab" * 32,
        "reason": "tests.0: unknown kind 'twamp'",
        "ts": 1_700_000_000_500,
    }
    body = report(
        1_700_000_000_000, "1.2.3", schedule={"version": 3, "name": "all", "digest": DIGEST}, refused=refused
    )

    def app_on(store: Any) -> TestClient:
        # The production composition: the service as `netqos serve` builds it (its store included).
        app = create_app(settings, store)
        app.state.schedules = schedule_service(settings, store)
        return TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"})

    store = open_store(store_settings)
    try:
        store.register_probes([probe_info()])
        assert store.set_probe_token_sha256(PID, token_sha256(token))
        with app_on(store) as api:
            resp = api.post(
                "/api/v1/probe/status", content=body, headers={"Authorization": f"Bearer {token}"}
            )
            assert resp.status_code == 204, resp.text
            # Not a report of this probe: refused, and the kept one stays.
            bad = api.post(
                "/api/v1/probe/status", content=b'{"v": 1}', headers={"Authorization": f"Bearer {token}"}
            )
            assert bad.status_code == 422
    finally:
        store.close()

    # The service restarts: a new process, the same database, no broker at all.
    store = open_store(store_settings)
    try:
        with app_on(store) as api:
            rows = api.get("/api/v1/probes").json()["probes"]
        assert len(rows) == 1
        row = rows[0]
        assert row["agent_version"] == "1.2.3"
        assert row["schedule_version"] == 3 and row["schedule_name"] == "all"
        assert row["schedule_refused_version"] == 4
        assert row["schedule_refused_reason"] == "tests.0: unknown kind 'twamp'"
        assert row["schedule_state"] == "current"  # runs 3, which is what the server expects
    finally:
        store.close()


def test_a_retained_report_older_than_the_kept_one_does_not_replace_it() -> None:
    reports = AgentReports()
    # Loaded from the store: the agent's HTTPS report of ts 2000.
    assert reports.take(PID, report(2000, "https-one"), via="https", received_ms=5) is not None
    # The broker's retained report, stamped by the agent before it (1999): kept is the newer.
    reports.take(PID, report(1999, "mqtt-old"), via="mqtt", retained=True)
    assert reports.latest[PID].agent_version == "https-one"
    # Same ts (2000): the broker's one is as new: it is taken.
    reports.take(PID, report(2000, "mqtt-same"), via="mqtt", retained=True)
    assert reports.latest[PID].agent_version == "mqtt-same"
    # Stamped later (2001): taken.
    reports.take(PID, report(2001, "mqtt-new"), via="mqtt", retained=True)
    assert reports.latest[PID].agent_version == "mqtt-new"
    # A live (not retained) report is taken whatever its stamp (the agent's clock was stepped back).
    reports.take(PID, report(10, "mqtt-live"), via="mqtt")
    assert reports.latest[PID].agent_version == "mqtt-live"


# -- 2. revocation clears the probe's retained topics ------------------------------------------


@contextlib.asynccontextmanager
async def schedules_running(service: ScheduleService) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wait_for(pred: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def retained(b: MosquittoBroker, user: str, topic: str, *, port: int) -> list[bytes]:
    """What a fresh subscriber gets of `topic` within 1 s (the retained message, if any)."""
    got: list[bytes] = []
    async with aiomqtt.Client(
        LOOPBACK, port, identifier=unique_id("fresh"), username=user, password=b.password(user)
    ) as c:
        await c.subscribe(topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for msg in c.messages:
                    got.append(msg.payload if isinstance(msg.payload, bytes) else b"")
    return got


async def test_revoked_probe_topics_are_cleared_under_the_production_acl(tmp_path: Path) -> None:
    users = {INGEST: f"pw-{secrets.token_hex(8)}", PID: f"pw-{secrets.token_hex(8)}"}
    sched_file = tmp_path / "schedules.yaml"
    sched_file.write_text(yaml.safe_dump(SCHEDULES))
    store = open_store(StoreSettings(sqlite_path=tmp_path / "netqos.db"))
    store.register_probes([probe_info()])
    assert store.set_probe_token_sha256(PID, token_sha256("t" * 32))
    schedule_topic = f"netqos/v1/probes/{PID}/schedule"
    agent_topic = f"netqos/v1/probes/{PID}/agent"

    def service() -> ScheduleService:
        return ScheduleService(
            sched_file,
            store.probes,
            broker=(LOOPBACK, b.port),
            username=INGEST,
            password=b.password(INGEST),
            client_id=unique_id("schedules"),
            check_interval_s=0.2,
            repo=store.probe_repo,
        )

    try:
        with MosquittoBroker(users) as b:
            async with aiomqtt.Client(
                LOOPBACK, b.probe_port, identifier=unique_id(PID), username=PID, password=b.password(PID)
            ) as probe:
                await probe.subscribe(schedule_topic, qos=1)
                got: list[bytes] = []

                async def collect() -> None:
                    async for msg in probe.messages:
                        got.append(msg.payload if isinstance(msg.payload, bytes) else b"")

                collector = asyncio.create_task(collect())
                # The probe reports over MQTT (retained) and, earlier, over HTTPS (kept in the store).
                await probe.publish(agent_topic, report(2000, "1.0.0"), qos=1, retain=True)
                svc = service()
                assert svc.take_https_report(PID, report(1000, "0.9.0")) is not None
                try:
                    async with schedules_running(svc):
                        await wait_for(lambda: any(got), 10, "the probe's schedule")
                        assert orjson.loads(got[-1])["version"] == 3
                        await wait_for(lambda: PID in svc.reports.latest, 10, "the agent report")
                        assert svc.reports.latest[PID].agent_version == "1.0.0"

                        files = Files(
                            passwd=tmp_path / "passwd", acl=tmp_path / "acl", out_dir=tmp_path / "out"
                        )
                        result = revoke(store, PID, files)
                        assert result.https_token and result.marked
                        # Within a few checks (0.2 s each) the retained schedule is cleared ...
                        await wait_for(lambda: got[-1] == b"", 10, "the schedule topic cleared")
                        await wait_for(lambda: PID not in svc.reports.latest, 10, "the report forgotten")
                        assert svc.cleared_total == 1
                        # ... and not published again (five more checks).
                        n = len(got)
                        await asyncio.sleep(1.0)
                        assert got[n:] == []
                    assert store.probe_repo.agent_reports() == []  # the HTTPS one is gone too
                    assert store.probes(PID)[0].revoked_ms is not None

                    # A restarted service publishes nothing for it (it clears again: still empty).
                    async with schedules_running(service()):
                        await asyncio.sleep(1.0)
                    assert all(p == b"" for p in got[n:])
                finally:
                    collector.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await collector

            # A fresh subscriber finds nothing retained: the broker took both clears from
            # netqos-ingest (the production ACL lets it write both topics).
            assert await retained(b, PID, schedule_topic, port=b.probe_port) == []
            assert await retained(b, INGEST, agent_topic, port=b.port) == []
    finally:
        store.close()


# -- 3. the agent's status over the HTTPS fallback ---------------------------------------------


@dataclass
class FakeServer:
    """The server's probe endpoints; the first status POST gets a 503 (a server restarting)."""

    schedule: bytes
    statuses: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def _send(self, code: int, body: bytes = b"") -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send(200, state.schedule) if self.path == "/api/v1/probe/schedule" else self._send(404)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/api/v1/probe/status":
                self._send(204)  # batches
                return
            with state.lock:
                code = 503 if not state.statuses else 204
                state.statuses.append((time.monotonic(), code, json.loads(body)))
            self._send(code)

    return Handler


@contextlib.contextmanager
def fake_server(state: FakeServer) -> Iterator[str]:
    server = ThreadingHTTPServer((LOOPBACK, 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def schedule_message(version: int, tests: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "probe_id": PID,
            "name": "all",
            "version": version,
            "digest": schedule_digest(tests, None),
            "tests": tests,
            "budget_bytes_month": None,
        }
    )


async def test_status_goes_out_over_https_right_after_a_schedule_is_refused_or_applied(
    tmp_path: Path,
) -> None:
    bad_tests = [{"kind": "twamp", "target": LOOPBACK, "interval_s": 60}]
    state = FakeServer(schedule=schedule_message(5, bad_tests))
    with fake_server(state) as url:
        agent = ProbeAgent(
            config_from_dict(
                {
                    "probe_id": PID,
                    "operator": "viettel",
                    "technology": "4G",
                    # No broker listens there: the fallback is in use from the start (after_s 0).
                    "broker": {
                        "host": LOOPBACK,
                        "port": free_port(),
                        "reconnect_min_s": 1,
                        "reconnect_max_s": 2,
                    },
                    "queue": {"path": str(tmp_path / "queue.db")},
                    "https_fallback": {"enabled": True, "url": url, "token": "x" * 32, "after_s": 0},
                    # An hour between polls: anything sooner than that is the prompt path.
                    "schedule": {"https_poll_s": 3600},
                    "schedule_jitter_ratio": 0,
                    "tests": TESTS,
                }
            ),
            clock=fixed_clock,
            grace_s=1,
        )
        try:
            async with running(agent):
                # The fetch brings version 5, refused; the status POSTed at once carries the
                # refusal, gets a 503, and is sent again after the backoff (1 s +-20 %, plus
                # up to poll_s 1 s): not an hour later.
                await wait_for(lambda: len(state.statuses) >= 2, 15, "the status sent again")
                (t1, c1, s1), (t2, c2, s2) = state.statuses[:2]
                assert (c1, c2) == (503, 204)
                assert s1["refused"]["version"] == 5 and s2["refused"]["version"] == 5
                assert s2["refused"]["reason"].startswith("tests.0: ")
                assert 0.8 <= t2 - t1 <= 10.0
                # A schedule applied between polls (here handed to the agent as MQTT would) is
                # reported at once too.
                agent.on_schedule_message(schedule_message(6, TESTS), "mqtt")
                await wait_for(lambda: len(state.statuses) >= 3, 10, "the status after applying")
                assert state.statuses[2][2]["schedule"]["version"] == 6
                assert state.statuses[2][2]["refused"] is None  # 6 supersedes the refused 5
                # Nothing more until the next poll (an hour): no status storm.
                await asyncio.sleep(2.5)
                assert len(state.statuses) == 3
        finally:
            agent.close()
