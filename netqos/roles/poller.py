"""The `poller` role: the SNMP poller (its shard of the inventory), its device writer and the
trap receiver. Without `snmp.inventory_file` it has nothing to poll and adds nothing."""

from __future__ import annotations

from collector.snmp.poller import Poller, PollSink
from collector.store.devices import DeviceRepo
from collector.traps.receiver import TrapReceiver
from netqos.roles import Role
from netqos.roles.shared import Shared


def build(shared: Shared) -> tuple[Role, Poller | None]:
    """The poller's tasks and its inventory reload (SIGHUP); the poller itself, or None."""
    settings = shared.settings
    if settings.snmp.inventory_file is None:
        return Role(), None
    sink = PollSink(DeviceRepo(shared.store))
    poller = Poller(settings.snmp, shared.pipeline, sink)

    async def reload_inventory() -> str:
        poller.request_reload()
        return "inventory requested"

    role = Role(
        tasks=[("snmp-poller", poller.run), ("device-writer", sink.run)],
        reloaders=[reload_inventory],
    )
    if settings.traps.enabled:
        traps = TrapReceiver(settings.traps, poller, sink)
        role.tasks.append(("trap-receiver", traps.run))
    return role, poller
