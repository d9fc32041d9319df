"""Prometheus Alertmanager receiver: posts incidents to its API v2 (`POST /api/v2/alerts`).

Alertmanager then routes, groups and silences them with its own configuration. It forgets
an alert that is not re-posted within its `resolve_timeout` (5 min by default), so firing
incidents are re-posted every `resend_interval_s`; a resolved incident is posted with its
`endsAt`, which resolves it there at once.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr

from alerts.notify.registry import ReceiverSettings, register
from alerts.notify.webhook import http_headers, post_json


class AlertmanagerReceiverSettings(ReceiverSettings):
    type: Literal["alertmanager"]
    url: str = Field(pattern=r"^https?://", description="base URL of a Prometheus Alertmanager")
    bearer_token: SecretStr | None = None
    resend_interval_s: float = Field(
        60.0, gt=0, le=3600, description="re-post firing alerts this often (Alertmanager forgets them)"
    )
    timeout_s: float = Field(10.0, gt=0, le=300)


def postable_alerts(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The API v2 `postableAlerts` of a notification."""
    out = []
    for a in payload.get("alerts", []):
        item: dict[str, Any] = {
            "labels": {k: str(v) for k, v in a["labels"].items() if v != ""},
            "annotations": {k: str(v) for k, v in a["annotations"].items()},
            "startsAt": a["startsAt"],
        }
        if a.get("generatorURL"):
            item["generatorURL"] = a["generatorURL"]
        if a.get("status") == "resolved":
            item["endsAt"] = a["endsAt"]
        out.append(item)
    return out


class AlertmanagerReceiver:
    type = "alertmanager"

    def __init__(self, settings: AlertmanagerReceiverSettings) -> None:
        self.name = settings.name
        self.timeout_s = settings.timeout_s
        self._url = settings.url.rstrip("/") + "/api/v2/alerts"
        self._headers = http_headers(settings.bearer_token)
        self._client = httpx.AsyncClient(timeout=settings.timeout_s)

    async def send(self, payload: dict[str, Any], dedup_key: str) -> None:
        await post_json(self._client, self._url, postable_alerts(payload), self._headers)

    async def aclose(self) -> None:
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"AlertmanagerReceiver(name={self.name!r})"


register("alertmanager", AlertmanagerReceiverSettings, AlertmanagerReceiver)
