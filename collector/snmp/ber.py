"""A compact SNMP v1/v2c BER codec with a numba hot path for responses.

Why our own codec: the poller decodes hundreds of thousands of varbinds per second, and a
general ASN.1 library (pysnmp/pyasn1) builds several Python objects per varbind (~12k
varbinds per CPU-second). SNMP v1/v2c messages have a fixed, shallow shape, so a kernel can
walk the bytes once and write every varbind straight into numpy columns
(:func:`decode_response_columnar`): per-packet Python overhead only, no object per varbind.

Message shapes handled (RFC 1157, RFC 3416)::

    Message  ::= SEQUENCE { version INTEGER (0 = v1, 1 = v2c), community OCTET STRING, pdu }
    pdu      ::= [0xA0..0xA8] { request-id, error-status | non-repeaters,
                               error-index | max-repetitions, SEQUENCE OF VarBind }
    VarBind  ::= SEQUENCE { name OBJECT IDENTIFIER, value }
    Trap-PDU ::= [0xA4] { enterprise, agent-addr, generic-trap, specific-trap,
                          time-stamp, SEQUENCE OF VarBind }          (SNMPv1 only)

Decoding rules, identical in the kernel and in the Python reference decoder
(:func:`decode_message`), so the two accept exactly the same packets:

- lengths: short and long definite forms, long form with at most 4 length octets (leading
  zeros allowed: net-snmp always writes ``0x82 hi lo``); indefinite length is rejected;
  every element must end inside its parent, and parents must be filled exactly;
- INTEGER: up to 64 bits; redundant leading 0x00/0xFF octets are accepted (sloppy agents)
  and a zero-length INTEGER reads as 0 (as pyasn1 does);
- Counter32/Gauge32/TimeTicks/Counter64: read as unsigned after dropping leading 0x00
  octets, so the common agent bug of writing 4294967295 as ``FF FF FF FF`` (no sign octet)
  still decodes to 4294967295; more than 4 (8 for Counter64) significant octets is an error;
- OBJECT IDENTIFIER: non-empty, sub-identifiers below 2**63, no 0x80 padding octet
  (non-minimal sub-identifiers are a known filter-evasion trick), none cut short;
- at most :data:`MAX_VARBINDS` varbinds; unknown value tags, constructed values, NULL or
  exceptions with content and IpAddress of a length other than 4 are errors.

Every malformed input ends in :class:`SnmpDecodeError` (a ``ValueError``) with a fixed
``reason`` string (fit for counting) and the byte ``offset``; the work is linear in the packet
size, with no recursion.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from collector.core._jit import I32Array, I64Array, U8Array, kernel, readonly, sample, zeros

OID: TypeAlias = tuple[int, ...]
I16Array: TypeAlias = npt.NDArray[np.int16]
U64Array: TypeAlias = npt.NDArray[np.uint64]

VERSION_1: Final = 0
VERSION_2C: Final = 1

# Bounds the arrays a hostile packet can make us allocate; a real response (one UDP datagram,
# <= 65507 bytes) holds a few hundred.
MAX_VARBINDS: Final = 10_000
# str_len is int32; no SNMP packet comes close.
MAX_PACKET_SIZE: Final = 2**31 - 1
# OID sub-identifiers are stored as int64.
MAX_SUBID: Final = 2**63 - 1
# OCTET STRING (SIZE (0..65535)) in the SMI: the encoder refuses longer ones, the decoders don't care.
MAX_OCTETS: Final = 65_535
# Longest OID the encoder writes or parse_oid accepts: far above SNMP's 128, but bounded so a
# typo'd profile cannot build an absurd request.
MAX_OID_LEN: Final = 1024


class PduType(IntEnum):
    """PDU tags (context-specific, constructed)."""

    GET = 0xA0
    GETNEXT = 0xA1
    RESPONSE = 0xA2
    SET = 0xA3
    TRAP = 0xA4  # SNMPv1 Trap-PDU (its own layout)
    GETBULK = 0xA5
    INFORM = 0xA6
    TRAP_V2 = 0xA7
    REPORT = 0xA8


# ---------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class Integer:
    """INTEGER / Integer32. Encoded values must fit in signed 32 bits; decoding accepts 64."""

    value: int
    tag: ClassVar[int] = 0x02


@dataclass(frozen=True, slots=True)
class OctetString:
    value: bytes
    tag: ClassVar[int] = 0x04


@dataclass(frozen=True, slots=True)
class Null:
    tag: ClassVar[int] = 0x05


@dataclass(frozen=True, slots=True)
class ObjectId:
    value: OID
    tag: ClassVar[int] = 0x06


@dataclass(frozen=True, slots=True)
class IpAddress:
    """IPv4 address as its 4 network-order bytes."""

    value: bytes
    tag: ClassVar[int] = 0x40


@dataclass(frozen=True, slots=True)
class Counter32:
    value: int
    tag: ClassVar[int] = 0x41


@dataclass(frozen=True, slots=True)
class Gauge32:
    """Gauge32 (also Unsigned32: same tag)."""

    value: int
    tag: ClassVar[int] = 0x42


@dataclass(frozen=True, slots=True)
class TimeTicks:
    """Hundredths of a second."""

    value: int
    tag: ClassVar[int] = 0x43


@dataclass(frozen=True, slots=True)
class Opaque:
    value: bytes
    tag: ClassVar[int] = 0x44


@dataclass(frozen=True, slots=True)
class Counter64:
    value: int
    tag: ClassVar[int] = 0x46


@dataclass(frozen=True, slots=True)
class NoSuchObject:
    tag: ClassVar[int] = 0x80


@dataclass(frozen=True, slots=True)
class NoSuchInstance:
    tag: ClassVar[int] = 0x81


@dataclass(frozen=True, slots=True)
class EndOfMibView:
    tag: ClassVar[int] = 0x82


Value: TypeAlias = (
    Integer
    | OctetString
    | Null
    | ObjectId
    | IpAddress
    | Counter32
    | Gauge32
    | TimeTicks
    | Opaque
    | Counter64
    | NoSuchObject
    | NoSuchInstance
    | EndOfMibView
)

NULL: Final = Null()

# Raw tag values, as plain ints: numba folds module-level ints into the kernels as constants.
TAG_INTEGER: Final = 0x02
TAG_OCTET_STRING: Final = 0x04
TAG_NULL: Final = 0x05
TAG_OBJECT_ID: Final = 0x06
TAG_SEQUENCE: Final = 0x30
TAG_IP_ADDRESS: Final = 0x40
TAG_COUNTER32: Final = 0x41
TAG_GAUGE32: Final = 0x42
TAG_TIMETICKS: Final = 0x43
TAG_OPAQUE: Final = 0x44
TAG_COUNTER64: Final = 0x46
TAG_NO_SUCH_OBJECT: Final = 0x80
TAG_NO_SUCH_INSTANCE: Final = 0x81
TAG_END_OF_MIB_VIEW: Final = 0x82

# ---------------------------------------------------------------------------------------------
# OIDs

_OID_TEXT = re.compile(r"\.?\d+(?:\.\d+)*")


def parse_oid(text: str) -> OID:
    """``"1.3.6.1.2.1.2.2.1.10"`` (a leading dot, as net-snmp prints, is accepted) -> tuple of ints.

    Raises ValueError for anything else, or a sub-identifier above 2**63-1.
    """
    s = text.strip()
    if not _OID_TEXT.fullmatch(s):
        raise ValueError(f"not a dotted OID: {text!r}")
    oid = tuple(int(p) for p in s.lstrip(".").split("."))
    if len(oid) > MAX_OID_LEN:
        raise ValueError(f"OID longer than {MAX_OID_LEN} sub-identifiers: {text[:40]!r}...")
    if any(x > MAX_SUBID for x in oid):
        raise ValueError(f"OID sub-identifier above 2**63-1 in {text!r}")
    return oid


def format_oid(oid: Sequence[int]) -> str:
    """Tuple of ints -> dotted text without a leading dot (``"1.3.6.1"``)."""
    return ".".join(str(int(x)) for x in oid)


# ---------------------------------------------------------------------------------------------
# Errors and status codes

_OK: Final = 0
_E_TRUNCATED: Final = 1
_E_LENGTH_OVERRUN: Final = 2
_E_INDEFINITE: Final = 3
_E_LENGTH_FIELD: Final = 4
_E_MESSAGE_TAG: Final = 5
_E_TRAILING: Final = 6
_E_VERSION_TAG: Final = 7
_E_VERSION: Final = 8
_E_COMMUNITY_TAG: Final = 9
_E_PDU_TAG: Final = 10
_E_TRAP_V1: Final = 11
_E_MESSAGE_EXTRA: Final = 12
_E_PDU_FIELD_TAG: Final = 13
_E_VBL_TAG: Final = 14
_E_PDU_EXTRA: Final = 15
_E_TOO_MANY: Final = 16
_E_VARBIND_TAG: Final = 17
_E_NAME_TAG: Final = 18
_E_VARBIND_EXTRA: Final = 19
_E_VALUE_TAG: Final = 20
_E_INT_OVERFLOW: Final = 21
_E_U32_OVERFLOW: Final = 22
_E_U64_OVERFLOW: Final = 23
_E_IPADDR_LEN: Final = 24
_E_NULL_LEN: Final = 25
_E_OID_EMPTY: Final = 26
_E_OID_TRUNCATED: Final = 27
_E_OID_NONMINIMAL: Final = 28
_E_OID_OVERFLOW: Final = 29
_E_TRAP_FIELD: Final = 30
_E_PACKET_SIZE: Final = 31

# Fixed strings, so a poller can count rejects by reason.
REASONS: Final[dict[int, str]] = {
    _E_TRUNCATED: "truncated: data ends inside a tag or length",
    _E_LENGTH_OVERRUN: "length runs past the end of the packet or of the enclosing element",
    _E_INDEFINITE: "indefinite length form is not allowed",
    _E_LENGTH_FIELD: "length field longer than 4 octets",
    _E_MESSAGE_TAG: "message is not a SEQUENCE",
    _E_TRAILING: "trailing bytes after the message",
    _E_VERSION_TAG: "version is not an INTEGER",
    _E_VERSION: "unsupported SNMP version (only 0 = v1 and 1 = v2c)",
    _E_COMMUNITY_TAG: "community is not an OCTET STRING",
    _E_PDU_TAG: "unknown PDU type",
    _E_TRAP_V1: "SNMPv1 Trap-PDU has no columnar form (use decode_message)",
    _E_MESSAGE_EXTRA: "bytes after the PDU inside the message",
    _E_PDU_FIELD_TAG: "PDU header field is not an INTEGER",
    _E_VBL_TAG: "variable-bindings is not a SEQUENCE",
    _E_PDU_EXTRA: "bytes after the variable-bindings inside the PDU",
    _E_TOO_MANY: f"more than {MAX_VARBINDS} varbinds",
    _E_VARBIND_TAG: "varbind is not a SEQUENCE",
    _E_NAME_TAG: "varbind name is not an OBJECT IDENTIFIER",
    _E_VARBIND_EXTRA: "bytes after the value inside a varbind",
    _E_VALUE_TAG: "unknown or constructed value tag",
    _E_INT_OVERFLOW: "INTEGER does not fit in 64 bits",
    _E_U32_OVERFLOW: "Counter32/Gauge32/TimeTicks value exceeds 32 bits",
    _E_U64_OVERFLOW: "Counter64 value exceeds 64 bits",
    _E_IPADDR_LEN: "IpAddress is not 4 bytes",
    _E_NULL_LEN: "NULL or exception value with content",
    _E_OID_EMPTY: "empty OBJECT IDENTIFIER",
    _E_OID_TRUNCATED: "OBJECT IDENTIFIER ends inside a sub-identifier",
    _E_OID_NONMINIMAL: "non-minimal OID sub-identifier (0x80 padding octet)",
    _E_OID_OVERFLOW: "OID sub-identifier exceeds 2**63-1",
    _E_TRAP_FIELD: "malformed SNMPv1 Trap-PDU header field",
    _E_PACKET_SIZE: "packet larger than 2**31-1 bytes",
}


class SnmpDecodeError(ValueError):
    """A packet that is not a well-formed SNMP v1/v2c message.

    ``reason`` is one of the fixed :data:`REASONS` strings (or a short fixed phrase from
    :func:`decode_request`), so callers can count rejects by reason; ``offset`` is the byte
    where the offending element starts, when known.
    """

    def __init__(self, reason: str, offset: int | None = None) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(reason if offset is None else f"{reason} (at byte {offset})")


def _error(code: int, offset: int) -> SnmpDecodeError:
    return SnmpDecodeError(REASONS.get(code, f"unknown decoder status {code}"), offset)


# ---------------------------------------------------------------------------------------------
# Encoding (plain Python: once per request)

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1


def _enc_len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def tlv(tag: int, content: bytes) -> bytes:
    """One BER tag-length-value (definite, minimal length). Unchecked: a building block for
    fast encoders (the agent simulator's) that must stay byte-identical to this module's."""
    return bytes((tag,)) + _enc_len(len(content)) + content


_tlv = tlv


def int_content(v: int) -> bytes:
    """Minimal two's-complement content octets (also used for the unsigned types, which BER
    encodes as non-negative INTEGERs: 2**32-1 is ``00 FF FF FF FF``). Unchecked."""
    n = (v if v >= 0 else ~v).bit_length() // 8 + 1
    return v.to_bytes(n, "big", signed=True)


_enc_int = int_content


def oid_content(oid: Sequence[int]) -> bytes:
    """Content octets of an OBJECT IDENTIFIER, unchecked (see `_enc_oid` for the checks)."""
    out = bytearray()
    for x in (oid[0] * 40 + oid[1], *oid[2:]):
        if x < 0x80:
            out.append(x)
            continue
        groups = []
        while x:
            groups.append(x & 0x7F)
            x >>= 7
        out += bytes(g | 0x80 for g in reversed(groups[1:])) + bytes((groups[0],))
    return bytes(out)


def _check_int(name: str, v: object, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"{name} must be an int, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise ValueError(f"{name} {v} outside [{lo}, {hi}]")
    return v


def _enc_oid(oid: Sequence[int]) -> bytes:
    """Content octets of an OBJECT IDENTIFIER; validates what BER can represent."""
    if not 2 <= len(oid) <= MAX_OID_LEN:
        raise ValueError(f"an OID needs 2 to {MAX_OID_LEN} sub-identifiers, got {len(oid)}: {oid!r}")
    for x in oid:
        _check_int("OID sub-identifier", x, 0, MAX_SUBID)
    first, second = oid[0], oid[1]
    if first > 2 or (first < 2 and second >= 40):
        raise ValueError(f"OID must start with 0.x or 1.x (x < 40) or 2.x, got {format_oid(oid[:2])}")
    if first == 2 and second > MAX_SUBID - 80:
        raise ValueError("OID second sub-identifier too large to combine with the first")
    return oid_content(oid)


def _enc_value(v: Value, version: int) -> bytes:
    # match on the class, not isinstance chains over a union: mypy checks exhaustiveness.
    if version == VERSION_1 and isinstance(v, Counter64 | NoSuchObject | NoSuchInstance | EndOfMibView):
        raise ValueError(f"{type(v).__name__} does not exist in SNMPv1")
    match v:
        case Integer(x):
            return _tlv(v.tag, _enc_int(_check_int("Integer", x, _INT32_MIN, _INT32_MAX)))
        case Counter32(x) | Gauge32(x) | TimeTicks(x):
            return _tlv(v.tag, _enc_int(_check_int(type(v).__name__, x, 0, 2**32 - 1)))
        case Counter64(x):
            return _tlv(v.tag, _enc_int(_check_int("Counter64", x, 0, 2**64 - 1)))
        case OctetString(b) | Opaque(b):
            if not isinstance(b, bytes | bytearray):
                raise ValueError(f"{type(v).__name__} needs bytes, got {type(b).__name__}")
            if len(b) > MAX_OCTETS:
                raise ValueError(f"{type(v).__name__} longer than {MAX_OCTETS} bytes (SMI limit): {len(b)}")
            return _tlv(v.tag, bytes(b))
        case IpAddress(b):
            if not isinstance(b, bytes | bytearray) or len(b) != 4:
                raise ValueError(f"IpAddress needs 4 bytes, got {b!r}")
            return _tlv(v.tag, bytes(b))
        case ObjectId(oid):
            return _tlv(v.tag, _enc_oid(oid))
        case Null() | NoSuchObject() | NoSuchInstance() | EndOfMibView():
            return bytes((v.tag, 0))
    raise ValueError(f"not an SNMP value: {v!r}")


def _enc_message(
    version: int, community: bytes, pdu: int, f1: int, f2: int, f3: int, varbinds: Sequence[tuple[OID, Value]]
) -> bytes:
    if version not in (VERSION_1, VERSION_2C):
        raise ValueError(f"version must be 0 (v1) or 1 (v2c), got {version!r}")
    if not isinstance(community, bytes | bytearray):
        raise ValueError(f"community must be bytes, got {type(community).__name__}")
    vbl = b"".join(
        _tlv(TAG_SEQUENCE, _tlv(TAG_OBJECT_ID, _enc_oid(o)) + _enc_value(v, version)) for o, v in varbinds
    )
    body = (
        _tlv(TAG_INTEGER, _enc_int(f1))
        + _tlv(TAG_INTEGER, _enc_int(f2))
        + _tlv(TAG_INTEGER, _enc_int(f3))
        + _tlv(TAG_SEQUENCE, vbl)
    )
    msg = _tlv(TAG_INTEGER, _enc_int(version)) + _tlv(TAG_OCTET_STRING, bytes(community)) + _tlv(pdu, body)
    return _tlv(TAG_SEQUENCE, msg)


def _request_id(v: int) -> int:
    return _check_int("request_id", v, _INT32_MIN, _INT32_MAX)


def encode_get(request_id: int, community: bytes, oids: Sequence[OID], version: int = VERSION_2C) -> bytes:
    """GetRequest-PDU for ``oids`` (values NULL). ``version``: 1 = v2c, 0 = v1."""
    return _enc_message(
        version, community, PduType.GET, _request_id(request_id), 0, 0, [(o, NULL) for o in oids]
    )


def encode_getnext(
    request_id: int, community: bytes, oids: Sequence[OID], version: int = VERSION_2C
) -> bytes:
    """GetNextRequest-PDU for ``oids`` (values NULL). ``version``: 1 = v2c, 0 = v1."""
    vbs = [(o, NULL) for o in oids]
    return _enc_message(version, community, PduType.GETNEXT, _request_id(request_id), 0, 0, vbs)


def encode_getbulk(
    request_id: int, community: bytes, oids: Sequence[OID], max_repetitions: int, non_repeaters: int = 0
) -> bytes:
    """GetBulkRequest-PDU (v2c only): the first ``non_repeaters`` OIDs get one successor each,
    the others up to ``max_repetitions``."""
    nr = _check_int("non_repeaters", non_repeaters, 0, _INT32_MAX)
    mr = _check_int("max_repetitions", max_repetitions, 0, _INT32_MAX)
    vbs = [(o, NULL) for o in oids]
    return _enc_message(VERSION_2C, community, PduType.GETBULK, _request_id(request_id), nr, mr, vbs)


def encode_response(
    request_id: int,
    community: bytes,
    varbinds: Sequence[tuple[OID, Value]],
    error_status: int = 0,
    error_index: int = 0,
    version: int = VERSION_2C,
) -> bytes:
    """Response-PDU (our agent simulator and tests). Counter64 and the v2 exceptions are refused
    for v1."""
    es = _check_int("error_status", error_status, 0, _INT32_MAX)
    ei = _check_int("error_index", error_index, 0, _INT32_MAX)
    return _enc_message(version, community, PduType.RESPONSE, _request_id(request_id), es, ei, varbinds)


def encode_trap_v2(request_id: int, community: bytes, varbinds: Sequence[tuple[OID, Value]]) -> bytes:
    """SNMPv2-Trap-PDU (0xA7). By RFC 3416 the first varbinds should be sysUpTime.0 and
    snmpTrapOID.0; that is the caller's business, not checked here."""
    return _enc_message(VERSION_2C, community, PduType.TRAP_V2, _request_id(request_id), 0, 0, varbinds)


