"""SNMP v1/v2c BER codec (collector.snmp.ber): round trips, the columnar kernel against the
Python reference decoder and against pysnmp, real-agent captures, and hostile input."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.snmp.ber import (
    MAX_VARBINDS,
    REASONS,
    Columns,
    Counter32,
    Counter64,
    Decoded,
    EndOfMibView,
    Gauge32,
    Integer,
    IpAddress,
    Message,
    NoSuchInstance,
    NoSuchObject,
    Null,
    ObjectId,
    OctetString,
    Opaque,
    PduType,
    SnmpDecodeError,
    TimeTicks,
    TrapV1,
    Value,
    decode_message,
    decode_request,
    decode_response_columnar,
    encode_get,
    encode_getbulk,
    encode_getnext,
    encode_response,
    encode_trap_v2,
    format_oid,
    parse_oid,
)

OID = tuple[int, ...]
TESTDATA = Path(__file__).resolve().parents[2] / "collector" / "snmp" / "testdata"
CAPTURES = sorted(TESTDATA.glob("*.bin"))
# The kernel compiles on first call, so a per-example deadline would be meaningless.
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_I64 = 2**63 - 1
TRAP_V1_REASON = REASONS[11]


# ---------------------------------------------------------------------------------------------
# pysnmp as the independent reference


def pysnmp_message(packet: bytes) -> Message:
    """Decode with pysnmp (pyasn1's BER decoder + the pysnmp v1/v2c message specs) into our types."""
    from pyasn1.codec.ber import decoder
    from pysnmp.proto import api

    version = int(api.decodeMessageVersion(packet))
    mod: Any = api.PROTOCOL_MODULES[version]
    msg, rest = decoder.decode(packet, asn1Spec=mod.Message())
    assert bytes(rest) == b""
    community = bytes(mod.apiMessage.get_community(msg))
    pdu = mod.apiMessage.get_pdu(msg)
    t = pdu.tagSet[0]
    pdu_type = PduType(t.tagClass | t.tagFormat | t.tagId)
    if pdu_type == PduType.TRAP:
        api_trap = mod.apiTrapPDU
        trap = TrapV1(
            tuple(int(x) for x in api_trap.get_enterprise(pdu)),
            api_trap.get_agent_address(pdu).asOctets(),
            int(api_trap.get_generic_trap(pdu)),
            int(api_trap.get_specific_trap(pdu)),
            int(api_trap.get_timestamp(pdu)),
        )
        varbinds = [(tuple(int(x) for x in o), _pysnmp_value(v)) for o, v in api_trap.get_varbinds(pdu)]
        return Message(version, community, pdu_type, 0, 0, 0, varbinds, trap)
    if pdu_type == PduType.GETBULK:
        fields = (
            mod.apiBulkPDU.get_request_id(pdu),
            mod.apiBulkPDU.get_non_repeaters(pdu),
            mod.apiBulkPDU.get_max_repetitions(pdu),
        )
    else:
        fields = (
            mod.apiPDU.get_request_id(pdu),
            mod.apiPDU.get_error_status(pdu),
            pdu.getComponentByPosition(2),  # raw: get_error_index() checks it against the varbinds
        )
    varbinds = [(tuple(int(x) for x in o), _pysnmp_value(v)) for o, v in mod.apiPDU.get_varbinds(pdu)]
    request_id, error_status, error_index = (int(f) for f in fields)
    return Message(version, community, pdu_type, request_id, error_status, error_index, varbinds)


def _pysnmp_value(v: Any) -> Value:
    t = v.tagSet[0]
    tag = t.tagClass | t.tagFormat | t.tagId
    simple: dict[int, Callable[[], Value]] = {
        0x02: lambda: Integer(int(v)),
        0x04: lambda: OctetString(v.asOctets()),
        0x05: lambda: Null(),
        0x06: lambda: ObjectId(tuple(int(x) for x in v)),
        0x40: lambda: IpAddress(v.asOctets()),
        0x41: lambda: Counter32(int(v)),
        0x42: lambda: Gauge32(int(v)),
        0x43: lambda: TimeTicks(int(v)),
        0x44: lambda: Opaque(v.asOctets()),
        0x46: lambda: Counter64(int(v)),
        0x80: lambda: NoSuchObject(),
        0x81: lambda: NoSuchInstance(),
        0x82: lambda: EndOfMibView(),
    }
    return simple[tag]()


def pysnmp_encode(version: int, pdu_type: PduType, request_id: int, f1: int, f2: int, varbinds: Any) -> bytes:
    """Encode a message with pysnmp (for the encoder comparisons and PDUs we do not encode)."""
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api

    mod: Any = api.PROTOCOL_MODULES[version]
    cls = {
        PduType.GET: mod.GetRequestPDU,
        PduType.GETNEXT: mod.GetNextRequestPDU,
        PduType.RESPONSE: mod.GetResponsePDU,
        PduType.SET: mod.SetRequestPDU,
        PduType.GETBULK: getattr(mod, "GetBulkRequestPDU", None),
        PduType.TRAP_V2: getattr(mod, "SNMPv2TrapPDU", None),
        PduType.INFORM: getattr(mod, "InformRequestPDU", None),
    }[pdu_type]
    pdu = cls()
    if pdu_type == PduType.GETBULK:
        mod.apiBulkPDU.set_defaults(pdu)
        mod.apiBulkPDU.set_request_id(pdu, request_id)
        mod.apiBulkPDU.set_non_repeaters(pdu, f1)
        mod.apiBulkPDU.set_max_repetitions(pdu, f2)
    else:
        mod.apiPDU.set_defaults(pdu)
        mod.apiPDU.set_request_id(pdu, request_id)
        mod.apiPDU.set_error_status(pdu, f1)
        mod.apiPDU.set_error_index(pdu, f2)
    mod.apiPDU.set_varbinds(pdu, varbinds)
    msg = mod.Message()
    mod.apiMessage.set_defaults(msg)
    mod.apiMessage.set_community(msg, b"public")
    mod.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


# ---------------------------------------------------------------------------------------------
# Agreement helpers


def naive_column(oid: OID, prefixes: Sequence[OID]) -> int:
    best, best_len = -1, -1
    for c, p in enumerate(prefixes):
        if oid[: len(p)] == p and len(p) > best_len:
            best, best_len = c, len(p)
    return best


def assert_columnar_matches(packet: bytes, msg: Message, columns: Columns) -> Decoded:
    dec = decode_response_columnar(packet, columns)
    assert (dec.version, dec.community, dec.pdu_type) == (msg.version, msg.community, msg.pdu_type)
    assert (dec.request_id, dec.error_status, dec.error_index) == (
        msg.request_id,
        msg.error_status,
        msg.error_index,
    )
    n = len(msg.varbinds)
    assert len(dec) == n
    assert dec.column.dtype == np.int16 and dec.column.shape == (n,)
    assert dec.suffix_offsets.dtype == np.int64 and dec.suffix_offsets.shape == (n + 1,)
    assert dec.suffix.dtype == np.int64 and dec.suffix.shape == (int(dec.suffix_offsets[-1]),)
    assert dec.tag.dtype == np.uint8 and dec.ival.dtype == np.int64 and dec.uval.dtype == np.uint64
    assert dec.str_offset.dtype == np.int64 and dec.str_len.dtype == np.int32
    assert dec.varbinds(packet) == msg.varbinds
    for i, (oid, value) in enumerate(msg.varbinds):
        c = naive_column(oid, columns.prefixes)
        assert dec.column[i] == c
        assert dec.suffix_of(i) == (oid[len(columns.prefixes[c]) :] if c >= 0 else oid)
        assert dec.tag[i] == value.tag
        if isinstance(value, Integer):
            assert dec.ival[i] == value.value
        elif isinstance(value, Counter32 | Gauge32 | TimeTicks | Counter64):
            assert int(dec.uval[i]) == value.value
        elif isinstance(value, OctetString | Opaque | IpAddress):
            o, ln = int(dec.str_offset[i]), int(dec.str_len[i])
            assert packet[o : o + ln] == value.value
    return dec


def assert_three_decoders_agree(packet: bytes, label: str = "") -> Message:
    """decode_message == pysnmp, and decode_response_columnar == decode_message under a few
    column sets (none, every OID's parent, nested prefixes)."""
    msg = decode_message(packet)
    assert msg == pysnmp_message(packet), label
    if msg.pdu_type == PduType.TRAP:
        return msg
    oids = [o for o, _ in msg.varbinds]
    parents = list(dict.fromkeys(o[:-1] for o in oids if len(o) > 2))
    for prefixes in ([], parents, [*parents, *(o[:2] for o in oids)], oids):
        assert_columnar_matches(packet, msg, Columns.of(prefixes))
    return msg


def outcome(fn: Callable[[bytes], Any], packet: bytes) -> tuple[Any, ...]:
    try:
        return ("ok", fn(packet))
    except SnmpDecodeError as exc:
        return ("error", exc.reason, exc.offset)


COLS = Columns.of([(1, 3, 6, 1, 2, 1, 2, 2, 1, c) for c in range(1, 11)] + [(1, 3, 6, 1, 2, 1, 1)])


def assert_decoders_agree_on_anything(packet: bytes) -> None:
    """Both decoders either accept with the same content or reject with the same reason at the
    same byte; anything but SnmpDecodeError propagates and fails the test."""
    col = outcome(lambda p: decode_response_columnar(p, COLS), packet)
    ref = outcome(decode_message, packet)
    if col[0] == "error" and col[1] == TRAP_V1_REASON:
        return  # the kernel refuses the v1 Trap-PDU before looking inside; decode_message does not
    assert col[0] == ref[0], (col, ref, packet.hex())
    if col[0] == "error":
        assert col[1:] == ref[1:], (col, ref, packet.hex())
    else:
        assert_columnar_matches(packet, ref[1], COLS)


# ---------------------------------------------------------------------------------------------
# Strategies

subids = st.one_of(
    st.integers(0, 127),
    st.integers(128, 2**14 + 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, MAX_I64),
    st.sampled_from([127, 128, 255, 256, 16383, 16384, 2**21 - 1, 2**21, 2**28, 2**35, 2**56 - 1, 2**56]),
)


@st.composite
def oids(draw: st.DrawFn, max_size: int = 16) -> OID:
    first = draw(st.integers(0, 2))
    if first < 2:
        second = draw(st.integers(0, 39))
    else:
        second = draw(st.one_of(st.integers(0, 300), st.integers(0, MAX_I64 - 80)))
    return (first, second, *draw(st.lists(subids, max_size=max_size)))


def values(v1: bool = False) -> st.SearchStrategy[Value]:
    common: list[st.SearchStrategy[Value]] = [
        st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 127, 128, -128, -129])).map(
            Integer
        ),
        st.binary(max_size=300).map(OctetString),
        st.just(Null()),
        oids().map(ObjectId),
        st.binary(min_size=4, max_size=4).map(IpAddress),
        st.integers(0, 2**32 - 1).map(Counter32),
        st.integers(0, 2**32 - 1).map(Gauge32),
        st.integers(0, 2**32 - 1).map(TimeTicks),
        st.binary(max_size=40).map(Opaque),
    ]
    if not v1:
        common += [
            st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 2**63, 2**64 - 1])).map(Counter64),
            st.sampled_from([NoSuchObject(), NoSuchInstance(), EndOfMibView()]),
        ]
    return st.one_of(*common)


