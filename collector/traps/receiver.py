"""Receives SNMPv2c traps on a UDP port and turns the standard ones into StateChanges.

Only traps from a device of the inventory, with that device's community, are used;
everything else is counted by outcome and dropped (a trap port is reachable by anyone
on the network, so a trap never creates anything by itself).

Mapped (RFC 3418 / RFC 2863): coldStart and warmStart -> the device is up (its counter
baselines are dropped, so the restart causes no spike); linkDown / linkUp -> the
interface named by the trap's ifIndex goes down / up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from collector.events import StateChange
from collector.snmp import metrics as m
from collector.snmp.ber import SnmpDecodeError, decode_message
from collector.snmp.poller import Poller, PollSink
from netqos.config import TrapSettings

log = logging.getLogger(__name__)

SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
TRAPS = {
    (1, 3, 6, 1, 6, 3, 1, 1, 5, 1): "coldStart",
    (1, 3, 6, 1, 6, 3, 1, 1, 5, 2): "warmStart",
    (1, 3, 6, 1, 6, 3, 1, 1, 5, 3): "linkDown",
    (1, 3, 6, 1, 6, 3, 1, 1, 5, 4): "linkUp",
}
IF_INDEX = (1, 3, 6, 1, 2, 1, 2, 2, 1, 1)
IF_OPER_STATUS = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)
PDU_TRAP_V2 = 0xA7


def _plain(value: Any) -> Any:
    """The Python value inside a decoded BER value (int, bytes or OID tuple)."""
    for attr in ("value", "oid"):
        if hasattr(value, attr):
            return getattr(value, attr)
    return value


class TrapReceiver(asyncio.DatagramProtocol):
    """UDP trap listener feeding the poller's device state and the poll sink."""

    def __init__(self, settings: TrapSettings, poller: Poller, sink: PollSink) -> None:
        self.settings = settings
        self.poller = poller
        self.sink = sink
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.settings.host, self.settings.port)
        )
        log.info("event=trap_receiver_listening bind=%s:%d", self.settings.host, self.settings.port)
        try:
            await stop.wait()
        finally:
            transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received += 1
        try:
            self.handle(data, str(addr[0]), int(time.time() * 1000), int(addr[1]))
        except Exception:  # a trap must never take the receiver down
            m.TRAPS.labels(outcome="internal_error").inc()
            log.exception("event=trap_failed source=%s", addr[0])

    def handle(self, data: bytes, source: str, now_ms: int, source_port: int = 0) -> list[StateChange]:
        """Process one datagram; returns the state changes it caused (for tests)."""
        rt = self.poller.runtime_for_source(source, source_port)
        if rt is None:
            m.TRAPS.labels(outcome="unknown_source").inc()
            return []
        try:
            msg = decode_message(data)
        except SnmpDecodeError as exc:
            m.TRAPS.labels(outcome="malformed").inc()
            log.info("event=trap_malformed device=%s reason=%r", rt.device.id, str(exc))
            return []
        if msg.pdu_type != PDU_TRAP_V2:
            m.TRAPS.labels(outcome="unsupported").inc()
            return []
        community = rt.cred.community.get_secret_value().encode() if rt.cred.community else None
        if rt.cred.version == "3" or community is None or msg.community != community:
            m.TRAPS.labels(outcome="bad_community").inc()
            return []
        vbs = {tuple(oid): _plain(v) for oid, v in msg.varbinds}
        trap_oid = vbs.get(SNMP_TRAP_OID)
        kind = TRAPS.get(tuple(trap_oid)) if isinstance(trap_oid, tuple) else None
        if kind is None:
            m.TRAPS.labels(outcome="ignored").inc()
            return []
        changes: list[StateChange] = []
        if kind in ("coldStart", "warmStart"):
            rt.counters.clear()  # counters restarted with the agent: no rate across it
            c = rt.reach.force("up", now_ms, "trap", kind)
            if c is not None:
                changes.append(c)
        else:
            index = next((int(_plain(v)) for oid, v in vbs.items() if oid[: len(IF_INDEX)] == IF_INDEX), None)
            if index is None:
                index = next((oid[-1] for oid in vbs if oid[: len(IF_OPER_STATUS)] == IF_OPER_STATUS), None)
            if index is None:
                m.TRAPS.labels(outcome="malformed").inc()
                return []
            state = "down" if kind == "linkDown" else "up"
            name = rt.row_names.get(("interfaces", index), str(index))
            # Tell the poller what the trap said, so its next poll does not report it again.
            rt.enums[("interfaces", index, "ifOperStatus")] = 2 if state == "down" else 1
            changes.append(
                StateChange("interface", f"{rt.device.id}/{name}", state, now_ms, "trap", kind, rt.device.id)
            )
        m.TRAPS.labels(outcome="accepted").inc()
        self.sink.add(None, changes)
        return changes
