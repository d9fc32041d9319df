"""The notification path: route -> group -> mute (silences, inhibit rules) -> dedup -> outbox,
then delivery to the receivers (registry.py: webhook, e-mail, Alertmanager, apprise, and any
receiver registered there) with retry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alerts.notify.registry import make_notifier

if TYPE_CHECKING:  # alerts.settings imports this package's registry: no import cycle at run time
    from alerts.settings import AlertSettings


def make_receivers(settings: AlertSettings) -> list[object]:
    """One notifier per configured receiver, built by the notifier its type registered."""
    return [make_notifier(r) for r in settings.receivers]
