"""The notification path: route -> group -> mute (silences, inhibit rules) -> dedup -> outbox,
then delivery to the receivers (webhook, e-mail, Alertmanager, apprise) with retry."""

from __future__ import annotations

from netqos.config import AlertSettings


def make_receivers(settings: AlertSettings) -> list[object]:
    """One receiver object per configured receiver (imported lazily: apprise is slow to import)."""
    out: list[object] = []
    for r in settings.receivers:
        if r.type == "webhook":
            from alerts.notify.webhook import WebhookReceiver

            out.append(WebhookReceiver(r))
        elif r.type == "email":
            from alerts.notify.email import EmailReceiver

            out.append(EmailReceiver(r))
        elif r.type == "alertmanager":
            from alerts.notify.alertmanager import AlertmanagerReceiver

            out.append(AlertmanagerReceiver(r))
        else:
            from alerts.notify.apprise import AppriseReceiver

            out.append(AppriseReceiver(r))
    return out
