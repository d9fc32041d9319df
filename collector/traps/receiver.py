"""Receives SNMPv2c and SNMPv3 (USM) traps on a UDP port and turns the standard ones into
StateChanges.

Only traps from a device of the inventory, with that device's credentials, are used: its
community for v2c, or its SNMPv3 user (authenticated, and encrypted when the credential
has a privacy password) for v3. Everything else is counted by outcome and dropped: a trap
port is reachable by anyone on the network, so a trap never creates anything by itself.
A v2c community travels in clear and can be sniffed; `traps.accept_v2c: false` refuses
community traps for those who need authenticity.

Mapped (RFC 3418 / RFC 2863): coldStart and warmStart -> the device restarted: its counter
baselines are dropped (no spike across the restart), but its reachability is only ever set
by polls, so a trap cannot mark a failing device up. linkDown / linkUp -> the interface
whose ifIndex is the instance (OID suffix) of the trap's ifIndex, ifAdminStatus or
ifOperStatus varbind, read as the unsigned sub-identifier: vendors number ports above 2^31
(an OLT's 4194304256), and the Integer32 value of the ifIndex varbind would read negative.
Only interfaces the poller has seen are changed, and the poller is told what the trap
said, so its next poll that sees the interface up closes the outage the trap opened.

Vendor traps named in the device's profile (`traps:`, e.g. an ONU's dying gasp) set the
state of the row whose index is their varbind's instance, the same way; a row the poller has
not seen is counted (`unknown_row`) and changes nothing. Other traps are counted as `ignored`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from collector.events import StateChange
from collector.inventory import Credential
from collector.snmp import metrics as m
from collector.snmp.ber import (
    FLAG_AUTH,
    FLAG_PRIV,
    OID,
    VERSION_3,
    SnmpDecodeError,
    Value,
    decode_message,
    decode_scoped_pdu,
    decode_v3_message,
    message_version,
    parse_oid,
)
from collector.snmp.poller import DeviceRuntime, Poller, PollSink
from collector.snmp.profile import Trap
from collector.traps.settings import TrapSettings
from collector.traps.usm import Timeliness, UsmError, UsmUser, authenticate, decrypt

log = logging.getLogger(__name__)

SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
TRAPS = {
    (1, 3, 6, 1, 6, 3, 1, 1, 5, 1): "coldStart",
    (1, 3, 6, 1, 6, 3, 1, 1, 5, 2): "warmStart",
    (1, 3, 6, 1, 6, 3, 1, 1, 5, 3): "linkDown",
    (1, 3, 6, 1, 6, 3, 1, 1, 5, 4): "linkUp",
}
IF_INDEX = (1, 3, 6, 1, 2, 1, 2, 2, 1, 1)
IF_ADMIN_STATUS = (1, 3, 6, 1, 2, 1, 2, 2, 1, 7)
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
        self.timeliness = Timeliness()
        self._users: dict[tuple[str, str, str, str | None, str | None], UsmUser] = {}

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
        if message_version(data) == VERSION_3:
            vbs = self._v3_varbinds(rt, data)
        else:
            vbs = self._v2c_varbinds(rt, data)
        if vbs is None:
            return []
        trap_oid = vbs.get(SNMP_TRAP_OID)
        kind = TRAPS.get(tuple(trap_oid)) if isinstance(trap_oid, tuple) else None
        if kind is None:
            vendor = rt.profile.trap(tuple(trap_oid)) if isinstance(trap_oid, tuple) else None
            if vendor is not None:
                return self._profile_trap(rt, vendor, vbs, now_ms)
            m.TRAPS.labels(outcome="ignored").inc()
            return []
        changes: list[StateChange] = []
        if kind in ("coldStart", "warmStart"):
            # Counters restarted with the agent: no rate across it. Reachability is left to
            # the polls: a (possibly forged) trap must not mark a failing device up.
            rt.counters.clear()
            log.info("event=trap_restart device=%s kind=%s", rt.device.id, kind)
        else:
            index = _if_index(vbs)
            if index is None:
                m.TRAPS.labels(outcome="malformed").inc()
                log.info(
                    "event=trap_malformed device=%s reason='%s without an ifIndex instance'",
                    rt.device.id,
                    kind,
                )
                return []
            name = rt.row_names.get(("interfaces", index))
            if name is None:
                # Not an interface the poller has seen: no phantom row, no outage nobody closes.
                m.TRAPS.labels(outcome="unknown_interface").inc()
                log.info(
                    "event=trap_unknown_interface device=%s kind=%s ifindex=%d", rt.device.id, kind, index
                )
                return []
            state = "down" if kind == "linkDown" else "up"
            admin = vbs.get((*IF_ADMIN_STATUS, index), rt.enums.get(("interfaces", index, "ifAdminStatus")))
            if state == "down" and admin == 2:
                # Shut down by an administrator (the linkDown of a `shutdown`): not an outage,
                # as the poller reads it; else the poll, seeing the same ifOperStatus, would
                # never close the outage the trap opened.
                state = "disabled"
            # Tell the poller what the trap said: its next poll does not report it again, and
            # reports (closes) it when it sees otherwise.
            rt.enums[("interfaces", index, "ifOperStatus")] = 2 if kind == "linkDown" else 1
            if admin is not None:
                # The poller derives a row's state from both columns (admin down = disabled).
                rt.enums[("interfaces", index, "ifAdminStatus")] = int(admin)
            changes.append(
                StateChange("interface", f"{rt.device.id}/{name}", state, now_ms, "trap", kind, rt.device.id)
            )
        m.TRAPS.labels(outcome="accepted").inc()
        self.sink.add(None, changes)
        return changes

    def _profile_trap(
        self, rt: DeviceRuntime, trap: Trap, vbs: dict[OID, Any], now_ms: int
    ) -> list[StateChange]:
        """A trap of the device's profile: the row its varbind's instance names gets the trap's
        state, and the poller is told, as for linkDown: its next poll that reads the row's
        state column otherwise reports (and so closes) it."""
        table = next(t for t in rt.profile.tables if t.name == trap.table)  # checked at load
        col = next(c for c in table.columns if c.state_changes)
        prefixes = [parse_oid(trap.index_from)] if trap.index_from else [c.oid_tuple for c in table.columns]
        suffix = next(
            (oid[len(p) :] for p in prefixes for oid in vbs if len(oid) > len(p) and oid[: len(p)] == p),
            None,
        )
        if suffix is None:
            m.TRAPS.labels(outcome="malformed").inc()
            log.info(
                "event=trap_malformed device=%s reason='%s without a row instance'", rt.device.id, trap.name
            )
            return []
        rid = rt.row_ids.find(suffix)
        name = rt.row_names.get((table.name, rid)) if rid is not None else None
        if rid is None or name is None:
            # A row the poller has not seen: no phantom row, no outage nobody closes.
            m.TRAPS.labels(outcome="unknown_row").inc()
            log.info(
                "event=trap_unknown_row device=%s trap=%s table=%s index=%s",
                rt.device.id,
                trap.name,
                table.name,
                ".".join(map(str, suffix)),
            )
            return []
        code = next(k for k, v in col.states.items() if v == trap.state)  # checked at load
        rt.enums[(table.name, rid, col.name)] = code
        kind = "interface" if table.name == "interfaces" else table.name  # as the poller names it
        change = StateChange(
            kind, f"{rt.device.id}/{name}", trap.state, now_ms, "trap", trap.cause or trap.name, rt.device.id
        )
        m.TRAPS.labels(outcome="accepted").inc()
        self.sink.add(None, [change])
        return [change]

    def _v2c_varbinds(self, rt: DeviceRuntime, data: bytes) -> dict[OID, Any] | None:
        try:
            msg = decode_message(data)
        except SnmpDecodeError as exc:
            m.TRAPS.labels(outcome="malformed").inc()
            log.debug("event=trap_malformed device=%s reason=%r", rt.device.id, str(exc))
            return None
        if msg.pdu_type != PDU_TRAP_V2:
            m.TRAPS.labels(outcome="unsupported").inc()
            return None
        if not self.settings.accept_v2c:
            m.TRAPS.labels(outcome="v2c_refused").inc()
            return None
        community = rt.cred.community.get_secret_value().encode() if rt.cred.community else None
        if rt.cred.version == "3" or community is None or msg.community != community:
            m.TRAPS.labels(outcome="bad_community").inc()
            return None
        return _plain_varbinds(msg.varbinds)

    def _v3_varbinds(self, rt: DeviceRuntime, data: bytes) -> dict[OID, Any] | None:
        try:
            msg = decode_v3_message(data)
        except SnmpDecodeError as exc:
            m.TRAPS.labels(outcome="malformed").inc()
            log.debug("event=trap_malformed device=%s reason=%r", rt.device.id, str(exc))
            return None
        user = self._user(rt.cred)
        if user is None or msg.usm.user_name != user.name:
            # Refusals are counted; logged at debug only, so a flood of forged traps cannot
            # flood the log too.
            m.TRAPS.labels(outcome="unknown_user").inc()
            log.debug("event=trap_unknown_user device=%s", rt.device.id)
            return None
        level = msg.flags & (FLAG_AUTH | FLAG_PRIV)
        if level != user.level:
            # RFC 3414 3.2 step 5: the level the user is configured for, no less (and a
            # privacy flag for a user without privacy keys cannot be decrypted).
            m.TRAPS.labels(outcome="bad_security_level").inc()
            log.debug(
                "event=trap_bad_security_level device=%s flags=%d expected=%d",
                rt.device.id,
                level,
                user.level,
            )
            return None
        try:
            authenticate(user, msg.usm, data)
            self.timeliness.check(msg.usm)
            scoped = msg.scoped_pdu
            if msg.encrypted is not None:
                try:
                    scoped = decode_scoped_pdu(decrypt(user, msg.usm, msg.encrypted))
                except (SnmpDecodeError, ValueError) as exc:
                    raise UsmError("decrypt_failed", str(exc)) from None
        except UsmError as exc:
            m.TRAPS.labels(outcome=exc.reason).inc()
            log.debug("event=trap_refused device=%s reason=%r", rt.device.id, str(exc))
            return None
        assert scoped is not None
        if scoped.pdu_type != PDU_TRAP_V2:
            m.TRAPS.labels(outcome="unsupported").inc()
            return None
        return _plain_varbinds(scoped.varbinds)

    def _user(self, cred: Credential) -> UsmUser | None:
        """The USM user of a v3 credential with authentication (master keys derived once)."""
        if cred.version != "3" or not cred.user or cred.auth_protocol is None or cred.auth_password is None:
            return None
        key = (
            cred.user,
            cred.auth_protocol,
            cred.auth_password.get_secret_value(),
            cred.priv_protocol,
            cred.priv_password.get_secret_value() if cred.priv_password else None,
        )
        user = self._users.get(key)
        if user is None:
            user = UsmUser.of(*key)
            if len(self._users) >= 1024:  # credentials changed many times: start afresh
                self._users.clear()
            self._users[key] = user
        return user


def _plain_varbinds(varbinds: list[tuple[OID, Value]]) -> dict[OID, Any]:
    return {tuple(oid): _plain(v) for oid, v in varbinds}


def _if_index(vbs: dict[OID, Any]) -> int | None:
    """The ifIndex a linkDown/linkUp is about: the instance sub-identifier of its ifIndex
    (else ifOperStatus, ifAdminStatus) varbind, which SNMP encodes unsigned."""
    for column in (IF_INDEX, IF_OPER_STATUS, IF_ADMIN_STATUS):
        for oid in vbs:
            if len(oid) == len(column) + 1 and oid[: len(column)] == column:
                return int(oid[-1])
    return None
