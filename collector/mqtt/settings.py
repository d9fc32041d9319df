"""The `mqtt` section: the broker the ingest consumer reads, or the embedded one."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ground.net import is_loopback
from ground.settings import Section


class EmbeddedBrokerSettings(Section):
    host: str = Field("127.0.0.1", description="where the embedded broker listens (anonymous: loopback)")
    port: int = Field(1883, ge=1, le=65535)
    allow_remote_anonymous: bool = Field(
        False,
        description="let the embedded broker, which has no authentication, listen beyond loopback "
        "(anyone who reaches it can publish probe data); prefer mosquitto with passwords (mqtt.host)",
    )

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> EmbeddedBrokerSettings:
        if not self.allow_remote_anonymous and not is_loopback(self.host):
            raise ValueError(
                f"mqtt.embedded.host {self.host!r} is not a loopback address: the embedded broker is"
                " anonymous, so anyone who reaches it could publish probe data. Keep 127.0.0.1, run"
                " mosquitto with a password file (mqtt.host), or set"
                " mqtt.embedded.allow_remote_anonymous: true"
            )
        return self


class MqttSettings(Section):
    host: str | None = Field(
        None, description="broker host; unset means: start the embedded broker (amqtt) in-process"
    )
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "netqos-ingest"
    client: Literal["lean", "aiomqtt"] = Field(
        "lean", description="MQTT client of the ingest consumer: our lean 3.1.1 reader, or aiomqtt/paho"
    )
    qos: Literal[0, 1, 2] = 1
    topic: str = "netqos/v1/probes/+/measurements"
    deadletter_prefix: str = "netqos/v1/deadletter"
    max_payload_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024)
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_max_s: float = Field(30.0, gt=0, le=600)
    embedded: EmbeddedBrokerSettings = EmbeddedBrokerSettings()

    @field_validator("topic")
    @classmethod
    def _topic_has_probe_level(cls, v: str) -> str:
        if "+" not in v.split("/"):
            raise ValueError("must contain a '+' level where the probe id stands")
        return v
