"""A simulated SNMP v2c (and v1) agent that speaks the real protocol over UDP.

One :class:`SimDevice` is one network element: the SNMPv2-MIB system group, the IF-MIB
ifTable/ifXTable and, for OLTs, ENTITY-SENSOR-MIB optical receive-power sensors. One
:class:`SnmpAgentServer` serves one device on one UDP port (one agent per port, as in the
field); :func:`serve_devices` starts one per device, hundreds in one process for the demo.

What it adds over a real snmpd, on demand and from tests: counters that advance with time
and can be preset just below their wrap, agent restarts (sysUpTime and counters back to 0),
link flaps with SNMPv2c linkDown/linkUp traps, and agents that go silent, slow or answer
with garbage.

Traffic model (per interface, evaluated at request time from a monotonic clock)::

    rate_in(t)  = min(0.95 x speed, speed x utilisation x load(t) / mean(load) x noise(t))
    rate_out(t) = min(0.95 x speed, speed x utilisation x out_ratio x load(t) / mean(load) x noise(t))
    counter(t)  = initial + integral of rate dt        (kept as exact integers, uint64)

``load(t)`` is :func:`probes.simulate.model.load_factor` (local time UTC+7: ~0.1 at night,
~1 in the 20:00-22:00 busy hour), so ``utilisation`` is the mean over a day. ``noise`` is
a per-interface log-normal AR(1) process (time constant 30 s, sigma ``noise``) from a RNG
seeded by (seed, device id). Errors and discards grow slowly with the packet rate
(800-byte packets; error ratio 1e-8..1e-6, discards 1e-7..1e-5 x load**3). A link that is
down carries no traffic. The 32-bit counters are the 64-bit ones mod 2**32.

The responder keeps one sorted OID index built once per device; a request only computes
the dynamic values (uptime, statuses, counters, sensor readings), and encodes from
pre-encoded names and static varbinds. The BER encoding here is a small fast path for
exactly the Response-PDU shape; the tests check it byte for byte against
:func:`collector.snmp.ber.encode_response`, and requests and traps go through
:mod:`collector.snmp.ber` itself.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import threading
import time
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, cast, get_args

import numpy as np
import numpy.typing as npt

from collector.snmp.ber import (
    NULL,
    OID,
    VERSION_1,
    Counter32,
    Counter64,
    EndOfMibView,
    Gauge32,
    Integer,
    NoSuchInstance,
    NoSuchObject,
    ObjectId,
    OctetString,
    PduType,
    SnmpDecodeError,
    TimeTicks,
    Value,
    decode_request,
    encode_response,
    encode_trap_v2,
    int_content,
    oid_content,
    tlv,
)
from probes.simulate.model import load_factor

if TYPE_CHECKING:
    from probes.simulate.devices import SimDeviceSpec

log = logging.getLogger("probes.simulate.snmp_agent")

Mode = Literal["normal", "silent", "slow", "garbage", "down"]
MODES: Final[tuple[str, ...]] = get_args(Mode)

#: Largest UDP payload over IPv4; a response never exceeds it.
MAX_UDP_PAYLOAD: Final = 65507
#: Default bound on a response (v2c has no msgMaxSize; every client we know takes this).
DEFAULT_MAX_RESPONSE_BYTES: Final = 65000
#: Delayed responses ("slow" mode) kept in flight at most; beyond this they are dropped.
MAX_PENDING_DELAYED: Final = 10_000

# ---------------------------------------------------------------------------------------------
# OIDs

SYSTEM: Final[OID] = (1, 3, 6, 1, 2, 1, 1)
SYS_DESCR: Final[OID] = (*SYSTEM, 1, 0)
SYS_OBJECT_ID: Final[OID] = (*SYSTEM, 2, 0)
SYS_UPTIME: Final[OID] = (*SYSTEM, 3, 0)
SYS_CONTACT: Final[OID] = (*SYSTEM, 4, 0)
SYS_NAME: Final[OID] = (*SYSTEM, 5, 0)
SYS_LOCATION: Final[OID] = (*SYSTEM, 6, 0)
SYS_SERVICES: Final[OID] = (*SYSTEM, 7, 0)
IF_NUMBER: Final[OID] = (1, 3, 6, 1, 2, 1, 2, 1, 0)
IF_ENTRY: Final[OID] = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX_ENTRY: Final[OID] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
SENSOR_ENTRY: Final[OID] = (1, 3, 6, 1, 2, 1, 99, 1, 1, 1)
#: A GPON ONU table in the shape of Huawei's (index ifIndex.ontId, run state, optics, distance,
#: last down cause) under the documentation enterprise number (RFC 5612): not a vendor's MIB.
ONU_ENTRY: Final[OID] = (1, 3, 6, 1, 4, 1, 32473, 16, 1, 1)
#: ONU columns: (sub-identifier, name), 6 in all; see `onu_row`.
ONU_COLUMNS: Final[tuple[tuple[int, str], ...]] = (
    (2, "onuDescription"),
    (3, "onuRunState"),
    (4, "onuRxPower"),
    (5, "onuTxPower"),
    (6, "onuDistance"),
    (7, "onuLastDownCause"),
)
#: The PON port's ifIndex as Huawei numbers it: 0xFA000000 + slot x 2**13 + port x 2**8.
PON_IFINDEX_BASE: Final = 0xFA000000

IF_INDEX: Final[OID] = (*IF_ENTRY, 1)
IF_ADMIN_STATUS: Final[OID] = (*IF_ENTRY, 7)
IF_OPER_STATUS: Final[OID] = (*IF_ENTRY, 8)

SNMP_TRAP_OID: Final[OID] = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
COLD_START: Final[OID] = (1, 3, 6, 1, 6, 3, 1, 1, 5, 1)
LINK_DOWN: Final[OID] = (1, 3, 6, 1, 6, 3, 1, 1, 5, 3)
LINK_UP: Final[OID] = (1, 3, 6, 1, 6, 3, 1, 1, 5, 4)

#: sysObjectID under the documentation enterprise number (RFC 5612): not a real vendor.
ENTERPRISE: Final[OID] = (1, 3, 6, 1, 4, 1, 32473, 1)
_KIND_CODE: Final[dict[str, int]] = {"router": 1, "switch": 2, "bts": 3, "olt": 4}

IFTYPE_ETHERNET: Final = 6  # ethernetCsmacd
IFTYPE_GPON: Final = 250  # gpon (IANAifType-MIB)

# Counter columns: name -> (row in the counter state, bits the agent exposes).
_C_IN, _C_OUT, _C_IN_ERR, _C_OUT_ERR, _C_IN_DISC, _C_OUT_DISC = range(6)
COUNTER_COLUMNS: Final[dict[str, tuple[int, int]]] = {
    "ifHCInOctets": (_C_IN, 64),
    "ifHCOutOctets": (_C_OUT, 64),
    "ifInOctets": (_C_IN, 32),
    "ifOutOctets": (_C_OUT, 32),
    "ifInErrors": (_C_IN_ERR, 32),
    "ifOutErrors": (_C_OUT_ERR, 32),
    "ifInDiscards": (_C_IN_DISC, 32),
    "ifOutDiscards": (_C_OUT_DISC, 32),
}

# Dynamic value columns of the OID index (values computed per request) and their BER tags.
(
    _D_UPTIME,
    _D_ADMIN,
    _D_OPER,
    _D_LAST_CHANGE,
    _D_IN32,
    _D_OUT32,
    _D_IN_ERR,
    _D_OUT_ERR,
    _D_IN_DISC,
    _D_OUT_DISC,
    _D_HC_IN,
    _D_HC_OUT,
    _D_SENSOR_VALUE,
    _D_SENSOR_STATUS,
) = range(14)
_D_TAG: Final[tuple[int, ...]] = (
    TimeTicks.tag,
    Integer.tag,
    Integer.tag,
    TimeTicks.tag,
    Counter32.tag,
    Counter32.tag,
    Counter32.tag,
    Counter32.tag,
    Counter32.tag,
    Counter32.tag,
    Counter64.tag,
    Counter64.tag,
    Integer.tag,
    Integer.tag,
)

_U32: Final = 2**32
_U64: Final = 2**64
_MASK32: Final = np.uint64(0xFFFF_FFFF)
_NOISE_TAU_S: Final = 30.0
_PACKET_BYTES: Final = 800.0
_MAX_UTILISATION: Final = 0.95
# Sensor reading of a PON port without light (-40.0 dBm, in tenths).
_LOS_TENTHS_DBM: Final = -400

# Mean of the daily load cycle, so `utilisation` is the mean over a day.
_MEAN_LOAD: Final = float(np.mean(load_factor(np.arange(0, 86_400_000, 60_000, dtype=np.float64))))

# SNMP error-status values used here.
_NO_ERROR, _TOO_BIG, _NO_SUCH_NAME, _NO_ACCESS = 0, 1, 2, 6

FloatArray = npt.NDArray[np.float64]
U64Array = npt.NDArray[np.uint64]


# ---------------------------------------------------------------------------------------------
# BER fast path (Response-PDU only). Byte-identical to collector.snmp.ber.encode_response.


# The codec's own unchecked building blocks: the fast path stays byte-identical to it.
_tlv = tlv
_int_content = int_content
_oid_content = oid_content


def _name_tlv(oid: Sequence[int]) -> bytes:
    return _tlv(ObjectId.tag, _oid_content(oid))


def _value_tlv(v: Value) -> bytes:
    match v:
        case Integer(x) | Counter32(x) | Gauge32(x) | TimeTicks(x) | Counter64(x):
            return _tlv(v.tag, _int_content(x))
        case OctetString(b):
            return _tlv(v.tag, bytes(b))
        case ObjectId(o):
            return _tlv(v.tag, _oid_content(o))
        case NoSuchObject() | NoSuchInstance() | EndOfMibView():
            return bytes((v.tag, 0))
    raise ValueError(f"the agent does not serve values of type {type(v).__name__}")


def _varbind(name_tlv: bytes, value_tlv: bytes) -> bytes:
    return _tlv(0x30, name_tlv + value_tlv)


_END_OF_MIB: Final = bytes((EndOfMibView.tag, 0))
_NO_SUCH_OBJECT: Final = bytes((NoSuchObject.tag, 0))
_NO_SUCH_INSTANCE: Final = bytes((NoSuchInstance.tag, 0))
_NULL_VALUE: Final = bytes((NULL.tag, 0))


def _response(version: int, community: bytes, request_id: int, es: int, ei: int, vbl: bytes) -> bytes:
    pdu = (
        _tlv(Integer.tag, _int_content(request_id))
        + _tlv(Integer.tag, _int_content(es))
        + _tlv(Integer.tag, _int_content(ei))
        + _tlv(0x30, vbl)
    )
    msg = (
        _tlv(Integer.tag, _int_content(version))
        + _tlv(OctetString.tag, community)
        + _tlv(PduType.RESPONSE, pdu)
    )
    return _tlv(0x30, msg)


def _envelope_bytes(community: bytes, request_id: int) -> int:
    """Upper bound of a response's size minus its varbind list content (lengths < 2**24)."""
    fixed = 3 + len(_tlv(OctetString.tag, community))
    fixed += 2 + len(_int_content(request_id)) + 2 * 3  # request-id, error-status, error-index
    return fixed + 3 * 5  # message, PDU and varbind-list headers: tag + up to 4 length octets