@st.composite
def responses(draw: st.DrawFn, max_varbinds: int = 30) -> bytes:
    version = draw(st.sampled_from([0, 1, 1]))
    vbs = draw(st.lists(st.tuples(oids(), values(v1=version == 0)), max_size=max_varbinds))
    return encode_response(
        draw(st.integers(-(2**31), 2**31 - 1)),
        draw(st.binary(max_size=40)),
        vbs,
        error_status=draw(st.integers(0, 18)),  # pysnmp constrains error-status to 0..18
        error_index=draw(st.integers(0, 2**31 - 1)),
        version=version,
    )


@st.composite
def table_responses(draw: st.DrawFn) -> tuple[bytes, list[OID]]:
    """GETBULK-shaped answers: rows of k columns (prefixes from a tiny alphabet, so nested and
    repeated prefixes happen), with strays; returns (packet, prefixes)."""
    small = st.lists(st.integers(0, 3), min_size=0, max_size=3)
    prefixes = draw(st.lists(small.map(lambda t: (1, 3, *t)), min_size=1, max_size=6))
    rows = draw(st.integers(0, 12))
    vbs: list[tuple[OID, Value]] = []
    for r in range(rows):
        for p in prefixes:
            if draw(st.integers(0, 9)) == 0:
                vbs.append((draw(oids(4)), draw(values())))
            else:
                vbs.append(((*p, r, *draw(st.lists(st.integers(0, 3), max_size=2))), draw(values())))
    return encode_response(1, b"public", vbs), prefixes


