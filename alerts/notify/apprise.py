"""Chat receiver through apprise URLs (tgram://, slack://, discord://, msteams://, json://, ...).

The URLs hold the services' tokens: they are secrets of the configuration, never logged
(apprise's own logger is kept at WARNING, where it prints no URL).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field, SecretStr

from alerts.notify import text
from alerts.notify.registry import DeliveryError, ReceiverSettings, register

logging.getLogger("apprise").setLevel(logging.WARNING)


class AppriseReceiverSettings(ReceiverSettings):
    type: Literal["apprise"]
    urls: list[SecretStr] = Field(min_length=1, description="apprise URLs (tgram://, slack://, ...); secrets")
    timeout_s: float = Field(30.0, gt=0, le=300)


class AppriseReceiver:
    type = "apprise"

    def __init__(self, settings: AppriseReceiverSettings) -> None:
        self.name = settings.name
        self.timeout_s = settings.timeout_s
        import apprise as apprise_lib  # slow to import: only when an apprise receiver is configured

        self._apprise = apprise_lib.Apprise()
        for i, url in enumerate(settings.urls):
            if not self._apprise.add(url.get_secret_value()):
                raise ValueError(
                    f"alerts.receivers {settings.name}: urls[{i}] is not an apprise URL it knows"
                )

    async def send(self, payload: dict[str, Any], dedup_key: str) -> None:
        ok = await self._apprise.async_notify(body=text.body(payload), title=text.subject(payload))
        if not ok:
            raise DeliveryError("apprise could not notify every URL")

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"AppriseReceiver(name={self.name!r})"


register("apprise", AppriseReceiverSettings, AppriseReceiver)