# ---------------------------------------------------------------------------------------------
# Device model


@dataclass(frozen=True, slots=True)
class SimInterface:
    """One interface's fixed configuration. ``utilisation`` is the daily mean of in-traffic
    over speed; ``out_ratio`` is out-traffic over in-traffic (None: drawn from the seed)."""

    name: str
    speed_mbps: int
    utilisation: float = 0.2
    alias: str = ""
    if_type: int = IFTYPE_ETHERNET
    admin_up: bool = True
    oper_up: bool = True
    out_ratio: float | None = None
    mtu: int = 1500


@dataclass
class AgentStats:
    """What an agent saw and did (one per device; plain ints, read them from tests)."""

    received: int = 0  # datagrams that reached the server
    responses: int = 0  # well-formed responses built (sent, delayed or garbled)
    decode_errors: int = 0  # not a decodable SNMP request: ignored
    bad_community: int = 0  # wrong community: no reply
    unsupported: int = 0  # a PDU an agent does not answer (traps, informs, responses)
    dropped: int = 0  # not answered in "silent"/"down" mode
    delayed: int = 0  # answered late in "slow" mode
    garbage: int = 0  # answered with invalid bytes in "garbage" mode
    too_big: int = 0  # GET/GETNEXT whose response exceeded the size bound (tooBig)
    send_errors: int = 0  # sendto failed / ICMP error reported
    traps_sent: int = 0
    trap_errors: int = 0
    internal_errors: int = 0  # an exception while answering (a bug): no reply