# ---------------------------------------------------------------------------------------------
# Kernels (the hot path). Each helper returns a status code first; nothing raises.


@sample(lambda: (readonly(zeros(np.uint8, 1)), 0, 0))
@kernel
def _k_header(data: U8Array, pos: int, end: int) -> tuple[int, int, int, int]:
    """Read the tag and length of the element at ``pos``, which must end by ``end``.

    Returns (status, tag, content_start, content_end).
    """
    if pos >= end:
        return _E_TRUNCATED, 0, pos, pos
    tag = int(data[pos])
    p = pos + 1
    if p >= end:
        return _E_TRUNCATED, tag, p, p
    b = int(data[p])
    p += 1
    if b < 0x80:
        length = b
    elif b == 0x80:
        return _E_INDEFINITE, tag, p, p
    else:
        nb = b & 0x7F
        if nb > 4:  # also 0xFF (reserved); 4 octets already describe 4 GiB
            return _E_LENGTH_FIELD, tag, p, p
        if nb > end - p:
            return _E_TRUNCATED, tag, p, p
        length = 0
        for k in range(nb):
            length = length * 256 + int(data[p + k])
        p += nb
    if length > end - p:
        return _E_LENGTH_OVERRUN, tag, p, p
    return _OK, tag, p, p + length


