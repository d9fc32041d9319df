"""E-mail receiver: one message per notification over SMTP (aiosmtplib), STARTTLS or TLS.

The SMTP password is a secret of the configuration and is never logged; errors carry the
SMTP error class and the server's reply code only.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Literal

import aiosmtplib
from pydantic import Field, SecretStr

from alerts.notify import text
from alerts.notify.registry import DeliveryError, ReceiverSettings, register


class EmailReceiverSettings(ReceiverSettings):
    type: Literal["email"]
    smarthost: str = Field(min_length=1, description="SMTP server host")
    port: int = Field(25, ge=1, le=65535)
    from_addr: str = Field(min_length=3)
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = Field(False, description="upgrade the connection with STARTTLS")
    tls: bool = Field(False, description="implicit TLS (SMTPS, port 465)")
    timeout_s: float = Field(30.0, gt=0, le=300)


class EmailReceiver:
    type = "email"

    def __init__(self, settings: EmailReceiverSettings) -> None:
        self.name = settings.name
        self.timeout_s = settings.timeout_s
        self._s = settings

    def message(self, payload: dict[str, Any], dedup_key: str) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = text.subject(payload)
        msg["From"] = self._s.from_addr
        msg["To"] = ", ".join(self._s.to)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="netqos.alerts")
        msg["X-Netqos-Dedup-Key"] = dedup_key
        msg.set_content(text.body(payload))
        return msg

    async def send(self, payload: dict[str, Any], dedup_key: str) -> None:
        s = self._s
        try:
            await aiosmtplib.send(
                self.message(payload, dedup_key),
                hostname=s.smarthost,
                port=s.port,
                username=s.username,
                password=s.password.get_secret_value() if s.password is not None else None,
                use_tls=s.tls,
                start_tls=s.starttls,
                timeout=s.timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"{type(exc).__name__} {exc.code}") from None
        except aiosmtplib.SMTPException as exc:
            raise DeliveryError(type(exc).__name__) from None

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"EmailReceiver(name={self.name!r})"


register("email", EmailReceiverSettings, EmailReceiver)