# ---------------------------------------------------------------------------------------------
# OIDs and encoding


def test_parse_and_format_oid() -> None:
    assert parse_oid("1.3.6.1.2.1.2.2.1.10") == (1, 3, 6, 1, 2, 1, 2, 2, 1, 10)
    assert parse_oid(".1.3.6.1") == (1, 3, 6, 1)
    assert parse_oid(" 2.999 ") == (2, 999)
    assert parse_oid(str(MAX_I64)) == (MAX_I64,)
    assert format_oid((1, 3, 6, 1, MAX_I64)) == f"1.3.6.1.{MAX_I64}"
    for bad in ["", ".", "1..3", "1.3.", "a.b", "1.-3", "1.3 .6", str(2**63), "1," * 3]:
        with pytest.raises(ValueError):
            parse_oid(bad)


def test_known_encodings() -> None:
    # snmpget -v2c -c public x 1.3.6.1.2.1.1.3.0, request-id 1 (checked against net-snmp/pysnmp)
    assert encode_get(1, b"public", [(1, 3, 6, 1, 2, 1, 1, 3, 0)]).hex() == (
        "302602010104067075626c6963a019020101020100020100300e300c06082b060102010103000500"
    )
    # Multi-byte sub-ids: 8072 = 0xBF 0x08, 2**32-1 = 8F FF FF FF 7F, and 2.x packs into one.
    msg = encode_response(0, b"", [((1, 3, 6, 1, 4, 1, 8072, 2**32 - 1), Null()), ((2, 999), Null())])
    assert "060c2b06010401bf088fffffff7f0500" in msg.hex()
    assert "060288370500" in msg.hex()
    # 2**32-1 as Counter32 needs a sign octet; -129 is two octets.
    assert "410500ffffffff" in encode_response(0, b"", [((1, 3), Counter32(2**32 - 1))]).hex()
    assert "0202ff7f" in encode_response(0, b"", [((1, 3), Integer(-129))]).hex()


def test_encoders_match_pysnmp_byte_for_byte() -> None:
    from pysnmp.proto import api

    v2c: Any = api.v2c
    oids_ = [(1, 3, 6, 1, 2, 1, 1, 3, 0), (1, 3, 6, 1, 2, 1, 2, 2, 1, 10), (2, 100, 2**40)]
    nulls = [(o, v2c.Null()) for o in oids_]
    assert encode_get(77, b"public", oids_) == pysnmp_encode(1, PduType.GET, 77, 0, 0, nulls)
    assert encode_get(77, b"public", oids_, version=0) == pysnmp_encode(0, PduType.GET, 77, 0, 0, nulls)
    assert encode_getnext(-5, b"public", oids_) == pysnmp_encode(1, PduType.GETNEXT, -5, 0, 0, nulls)
    assert encode_getbulk(2**31 - 1, b"public", oids_, 50, 1) == pysnmp_encode(
        1, PduType.GETBULK, 2**31 - 1, 1, 50, nulls
    )
    vbs: list[tuple[OID, Value]] = [
        (oids_[0], TimeTicks(2**32 - 1)),
        (oids_[1], Counter64(2**64 - 1)),
        (oids_[2], OctetString(b"x" * 300)),
        ((1, 3, 9), IpAddress(b"\x0a\x00\x00\x01")),
        ((1, 3, 10), Integer(-(2**31) + 1)),
        ((1, 3, 11), EndOfMibView()),
    ]
    theirs = [
        (oids_[0], v2c.TimeTicks(2**32 - 1)),
        (oids_[1], v2c.Counter64(2**64 - 1)),
        (oids_[2], v2c.OctetString(b"x" * 300)),
        ((1, 3, 9), v2c.IpAddress("10.0.0.1")),
        ((1, 3, 10), v2c.Integer(-(2**31) + 1)),
        ((1, 3, 11), v2c.EndOfMibView()),
    ]
    assert encode_response(9, b"public", vbs, 5, 3) == pysnmp_encode(1, PduType.RESPONSE, 9, 5, 3, theirs)
    assert encode_trap_v2(9, b"public", vbs) == pysnmp_encode(1, PduType.TRAP_V2, 9, 0, 0, theirs)
    # pyasn1 writes -2**31 with a redundant sign octet (ff 80 00 00 00); we write the minimal
    # 80 00 00 00, and read both.
    theirs_min = pysnmp_encode(1, PduType.RESPONSE, 9, 0, 0, [((1, 3), v2c.Integer(-(2**31)))])
    assert "0205ff80000000" in theirs_min.hex()
    assert "020480000000" in encode_response(9, b"public", [((1, 3), Integer(-(2**31)))]).hex()
    assert_three_decoders_agree(theirs_min)


EDGE_VALUES: list[Value] = [
    Integer(0),
    Integer(1),
    Integer(-1),
    Integer(127),
    Integer(128),
    Integer(-128),
    Integer(-129),
    Integer(2**31 - 1),
    Integer(-(2**31)),
    OctetString(b""),
    OctetString(b"eth0"),
    OctetString(bytes(range(256))),
    OctetString(b"\x00" * 65_535),  # the SMI maximum
    Null(),
    ObjectId((0, 0)),
    ObjectId((1, 39)),
    ObjectId((2, 0)),
    ObjectId((2, MAX_I64 - 80)),
    ObjectId((1, 3, 6, 1, 4, 1, 8072, 3, 2, 10)),
    ObjectId((1, 3, *[MAX_I64] * 130)),
    IpAddress(b"\x00\x00\x00\x00"),
    IpAddress(b"\xff\xff\xff\xff"),
    Counter32(0),
    Counter32(2**31),
    Counter32(2**32 - 1),
    Gauge32(0),
    Gauge32(2**32 - 1),
    TimeTicks(0),
    TimeTicks(2**32 - 1),
    Opaque(b""),
    Opaque(b"\x9f\x78\x04\x3f\x80\x00\x00"),  # an opaque-wrapped float, as net-snmp sends
    Counter64(0),
    Counter64(2**63 - 1),
    Counter64(2**63),
    Counter64(2**64 - 1),
    NoSuchObject(),
    NoSuchInstance(),
    EndOfMibView(),
]
EDGE_NAMES: list[OID] = [
    (1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 1),
    (0, 0),
    (2, 2**40, 0),
    (1, 3, 6, 1, 4, 1, *[127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**32 - 1, 2**32, 2**56, MAX_I64]),
    (1, 3, *range(200)),
]