def pon_ifindex(slot: int, port: int) -> int:
    """A GPON port's ifIndex (frame 0) as Huawei's MA5600T/MA5800 number them."""
    return PON_IFINDEX_BASE + (slot << 13) + (port << 8)


def onu_row(
    slot: int, port: int, ont: int, ports_per_card: int = 16, onus_per_port: int = 128
) -> dict[str, Any]:
    """The ONU table's row of ONU slot/port/ont (slots from 1), as plain numbers, from a fixed
    rule a test can redo by hand: n = ((slot - 1) x ports + port) x onus + ont counts the ONUs
    from 0; every 50th (n % 50 == 49) is offline (run state 2, last down cause 13 dying-gasp,
    no optical reading: a hole in those two columns); every 8th (ont % 8 == 7) keeps the
    vendor's default description, shared by many. Rx power -(1500 + 37 n % 1200) and Tx power
    200 + n % 300, in 0.01 dBm; distance 100 + 13 n % 20000 m; last down cause -1 (none) when
    online."""
    n = ((slot - 1) * ports_per_card + port) * onus_per_port + ont
    offline = n % 50 == 49
    row: dict[str, Any] = {
        "onuDescription": "ONT_NO_DESCRIPTION" if ont % 8 == 7 else f"cust-{slot}-{port}-{ont}",
        "onuRunState": 2 if offline else 1,
        "onuDistance": 100 + (13 * n) % 20000,
        "onuLastDownCause": 13 if offline else -1,
    }
    if not offline:
        row["onuRxPower"] = -(1500 + (37 * n) % 1200)
        row["onuTxPower"] = 200 + n % 300
    return row


def _device_rng(seed: int, device_id: str, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFF_FFFF, zlib.crc32(device_id.encode()), salt])