@sample(lambda: (readonly(np.ones(1, dtype=np.uint8)), 0, 1))
@kernel
def _k_int(data: U8Array, s: int, e: int) -> tuple[int, np.int64]:
    """Signed INTEGER content -> int64 (redundant sign octets skipped, empty reads as 0)."""
    while e - s > 1 and (
        (data[s] == 0x00 and data[s + 1] < 0x80) or (data[s] == 0xFF and data[s + 1] >= 0x80)
    ):
        s += 1
    if e - s > 8:
        return _E_INT_OVERFLOW, np.int64(0)
    if e == s:
        return _OK, np.int64(0)
    v = np.int64(data[s])
    if v >= 0x80:
        v -= 256
    for k in range(s + 1, e):
        v = v * 256 + np.int64(data[k])  # <= 8 octets: never overflows
    return _OK, v


@sample(lambda: (readonly(np.ones(1, dtype=np.uint8)), 0, 1, 4))
@kernel
def _k_uint(data: U8Array, s: int, e: int, nbytes: int) -> tuple[int, np.uint64]:
    """Unsigned application type content -> uint64 (leading zeros skipped, empty reads as 0)."""
    while e - s > 1 and data[s] == 0x00:
        s += 1
    if e - s > nbytes:
        return (_E_U32_OVERFLOW if nbytes == 4 else _E_U64_OVERFLOW), np.uint64(0)
    v = np.uint64(0)
    for k in range(s, e):
        # All operands uint64: numba turns mixed uint64/int64 arithmetic into float64.
        v = (v << np.uint64(8)) | np.uint64(data[k])
    return _OK, v


