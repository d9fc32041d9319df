"""Receivers against real servers: e-mail at aiosmtpd, alerts in a real prometheus-alertmanager,
chat through apprise, and a webhook that answers 500 for two minutes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from alerts.engine import AlertEngine
from alerts.notify import make_receivers
from alerts.notify.outbox import Dispatcher, Outbox, Receiver
from alerts.rules import parse_rules
from tests.alerting import Net, SmtpSink, WebhookSink, alert_settings, start_alertmanager
from tests.conftest import terminate

RULES = (
    "rules:\n  - {name: device_down, kind: state, entity_kind: device, states: [down], severity: critical}\n"
)
SMTP_PASSWORD = "smtp-pw-never-in-a-log-7731"
HOOK_TOKEN = "hook-token-never-in-a-log-5512"


def now_ms() -> int:
    return int(time.time() * 1000)


class Rig:
    """A real store with a small network, the engine, and the receiver under test."""

    def __init__(self, tmp_path: Path, receiver: dict[str, Any], n_children: int = 3, **kw: Any) -> None:
        self.net = Net(tmp_path / "alerts.db", n_children=n_children)
        name = receiver["name"]
        self.settings = alert_settings(
            receivers=[receiver], route={"receivers": [name], "group_wait_s": 0, "group_interval_s": 1}, **kw
        )
        self.engine = AlertEngine(self.net.store, self.settings, rules=parse_rules(RULES))
        self.outbox = Outbox(self.net.store)
        receivers: list[Receiver] = make_receivers(self.settings)  # type: ignore[assignment]
        self.dispatcher = Dispatcher(self.outbox, receivers[0], self.settings)

    def fail(self, dev: str) -> None:
        t = now_ms()
        self.net.down(dev, t - 1000, t)
        self.net.poll("rtr", t, ok=True)  # its parent answers: it is its own root cause

    async def deliver(self) -> list[bool]:
        """Tick until the outbox has something, then one attempt per pending row."""
        out = []
        for _ in range(20):
            self.engine.tick()
            p = self.outbox.head(self.dispatcher.receiver.name)
            if p is not None:
                out.append(await self.dispatcher.attempt(p))
                if not out[-1]:
                    return out
                continue
            if out:
                return out
            await asyncio.sleep(0.2)
        return out


@pytest.fixture
def rig_close() -> Iterator[list[Rig]]:
    rigs: list[Rig] = []
    yield rigs
    for r in rigs:
        r.net.store.close()


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_email_arrives_at_smtp_server_and_password_is_never_logged(
    tmp_path: Path, rig_close: list[Rig], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with SmtpSink(username="alerts", password=SMTP_PASSWORD) as smtp:
        receiver = {
            "type": "email",
            "name": "mail",
            "smarthost": "127.0.0.1",
            "port": smtp.port,
            "from_addr": "netqos@example.vn",
            "to": ["noc@example.vn", "oncall@example.vn"],
            "username": "alerts",
            "password": SMTP_PASSWORD,
        }
        rig = Rig(tmp_path, receiver)
        rig_close.append(rig)
        sent_before = sample("netqos_notifications_sent_total", {"receiver": "mail", "type": "email"})
        rig.fail("bts-1")
        assert await rig.deliver() == [True]
        rig.net.up("bts-1", now_ms())
        assert await rig.deliver() == [True]
        msgs = smtp.wait_for(2, 10)
        assert len(msgs) == 2 and smtp.logins == ["alerts", "alerts"]
        assert msgs[0]["Subject"] == "[FIRING:1] device_down bts-1"
        assert msgs[1]["Subject"].startswith("[RESOLVED] device_down bts-1")
        assert msgs[0]["To"] == "noc@example.vn, oncall@example.vn"
        text = msgs[0].get_payload(decode=True).decode()  # type: ignore[union-attr]
        assert "root cause: bts-1" in text and "severity critical" in text
        assert (
            sample("netqos_notifications_sent_total", {"receiver": "mail", "type": "email"})
            == sent_before + 2
        )
        # A wrong password: refused, retried later; the error names the SMTP code, not the secret.
        smtp.password = "something-else"
        rig.fail("bts-2")
        assert await rig.deliver() == [False]
        row = rig.outbox.rows("mail")[-1]
        assert row["state"] == "pending" and row["attempts"] == 1 and "535" in (row["last_error"] or "")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SMTP_PASSWORD not in logged and "notification_failed" in logged


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base = start_alertmanager(tmp_path_factory.mktemp("alertmanager"))
    try:
        yield base
    finally:
        terminate(proc)


def am_alerts(base: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/api/v2/alerts", timeout=5)
    r.raise_for_status()
    return list(r.json())


async def test_incidents_appear_in_a_real_alertmanager_and_resolve_there(
    tmp_path: Path, rig_close: list[Rig], alertmanager: str
) -> None:
    rig = Rig(tmp_path, {"type": "alertmanager", "name": "am", "url": alertmanager})
    rig_close.append(rig)
    rig.fail("bts-2")
    assert await rig.deliver() == [True]
    mine = [a for a in am_alerts(alertmanager) if a["labels"].get("entity") == "bts-2"]
    assert len(mine) == 1
    a = mine[0]
    assert a["labels"]["alertname"] == "device_down" and a["labels"]["severity"] == "critical"
    assert a["annotations"]["root_cause"] == "bts-2" and a["status"]["state"] in ("active", "unprocessed")
    incident_id = a["labels"]["incident"]
    rig.net.up("bts-2", now_ms())
    assert await rig.deliver() == [True]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        still = [x for x in am_alerts(alertmanager) if x["labels"].get("incident") == incident_id]
        if not still:
            break
        await asyncio.sleep(0.2)
    assert not still, f"alert still active in Alertmanager: {still}"


async def test_chat_through_apprise_url(tmp_path: Path, rig_close: list[Rig]) -> None:
    with WebhookSink() as chat:
        # json:// is apprise's generic JSON service: a real apprise notification over HTTP.
        url = f"json://127.0.0.1:{chat.port}/hook"
        rig = Rig(tmp_path, {"type": "apprise", "name": "chat", "urls": [url]})
        rig_close.append(rig)
        rig.fail("bts-0")
        assert await rig.deliver() == [True]
        bodies = chat.wait_for(1, 10)  # apprise has returned: the POST is in
        assert len(bodies) == 1
        assert bodies[0]["title"] == "[FIRING:1] device_down bts-0"
        assert "root cause: bts-0" in bodies[0]["message"]


async def test_webhook_500_for_two_minutes_then_every_notification_once_in_order(
    tmp_path: Path, rig_close: list[Rig], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with WebhookSink() as hook:
        hook.status = 500
        receiver = {"type": "webhook", "name": "hook", "url": hook.url, "bearer_token": HOOK_TOKEN}
        rig = Rig(tmp_path, receiver, n_children=6, retry_initial_s=0.5, retry_max_s=4, eval_interval_s=0.2)
        rig_close.append(rig)
        failed_before = sample("netqos_notifications_failed_total", {"receiver": "hook", "type": "webhook"})
        stop = asyncio.Event()
        tasks = [asyncio.create_task(rig.engine.run(stop)), asyncio.create_task(rig.dispatcher.run(stop))]
        started = time.monotonic()
        try:
            expected = []
            # During the outage six BTS fail and recover, one after the other.
            for child in rig.net.children:
                rig.fail(child)
                await asyncio.sleep(4)
                rig.net.up(child, now_ms())
                await asyncio.sleep(4)
                expected += [("firing", child), ("resolved", child)]
            await asyncio.sleep(max(0.0, 120 - (time.monotonic() - started)))
            assert hook.received == [] and len(hook.refused) >= 12
            hook.status = 200  # the receiver recovers
            # Off the loop: the dispatcher runs on it meanwhile.
            await asyncio.to_thread(hook.wait_for, len(expected), 60)
            await asyncio.sleep(3)  # anything extra would arrive now
            bodies = hook.bodies()
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
    got = [(b["status"], b["alerts"][0]["labels"]["entity"]) for b in bodies]
    assert got == expected
    keys = [b["dedupKey"] for b in bodies]
    assert len(set(keys)) == len(keys)
    assert keys == [r["dedup_key"] for r in rig.outbox.rows("hook")]
    assert all(r["state"] == "sent" for r in rig.outbox.rows("hook"))
    assert all(r.headers.get("Authorization") == f"Bearer {HOOK_TOKEN}" for r in hook.received)
    assert all(
        r.headers.get("Idempotency-Key") == b["dedupKey"] for r, b in zip(hook.received, bodies, strict=True)
    )
    assert (
        sample("netqos_notifications_failed_total", {"receiver": "hook", "type": "webhook"})
        >= failed_before + 12
    )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert HOOK_TOKEN not in logged
    assert hook.url not in logged
    assert "HTTP 500" in logged
