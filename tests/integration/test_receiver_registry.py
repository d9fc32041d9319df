"""A receiver is one file: a toy receiver defined here and registered with one line is
configured from YAML (validated, its secret masked) and receives a real incident's notification
through the engine, the outbox and the dispatcher (docs/alerting.md, "Adding a receiver")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import Field, SecretStr

from alerts.engine import AlertEngine
from alerts.notify import make_receivers
from alerts.notify.outbox import Dispatcher, Outbox, Receiver
from alerts.notify.registry import DeliveryError, ReceiverSettings, kinds, register
from alerts.rules import parse_rules
from ground.errors import ConfigError
from netqos.config import load_settings, masked_dict
from tests.alerting import Net

pytestmark = pytest.mark.integration

RULES = (
    "rules:\n  - {name: device_down, kind: state, entity_kind: device, states: [down], severity: critical}\n"
)
TOY_TOKEN = "toy-token-never-printed-4471"


# ---- the toy receiver: what a receiver's file holds --------------------------------------
class ToyReceiverSettings(ReceiverSettings):
    type: Literal["toy"]
    channel: str = Field(pattern=r"^#[a-z-]{1,20}$", description="where the toy posts")
    token: SecretStr
    timeout_s: float = Field(5.0, gt=0, le=60)


class ToyReceiver:
    type = "toy"
    inbox: ClassVar[list[tuple[str, dict[str, Any], str]]] = []  # (channel, payload, dedup_key)
    fail_next = False

    def __init__(self, settings: ToyReceiverSettings) -> None:
        self.name = settings.name
        self.timeout_s = settings.timeout_s
        self._channel = settings.channel

    async def send(self, payload: dict[str, Any], dedup_key: str) -> None:
        if ToyReceiver.fail_next:
            ToyReceiver.fail_next = False
            raise DeliveryError("toy is down")
        ToyReceiver.inbox.append((self._channel, payload, dedup_key))

    async def aclose(self) -> None:
        return None


register("toy", ToyReceiverSettings, ToyReceiver)  # the one registration line
# -------------------------------------------------------------------------------------------


def _config(tmp_path: Path, receiver: str) -> Path:
    path = tmp_path / "netqos.yaml"
    path.write_text(
        "alerts:\n"
        "  receivers:\n"
        f"{receiver}"
        "  route: {receivers: [chat], group_wait_s: 0, group_interval_s: 1}\n"
        "  topology_settle_max_s: 60\n",
        encoding="utf-8",
    )
    return path


GOOD = f"    - {{type: toy, name: chat, channel: '#noc', token: {TOY_TOKEN}}}\n"


def test_the_toy_is_known_beside_the_built_in_receivers() -> None:
    assert {"webhook", "email", "alertmanager", "apprise", "toy"} <= set(kinds())


def test_a_toy_receiver_is_configured_from_yaml_and_its_secret_masked(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path, GOOD))
    (r,) = settings.alerts.receivers
    assert isinstance(r, ToyReceiverSettings)
    assert (r.name, r.channel, r.token.get_secret_value(), r.timeout_s) == ("chat", "#noc", TOY_TOKEN, 5.0)
    shown = masked_dict(settings)["alerts"]["receivers"]
    assert shown == [
        {
            "type": "toy",
            "name": "chat",
            "send_resolved": True,
            "channel": "#noc",
            "token": "********",
            "timeout_s": 5.0,
        }
    ]


@pytest.mark.parametrize(
    ("entry", "key", "reason"),
    [
        # Its own keys are checked as any section's: a bad value, a typo, a missing key.
        ("    - {type: toy, name: chat, channel: noc, token: t}\n", "alerts.receivers.0.channel", "pattern"),
        (
            "    - {type: toy, name: chat, channel: '#noc', token: t, chanel: '#x'}\n",
            "alerts.receivers.0.chanel",
            "unknown key",
        ),
        ("    - {type: toy, name: chat, channel: '#noc'}\n", "alerts.receivers.0.token", "Field required"),
        (
            "    - {type: toy, name: chat, channel: '#noc', token: t, timeout_s: 61}\n",
            "alerts.receivers.0.timeout_s",
            "60",
        ),
        # A type nobody registered names the ones that exist.
        ("    - {type: toys, name: chat}\n", "alerts.receivers.0", "'toy'"),
    ],
)
def test_a_bad_toy_entry_is_a_config_error_at_its_key(
    tmp_path: Path, entry: str, key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_config(tmp_path, entry))
    assert err.value.key == key
    assert reason in err.value.reason
    assert TOY_TOKEN not in str(err.value)


async def test_a_toy_receiver_gets_the_firing_and_the_resolved_notification(tmp_path: Path) -> None:
    alerts = load_settings(_config(tmp_path, GOOD)).alerts
    net = Net(tmp_path / "alerts.db")
    try:
        engine = AlertEngine(net.store, alerts, rules=parse_rules(RULES))
        outbox = Outbox(net.store)
        receivers: list[Receiver] = make_receivers(alerts)  # type: ignore[assignment]
        assert [type(r) for r in receivers] == [ToyReceiver]
        dispatcher = Dispatcher(outbox, receivers[0], alerts)
        ToyReceiver.inbox.clear()

        async def deliver() -> list[bool]:
            out: list[bool] = []
            for _ in range(20):  # bounded: 20 ticks, 0.2 s apart
                engine.tick()
                p = outbox.head("chat")
                if p is not None:
                    out.append(await dispatcher.attempt(p))
                    if not out[-1]:
                        return out
                    continue
                if out:
                    return out
                await asyncio.sleep(0.2)
            return out

        t = int(time.time() * 1000)
        net.down("bts-1", t - 1000, t)
        net.poll("rtr", t, ok=True)  # its parent answers: bts-1 is its own root cause
        ToyReceiver.fail_next = True  # a failed delivery is kept and retried, as for any receiver
        assert await deliver() == [False]
        assert ToyReceiver.inbox == []
        p = outbox.head("chat")
        assert p is not None
        assert await dispatcher.attempt(p) is True
        net.up("bts-1", int(time.time() * 1000))
        assert await deliver() == [True]

        assert [c for c, _, _ in ToyReceiver.inbox] == ["#noc", "#noc"]
        firing, resolved = (payload for _, payload, _ in ToyReceiver.inbox)
        assert firing["status"] == "firing" and resolved["status"] == "resolved"
        assert firing["receiver"] == "chat"
        assert [a["labels"]["alertname"] for a in firing["alerts"]] == ["device_down"]
        assert firing["alerts"][0]["labels"]["entity"] == "bts-1"
        assert ToyReceiver.inbox[0][2] != ToyReceiver.inbox[1][2]  # one dedup key per notification
        await receivers[0].aclose()
    finally:
        net.store.close()
