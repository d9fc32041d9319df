"""The `ingest` role: the MQTT consumer and the probe-health monitor.

Alone (`netqos ingest`, or `serve --roles ingest`), a worker joins an external broker (shared
subscriptions spread the stream over N workers). Only the all-in-one `netqos serve` starts
the embedded broker when no `mqtt.host` is set.
"""

from __future__ import annotations

from typing import Any

from collector.mqtt.consumer import MqttConsumer
from collector.probe_health import ProbeHealthMonitor
from ground.errors import ConfigError
from netqos.config import Settings
from netqos.roles import ALL_ROLES, Role
from netqos.roles.shared import Shared
from netqos.service import port_is_free, start_embedded_broker


async def start_broker(settings: Settings, roles: frozenset[str]) -> Any:
    """The embedded broker if this process is the whole service and no broker is configured;
    None otherwise. A worker that ingests without `mqtt.host` is a ConfigError."""
    if settings.mqtt.host is not None:
        return None
    if roles != ALL_ROLES:
        if "ingest" in roles:
            raise ConfigError(
                "mqtt.host", "-", "a worker joins an external broker: set mqtt.host (or run `serve`)"
            )
        return None
    emb = settings.mqtt.embedded
    if not port_is_free(emb.host, emb.port):
        raise ConfigError(
            "mqtt.embedded.port",
            str(emb.port),
            f"{emb.host}:{emb.port} is in use; set another port or mqtt.host",
        )
    return await start_embedded_broker(emb.host, emb.port)


def build(shared: Shared) -> tuple[Role, MqttConsumer]:
    """The consumer (returned too: a demo waits for its subscription) and the health monitor;
    the broker connection is a readiness condition of this process."""
    settings = shared.settings
    consumer = MqttConsumer(settings.mqtt, settings.ingest, shared.pipeline)

    def broker_check() -> tuple[bool, str]:
        if consumer.connected:
            return True, "subscribed to " + settings.mqtt.topic
        return False, "not connected to the MQTT broker (see the logs for the reason)"

    monitor = ProbeHealthMonitor(shared.store, settings.ingest.probe_check_interval_s)
    role = Role(
        tasks=[("mqtt-consumer", consumer.run), ("probe-health", monitor.run)],
        checks={"broker": broker_check},
    )
    return role, consumer