@pytest.mark.parametrize("value", EDGE_VALUES, ids=lambda v: f"{type(v).__name__}")
def test_round_trip_every_type_and_edge_value(value: Value) -> None:
    for name in EDGE_NAMES:
        packet = encode_response(12345, b"public", [(name, value), (name, value)])
        msg = assert_three_decoders_agree(packet, repr(value)[:60])
        assert msg.varbinds == [(name, value), (name, value)]


def test_round_trip_v1_and_trap() -> None:
    vbs: list[tuple[OID, Value]] = [
        ((1, 3, 6, 1, 2, 1, 1, 3, 0), TimeTicks(42)),
        ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), ObjectId((1, 3, 6, 1, 6, 3, 1, 1, 5, 3))),
    ]
    msg = assert_three_decoders_agree(encode_trap_v2(-7, b"traps", vbs))
    assert (msg.pdu_type, msg.request_id, msg.community, msg.varbinds) == (PduType.TRAP_V2, -7, b"traps", vbs)
    v1 = assert_three_decoders_agree(encode_response(3, b"c", vbs, 2, 1, version=0))
    assert (v1.version, v1.error_status, v1.error_index) == (0, 2, 1)


def test_v1_trap_pdu_decodes_in_python_and_is_refused_by_the_kernel() -> None:
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api

    v1: Any = api.v1
    pdu = v1.TrapPDU()
    v1.apiTrapPDU.set_defaults(pdu)
    v1.apiTrapPDU.set_enterprise(pdu, (1, 3, 6, 1, 4, 1, 99))
    v1.apiTrapPDU.set_agent_address(pdu, "10.0.0.1")
    v1.apiTrapPDU.set_generic_trap(pdu, 6)
    v1.apiTrapPDU.set_specific_trap(pdu, 17)
    v1.apiTrapPDU.set_timestamp(pdu, 12345)
    v1.apiTrapPDU.set_varbinds(
        pdu, [((1, 3, 6, 1, 4, 1, 99, 1), v1.Counter(7)), ((1, 3, 6, 1, 4, 1, 99, 2), v1.Gauge(8))]
    )
    msg = v1.Message()
    v1.apiMessage.set_defaults(msg)
    v1.apiMessage.set_community(msg, "public")
    v1.apiMessage.set_pdu(msg, pdu)
    packet = bytes(encoder.encode(msg))
    ours = assert_three_decoders_agree(packet)
    assert ours.trap == TrapV1((1, 3, 6, 1, 4, 1, 99), b"\x0a\x00\x00\x01", 6, 17, 12345)
    assert ours.varbinds == [
        ((1, 3, 6, 1, 4, 1, 99, 1), Counter32(7)),
        ((1, 3, 6, 1, 4, 1, 99, 2), Gauge32(8)),
    ]
    with pytest.raises(SnmpDecodeError, match="Trap-PDU"):
        decode_response_columnar(packet, COLS)
    assert decode_request(packet).oids == ((1, 3, 6, 1, 4, 1, 99, 1), (1, 3, 6, 1, 4, 1, 99, 2))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: encode_response(1, b"", [((1, 3), Integer(2**31))]), "Integer"),
        (lambda: encode_response(1, b"", [((1, 3), Integer(-(2**31) - 1))]), "Integer"),
        (lambda: encode_response(1, b"", [((1, 3), Integer(True))]), "int"),
        (lambda: encode_response(1, b"", [((1, 3), Counter32(-1))]), "Counter32"),
        (lambda: encode_response(1, b"", [((1, 3), Counter32(2**32))]), "Counter32"),
        (lambda: encode_response(1, b"", [((1, 3), Gauge32(2**32))]), "Gauge32"),
        (lambda: encode_response(1, b"", [((1, 3), TimeTicks(-1))]), "TimeTicks"),
        (lambda: encode_response(1, b"", [((1, 3), Counter64(2**64))]), "Counter64"),
        (lambda: encode_response(1, b"", [((1, 3), Counter64(-1))]), "Counter64"),
        (lambda: encode_response(1, b"", [((1, 3), IpAddress(b"\x01\x02\x03"))]), "IpAddress"),
        (lambda: encode_response(1, b"", [((1, 3), OctetString("text"))]), "bytes"),  # type: ignore[arg-type]
        (lambda: encode_response(1, b"", [((1, 3), OctetString(b"x" * 65_536))]), "65535"),
        (lambda: encode_response(1, b"", [((1, 3), Opaque(b"x" * 65_536))]), "65535"),
        (lambda: encode_response(1, b"", [((1, 3), Counter64(1))], version=0), "SNMPv1"),
        (lambda: encode_response(1, b"", [((1, 3), NoSuchObject())], version=0), "SNMPv1"),
        (lambda: encode_response(1, b"", [((1, 3), 5)]), "not an SNMP value"),  # type: ignore[list-item]
        (lambda: encode_response(1, b"", [], error_status=-1), "error_status"),
        (lambda: encode_response(1, b"", [], version=3), "version"),
        (lambda: encode_get(2**31, b"", [(1, 3)]), "request_id"),
        (lambda: encode_get(1, "public", [(1, 3)]), "community"),  # type: ignore[arg-type]
        (lambda: encode_get(1, b"", [(1,)]), "2 to"),
        (lambda: encode_get(1, b"", [()]), "2 to"),
        (lambda: encode_get(1, b"", [(3, 1)]), "start with"),
        (lambda: encode_get(1, b"", [(1, 40)]), "start with"),
        (lambda: encode_get(1, b"", [(1, 3, -1)]), "sub-identifier"),
        (lambda: encode_get(1, b"", [(1, 3, 2**63)]), "sub-identifier"),
        (lambda: encode_get(1, b"", [(2, MAX_I64 - 79)]), "combine"),
        (lambda: encode_get(1, b"", [(1, 3, *[1] * 1100)]), "2 to"),
        (lambda: encode_getbulk(1, b"", [(1, 3)], -1), "max_repetitions"),
        (lambda: encode_getbulk(1, b"", [(1, 3)], 10, 2**31), "non_repeaters"),
    ],
)
def test_encoders_validate(make: Callable[[], bytes], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------------------------------------
# Requests


def test_decode_request_kinds() -> None:
    oids_ = [(1, 3, 6, 1, 2, 1, 1, 3, 0), (1, 3, 6, 1, 2, 1, 2, 2, 1, 10)]
    r = decode_request(encode_get(5, b"ro", oids_, version=0))
    assert (r.version, r.community, r.pdu_type, r.request_id, r.oids) == (
        0,
        b"ro",
        PduType.GET,
        5,
        tuple(oids_),
    )
    assert (r.non_repeaters, r.max_repetitions) == (0, 0)
    r = decode_request(encode_getnext(6, b"ro", oids_))
    assert (r.version, r.pdu_type, r.request_id) == (1, PduType.GETNEXT, 6)
    r = decode_request(encode_getbulk(7, b"ro", oids_, 50, 1))
    assert (r.pdu_type, r.non_repeaters, r.max_repetitions, r.oids) == (PduType.GETBULK, 1, 50, tuple(oids_))
    assert all(isinstance(v, Null) for _, v in r.varbinds)
    r = decode_request(encode_trap_v2(8, b"t", [(oids_[0], TimeTicks(5))]))
    assert r.pdu_type == PduType.TRAP_V2 and r.varbinds == ((oids_[0], TimeTicks(5)),)
    # GetBulk fields also reach the columnar decoder (in the error-status/index slots).
    dec = decode_response_columnar(encode_getbulk(7, b"ro", oids_, 50, 1), COLS)
    assert (dec.pdu_type, dec.error_status, dec.error_index) == (PduType.GETBULK, 1, 50)


def test_decode_request_set_from_pysnmp() -> None:
    from pysnmp.proto import api

    v2c: Any = api.v2c
    packet = pysnmp_encode(
        1, PduType.SET, 11, 0, 0, [((1, 3, 6, 1, 2, 1, 1, 5, 0), v2c.OctetString(b"edge-1"))]
    )
    r = decode_request(packet)
    assert r.pdu_type == PduType.SET
    assert r.varbinds == (((1, 3, 6, 1, 2, 1, 1, 5, 0), OctetString(b"edge-1")),)


def test_decode_request_refusals() -> None:
    with pytest.raises(SnmpDecodeError, match="not a request PDU: RESPONSE"):
        decode_request(encode_response(1, b"", []))
    bulk = bytearray(encode_getbulk(1, b"ro", [(1, 3)], 5))
    assert bulk[2:5] == b"\x02\x01\x01"
    bulk[4] = 0  # version 1 -> SNMPv1
    with pytest.raises(SnmpDecodeError, match="GetBulkRequest-PDU in an SNMPv1 message"):
        decode_request(bytes(bulk))
    # Negative non-repeaters / max-repetitions read as 0 (RFC 3416 4.2.3).
    neg = bytes.fromhex("301d020101040272 6fa51402010102 01ff 0201fe 3009300706032b06010500".replace(" ", ""))
    r = decode_request(neg)
    assert (r.non_repeaters, r.max_repetitions) == (0, 0)


# ---------------------------------------------------------------------------------------------
# Columnar decoding: semantics


def test_columns_of_and_matching_rules() -> None:
    assert Columns.of([]).nested is False
    assert Columns.of([(1, 3, 6), (1, 3, 7)]).nested is False
    assert Columns.of([(1, 3, 6), (1, 3, 6, 1)]).nested is True
    assert Columns.of([(1, 3, 6, 1), (1, 3, 6)]).nested is True
    assert Columns.of([(1, 3), (1, 3)]).nested is True
    cols = Columns.of([(1, 3, 6), (1, 3, 6, 1, 2), (1, 3, 6, 1, 2), (1, 3, 7, 0)])
    assert cols.sub.tolist() == [1, 3, 6, 1, 3, 6, 1, 2, 1, 3, 6, 1, 2, 1, 3, 7, 0]
    assert cols.offsets.tolist() == [0, 3, 8, 13, 17]
    vbs: list[tuple[OID, Value]] = [
        ((1, 3, 6, 1, 2, 5), Integer(1)),  # longest prefix wins, first of two equal ones
        ((1, 3, 6, 9), Integer(2)),
        ((1, 3, 6), Integer(3)),  # the prefix itself: empty suffix
        ((1, 3, 7, 0), Integer(4)),
        ((1, 3, 7), Integer(5)),  # shorter than the prefix: under none
        ((2, 5, 1), Integer(6)),
    ]
    packet = encode_response(1, b"public", vbs)
    dec = decode_response_columnar(packet, cols)
    assert dec.column.tolist() == [1, 0, 0, 3, -1, -1]
    assert [dec.suffix_of(i) for i in range(6)] == [(5,), (9,), (), (), (1, 3, 7), (2, 5, 1)]
    assert [dec.oid(i) for i in range(6)] == [o for o, _ in vbs]
    assert dec.suffix_offsets.tolist() == [0, 1, 2, 2, 2, 5, 8]
    bad_sets: list[list[OID]] = [[()], [(1, -1)], [(1, 2**63)], [(1,) * 1025], [(1, 3)] * 32768]
    for bad in bad_sets:
        with pytest.raises(ValueError):
            Columns.of(bad)


def test_packet_types_and_views() -> None:
    vbs: list[tuple[OID, Value]] = [((1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 1), OctetString(b"eth0"))]
    packet = encode_response(1, b"community", vbs)
    a = decode_response_columnar(packet, COLS)
    b = decode_response_columnar(bytearray(packet), COLS)
    c = decode_response_columnar(memoryview(packet), COLS)
    d = decode_response_columnar(memoryview(b"xx" + packet)[2:], COLS)
    for x in (a, b, c, d):
        assert x.community == b"community" and isinstance(x.community, bytes)
        assert x.string(packet, 0) == b"eth0"
        assert x.suffix_of(0) == (1,) and x.column[0] == 1
    assert d.varbinds(memoryview(packet)) == vbs
    assert a.value(packet, 0) == OctetString(b"eth0")


@FAST
@given(responses())
def test_columnar_equals_reference_and_pysnmp_on_random_responses(packet: bytes) -> None:
    assert_three_decoders_agree(packet)


@FAST
@given(table_responses())
def test_column_matching_on_bulk_shaped_responses(case: tuple[bytes, list[OID]]) -> None:
    packet, prefixes = case
    msg = decode_message(packet)
    assert_columnar_matches(packet, msg, Columns.of(prefixes))
    # and with the prefixes de-duplicated and de-nested (the kernel's guessing path)
    flat = [p for p in dict.fromkeys(prefixes) if not any(q != p and p[: len(q)] == q for q in prefixes)]
    flat = [p for p in flat if not any(q != p and q[: len(p)] == p for q in flat)]
    cols = Columns.of(flat)
    assert not cols.nested
    assert_columnar_matches(packet, msg, cols)


# ---------------------------------------------------------------------------------------------
# Liberal where agents are sloppy


def _raw_tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    ln = bytes([n]) if n < 0x80 else bytes([0x80 | 4]) + n.to_bytes(4, "big")
    return bytes([tag]) + ln + content


def _resp_with_value(tag: int, content: bytes, length: bytes | None = None) -> bytes:
    """A v2c response with one varbind (1.3.6.1) whose value is raw tag/length/content."""
    value = bytes([tag]) + length + content if length is not None else _raw_tlv(tag, content)
    vbl = _raw_tlv(0x30, _raw_tlv(0x30, b"\x06\x03\x2b\x06\x01" + value))
    pdu = _raw_tlv(0xA2, b"\x02\x01\x01\x02\x01\x00\x02\x01\x00" + vbl)
    return _raw_tlv(0x30, b"\x02\x01\x01\x04\x00" + pdu)


@pytest.mark.parametrize(
    ("tag", "content", "expected"),
    [
        (0x02, b"\x00\x00\x05", Integer(5)),  # redundant leading zeros
        (0x02, b"\xff\xff\xfb", Integer(-5)),  # redundant sign octets
        (0x02, b"", Integer(0)),  # zero-length INTEGER reads as 0 (as pyasn1)
        (0x02, b"\x00\xff\xff\xff\xff", Integer(2**32 - 1)),  # an unsigned value in an INTEGER
        (0x02, b"\x7f" + b"\xff" * 7, Integer(MAX_I64)),
        (0x02, b"\x80" + b"\x00" * 7, Integer(-(2**63))),
        (0x02, b"\x00" * 20 + b"\x7f" + b"\xff" * 7, Integer(MAX_I64)),
        (0x41, b"\xff\xff\xff\xff", Counter32(2**32 - 1)),  # no sign octet: the classic agent bug
        (0x41, b"\x80", Counter32(128)),
        (0x41, b"\x00\x00\x00\x00\x00\x01", Counter32(1)),
        (0x43, b"", TimeTicks(0)),
        (0x46, b"\xff" * 8, Counter64(2**64 - 1)),
        (0x46, b"\x00" * 5 + b"\xff" * 8, Counter64(2**64 - 1)),
    ],
)
def test_sloppy_values_are_accepted(tag: int, content: bytes, expected: Value) -> None:
    packet = _resp_with_value(tag, content)
    assert decode_message(packet).varbinds == [((1, 3, 6, 1), expected)]
    dec = decode_response_columnar(packet, COLS)
    assert dec.value(packet, 0) == expected


def _widen(packet: bytes, form: int) -> bytes:
    """Re-encode every length of the message tree in a non-minimal long form (0x81..0x84)."""

    def walk(data: bytes) -> bytes:
        out = bytearray()
        pos = 0
        while pos < len(data):
            tag = data[pos]
            b = data[pos + 1]
            if b < 0x80:
                ln, start = b, pos + 2
            else:
                nb = b & 0x7F
                ln, start = int.from_bytes(data[pos + 2 : pos + 2 + nb], "big"), pos + 2 + nb
            content = data[start : start + ln]
            if tag in (0x30, *range(0xA0, 0xA9)):
                content = walk(content)
            nb = form & 0x7F
            if len(content) >= 256**nb:
                nb = 4
            out += bytes([tag, 0x80 | nb]) + len(content).to_bytes(nb, "big") + content
            pos = start + ln
        return bytes(out)

    return walk(packet)


@pytest.mark.parametrize("form", [0x81, 0x82, 0x84])
def test_non_minimal_long_form_lengths_are_accepted(form: int) -> None:
    vbs: list[tuple[OID, Value]] = [
        ((1, 3, 6, 1, 2, 1, 1, 1, 0), OctetString(b"x" * 10)),
        ((1, 3, 6, 9), Counter64(5)),
    ]
    packet = encode_response(1, b"public", vbs)
    wide = _widen(packet, form)
    assert wide != packet
    msg = assert_three_decoders_agree(wide)
    assert msg.varbinds == vbs


# ---------------------------------------------------------------------------------------------
# Errors: each reason, then fuzzing

GOOD = encode_response(1, b"public", [((1, 3, 6, 1), Integer(5))])


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"", "truncated"),
        (b"\x30", "truncated"),
        (b"\x30\x84\x00\x00", "truncated"),
        (b"\x30\x05\x02\x01", "length runs past"),
        (b"\x30\x84\xff\xff\xff\xff\x02\x01\x01", "length runs past"),
        (b"\x30\x80\x02\x01\x01\x00\x00", "indefinite"),
        (b"\x30\x85\x00\x00\x00\x00\x03\x02\x01\x01", "longer than 4 octets"),
        (b"\x30\xff", "longer than 4 octets"),
        (b"\x31\x03\x02\x01\x01", "not a SEQUENCE"),
        (GOOD + b"\x00", "trailing bytes"),
        (b"\x30\x03\x04\x01\x01", "version is not an INTEGER"),
        (b"\x30\x03\x02\x01\x03", "unsupported SNMP version"),
        (b"\x30\x0b\x02\x09\x01" + b"\x00" * 8, "INTEGER does not fit"),
        (b"\x30\x06\x02\x01\x01\x02\x01\x00", "community is not an OCTET STRING"),
        (b"\x30\x07\x02\x01\x01\x04\x00\xa9\x00", "unknown PDU type"),
        (b"\x30\x07\x02\x01\x01\x04\x00\x30\x00", "unknown PDU type"),
        (b"\x30\x09\x02\x01\x01\x04\x00\xa2\x00\x00\x00", "bytes after the PDU"),
        (b"\x30\x0a\x02\x01\x01\x04\x00\xa2\x03\x04\x01\x01", "PDU header field"),
        (b"\x30\x10\x02\x01\x01\x04\x00\xa2\x09\x02\x01\x01\x02\x01\x00\x02\x01\x00", "truncated"),
        (
            b"\x30\x12\x02\x01\x01\x04\x00\xa2\x0b\x02\x01\x01\x02\x01\x00\x02\x01\x00\x31\x00",
            "variable-bindings",
        ),
        (
            b"\x30\x14\x02\x01\x01\x04\x00\xa2\x0d\x02\x01\x01\x02\x01\x00\x02\x01\x00\x30\x00\x00\x00",
            "after the variable-bindings",
        ),
        (_resp_with_value(0x02, b"\x01" * 9), "INTEGER does not fit"),
        (_resp_with_value(0x02, b"\x00\x80" + b"\x00" * 7), "INTEGER does not fit"),
        (_resp_with_value(0x41, b"\x01\x00\x00\x00\x00"), "exceeds 32 bits"),
        (_resp_with_value(0x42, b"\xff" * 5), "exceeds 32 bits"),
        (_resp_with_value(0x43, b"\x01" * 5), "exceeds 32 bits"),
        (_resp_with_value(0x46, b"\x01" + b"\x00" * 8), "exceeds 64 bits"),
        (_resp_with_value(0x40, b"\x01\x02\x03"), "IpAddress is not 4 bytes"),
        (_resp_with_value(0x05, b"\x00"), "NULL or exception value with content"),
        (_resp_with_value(0x82, b"\x00"), "NULL or exception value with content"),
        (_resp_with_value(0x06, b""), "empty OBJECT IDENTIFIER"),
        (_resp_with_value(0x06, b"\x2b\x86"), "ends inside a sub-identifier"),
        (_resp_with_value(0x06, b"\x2b\x80\x01"), "non-minimal"),
        (_resp_with_value(0x06, b"\x2b" + b"\xff" * 9 + b"\x7f"), "exceeds 2\\*\\*63-1"),
        (_resp_with_value(0x06, b"\x2b\x80\x7f"), "non-minimal"),
        (_resp_with_value(0x24, b""), "unknown or constructed value tag"),  # constructed OCTET STRING
        (_resp_with_value(0x30, b""), "unknown or constructed value tag"),
        (_resp_with_value(0x45, b"\x00"), "unknown or constructed value tag"),  # NsapAddress
        (_resp_with_value(0x1F, b""), "unknown or constructed value tag"),  # high-tag-number form
        (_resp_with_value(0x02, b"\x01", b"\x80"), "indefinite"),
        (_resp_with_value(0x04, b"", b"\x05"), "length runs past"),
    ],
)
def test_each_error_has_a_clear_reason(packet: bytes, reason: str) -> None:
    for decode in (decode_message, lambda p: decode_response_columnar(p, COLS)):
        with pytest.raises(SnmpDecodeError, match=reason) as info:
            decode(packet)
        assert info.value.reason in REASONS.values()
        assert info.value.offset is not None and 0 <= info.value.offset <= len(packet)
    assert_decoders_agree_on_anything(packet)


