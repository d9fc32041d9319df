"""The receiver registry: which `alerts.receivers[].type` values exist, their settings and notifiers.

A receiver is one file: its settings class (a ReceiverSettings with a `type` literal), its
notifier (built from those settings; `name`, `timeout_s`, `async send(payload, dedup_key)`,
`async aclose()`, see outbox.Receiver) and, at its end, one line `register(...)`. The
configuration (alerts/settings.py) validates each entry of `alerts.receivers` with the class
registered for its `type`; make_receivers (alerts/notify/__init__.py) builds the notifiers
with the same entry. The built-in receivers are imported on the first look-up, so reading a
configuration without receivers imports none of them (apprise, SMTP, HTTP clients), and a
receiver's file needs nothing heavier than this module (DeliveryError is here, not in the
outbox, so validating a configuration does not load the store).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, GetCoreSchemaHandler
from pydantic_core import CoreSchema, PydanticKnownError, core_schema

from ground.settings import Section

# The receivers shipped with the service: each module ends with its register(...) line.
BUILTIN_MODULES = (
    "alerts.notify.webhook",
    "alerts.notify.email",
    "alerts.notify.alertmanager",
    "alerts.notify.apprise",
)


class DeliveryError(Exception):
    """A receiver did not take a notification (the outbox retries it). The message never holds
    a secret or a URL."""


class ReceiverSettings(Section):
    """What every receiver has; a receiver's settings class adds `type: Literal["its-name"]`
    and its own keys (a typo in one is an error, as everywhere in the configuration)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    send_resolved: bool = True
    type: str  # after the common keys, where check-config has always printed it


@dataclass(frozen=True)
class ReceiverKind:
    name: str
    settings: type[ReceiverSettings]
    notifier: Callable[[Any], object]


_KINDS: dict[str, ReceiverKind] = {}
_builtin_loaded = False


def register(type_: str, settings: type[ReceiverSettings], notifier: Callable[[Any], object]) -> None:
    """Make `type_` a receiver type: `settings` validates its entries, `notifier(settings)`
    builds what delivers to it. Registering the same type again replaces it (a reload in tests)."""
    if not type_ or type_ != type_.strip():
        raise ValueError(f"receiver type {type_!r}: must be a non-empty name")
    _KINDS[type_] = ReceiverKind(type_, settings, notifier)


def _load_builtin() -> None:
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        for name in BUILTIN_MODULES:
            importlib.import_module(name)


def kinds() -> dict[str, ReceiverKind]:
    """Every registered receiver type, the built-in ones included."""
    _load_builtin()
    return dict(_KINDS)


def kind_of(settings: ReceiverSettings) -> ReceiverKind:
    return kinds()[settings.type]


def make_notifier(settings: ReceiverSettings) -> object:
    """The notifier of one configured receiver."""
    return kind_of(settings).notifier(settings)


def _validate_receiver(value: Any) -> ReceiverSettings:
    if isinstance(value, ReceiverSettings):
        return value
    known = kinds()
    # The errors a discriminated union on `type` gives, word for word.
    if not isinstance(value, dict):
        raise PydanticKnownError("model_attributes_type")
    type_ = value.get("type")
    if type_ is None:
        raise PydanticKnownError("union_tag_not_found", {"discriminator": "'type'"})
    found = known.get(type_) if isinstance(type_, str) else None
    if found is None:
        expected = ", ".join(repr(k) for k in known)
        raise PydanticKnownError(
            "union_tag_invalid", {"discriminator": "'type'", "tag": str(type_), "expected_tags": expected}
        )
    # Its errors keep their place (alerts.receivers.0.url), as a discriminated union's would.
    settings: ReceiverSettings = found.settings.model_validate(value)
    return settings


class _Dispatch:
    """Validate a receiver entry with the class registered for its `type`, looked up at
    validation time: a receiver registered after this module was imported is known."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        # Dumped as what it is (its own class's fields), not as the base class.
        return core_schema.no_info_plain_validator_function(
            _validate_receiver, serialization=core_schema.simple_ser_schema("any")
        )


AnyReceiverSettings = Annotated[ReceiverSettings, _Dispatch]
