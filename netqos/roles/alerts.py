"""The `alerts` role: rules, incidents and notifications (alerts/service.py).

Any number of processes may take it: the engine holds a lease in the store, so one of them
evaluates and delivers while the others stand by.
"""

from __future__ import annotations

from ground.errors import ConfigError
from netqos.roles import Role
from netqos.roles.shared import Shared


def build(shared: Shared) -> Role:
    """The engine's task and its rules reload; a bad rules file or receiver is a ConfigError."""
    settings = shared.settings
    if not settings.alerts.enabled:
        return Role()
    # Imported here: a process without the role never loads the engine and its receivers.
    from alerts.rules import RulesError
    from alerts.service import Alerting

    try:
        alerting = Alerting(shared.store, settings)
    except RulesError as bad:
        raise ConfigError(bad.source, "alerts.rules_file", "; ".join(bad.problems[:5])) from None
    except ValueError as bad:
        raise ConfigError("alerts.receivers", "-", str(bad)) from None

    async def reload_rules() -> str:
        alerting.request_reload()  # the rules file is also re-read when it changes
        return "alert rules requested"

    return Role(tasks=[("alerting", alerting.run)], reloaders=[reload_rules])