def test_varbind_framing_errors() -> None:
    vb_ok = b"\x30\x05\x06\x01\x2b\x05\x00"

    def msg(vbl_content: bytes) -> bytes:
        vbl = b"\x30" + bytes([len(vbl_content)]) + vbl_content
        body = b"\x02\x01\x01\x02\x01\x00\x02\x01\x00" + vbl
        inner = b"\x02\x01\x01\x04\x00\xa2" + bytes([len(body)]) + body
        return b"\x30" + bytes([len(inner)]) + inner

    assert decode_message(msg(vb_ok)).varbinds == [((1, 3), Null())]
    cases = [
        (msg(vb_ok + b"\x31\x00"), "varbind is not a SEQUENCE"),
        (msg(b"\x30\x05\x04\x01\x2b\x05\x00"), "name is not an OBJECT IDENTIFIER"),
        (msg(b"\x30\x07\x06\x01\x2b\x05\x00\x05\x00"), "bytes after the value"),
        (msg(b"\x30\x03\x06\x01\x2b"), "truncated"),  # a varbind without a value
        (msg(b"\x30\x02\x06\x00"), "empty OBJECT IDENTIFIER"),
        (msg(vb_ok + b"\x30"), "truncated"),
    ]
    for packet, reason in cases:
        for decode in (decode_message, lambda p: decode_response_columnar(p, COLS)):
            with pytest.raises(SnmpDecodeError, match=reason):
                decode(packet)
    # An error in a later varbind's framing is found before an earlier varbind's value.
    with pytest.raises(SnmpDecodeError, match="varbind is not a SEQUENCE"):
        decode_response_columnar(msg(b"\x30\x05\x06\x01\x2b\x05\x01" + b"\x31\x00"), COLS)