@sample(lambda: (readonly(zeros(np.uint8, 1)), 0, 0, zeros(np.int64, 2), 0))
@kernel
def _k_oid(data: U8Array, s: int, e: int, out: I64Array, m: int) -> tuple[int, int]:
    """Decode OID content into out[m:]; returns (status, new m). The caller sized ``out`` so an
    OID of c content octets (<= c + 1 sub-identifiers) always fits."""
    if s >= e:
        return _E_OID_EMPTY, m
    i = s
    first = True
    while i < e:
        b = np.int64(data[i])
        i += 1
        if b == 0x80:
            return _E_OID_NONMINIMAL, m
        v = b & 0x7F
        while b >= 0x80:
            if i >= e:
                return _E_OID_TRUNCATED, m
            if v > (MAX_SUBID >> 7):  # v * 128 + 127 would pass 2**63-1
                return _E_OID_OVERFLOW, m
            b = np.int64(data[i])
            i += 1
            v = v * 128 + (b & 0x7F)
        if first:
            # The first sub-identifier packs two arcs: 40 * a + b, with a in 0..2.
            if v < 40:
                out[m] = 0
                out[m + 1] = v
            elif v < 80:
                out[m] = 1
                out[m + 1] = v - 40
            else:
                out[m] = 2
                out[m + 1] = v - 80
            m += 2
            first = False
        else:
            out[m] = v
            m += 1
    return _OK, m


@sample(lambda: (zeros(np.int64, 1), 0, 1, readonly(zeros(np.int64, 1)), readonly(np.arange(2)), 0))
@kernel
def _k_match(oid: I64Array, a: int, b: int, col_sub: I64Array, col_off: I64Array, c: int) -> bool:
    """Does the OID oid[a:b] start with prefix c? Compared from the last sub-id backwards:
    table columns share long prefixes and differ at the end, so mismatches show up at once."""
    ps = col_off[c]
    plen = col_off[c + 1] - ps
    if plen > b - a:
        return False
    for j in range(plen - 1, -1, -1):  # noqa: SIM110 (a plain loop: no generator in the kernel)
        if oid[a + j] != col_sub[ps + j]:
            return False
    return True


_H_STATUS: Final = 0
_H_ERRPOS: Final = 1
_H_VERSION: Final = 2
_H_COMM_OFF: Final = 3
_H_COMM_LEN: Final = 4
_H_PDU: Final = 5
_H_REQUEST_ID: Final = 6
_H_ERROR_STATUS: Final = 7
_H_ERROR_INDEX: Final = 8
_H_N: Final = 9
_H_M: Final = 10
_H_SIZE: Final = 11

_Columnar = tuple[I64Array, I16Array, I64Array, I64Array, U8Array, I64Array, U64Array, I64Array, I32Array]


@sample(lambda: (zeros(np.int64, _H_SIZE), np.int64(_OK), np.int64(0)))
@kernel
def _k_fail(hdr: I64Array, status: int | np.int64, pos: int | np.int64) -> _Columnar:
    # Callers pass np.int64(...) rather than bare constants: numba would otherwise compile one
    # specialization per literal status (17 of them, +2 s of cold compile for nothing).
    hdr[_H_STATUS] = status
    hdr[_H_ERRPOS] = pos
    return (
        hdr,
        np.empty(0, dtype=np.int16),
        np.zeros(1, dtype=np.int64),
        np.empty(0, dtype=np.int64),
        np.empty(0, dtype=np.uint8),
        np.empty(0, dtype=np.int64),
        np.empty(0, dtype=np.uint64),
        np.empty(0, dtype=np.int64),
        np.empty(0, dtype=np.int32),
    )


def _columnar_sample() -> tuple[U8Array, I64Array, I64Array, bool]:
    """The registry's sample for the decoder: a one-varbind response, as a poll passes it."""
    packet = encode_response(1, b"public", [((1, 3, 6, 1, 2, 1, 1, 3, 0), TimeTicks(1))])
    columns = Columns.of([(1, 3, 6, 1, 2, 1, 1)])
    return _as_array(packet), columns.sub, columns.offsets, columns.nested


