"""StateChange: the contract for up/down/degraded transitions between the rooms.

Outages and availability are computed from these, never guessed from gaps alone.
"""

from __future__ import annotations

from dataclasses import dataclass

# States that make an outage: a device or interface `down`, a probe `offline`.
DOWN_STATES = frozenset({"down", "offline"})
# A state that says nothing about the entity (never polled, or its observer was down; `gone`:
# its row left the device's table): counted neither as up nor as down in availability.
UNKNOWN_STATES = frozenset({"unknown", "gone"})


@dataclass(frozen=True, slots=True)
class StateChange:
    """An entity entered `state` at `since_ms` (ms since the Unix epoch, UTC).

    entity_kind: "device", "interface" or "probe"; entity: its id ("dev-1", "dev-1/ge-0/0/1").
    source: what observed it ("poll", "trap"); detail: a short human explanation.
    """

    entity_kind: str
    entity: str
    state: str
    since_ms: int
    source: str = "poll"
    detail: str = ""
    device_id: str = ""  # the device an interface belongs to (for labels and topology)
