"""Webhook receiver: POSTs the Alertmanager webhook JSON body (version 4) to a URL.

Any tool that takes Alertmanager's webhooks takes ours; each alert also carries its
`incident` (id, root cause, symptoms). The URL and the bearer token are secrets of the
configuration: neither is ever logged, and errors name only the HTTP status.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr, field_validator

from alerts.notify.registry import DeliveryError, ReceiverSettings, register

# httpx logs every request's URL at INFO; a webhook URL may hold a token in its path or query.
logging.getLogger("httpx").setLevel(logging.WARNING)


class WebhookReceiverSettings(ReceiverSettings):
    type: Literal["webhook"]
    url: SecretStr = Field(
        description="receives the Alertmanager webhook JSON body; a secret (tokens often sit in the path)"
    )
    bearer_token: SecretStr | None = None
    timeout_s: float = Field(10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v


async def post_json(client: httpx.AsyncClient, url: str, body: Any, headers: dict[str, str]) -> None:
    """POST JSON; DeliveryError (status or error class only: the URL may hold a token) unless 2xx."""
    try:
        r = await client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(type(exc).__name__) from None
    if not 200 <= r.status_code < 300:
        raise DeliveryError(f"HTTP {r.status_code}")


def http_headers(bearer_token: SecretStr | None) -> dict[str, str]:
    headers = {"User-Agent": "netqos-alerts"}
    if bearer_token is not None:
        headers["Authorization"] = f"Bearer {bearer_token.get_secret_value()}"
    return headers


class WebhookReceiver:
    type = "webhook"

    def __init__(self, settings: WebhookReceiverSettings) -> None:
        self.name = settings.name
        self.timeout_s = settings.timeout_s
        self._url = settings.url.get_secret_value()
        self._headers = http_headers(settings.bearer_token)
        self._client = httpx.AsyncClient(timeout=settings.timeout_s)

    async def send(self, payload: dict[str, Any], dedup_key: str) -> None:
        await post_json(self._client, self._url, payload, {**self._headers, "Idempotency-Key": dedup_key})

    async def aclose(self) -> None:
        await self._client.aclose()

    def __repr__(self) -> str:  # never the URL or the token
        return f"WebhookReceiver(name={self.name!r})"


register("webhook", WebhookReceiverSettings, WebhookReceiver)