@sample(_columnar_sample)
@kernel
def _k_decode_columnar(data: U8Array, col_sub: I64Array, col_off: I64Array, nested: bool) -> _Columnar:
    """Decode a message with a standard-layout PDU into columns.

    Returns (hdr, column, suffix_offsets, suffix, tag, ival, uval, str_offset, str_len); hdr
    holds the status (0 = ok), the error position and the scalar fields (see _H_*).
    The order of the checks is mirrored exactly by the Python decoder (_py_parse).
    """
    hdr = np.zeros(_H_SIZE, dtype=np.int64)
    size = data.shape[0]
    st, t, p, end = _k_header(data, 0, size)
    if st != _OK:
        return _k_fail(hdr, st, np.int64(0))
    if t != TAG_SEQUENCE:
        return _k_fail(hdr, np.int64(_E_MESSAGE_TAG), np.int64(0))
    if end != size:
        return _k_fail(hdr, np.int64(_E_TRAILING), end)
    # version
    st, t, s, e = _k_header(data, p, end)
    if st != _OK:
        return _k_fail(hdr, st, p)
    if t != TAG_INTEGER:
        return _k_fail(hdr, np.int64(_E_VERSION_TAG), p)
    st, version = _k_int(data, s, e)
    if st != _OK:
        return _k_fail(hdr, st, p)
    if version != 0 and version != 1:
        return _k_fail(hdr, np.int64(_E_VERSION), p)
    hdr[_H_VERSION] = version
    p = e
    # community
    st, t, s, e = _k_header(data, p, end)
    if st != _OK:
        return _k_fail(hdr, st, p)
    if t != TAG_OCTET_STRING:
        return _k_fail(hdr, np.int64(_E_COMMUNITY_TAG), p)
    hdr[_H_COMM_OFF] = s
    hdr[_H_COMM_LEN] = e - s
    p = e
    # PDU
    st, t, s, e = _k_header(data, p, end)
    if st != _OK:
        return _k_fail(hdr, st, p)
    if t == 0xA4:
        return _k_fail(hdr, np.int64(_E_TRAP_V1), p)
    if t < 0xA0 or t > 0xA8:
        return _k_fail(hdr, np.int64(_E_PDU_TAG), p)
    if e != end:
        return _k_fail(hdr, np.int64(_E_MESSAGE_EXTRA), e)
    hdr[_H_PDU] = t
    pdu_end = e
    p = s
    for k in range(3):  # request-id, error-status (non-repeaters), error-index (max-repetitions)
        st, t, s, e = _k_header(data, p, pdu_end)
        if st != _OK:
            return _k_fail(hdr, st, p)
        if t != TAG_INTEGER:
            return _k_fail(hdr, np.int64(_E_PDU_FIELD_TAG), p)
        st, v = _k_int(data, s, e)
        if st != _OK:
            return _k_fail(hdr, st, p)
        hdr[_H_REQUEST_ID + k] = v
        p = e
    # variable-bindings
    st, t, s, e = _k_header(data, p, pdu_end)
    if st != _OK:
        return _k_fail(hdr, st, p)
    if t != TAG_SEQUENCE:
        return _k_fail(hdr, np.int64(_E_VBL_TAG), p)
    if e != pdu_end:
        return _k_fail(hdr, np.int64(_E_PDU_EXTRA), e)
    vbl_start = s
    vbl_end = e

    # Pass 1: count the varbinds (skipping each SEQUENCE by its length) to size the columns
    # exactly; cheap next to pass 2 and keeps allocations proportional to the real content.
    n = 0
    q = vbl_start
    while q < vbl_end:
        if n == MAX_VARBINDS:
            return _k_fail(hdr, np.int64(_E_TOO_MANY), q)
        st, t, s, e = _k_header(data, q, vbl_end)
        if st != _OK:
            return _k_fail(hdr, st, q)
        if t != TAG_SEQUENCE:
            return _k_fail(hdr, np.int64(_E_VARBIND_TAG), q)
        n += 1
        q = e

    column = np.empty(n, dtype=np.int16)
    suffix_offsets = np.empty(n + 1, dtype=np.int64)
    tags = np.empty(n, dtype=np.uint8)
    ival = np.zeros(n, dtype=np.int64)
    uval = np.zeros(n, dtype=np.uint64)
    str_offset = np.empty(n, dtype=np.int64)
    str_len = np.empty(n, dtype=np.int32)
    # A varbind whose name has c content octets takes >= c + 6 bytes of the list and yields
    # <= c + 1 sub-ids (+ <= v + 1 for an OID value of v octets, decoded here as a check):
    # the list length bounds the sub-ids written.
    suffix = np.empty(vbl_end - vbl_start + 2, dtype=np.int64)
    suffix_offsets[0] = 0
    n_cols = col_off.shape[0] - 1
    last = -1
    m = 0
    q = vbl_start
    for i in range(n):
        st, t, vs, vb_end = _k_header(data, q, vbl_end)  # checked in pass 1
        # name
        st, t, s, e = _k_header(data, vs, vb_end)
        if st != _OK:
            return _k_fail(hdr, st, vs)
        if t != TAG_OBJECT_ID:
            return _k_fail(hdr, np.int64(_E_NAME_TAG), vs)
        st, m1 = _k_oid(data, s, e, suffix, m)
        if st != _OK:
            return _k_fail(hdr, st, vs)
        # Which requested prefix is this OID under? A GETBULK answer cycles through the
        # requested columns, so try the one after the previous match first; that guess is
        # only safe when no prefix contains another (else the longest match must win).
        col = -1
        if n_cols > 0:
            if not nested:
                guess = last + 1 if last + 1 < n_cols else 0
                if _k_match(suffix, m, m1, col_sub, col_off, guess):
                    col = guess
                elif last >= 0 and _k_match(suffix, m, m1, col_sub, col_off, last):
                    col = last
                else:
                    for c in range(n_cols):
                        if _k_match(suffix, m, m1, col_sub, col_off, c):
                            col = c
                            break
            else:
                best = -1
                for c in range(n_cols):
                    plen = col_off[c + 1] - col_off[c]
                    if plen > best and _k_match(suffix, m, m1, col_sub, col_off, c):
                        col = c
                        best = plen
        if col >= 0:
            last = col
            plen = col_off[col + 1] - col_off[col]
            for j in range(m1 - m - plen):  # keep only the sub-ids after the prefix
                suffix[m + j] = suffix[m + plen + j]
            m1 -= plen
        column[i] = col
        m = m1
        suffix_offsets[i + 1] = m
        # value
        p = e
        st, t, s, e = _k_header(data, p, vb_end)
        if st != _OK:
            return _k_fail(hdr, st, p)
        if e != vb_end:
            return _k_fail(hdr, np.int64(_E_VARBIND_EXTRA), e)
        tags[i] = t
        str_offset[i] = s
        str_len[i] = e - s
        if t == TAG_INTEGER:
            st, iv = _k_int(data, s, e)
            ival[i] = iv
        elif t in (TAG_COUNTER32, TAG_GAUGE32, TAG_TIMETICKS):
            st, uv = _k_uint(data, s, e, 4)
            uval[i] = uv
        elif t == TAG_COUNTER64:
            st, uv = _k_uint(data, s, e, 8)
            uval[i] = uv
        elif t in (TAG_OCTET_STRING, TAG_OPAQUE):
            st = _OK
        elif t == TAG_IP_ADDRESS:
            st = _OK if e - s == 4 else _E_IPADDR_LEN
        elif t == TAG_OBJECT_ID:
            st, _unused = _k_oid(data, s, e, suffix, m)  # validate only; m is not advanced
        elif t in (TAG_NULL, TAG_NO_SUCH_OBJECT, TAG_NO_SUCH_INSTANCE, TAG_END_OF_MIB_VIEW):
            st = _OK if e == s else _E_NULL_LEN
        else:
            st = _E_VALUE_TAG
        if st != _OK:
            return _k_fail(hdr, st, p)
        q = vb_end

    hdr[_H_N] = n
    hdr[_H_M] = m
    return hdr, column, suffix_offsets, suffix[:m], tags, ival, uval, str_offset, str_len


# ---------------------------------------------------------------------------------------------
# Columnar API


@dataclass(frozen=True, slots=True, eq=False)
class Columns:
    """The column prefixes a poll asks for, compiled once per profile for the kernel.

    ``sub`` is every prefix's sub-ids concatenated, prefix ``c`` being
    ``sub[offsets[c]:offsets[c+1]]``. An OID is *under* a prefix when it starts with it (the
    prefix itself included: a GET of ``sysUpTime.0`` maps to that column with an empty
    suffix). When prefixes overlap, the longest wins, then the lowest index.
    """

    prefixes: tuple[OID, ...]
    sub: I64Array
    offsets: I64Array
    nested: bool  # some prefix starts with another (or repeats it): disables the kernel's guess

    @classmethod
    def of(cls, prefixes: Sequence[Sequence[int]]) -> Columns:
        """Compile ``prefixes`` (at most 32767, each 1..MAX_OID_LEN sub-ids in [0, 2**63-1])."""
        pre = tuple(tuple(int(x) for x in p) for p in prefixes)
        if len(pre) > np.iinfo(np.int16).max:
            raise ValueError(f"at most {np.iinfo(np.int16).max} column prefixes, got {len(pre)}")
        for p in pre:
            if not 1 <= len(p) <= MAX_OID_LEN:
                raise ValueError(f"a column prefix needs 1 to {MAX_OID_LEN} sub-identifiers, got {p!r}")
            if min(p) < 0 or max(p) > MAX_SUBID:
                raise ValueError(f"column prefix sub-identifiers must be in [0, 2**63-1]: {p!r}")
        offsets = np.zeros(len(pre) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in pre], out=offsets[1:])
        sub = np.fromiter((x for p in pre for x in p), dtype=np.int64, count=int(offsets[-1]))
        # Sorted, a prefix that starts another sits right before some entry it prefixes.
        srt = sorted(pre)
        nested = any(srt[k + 1][: len(srt[k])] == srt[k] for k in range(len(srt) - 1))
        # Read-only: the object is shared between polls, and numba compiles one specialization
        # per writability, so fix it.
        sub.flags.writeable = False
        offsets.flags.writeable = False
        return cls(pre, sub, offsets, nested)

    def __len__(self) -> int:
        return len(self.prefixes)