def _many_varbinds(n: int) -> bytes:
    vbl = b"\x30\x05\x06\x01\x2b\x05\x00" * n
    vbl_tlv = b"\x30\x83" + len(vbl).to_bytes(3, "big") + vbl
    body = b"\x02\x01\x01\x02\x01\x00\x02\x01\x00" + vbl_tlv
    inner = b"\x02\x01\x01\x04\x00\xa2\x83" + len(body).to_bytes(3, "big") + body
    return b"\x30\x83" + len(inner).to_bytes(3, "big") + inner


def test_varbind_count_is_bounded() -> None:
    ok = _many_varbinds(MAX_VARBINDS)
    assert len(decode_response_columnar(ok, COLS)) == MAX_VARBINDS
    assert len(decode_message(ok).varbinds) == MAX_VARBINDS
    too_many = _many_varbinds(MAX_VARBINDS + 1)
    for decode in (decode_message, lambda p: decode_response_columnar(p, COLS)):
        with pytest.raises(SnmpDecodeError, match=f"more than {MAX_VARBINDS} varbinds"):
            decode(too_many)


def _timed(packet: bytes) -> float:
    t0 = time.perf_counter()
    assert_decoders_agree_on_anything(packet)
    return time.perf_counter() - t0


def test_hostile_shapes_are_bounded_work() -> None:
    decode_response_columnar(GOOD, COLS)  # compile outside the timing
    nested = b""
    for _ in range(3000):
        nested = b"\x30\x84" + len(nested).to_bytes(4, "big") + nested
    huge_oid = b"\x2b" + b"\x81\x01" * 30_000
    cases = [
        nested,  # deep valid nesting where an INTEGER belongs
        _resp_with_value(0x30, b"\x30\x00" * 100),  # constructed garbage as a value
        b"\x30\x82\xff\xff" * 20_000,  # a ladder of huge lengths
        b"\x30\x84\xff\xff\xff\xff" + b"\x00" * 60_000,
        _resp_with_value(0x02, b"\x00" * 60_000 + b"\x05", b"\x82" + (60_001).to_bytes(2, "big")),
        _resp_with_value(0x06, huge_oid, b"\x82" + len(huge_oid).to_bytes(2, "big")),
        _many_varbinds(MAX_VARBINDS + 1),
        bytes(range(256)) * 256,
    ]
    for packet in cases:
        assert _timed(packet) < 2.0


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(packet: bytes) -> None:
    assert_decoders_agree_on_anything(packet)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    packet = bytearray(draw(responses(max_varbinds=6)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(packet) - 1)))
        byte = draw(
            st.sampled_from(
                [0x00, 0x01, 0x02, 0x04, 0x06, 0x30, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x85, 0xA2, 0xFF]
            )
            | st.integers(0, 255)
        )
        if kind == "set" and packet:
            packet[pos] = byte
        elif kind == "insert":
            packet.insert(pos, byte)
        elif kind == "delete" and packet:
            del packet[pos]
        elif kind == "truncate":
            del packet[pos:]
    return bytes(packet)


