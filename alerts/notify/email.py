"""E-mail receiver: one message per notification over SMTP (aiosmtplib), STARTTLS or TLS.

The SMTP password is a secret of the configuration and is never logged; errors carry the
SMTP error class and the server's reply code only.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib

from alerts.notify import text
from alerts.notify.outbox import DeliveryError
from netqos.config import EmailReceiverSettings


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