# eq=False: generated __eq__ would compare numpy arrays element-wise and raise.
@dataclass(frozen=True, slots=True, eq=False)
class Decoded:
    """One decoded message, its n varbinds as columns (see :func:`decode_response_columnar`).

    For a GetBulkRequest-PDU, ``error_status``/``error_index`` hold non-repeaters and
    max-repetitions (same positions in the PDU).
    """

    version: int
    community: bytes
    pdu_type: PduType
    request_id: int
    error_status: int
    error_index: int
    column: I16Array  # [n] index into Columns.prefixes, -1 when the OID is under none
    suffix_offsets: I64Array  # [n+1]
    suffix: I64Array  # [m] sub-ids after the column prefix (whole OID for column -1)
    tag: U8Array  # [n] BER tag of the value
    ival: I64Array  # [n] INTEGER value (0 for other tags)
    uval: U64Array  # [n] Counter32/Gauge32/TimeTicks/Counter64 value (0 for other tags)
    str_offset: I64Array  # [n] where the value's content octets start in the packet
    str_len: I32Array  # [n] how many there are
    columns: Columns

    def __len__(self) -> int:
        return int(self.tag.shape[0])

    def suffix_of(self, i: int) -> OID:
        """Sub-ids of varbind ``i`` after its column prefix (e.g. the ifIndex)."""
        return tuple(self.suffix[self.suffix_offsets[i] : self.suffix_offsets[i + 1]].tolist())

    def oid(self, i: int) -> OID:
        """Full OID of varbind ``i``."""
        c = int(self.column[i])
        head = self.columns.prefixes[c] if c >= 0 else ()
        return head + self.suffix_of(i)

    def string(self, packet: bytes | bytearray | memoryview, i: int) -> bytes:
        """Content octets of varbind ``i``'s value: the string of an OCTET STRING, IpAddress or
        Opaque (the raw BER octets for other types)."""
        o = int(self.str_offset[i])
        return bytes(packet[o : o + int(self.str_len[i])])

    def value(self, packet: bytes | bytearray | memoryview, i: int) -> Value:
        """Varbind ``i``'s value as a Python object (convenience, not for the hot path)."""
        t = int(self.tag[i])
        if t == TAG_INTEGER:
            return Integer(int(self.ival[i]))
        if t in _UNSIGNED:
            return _UNSIGNED[t](int(self.uval[i]))
        if t in _BYTES:
            return _BYTES[t](self.string(packet, i))
        if t == TAG_OBJECT_ID:
            raw = self.string(packet, i)
            return ObjectId(_py_oid(raw, 0, len(raw), int(self.str_offset[i])))
        return _EMPTY[t]

    def varbinds(self, packet: bytes | bytearray | memoryview) -> list[tuple[OID, Value]]:
        """All varbinds as Python objects (tests, traps, debugging)."""
        return [(self.oid(i), self.value(packet, i)) for i in range(len(self))]


_UNSIGNED: Final[dict[int, type[Counter32 | Gauge32 | TimeTicks | Counter64]]] = {
    TAG_COUNTER32: Counter32,
    TAG_GAUGE32: Gauge32,
    TAG_TIMETICKS: TimeTicks,
    TAG_COUNTER64: Counter64,
}
_BYTES: Final[dict[int, type[OctetString | IpAddress | Opaque]]] = {
    TAG_OCTET_STRING: OctetString,
    TAG_IP_ADDRESS: IpAddress,
    TAG_OPAQUE: Opaque,
}
_EMPTY: Final[dict[int, Value]] = {
    TAG_NULL: NULL,
    TAG_NO_SUCH_OBJECT: NoSuchObject(),
    TAG_NO_SUCH_INSTANCE: NoSuchInstance(),
    TAG_END_OF_MIB_VIEW: EndOfMibView(),
}


def _as_array(packet: bytes | bytearray | memoryview) -> U8Array:
    if len(packet) > MAX_PACKET_SIZE:
        raise SnmpDecodeError(REASONS[_E_PACKET_SIZE], 0)
    data = np.frombuffer(packet, dtype=np.uint8)
    # bytes give a read-only view, bytearray a writable one; numba compiles a separate
    # specialization per writability, so normalize to read-only (a flag flip, no copy).
    data.flags.writeable = False
    return data


def decode_response_columnar(packet: bytes | bytearray | memoryview, columns: Columns) -> Decoded:
    """Decode a v1/v2c message into columns with one kernel call (the polling hot path).

    Any PDU with the standard layout is accepted (Response, Report, v2 Trap, Inform and the
    requests); check ``pdu_type``. The SNMPv1 Trap-PDU is refused (use :func:`decode_message`).
    Raises :class:`SnmpDecodeError` on malformed input. The arrays are fresh; strings are not
    copied: slice the packet with ``str_offset``/``str_len`` (or :meth:`Decoded.string`).
    """
    data = _as_array(packet)
    hdr, column, so, suffix, tag, ival, uval, str_off, str_len = _k_decode_columnar(
        data, columns.sub, columns.offsets, columns.nested
    )
    h = hdr.tolist()
    if h[_H_STATUS] != _OK:
        raise _error(h[_H_STATUS], h[_H_ERRPOS])
    co = h[_H_COMM_OFF]
    return Decoded(
        version=h[_H_VERSION],
        community=data[co : co + h[_H_COMM_LEN]].tobytes(),
        pdu_type=PduType(h[_H_PDU]),
        request_id=h[_H_REQUEST_ID],
        error_status=h[_H_ERROR_STATUS],
        error_index=h[_H_ERROR_INDEX],
        column=column,
        suffix_offsets=so,
        suffix=suffix,
        tag=tag,
        ival=ival,
        uval=uval,
        str_offset=str_off,
        str_len=str_len,
        columns=columns,
    )


# ---------------------------------------------------------------------------------------------
# Python reference decoder: same rules and same order of checks as the kernel.


@dataclass(frozen=True, slots=True)
class TrapV1:
    """The SNMPv1 Trap-PDU header fields."""

    enterprise: OID
    agent_addr: bytes
    generic_trap: int
    specific_trap: int
    time_stamp: int


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded message, values as Python objects.

    For GetBulk, ``error_status``/``error_index`` hold non-repeaters/max-repetitions; for an
    SNMPv1 Trap-PDU, ``request_id``/``error_*`` are 0 and ``trap`` holds its header.
    """

    version: int
    community: bytes
    pdu_type: PduType
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[tuple[OID, Value]]
    trap: TrapV1 | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded request (agent side). ``non_repeaters``/``max_repetitions`` are 0 except for
    GetBulk (negative values read as 0, RFC 3416 4.2.3). ``varbinds`` carries SET values."""

    version: int
    community: bytes
    pdu_type: PduType
    request_id: int
    non_repeaters: int
    max_repetitions: int
    oids: tuple[OID, ...]
    varbinds: tuple[tuple[OID, Value], ...]