@dataclass(eq=False)
class SimDevice:
    """A simulated network element; see the module docstring for the traffic model.

    ``interfaces`` (ifIndex 1..n in order) overrides ``n_interfaces``/``speed_mbps``/
    ``utilisation``, which otherwise make ``ge-0/0/0`` .. ``ge-0/0/<n-1>`` (ifIndex i is port
    i-1). ``sensors`` (default: kind == "olt") adds one ENTITY-SENSOR-MIB receive-power
    sensor per GPON interface (ifType 250), or per interface if there is none; the sensor's
    index is the interface's ifIndex. ``clock`` is monotonic seconds, ``wall_clock`` epoch
    seconds (only its value at creation is used: the daily cycle follows ``clock``).

    Fault controls (``set_counter``, ``preset_wrap``, ``restart``, ``set_link``, ``set_admin``,
    ``set_mode``, ``send_cold_start``) are plain methods, atomic under a lock: call them from
    the event loop's thread or any other.
    """

    device_id: str
    community: str = "public"
    sys_name: str = ""
    n_interfaces: int = 4
    speed_mbps: int = 1000
    utilisation: float = 0.2
    interfaces: tuple[SimInterface, ...] = ()
    kind: str = "router"
    sensors: bool | None = None
    # False: an agent without ifXTable (no ifName, no 64-bit counters, no ifHighSpeed), as on
    # older access switches; the 32-bit ifTable only.
    if_x_table: bool = True
    # (PON cards, ports per card, ONUs per port): a GPON ONU table of that many rows (ONU_ENTRY,
    # rows by `onu_row`, cards in slots 1..), e.g. (8, 16, 128) for 16,384 ONUs. Static values.
    onus: tuple[int, int, int] | None = None
    seed: int = 0
    noise: float = 0.15
    sys_descr: str = ""
    location: str = ""
    contact: str = "noc@example.vn"
    uptime_s: float | None = None  # uptime at creation; None: 1-60 days drawn from the seed
    trap_target: tuple[str, int] | None = None
    trap_community: str = "public"
    delay_s: float = 2.0  # reply delay in "slow" mode
    mode: Mode = "normal"
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    stats: AgentStats = field(default_factory=AgentStats)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.interfaces:
            if self.n_interfaces < 1:
                raise ValueError("a device needs at least one interface")
            self.interfaces = tuple(
                SimInterface(f"ge-0/0/{i}", self.speed_mbps, self.utilisation)
                for i in range(self.n_interfaces)
            )
        self.n_interfaces = len(self.interfaces)
        self.sys_name = self.sys_name or self.device_id
        self.sys_descr = self.sys_descr or (
            f"netqos simulated {self.kind}, {self.n_interfaces} interfaces (not a real device)"
        )
        if self.sensors is None:
            self.sensors = self.kind == "olt"
        self._lock = threading.RLock()
        self._community = self.community.encode()
        n = self.n_interfaces
        rng = _device_rng(self.seed, self.device_id, 0x5A17)
        speed_bps = np.array([i.speed_mbps * 1e6 for i in self.interfaces], dtype=np.float64)
        util = np.array([max(0.0, i.utilisation) for i in self.interfaces], dtype=np.float64)
        drawn_ratio = rng.uniform(0.3, 1.0, n)
        out_ratio = np.array(
            [drawn_ratio[k] if i.out_ratio is None else i.out_ratio for k, i in enumerate(self.interfaces)]
        )
        self._cap_Bps: FloatArray = speed_bps / 8.0 * _MAX_UTILISATION
        self._base_in_Bps: FloatArray = speed_bps / 8.0 * util
        self._base_out_Bps: FloatArray = self._base_in_Bps * out_ratio
        self._err_ratio: FloatArray = np.exp(rng.uniform(math.log(1e-8), math.log(1e-6), (2, n)))
        self._disc_ratio: FloatArray = np.exp(rng.uniform(math.log(1e-7), math.log(1e-5), (2, n)))
        macs = rng.integers(0, 256, (n, 5))
        self._mac = [bytes((0x02, *(int(b) for b in row))) for row in macs]  # locally administered
        self._uptime0_cs = int(
            (self.uptime_s if self.uptime_s is not None else rng.uniform(86_400, 60 * 86_400)) * 100
        )
        self._noise_rng = _device_rng(self.seed, self.device_id, 0x1015E)
        self._garbage_rng = random.Random(zlib.crc32(self.device_id.encode()) ^ self.seed)
        self._x: FloatArray = self._noise_rng.standard_normal(n)
        pon = [k for k, i in enumerate(self.interfaces) if i.if_type == IFTYPE_GPON]
        self._sensor_rows: list[int] = (pon or list(range(n))) if self.sensors else []
        self._rx_tenths = rng.integers(-250, -170, len(self._sensor_rows)).tolist()
        now = self.clock()
        self._wall_offset = self.wall_clock() - now
        self._boot = now
        self._t_last = now
        self._cnt: U64Array = np.zeros((6, n), dtype=np.uint64)
        self._res: FloatArray = np.zeros((6, n), dtype=np.float64)
        self._admin = [1 if i.admin_up else 2 for i in self.interfaces]
        self._oper = [1 if i.oper_up and i.admin_up else 2 for i in self.interfaces]
        self._last_change = [min(self._uptime0_cs, 3000)] * n
        self._up: FloatArray = np.array([o == 1 for o in self._oper], dtype=np.float64)
        self._trap_sock: socket.socket | None = None
        # Set by a running SnmpAgentServer: traps then leave from the agent's own address and
        # port, which is how a receiver tells apart several agents sharing one host (the demo).
        self.trap_sender: Callable[[bytes, tuple[str, int]], None] | None = None
        self._trap_rid = 0
        self._build_index()

    @classmethod
    def from_spec(cls, spec: SimDeviceSpec, **overrides: Any) -> SimDevice:
        """A device from a :class:`probes.simulate.devices.SimDeviceSpec` (keywords override)."""
        kw: dict[str, Any] = {
            "device_id": spec.id,
            "community": spec.community,
            "sys_name": spec.sys_name,
            "interfaces": spec.interfaces,
            "kind": spec.kind,
            "seed": spec.seed,
            "location": spec.location,
            "uptime_s": spec.uptime_s,
        }
        kw.update(overrides)
        return cls(**kw)

    # -- time and traffic ---------------------------------------------------------------------

    def _wall(self, t: float) -> float:
        return t + self._wall_offset

    def _uptime_cs(self, now: float) -> int:
        return (self._uptime0_cs + int((now - self._boot) * 100)) % _U32

    def _advance(self, now: float) -> None:
        """Integrate every counter from the last call up to ``now`` (caller holds the lock)."""
        dt = now - self._t_last
        if dt <= 0:
            return
        steps = min(max(1, math.ceil(dt / 60.0)), 1440)
        ts = np.linspace(self._wall(self._t_last), self._wall(now), steps + 1) * 1000.0
        lf = load_factor(ts)
        load = float((lf[:-1] + lf[1:]).mean() / 2.0)
        rel = load / _MEAN_LOAD
        if self.noise > 0:
            a = math.exp(-dt / _NOISE_TAU_S)
            self._x = self._x * a + math.sqrt(1.0 - a * a) * self._noise_rng.standard_normal(
                self.n_interfaces
            )
            f: FloatArray | float = np.exp(self.noise * self._x - self.noise**2 / 2.0)
        else:
            f = 1.0
        rate_in = np.minimum(self._cap_Bps, self._base_in_Bps * rel * f) * self._up
        rate_out = np.minimum(self._cap_Bps, self._base_out_Bps * rel * f) * self._up
        pps = np.stack((rate_in, rate_out)) / _PACKET_BYTES
        inc = np.empty((6, self.n_interfaces), dtype=np.float64)
        inc[_C_IN] = rate_in
        inc[_C_OUT] = rate_out
        inc[_C_IN_ERR : _C_OUT_ERR + 1] = pps * self._err_ratio
        inc[_C_IN_DISC : _C_OUT_DISC + 1] = pps * self._disc_ratio * min(1.0, load) ** 3
        total = self._res + inc * dt
        whole = np.floor(total)
        self._res = total - whole
        self._cnt += whole.astype(np.uint64)  # wraps mod 2**64, as a Counter64 does
        self._t_last = now

    def expected_octets_per_s(self, ifindex: int, at: float | None = None) -> tuple[float, float]:
        """The noise-free (in, out) octet rate of ``ifindex`` at monotonic time ``at`` (default:
        now): what the counters follow, on average."""
        k = self._row(ifindex)
        t = self.clock() if at is None else at
        rel = float(load_factor(np.array([self._wall(t) * 1000.0]))[0]) / _MEAN_LOAD
        up = float(self._up[k])
        return (
            min(float(self._cap_Bps[k]), float(self._base_in_Bps[k]) * rel) * up,
            min(float(self._cap_Bps[k]), float(self._base_out_Bps[k]) * rel) * up,
        )

    def counters(self, ifindex: int) -> dict[str, int]:
        """Current counter values of one interface, as the agent would report them."""
        with self._lock:
            self._advance(self.clock())
            k = self._row(ifindex)
            return {name: int(self._cnt[row, k]) % (2**bits) for name, (row, bits) in COUNTER_COLUMNS.items()}

    def uptime_cs(self) -> int:
        """sysUpTime now, in centiseconds."""
        return self._uptime_cs(self.clock())

    def oper_status(self, ifindex: int) -> int:
        return self._oper[self._row(ifindex)]

    def _row(self, ifindex: int) -> int:
        if not 1 <= ifindex <= self.n_interfaces:
            raise ValueError(
                f"{self.device_id}: no interface with ifIndex {ifindex} (1..{self.n_interfaces})"
            )
        return ifindex - 1

    # -- fault controls -------------------------------------------------------------------------

    def set_counter(self, ifindex: int, column: str, value: int) -> None:
        """Set one counter now (it keeps advancing from there). A 32-bit column sets the low 32
        bits of its 64-bit counter (ifInOctets is ifHCInOctets mod 2**32)."""
        if column not in COUNTER_COLUMNS:
            raise ValueError(f"column must be one of {sorted(COUNTER_COLUMNS)}, got {column!r}")
        row, bits = COUNTER_COLUMNS[column]
        if not 0 <= value < 2**bits:
            raise ValueError(f"{column} takes 0..2**{bits}-1, got {value}")
        with self._lock:
            self._advance(self.clock())
            k = self._row(ifindex)
            if bits == 64:
                self._cnt[row, k] = np.uint64(value)
            else:
                self._cnt[row, k] = (self._cnt[row, k] & ~_MASK32) | np.uint64(value)
            self._res[row, k] = 0.0

    def preset_wrap(
        self, seconds_before_wrap: float, *, hc: bool = False, ifindex: int | None = None
    ) -> None:
        """Put the octet counters of ``ifindex`` (default: all) about ``seconds_before_wrap``
        of traffic (at the current noise-free rate) below 2**32, or with ``hc`` also the 64-bit
        ones below 2**64. A down interface gets 1 octet below the wrap."""
        targets = [ifindex] if ifindex is not None else list(range(1, self.n_interfaces + 1))
        with self._lock:
            for i in targets:
                rates = self.expected_octets_per_s(i)
                for direction, rate in zip(("In", "Out"), rates, strict=True):
                    gap = max(1, int(rate * seconds_before_wrap))
                    self.set_counter(i, f"if{direction}Octets", _U32 - min(gap, _U32 - 1))
                    if hc:
                        self.set_counter(i, f"ifHC{direction}Octets", _U64 - min(gap, _U64 - 1))

    def restart(self, *, send_trap: bool = True) -> None:
        """Simulate a reboot: sysUpTime from 0, all counters 0, every ifLastChange 0. Sends a
        coldStart trap when ``send_trap`` and a trap target is set (and the mode allows)."""
        with self._lock:
            now = self.clock()
            self._advance(now)
            self._boot = now
            self._uptime0_cs = 0
            self._cnt[:] = 0
            self._res[:] = 0.0
            self._last_change = [0] * self.n_interfaces
        log.info("event=sim_agent_restart device=%s", self.device_id)
        if send_trap:
            self.send_cold_start()

    def set_link(self, ifindex: int, up: bool) -> bool:
        """Set ifOperStatus (1 up / 2 down). On a change, sends linkUp/linkDown (with ifIndex,
        ifAdminStatus, ifOperStatus) to the trap target, if any. Returns whether it changed.
        A link cannot come up while the interface is admin down."""
        with self._lock:
            k = self._row(ifindex)
            new = 1 if up and self._admin[k] == 1 else 2
            if new == self._oper[k]:
                return False
            now = self.clock()
            self._advance(now)  # the traffic so far ran at the old status
            self._oper[k] = new
            self._up[k] = 1.0 if new == 1 else 0.0
            self._last_change[k] = self._uptime_cs(now)
            admin = self._admin[k]
        log.info(
            "event=sim_link device=%s ifindex=%d oper=%s",
            self.device_id,
            ifindex,
            "up" if new == 1 else "down",
        )
        self._send_trap(
            LINK_UP if new == 1 else LINK_DOWN,
            [
                ((*IF_INDEX, ifindex), Integer(ifindex)),
                ((*IF_ADMIN_STATUS, ifindex), Integer(admin)),
                ((*IF_OPER_STATUS, ifindex), Integer(new)),
            ],
        )
        return True

    def set_admin(self, ifindex: int, up: bool) -> bool:
        """Set ifAdminStatus; admin down also takes the link down (with its trap), admin up
        brings it up. Returns whether anything changed."""
        with self._lock:
            k = self._row(ifindex)
            new = 1 if up else 2
            changed = new != self._admin[k]
            self._admin[k] = new
        return self.set_link(ifindex, up) or changed

    def set_mode(self, mode: str, delay_s: float | None = None) -> None:
        """Set the mode: "normal", "silent" (never replies), "slow" (replies after ``delay_s``), "garbage"
        (replies with invalid bytes), "down" (no replies; an outage: call restart() when it
        ends to model a power cut). The device's state keeps running in every mode."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if delay_s is not None:
            if not 0 <= delay_s <= 3600:
                raise ValueError(f"delay_s must be in [0, 3600], got {delay_s}")
            self.delay_s = delay_s
        if mode != self.mode:
            log.info("event=sim_mode device=%s mode=%s", self.device_id, mode)
        self.mode = cast(Mode, mode)

    def send_cold_start(self) -> bool:
        """Send a coldStart trap to the trap target; False when none is set or it failed."""
        return self._send_trap(COLD_START, [])

    def _send_trap(self, trap_oid: OID, varbinds: list[tuple[OID, Value]]) -> bool:
        target = self.trap_target
        if target is None or self.mode in ("silent", "down"):
            return False
        with self._lock:
            self._trap_rid = self._trap_rid % (2**31 - 1) + 1
            rid = self._trap_rid
            vbs: list[tuple[OID, Value]] = [
                (SYS_UPTIME, TimeTicks(self._uptime_cs(self.clock()))),
                (SNMP_TRAP_OID, ObjectId(trap_oid)),
                *varbinds,
            ]
            packet = encode_trap_v2(rid, self.trap_community.encode(), vbs)
            try:
                if self.trap_sender is not None:
                    self.trap_sender(packet, target)
                    self.stats.traps_sent += 1
                    return True
                if self._trap_sock is None:
                    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
                    self._trap_sock = socket.socket(family, socket.SOCK_DGRAM)
                    self._trap_sock.setblocking(False)
                self._trap_sock.sendto(packet, target)
            except OSError as exc:
                self.stats.trap_errors += 1
                log.warning("event=sim_trap_failed device=%s error=%s", self.device_id, exc)
                return False
            self.stats.traps_sent += 1
            return True

    def close(self) -> None:
        """Release the trap socket (the device itself holds nothing else)."""
        with self._lock:
            if self._trap_sock is not None:
                self._trap_sock.close()
                self._trap_sock = None

    # -- the MIB --------------------------------------------------------------------------------

    def _build_index(self) -> None:
        """The sorted OID index, built once: static varbinds pre-encoded, dynamic ones named."""
        rows: list[tuple[OID, Value | None, int, int]] = []  # (oid, static value, dyn column, dyn row)

        def static(oid: OID, v: Value) -> None:
            rows.append((oid, v, -1, 0))

        def dynamic(oid: OID, col: int, row: int = 0) -> None:
            rows.append((oid, None, col, row))

        static(SYS_DESCR, OctetString(self.sys_descr.encode()))
        static(SYS_OBJECT_ID, ObjectId((*ENTERPRISE, _KIND_CODE.get(self.kind, 9))))
        dynamic(SYS_UPTIME, _D_UPTIME)
        static(SYS_CONTACT, OctetString(self.contact.encode()))
        static(SYS_NAME, OctetString(self.sys_name.encode()))
        static(SYS_LOCATION, OctetString(self.location.encode()))
        static(SYS_SERVICES, Integer(6 if self.kind in ("router", "olt") else 2))
        static(IF_NUMBER, Integer(self.n_interfaces))
        for k, itf in enumerate(self.interfaces):
            i = k + 1
            bps = itf.speed_mbps * 1_000_000
            static((*IF_ENTRY, 1, i), Integer(i))
            static((*IF_ENTRY, 2, i), OctetString(itf.name.encode()))
            static((*IF_ENTRY, 3, i), Integer(itf.if_type))
            static((*IF_ENTRY, 4, i), Integer(itf.mtu))
            static((*IF_ENTRY, 5, i), Gauge32(min(bps, _U32 - 1)))
            static((*IF_ENTRY, 6, i), OctetString(self._mac[k]))
            dynamic((*IF_ENTRY, 7, i), _D_ADMIN, k)
            dynamic((*IF_ENTRY, 8, i), _D_OPER, k)
            dynamic((*IF_ENTRY, 9, i), _D_LAST_CHANGE, k)
            dynamic((*IF_ENTRY, 10, i), _D_IN32, k)
            dynamic((*IF_ENTRY, 13, i), _D_IN_DISC, k)
            dynamic((*IF_ENTRY, 14, i), _D_IN_ERR, k)
            dynamic((*IF_ENTRY, 16, i), _D_OUT32, k)
            dynamic((*IF_ENTRY, 19, i), _D_OUT_DISC, k)
            dynamic((*IF_ENTRY, 20, i), _D_OUT_ERR, k)
            if not self.if_x_table:
                continue
            static((*IFX_ENTRY, 1, i), OctetString(itf.name.encode()))
            dynamic((*IFX_ENTRY, 6, i), _D_HC_IN, k)
            dynamic((*IFX_ENTRY, 10, i), _D_HC_OUT, k)
            static((*IFX_ENTRY, 14, i), Integer(1))  # ifLinkUpDownTrapEnable: enabled
            static((*IFX_ENTRY, 15, i), Gauge32(itf.speed_mbps))
            static((*IFX_ENTRY, 18, i), OctetString(itf.alias.encode()))
        for s, k in enumerate(self._sensor_rows):
            i = k + 1  # sensor index = the port's ifIndex (a real OLT uses entPhysicalIndex)
            static((*SENSOR_ENTRY, 1, i), Integer(1))  # other: dBm is not an EntitySensorDataType
            static((*SENSOR_ENTRY, 2, i), Integer(9))  # scale: units
            static((*SENSOR_ENTRY, 3, i), Integer(1))  # precision: tenths
            dynamic((*SENSOR_ENTRY, 4, i), _D_SENSOR_VALUE, s)
            dynamic((*SENSOR_ENTRY, 5, i), _D_SENSOR_STATUS, s)
            static((*SENSOR_ENTRY, 6, i), OctetString(b"dBm"))
        if self.onus is not None:
            cards, ports, per_port = self.onus
            for slot in range(1, cards + 1):
                for port in range(ports):
                    ifindex = pon_ifindex(slot, port)
                    for ont in range(per_port):
                        row = onu_row(slot, port, ont, ports, per_port)
                        for sub, name in ONU_COLUMNS:
                            v = row.get(name)
                            if v is not None:
                                value: Value = OctetString(v.encode()) if isinstance(v, str) else Integer(v)
                                static((*ONU_ENTRY, sub, ifindex, ont), value)
        rows.sort(key=lambda r: r[0])
        self._oids: list[OID] = [r[0] for r in rows]
        self._pos: dict[OID, int] = {o: p for p, o in enumerate(self._oids)}
        self._names: list[bytes] = [_name_tlv(r[0]) for r in rows]
        self._static: list[bytes | None] = [
            None if r[1] is None else _varbind(self._names[p], _value_tlv(r[1])) for p, r in enumerate(rows)
        ]
        self._dcol: list[int] = [r[2] for r in rows]
        self._drow: list[int] = [r[3] for r in rows]
        self._c64: list[bool] = [r[2] in (_D_HC_IN, _D_HC_OUT) for r in rows]
        # Object types (scalars without .0, columns): GET below one is noSuchInstance.
        self._objects: set[OID] = {r[0][:-1] for r in rows}

    @property
    def oids(self) -> list[OID]:
        """Every OID the agent serves, in lexicographic order."""
        return list(self._oids)

    def _snapshot(self, now: float) -> list[list[int]]:
        """The dynamic values now, per dynamic column (caller holds the lock)."""
        self._advance(now)
        cnt = self._cnt
        low = cnt & _MASK32
        sensor_value: list[int] = []
        sensor_status: list[int] = []
        if self._sensor_rows:
            jitter = self._noise_rng.integers(-2, 3, len(self._sensor_rows)).tolist()
            for s, k in enumerate(self._sensor_rows):
                lit = self._oper[k] == 1
                sensor_value.append(self._rx_tenths[s] + jitter[s] if lit else _LOS_TENTHS_DBM)
                sensor_status.append(1 if lit else 2)  # ok / unavailable
        return [
            [self._uptime_cs(now)],
            list(self._admin),
            list(self._oper),
            list(self._last_change),
            low[_C_IN].tolist(),
            low[_C_OUT].tolist(),
            low[_C_IN_ERR].tolist(),
            low[_C_OUT_ERR].tolist(),
            low[_C_IN_DISC].tolist(),
            low[_C_OUT_DISC].tolist(),
            cnt[_C_IN].tolist(),
            cnt[_C_OUT].tolist(),
            sensor_value,
            sensor_status,
        ]

    # -- the protocol ---------------------------------------------------------------------------

    def handle(self, packet: bytes, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> bytes | None:
        """The response to one request datagram, or None when an agent would not answer
        (undecodable, wrong community, not a request). Ignores the mode (the server applies it)."""
        st = self.stats
        try:
            req = decode_request(packet)
        except SnmpDecodeError:
            st.decode_errors += 1
            return None
        if req.community != self._community:
            st.bad_community += 1
            return None
        limit = max(0, min(max_response_bytes, MAX_UDP_PAYLOAD))
        v1 = req.version == VERSION_1
        if req.pdu_type == PduType.SET:
            # Read-only agent: noAccess (v2c) / noSuchName (v1), the request's varbinds echoed.
            es, ei = (_NO_SUCH_NAME if v1 else _NO_ACCESS), (1 if req.varbinds else 0)
            st.responses += 1
            try:
                return encode_response(req.request_id, req.community, list(req.varbinds), es, ei, req.version)
            except ValueError:  # a value v1 cannot carry (Counter64, exceptions): echo NULLs
                vbl = b"".join(_varbind(_name_tlv(o), _NULL_VALUE) for o in req.oids)
                return _response(req.version, req.community, req.request_id, es, ei, vbl)
        if req.pdu_type not in (PduType.GET, PduType.GETNEXT, PduType.GETBULK):
            st.unsupported += 1
            return None
        budget = limit - _envelope_bytes(req.community, req.request_id)
        with self._lock:
            now = self.clock()
            values: list[list[int]] | None = None

            def encode(p: int) -> bytes:
                nonlocal values
                s = self._static[p]
                if s is not None:
                    return s
                if values is None:
                    values = self._snapshot(now)
                col = self._dcol[p]
                c = _int_content(values[col][self._drow[p]])
                return _varbind(self._names[p], bytes((_D_TAG[col], len(c))) + c)

            if req.pdu_type == PduType.GETBULK:
                vbl = self._getbulk(req.oids, req.non_repeaters, req.max_repetitions, budget, encode)
                es = ei = 0
            else:
                vbl, es, ei = self._get_or_next(req.oids, req.pdu_type == PduType.GETNEXT, v1, encode)
                if es == _NO_SUCH_NAME:  # v1 error: the request's varbinds, values NULL
                    vbl = b"".join(_varbind(_name_tlv(o), _NULL_VALUE) for o in req.oids)
                elif len(vbl) > budget:
                    st.too_big += 1
                    vbl, es, ei = b"", _TOO_BIG, 0
        st.responses += 1
        return _response(req.version, req.community, req.request_id, es, ei, vbl)

    def _get_or_next(
        self, oids: Sequence[OID], getnext: bool, v1: bool, encode: Callable[[int], bytes]
    ) -> tuple[bytes, int, int]:
        out: list[bytes] = []
        n = len(self._oids)
        for j, oid in enumerate(oids):
            if getnext:
                p = bisect_right(self._oids, oid)
                if v1:  # SNMPv1 has no Counter64: a v1 GETNEXT skips them (RFC 3584 4.2.2)
                    while p < n and self._c64[p]:
                        p += 1
                if p < n:
                    out.append(encode(p))
                elif v1:
                    return b"", _NO_SUCH_NAME, j + 1
                else:
                    out.append(_varbind(_name_tlv(oid), _END_OF_MIB))
                continue
            q = self._pos.get(oid)
            if q is not None and not (v1 and self._c64[q]):
                out.append(encode(q))
            elif v1:
                return b"", _NO_SUCH_NAME, j + 1
            else:
                known = any(oid[:k] in self._objects for k in range(1, len(oid) + 1))
                out.append(_varbind(_name_tlv(oid), _NO_SUCH_INSTANCE if known else _NO_SUCH_OBJECT))
        return b"".join(out), _NO_ERROR, 0

    def _getbulk(
        self,
        oids: Sequence[OID],
        non_repeaters: int,
        max_repetitions: int,
        budget: int,
        encode: Callable[[int], bytes],
    ) -> bytes:
        """RFC 3416 4.2.3: the first N OIDs get one successor, the R others up to M; the list
        is cut where the size bound is reached, or after the first repetition in which every
        repeater is at endOfMibView."""
        out: list[bytes] = []
        size = 0
        all_oids = self._oids
        n = len(all_oids)
        nr = min(non_repeaters, len(oids))
        for oid in oids[:nr]:
            p = bisect_right(all_oids, oid)
            vb = encode(p) if p < n else _varbind(_name_tlv(oid), _END_OF_MIB)
            size += len(vb)
            if size > budget:
                return b"".join(out)
            out.append(vb)
        repeaters = oids[nr:]
        if not repeaters or max_repetitions <= 0:
            return b"".join(out)
        pos = [bisect_right(all_oids, o) for o in repeaters]
        start = list(pos)
        end_names: list[bytes | None] = [None] * len(repeaters)
        for _ in range(max_repetitions):  # bounded in practice by the budget (>= 1 varbind each)
            all_end = True
            for j, p in enumerate(pos):
                if p < n:
                    vb = encode(p)
                    pos[j] = p + 1
                    all_end = False
                else:
                    # endOfMibView carries the last name reached: the last OID this request
                    # returned for the repeater, else the one it asked for.
                    name = end_names[j]
                    if name is None:
                        name = self._names[n - 1] if p > start[j] else _name_tlv(repeaters[j])
                        end_names[j] = name
                    vb = _varbind(name, _END_OF_MIB)
                size += len(vb)
                if size > budget:
                    return b"".join(out)
                out.append(vb)
            if all_end:
                break
        return b"".join(out)


# ---------------------------------------------------------------------------------------------
# UDP server


class _AgentProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SnmpAgentServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._server._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._server.device.stats.send_errors += 1


class SnmpAgentServer:
    """One UDP SNMP agent serving one :class:`SimDevice` (``port=0``: a free port, see
    :attr:`port` once started). Use ``async with SnmpAgentServer(dev) as srv:`` or
    ``await start()`` / ``await close()``."""

    def __init__(
        self,
        device: SimDevice,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.device = device
        self.host = host
        self._requested_port = port
        self.max_response_bytes = max_response_bytes
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: set[asyncio.TimerHandle] = set()
        self.port = 0

    async def start(self) -> SnmpAgentServer:
        if self._transport is not None:
            return self
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _AgentProtocol(self), local_addr=(self.host, self._requested_port)
        )
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        self.device.trap_sender = transport.sendto
        log.debug("event=sim_agent_listening device=%s port=%d", self.device.device_id, self.port)
        return self

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    async def close(self) -> None:
        for h in self._pending:
            h.cancel()
        self._pending.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.device.trap_sender = None
        self.device.close()

    async def __aenter__(self) -> SnmpAgentServer:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _send(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self._transport is None:
            return
        try:
            self._transport.sendto(data, addr)
        except OSError:
            self.device.stats.send_errors += 1

    def _on_datagram(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        dev = self.device
        st = dev.stats
        st.received += 1
        mode = dev.mode
        if mode in ("silent", "down"):
            st.dropped += 1
            return
        try:
            resp = dev.handle(data, self.max_response_bytes)
        except Exception:  # a bug must not take the agent down: count it, answer nothing
            st.internal_errors += 1
            log.exception("event=sim_agent_internal_error device=%s", dev.device_id)
            return
        if resp is None:
            return
        if mode == "garbage":
            resp = self._garble(resp)
            st.garbage += 1
        if mode == "slow":
            if len(self._pending) >= MAX_PENDING_DELAYED:
                st.dropped += 1
                return
            st.delayed += 1
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle | None = None

            def later() -> None:
                if handle is not None:
                    self._pending.discard(handle)
                self._send(resp, addr)

            handle = loop.call_later(dev.delay_s, later)
            self._pending.add(handle)
            return
        self._send(resp, addr)

    def _garble(self, resp: bytes) -> bytes:
        """Bytes that are not an SNMP message: the response cut short (its outer length then
        overruns), or random bytes that do not start with a SEQUENCE tag."""
        rng = self.device._garbage_rng
        if len(resp) > 1 and rng.random() < 0.5:
            return resp[: rng.randrange(1, len(resp))]
        first = rng.choice([b for b in range(256) if b != 0x30])
        return bytes((first,)) + rng.randbytes(rng.randrange(0, 200))


# ---------------------------------------------------------------------------------------------
# Many devices


class AgentFleet:
    """Running agents, one per device. ``async with fleet:`` closes them all on exit."""

    def __init__(self, servers: list[SnmpAgentServer]) -> None:
        self.servers = servers
        self.by_id: dict[str, SnmpAgentServer] = {s.device.device_id: s for s in servers}

    def port_of(self, device_id: str) -> int:
        return self.by_id[device_id].port

    def device(self, device_id: str) -> SimDevice:
        return self.by_id[device_id].device

    @property
    def devices(self) -> list[SimDevice]:
        return [s.device for s in self.servers]

    def set_trap_target(self, host: str, port: int, community: str = "public") -> None:
        """Send every device's traps to ``host:port`` (a trap receiver)."""
        for s in self.servers:
            s.device.trap_target = (host, port)
            s.device.trap_community = community

    async def close(self) -> None:
        for s in self.servers:
            await s.close()

    async def __aenter__(self) -> AgentFleet:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def serve_devices(
    devices: Iterable[SimDevice],
    host: str = "127.0.0.1",
    base_port: int = 0,
    *,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> AgentFleet:
    """Start one agent per device: on free ports (``base_port=0``) or base_port, base_port+1, ...
    Raises ValueError on a duplicate device id; on a bind failure the started ones are closed."""
    devs = list(devices)
    ids = [d.device_id for d in devs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate device ids: {dup[:5]}")
    started: list[SnmpAgentServer] = []
    try:
        for k, d in enumerate(devs):
            port = 0 if base_port == 0 else base_port + k
            srv = SnmpAgentServer(d, host, port, max_response_bytes=max_response_bytes)
            started.append(await srv.start())
    except BaseException:
        for s in started:
            await s.close()
        raise
    log.info("event=sim_agents_started count=%d host=%s", len(started), host)
    return AgentFleet(started)