@settings(max_examples=600, deadline=None)
@given(mutated())
def test_mutated_packets(packet: bytes) -> None:
    assert_decoders_agree_on_anything(packet)


LENGTH_PROBES = (0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x85, 0xFF)


def _sweep(packet: bytes, compare_every: int) -> None:
    """Truncate at every position and overwrite every byte with length-like values: the kernel
    must reject or accept without any other exception; every ``compare_every``-th case is also
    compared with the Python decoder."""
    for k in range(len(packet)):
        with pytest.raises(SnmpDecodeError):
            decode_response_columnar(packet[:k], COLS)
        if k % compare_every == 0:
            assert_decoders_agree_on_anything(packet[:k])
    buf = bytearray(packet)
    for k in range(len(packet)):
        orig = buf[k]
        for b in LENGTH_PROBES:
            buf[k] = b
            mutant = bytes(buf)
            with contextlib.suppress(SnmpDecodeError):
                decode_response_columnar(mutant, COLS)
            if k % compare_every == 0:
                assert_decoders_agree_on_anything(mutant)
        buf[k] = orig


def test_truncations_and_length_flips_of_generated_packets() -> None:
    vbs = [
        (n, v)
        for n, v in zip(EDGE_NAMES * 8, EDGE_VALUES, strict=False)
        if not isinstance(v, OctetString) or len(v.value) < 1000
    ]
    packet = encode_response(-3, b"public", vbs)
    # Every position through the kernel; ~500 of them through both decoders (the Python one is
    # the slow part).
    _sweep(packet, compare_every=max(1, len(packet) // 500))
    _sweep(encode_getbulk(1, b"public", [(1, 3, 6, 1, 2, 1, 2, 2, 1, 10)], 50), compare_every=1)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_truncations_and_length_flips_of_captures(path: Path) -> None:
    packet = path.read_bytes()
    _sweep(packet, compare_every=max(1, len(packet) // 150))


# ---------------------------------------------------------------------------------------------
# Real agent captures (net-snmp 5.9; see collector/snmp/testdata/README.md)


def test_captures_exist() -> None:
    names = {p.stem for p in CAPTURES}
    assert {"getbulk_iftable_r50", "getbulk_ifxtable_r50", "getbulk_system_r50"} <= names, names


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_captures_decode_like_pysnmp(path: Path) -> None:
    packet = path.read_bytes()
    msg = assert_three_decoders_agree(packet, path.name)
    assert msg.pdu_type == PduType.RESPONSE
    assert msg.community == b"public"


def test_capture_of_the_if_table() -> None:
    packet = (TESTDATA / "getbulk_iftable_r50.bin").read_bytes()
    columns = [(1, 3, 6, 1, 2, 1, 2, 2, 1, c) for c in (1, 2, 3, 4, 5, 6, 7, 8, 10, 14, 16, 20)]
    dec = decode_response_columnar(packet, Columns.of(columns))
    k = len(columns)
    assert len(dec) == 50 * k
    # ifIndex column: INTEGER values equal to the row's suffix while the walk is in the column.
    idx = [i for i in range(0, len(dec), k) if dec.column[i] == 0]
    assert idx and all(dec.tag[i] == 0x02 and (int(dec.ival[i]),) == dec.suffix_of(i) for i in idx)
    descr = [dec.string(packet, i) for i in range(1, len(dec), k) if dec.column[i] == 1]
    assert descr[0] == b"lo"
    assert {int(t) for t in dec.tag[8::k][dec.column[8::k] == 8]} == {0x41}  # ifInOctets: Counter32


def test_capture_of_the_ifx_table_has_counter64() -> None:
    packet = (TESTDATA / "getbulk_ifxtable_r50.bin").read_bytes()
    msg = decode_message(packet)
    assert any(isinstance(v, Counter64) for _, v in msg.varbinds)


# ---------------------------------------------------------------------------------------------
# Out-of-bounds reads: numba does not check indices, so rerun the sweeps with NUMBA_BOUNDSCHECK=1
# in a fresh process (and a private cache dir, so the checked build cannot mix with the normal one).

_BOUNDSCHECK_SCRIPT = r"""
import random, sys
from pathlib import Path
from collector.snmp.ber import Columns, SnmpDecodeError, decode_response_columnar, encode_response, Integer
from tests.unit.test_snmp_ber import CAPTURES, EDGE_NAMES, EDGE_VALUES, LENGTH_PROBES

cols = Columns.of([(1, 3, 6, 1, 2, 1, 2, 2, 1, c) for c in range(1, 11)] + [(1, 3, 6), (1, 3, 6, 1, 2, 1, 1)])
packets = [p.read_bytes() for p in CAPTURES]
packets.append(encode_response(1, b"public", list(zip(EDGE_NAMES * 8, EDGE_VALUES[:12] + EDGE_VALUES[13:]))))
rng = random.Random(1)
count = 0
for packet in packets:
    variants = [packet[:k] for k in range(len(packet))]
    for k in rng.sample(range(len(packet)), min(len(packet), 400)):
        for b in LENGTH_PROBES:
            variants.append(packet[:k] + bytes([b]) + packet[k + 1:])
    for v in variants:
        try:
            decode_response_columnar(v, cols)
        except SnmpDecodeError:
            pass
        count += 1
for _ in range(3000):
    try:
        decode_response_columnar(rng.randbytes(rng.randrange(0, 200)), cols)
    except SnmpDecodeError:
        pass
print("ok", count)
"""


def test_kernel_never_reads_out_of_bounds(tmp_path: Path) -> None:
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _BOUNDSCHECK_SCRIPT],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # An out-of-bounds index raises IndexError under NUMBA_BOUNDSCHECK, failing the script.
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok")


def test_numba_boundscheck_is_effective(tmp_path: Path) -> None:
    """Guard for the test above: NUMBA_BOUNDSCHECK=1 must really turn a bad index into IndexError."""
    script = "import numba, numpy as np\n@numba.njit\ndef f(a, i):\n    return a[i]\nf(np.zeros(3), 5)\n"
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "IndexError" in proc.stderr


def test_reasons_are_fixed_strings() -> None:
    assert len(set(REASONS.values())) == len(REASONS)