def _py_header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content_start, content_end) of the element at pos; raises like _k_header fails."""
    if pos >= end:
        raise _error(_E_TRUNCATED, pos)
    tag = data[pos]
    p = pos + 1
    if p >= end:
        raise _error(_E_TRUNCATED, pos)
    b = data[p]
    p += 1
    if b < 0x80:
        length = b
    elif b == 0x80:
        raise _error(_E_INDEFINITE, pos)
    else:
        nb = b & 0x7F
        if nb > 4:
            raise _error(_E_LENGTH_FIELD, pos)
        if nb > end - p:
            raise _error(_E_TRUNCATED, pos)
        length = int.from_bytes(data[p : p + nb], "big")
        p += nb
    if length > end - p:
        raise _error(_E_LENGTH_OVERRUN, pos)
    return tag, p, p + length


def _py_int(data: bytes, s: int, e: int, at: int) -> int:
    while e - s > 1 and (
        (data[s] == 0x00 and data[s + 1] < 0x80) or (data[s] == 0xFF and data[s + 1] >= 0x80)
    ):
        s += 1
    if e - s > 8:
        raise _error(_E_INT_OVERFLOW, at)
    return int.from_bytes(data[s:e], "big", signed=True)


def _py_uint(data: bytes, s: int, e: int, nbytes: int, at: int) -> int:
    while e - s > 1 and data[s] == 0x00:
        s += 1
    if e - s > nbytes:
        raise _error(_E_U32_OVERFLOW if nbytes == 4 else _E_U64_OVERFLOW, at)
    return int.from_bytes(data[s:e], "big")


def _py_oid(data: bytes, s: int, e: int, at: int) -> OID:
    if s >= e:
        raise _error(_E_OID_EMPTY, at)
    out: list[int] = []
    i = s
    while i < e:
        b = data[i]
        i += 1
        if b == 0x80:
            raise _error(_E_OID_NONMINIMAL, at)
        v = b & 0x7F
        while b >= 0x80:
            if i >= e:
                raise _error(_E_OID_TRUNCATED, at)
            if v > (MAX_SUBID >> 7):
                raise _error(_E_OID_OVERFLOW, at)
            b = data[i]
            i += 1
            v = v * 128 + (b & 0x7F)
        if not out:
            out += (0, v) if v < 40 else (1, v - 40) if v < 80 else (2, v - 80)
        else:
            out.append(v)
    return tuple(out)


def _py_value(data: bytes, p: int, end: int) -> tuple[Value, int]:
    """Decode the value element at p, which must end exactly at ``end``; returns (value, end)."""
    t, s, e = _py_header(data, p, end)
    if e != end:
        raise _error(_E_VARBIND_EXTRA, e)
    if t == TAG_INTEGER:
        return Integer(_py_int(data, s, e, p)), e
    if t in (TAG_COUNTER32, TAG_GAUGE32, TAG_TIMETICKS, TAG_COUNTER64):
        return _UNSIGNED[t](_py_uint(data, s, e, 8 if t == TAG_COUNTER64 else 4, p)), e
    if t in (TAG_OCTET_STRING, TAG_OPAQUE):
        return _BYTES[t](data[s:e]), e
    if t == TAG_IP_ADDRESS:
        if e - s != 4:
            raise _error(_E_IPADDR_LEN, p)
        return IpAddress(data[s:e]), e
    if t == TAG_OBJECT_ID:
        return ObjectId(_py_oid(data, s, e, p)), e
    if t in _EMPTY:
        if e != s:
            raise _error(_E_NULL_LEN, p)
        return _EMPTY[t], e
    raise _error(_E_VALUE_TAG, p)


def _py_trap_header(data: bytes, p: int, pdu_end: int) -> tuple[TrapV1, int]:
    """SNMPv1 Trap-PDU fields (only decode_message accepts this PDU)."""
    t, s, e = _py_header(data, p, pdu_end)
    if t != TAG_OBJECT_ID:
        raise _error(_E_TRAP_FIELD, p)
    enterprise = _py_oid(data, s, e, p)
    p = e
    t, s, e = _py_header(data, p, pdu_end)
    if t != TAG_IP_ADDRESS or e - s != 4:
        raise _error(_E_TRAP_FIELD, p)
    addr = data[s:e]
    p = e
    ints = []
    for want in (TAG_INTEGER, TAG_INTEGER, TAG_TIMETICKS):
        t, s, e = _py_header(data, p, pdu_end)
        if t != want:
            raise _error(_E_TRAP_FIELD, p)
        ints.append(_py_int(data, s, e, p) if want == TAG_INTEGER else _py_uint(data, s, e, 4, p))
        p = e
    return TrapV1(enterprise, addr, ints[0], ints[1], ints[2]), p


def _py_pdu(
    data: bytes, t: int, s: int, e: int
) -> tuple[PduType, list[int], list[tuple[OID, Value]], TrapV1 | None]:
    """The PDU whose tag t and content s..e were framed by the caller: (type, the three
    integer fields, varbinds, the SNMPv1 trap header)."""
    pdu = PduType(t)
    pdu_end = e
    p = s
    trap: TrapV1 | None = None
    fields = [0, 0, 0]
    if pdu == PduType.TRAP:
        trap, p = _py_trap_header(data, p, pdu_end)
    else:
        for k in range(3):
            t, s, e = _py_header(data, p, pdu_end)
            if t != TAG_INTEGER:
                raise _error(_E_PDU_FIELD_TAG, p)
            fields[k] = _py_int(data, s, e, p)
            p = e
    t, s, e = _py_header(data, p, pdu_end)
    if t != TAG_SEQUENCE:
        raise _error(_E_VBL_TAG, p)
    if e != pdu_end:
        raise _error(_E_PDU_EXTRA, e)
    vbl_end = e
    # Pass 1, as in the kernel: frame every varbind before decoding any (same first error).
    bounds: list[tuple[int, int]] = []
    q = s
    while q < vbl_end:
        if len(bounds) == MAX_VARBINDS:
            raise _error(_E_TOO_MANY, q)
        t, vs, ve = _py_header(data, q, vbl_end)
        if t != TAG_SEQUENCE:
            raise _error(_E_VARBIND_TAG, q)
        bounds.append((vs, ve))
        q = ve
    varbinds: list[tuple[OID, Value]] = []
    for vs, ve in bounds:
        t, s, e = _py_header(data, vs, ve)
        if t != TAG_OBJECT_ID:
            raise _error(_E_NAME_TAG, vs)
        name = _py_oid(data, s, e, vs)
        value, _ = _py_value(data, e, ve)
        varbinds.append((name, value))
    return pdu, fields, varbinds, trap


def decode_message(packet: bytes | bytearray | memoryview) -> Message:
    """Decode any v1/v2c message (responses, traps incl. the SNMPv1 Trap-PDU, requests) into
    Python objects. The simple reference for :func:`decode_response_columnar`: same rules,
    same errors; use it where volume is low (traps, the agent simulator)."""
    if len(packet) > MAX_PACKET_SIZE:
        raise SnmpDecodeError(REASONS[_E_PACKET_SIZE], 0)
    data = bytes(packet)
    size = len(data)
    t, p, end = _py_header(data, 0, size)
    if t != TAG_SEQUENCE:
        raise _error(_E_MESSAGE_TAG, 0)
    if end != size:
        raise _error(_E_TRAILING, end)
    at = p
    t, s, e = _py_header(data, p, end)
    if t != TAG_INTEGER:
        raise _error(_E_VERSION_TAG, at)
    version = _py_int(data, s, e, at)
    if version not in (0, 1):
        raise _error(_E_VERSION, at)
    p = e
    at = p
    t, s, e = _py_header(data, p, end)
    if t != TAG_OCTET_STRING:
        raise _error(_E_COMMUNITY_TAG, at)
    community = data[s:e]
    p = e
    at = p
    t, s, e = _py_header(data, p, end)
    if not 0xA0 <= t <= 0xA8:
        raise _error(_E_PDU_TAG, at)
    if e != end:
        raise _error(_E_MESSAGE_EXTRA, e)
    pdu, fields, varbinds, trap = _py_pdu(data, t, s, e)
    return Message(version, community, pdu, fields[0], fields[1], fields[2], varbinds, trap)


_REQUEST_PDUS: Final = frozenset(
    {
        PduType.GET,
        PduType.GETNEXT,
        PduType.GETBULK,
        PduType.SET,
        PduType.INFORM,
        PduType.TRAP,
        PduType.TRAP_V2,
    }
)


def decode_request(packet: bytes | bytearray | memoryview) -> Request:
    """Decode a request (what an agent receives: Get, GetNext, GetBulk, Set, Inform, traps).

    Raises :class:`SnmpDecodeError` on malformed input, on a Response/Report and on GetBulk
    inside an SNMPv1 message.
    """
    msg = decode_message(packet)
    if msg.pdu_type not in _REQUEST_PDUS:
        raise SnmpDecodeError(f"not a request PDU: {msg.pdu_type.name}")
    nr = mr = 0
    if msg.pdu_type == PduType.GETBULK:
        if msg.version == VERSION_1:
            raise SnmpDecodeError("GetBulkRequest-PDU in an SNMPv1 message")
        nr, mr = max(0, msg.error_status), max(0, msg.error_index)
    return Request(
        version=msg.version,
        community=msg.community,
        pdu_type=msg.pdu_type,
        request_id=msg.request_id,
        non_repeaters=nr,
        max_repetitions=mr,
        oids=tuple(o for o, _ in msg.varbinds),
        varbinds=tuple(msg.varbinds),
    )


# ---------------------------------------------------------------------------------------------
# SNMPv3 messages (RFC 3412 section 6) with the USM security parameters (RFC 3414 section 2.4).
# Decoding only: the trap receiver reads them; authentication and privacy are the caller's
# (collector/traps/usm.py), which is why the offset of msgAuthenticationParameters is kept.

VERSION_3: Final = 3
SECURITY_MODEL_USM: Final = 3
FLAG_AUTH: Final = 0x01
FLAG_PRIV: Final = 0x02
FLAG_REPORTABLE: Final = 0x04
# RFC 3414 2.4: msgUserName is SIZE(0..32); engine IDs are SIZE(5..32) (RFC 3411), but an
# empty one is legal in discovery, so only the upper bound is checked here.
MAX_USER_NAME: Final = 32
MAX_ENGINE_ID: Final = 32
MAX_ENGINE_INT: Final = 2**31 - 1


@dataclass(frozen=True, slots=True)
class UsmParams:
    """UsmSecurityParameters. ``auth_offset`` is where msgAuthenticationParameters' content
    starts in the whole message (the HMAC is computed with those bytes zeroed)."""

    engine_id: bytes
    engine_boots: int
    engine_time: int
    user_name: bytes
    auth_params: bytes
    priv_params: bytes
    auth_offset: int


@dataclass(frozen=True, slots=True)
class ScopedPdu:
    """The ScopedPDU of a v3 message, its PDU decoded like :func:`decode_message` does."""

    context_engine_id: bytes
    context_name: bytes
    pdu_type: PduType
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[tuple[OID, Value]]


@dataclass(frozen=True, slots=True)
class V3Message:
    """A decoded SNMPv3 message: header, USM parameters, and either the plaintext ScopedPDU
    or the encrypted one (``encrypted``), which the caller decrypts and decodes with
    :func:`decode_scoped_pdu`."""

    msg_id: int
    max_size: int
    flags: int
    security_model: int
    usm: UsmParams
    scoped_pdu: ScopedPdu | None
    encrypted: bytes | None


def message_version(packet: bytes | bytearray | memoryview) -> int | None:
    """The msgVersion of a message (0 v1, 1 v2c, 3 v3), None when it cannot be read."""
    data = bytes(packet)
    try:
        t, p, end = _py_header(data, 0, len(data))
        if t != TAG_SEQUENCE:
            return None
        t, s, e = _py_header(data, p, end)
        if t != TAG_INTEGER:
            return None
        return _py_int(data, s, e, p)
    except SnmpDecodeError:
        return None


def _v3_error(reason: str, offset: int) -> SnmpDecodeError:
    return SnmpDecodeError(f"SNMPv3: {reason}", offset)


def _expect(data: bytes, p: int, end: int, tag: int, what: str) -> tuple[int, int]:
    t, s, e = _py_header(data, p, end)
    if t != tag:
        raise _v3_error(f"{what}: tag 0x{t:02x}, expected 0x{tag:02x}", p)
    return s, e


def _bounded_int(data: bytes, p: int, end: int, what: str, lo: int, hi: int) -> tuple[int, int]:
    s, e = _expect(data, p, end, TAG_INTEGER, what)
    v = _py_int(data, s, e, p)
    if not lo <= v <= hi:
        raise _v3_error(f"{what} {v} out of range {lo}..{hi}", p)
    return v, e


def _decode_usm(data: bytes, s: int, e: int) -> UsmParams:
    """UsmSecurityParameters inside the msgSecurityParameters OCTET STRING at s..e."""
    ps, pe = _expect(data, s, e, TAG_SEQUENCE, "UsmSecurityParameters")
    if pe != e:
        raise _v3_error("bytes after UsmSecurityParameters", pe)
    p = ps
    es, ee = _expect(data, p, pe, TAG_OCTET_STRING, "msgAuthoritativeEngineID")
    if ee - es > MAX_ENGINE_ID:
        raise _v3_error("msgAuthoritativeEngineID longer than 32 octets", p)
    engine_id = data[es:ee]
    boots, p = _bounded_int(data, ee, pe, "msgAuthoritativeEngineBoots", 0, MAX_ENGINE_INT)
    etime, p = _bounded_int(data, p, pe, "msgAuthoritativeEngineTime", 0, MAX_ENGINE_INT)
    us, ue = _expect(data, p, pe, TAG_OCTET_STRING, "msgUserName")
    if ue - us > MAX_USER_NAME:
        raise _v3_error("msgUserName longer than 32 octets", p)
    as_, ae = _expect(data, ue, pe, TAG_OCTET_STRING, "msgAuthenticationParameters")
    qs, qe = _expect(data, ae, pe, TAG_OCTET_STRING, "msgPrivacyParameters")
    if qe != pe:
        raise _v3_error("bytes after msgPrivacyParameters", qe)
    return UsmParams(engine_id, boots, etime, data[us:ue], data[as_:ae], data[qs:qe], as_)


def decode_v3_message(packet: bytes | bytearray | memoryview) -> V3Message:
    """Decode an SNMPv3 message with the User-based Security Model.

    Raises :class:`SnmpDecodeError` on malformed input, on another msgVersion or security
    model, and on flags that ask for privacy without authentication (RFC 3412 7.2 step 5).
    """
    if len(packet) > MAX_PACKET_SIZE:
        raise SnmpDecodeError(REASONS[_E_PACKET_SIZE], 0)
    data = bytes(packet)
    size = len(data)
    s, end = _expect(data, 0, size, TAG_SEQUENCE, "message")
    if end != size:
        raise _error(_E_TRAILING, end)
    version, p = _bounded_int(data, s, end, "msgVersion", 0, MAX_ENGINE_INT)
    if version != VERSION_3:
        raise _v3_error(f"msgVersion {version} is not 3", s)
    hs, he = _expect(data, p, end, TAG_SEQUENCE, "msgGlobalData")
    msg_id, q = _bounded_int(data, hs, he, "msgID", 0, MAX_ENGINE_INT)
    max_size, q = _bounded_int(data, q, he, "msgMaxSize", 484, MAX_ENGINE_INT)
    fs, fe = _expect(data, q, he, TAG_OCTET_STRING, "msgFlags")
    if fe - fs != 1:
        raise _v3_error("msgFlags is not one octet", q)
    flags = data[fs]
    model, q = _bounded_int(data, fe, he, "msgSecurityModel", 1, MAX_ENGINE_INT)
    if q != he:
        raise _v3_error("bytes after msgSecurityModel", q)
    if model != SECURITY_MODEL_USM:
        raise _v3_error(f"security model {model} is not USM (3)", fe)
    if flags & FLAG_PRIV and not flags & FLAG_AUTH:
        raise _v3_error("msgFlags: privacy without authentication", fs)
    ss, se = _expect(data, he, end, TAG_OCTET_STRING, "msgSecurityParameters")
    usm = _decode_usm(data, ss, se)
    t, ds, de = _py_header(data, se, end)
    if de != end:
        raise _error(_E_MESSAGE_EXTRA, de)
    if flags & FLAG_PRIV:
        if t != TAG_OCTET_STRING:
            raise _v3_error("encrypted ScopedPDU expected (privacy flag set)", se)
        return V3Message(msg_id, max_size, flags, model, usm, None, data[ds:de])
    if t != TAG_SEQUENCE:
        raise _v3_error("plaintext ScopedPDU expected (no privacy flag)", se)
    return V3Message(msg_id, max_size, flags, model, usm, decode_scoped_pdu(data[se:end]), None)


def decode_scoped_pdu(data: bytes) -> ScopedPdu:
    """A ScopedPDU (RFC 3412 6): plaintext, or what decryption returned. Octets after the
    SEQUENCE are allowed (block-cipher padding, RFC 3414 8.1.1.2)."""
    s, end = _expect(data, 0, len(data), TAG_SEQUENCE, "ScopedPDU")
    cs, ce = _expect(data, s, end, TAG_OCTET_STRING, "contextEngineID")
    ns, ne = _expect(data, ce, end, TAG_OCTET_STRING, "contextName")
    t, ps, pe = _py_header(data, ne, end)
    if not 0xA0 <= t <= 0xA8 or t == PduType.TRAP:
        raise _error(_E_PDU_TAG, ne)
    if pe != end:
        raise _error(_E_MESSAGE_EXTRA, pe)
    pdu, fields, varbinds, _ = _py_pdu(data, t, ps, pe)
    return ScopedPdu(data[cs:ce], data[ns:ne], pdu, fields[0], fields[1], fields[2], varbinds)
