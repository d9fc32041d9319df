"""USM key derivation against the RFCs' published vectors, the SNMPv3 decoder's refusals, and
the timeliness window's edges (RFC 3414 2.2.3: 150 s)."""

from __future__ import annotations

import pytest

from collector.snmp.ber import (
    SnmpDecodeError,
    UsmParams,
    decode_v3_message,
    int_content,
    message_version,
    tlv,
)
from collector.traps.usm import Timeliness, UsmError, localize, password_to_key

ENGINE = bytes.fromhex("000000000000000000000002")  # RFC 3414 A.3's snmpEngineID


@pytest.mark.parametrize(
    ("hash_name", "ku", "kul"),
    [
        # RFC 3414 A.3.1 (MD5) and A.3.2 (SHA), password "maplesyrup".
        ("MD5", "9faf3283884e92834ebc9847d8edd963", "526f5eed9fcce26f8964c2930787d82b"),
        (
            "SHA",
            "9fb5cc0381497b3793528939ff788d5d79145211",
            "6695febc9288e36282235fc7151f128497b38f3f",
        ),
    ],
)
def test_password_to_key_and_localization_match_rfc3414_vectors(hash_name: str, ku: str, kul: str) -> None:
    master = password_to_key(b"maplesyrup", hash_name)
    assert master.hex() == ku
    assert localize(master, ENGINE, hash_name).hex() == kul


def usm(boots: int, etime: int, mac: bytes = b"m" * 12) -> UsmParams:
    return UsmParams(b"\x80\x00\x1f\x88\x01", boots, etime, b"u", mac, b"", 0)


def test_time_window_edges_and_replay() -> None:
    now = [1000.0]
    t = Timeliness(clock=lambda: now[0])
    t.check(usm(5, 10_000, b"a" * 12))
    now[0] += 30  # our notion of the sender's clock: 10,030
    t.check(usm(5, 10_030 - 150, b"b" * 12))  # exactly 150 s behind: inside
    with pytest.raises(UsmError) as exc:
        t.check(usm(5, 10_030 - 151, b"c" * 12))  # 151 s behind: outside
    assert exc.value.reason == "not_in_time_window"
    with pytest.raises(UsmError) as exc:
        t.check(usm(4, 99_999, b"d" * 12))  # an older boot
    assert exc.value.reason == "not_in_time_window"
    with pytest.raises(UsmError) as exc:
        t.check(usm(5, 10_020, b"a" * 12))  # the first message again, inside the window
    assert exc.value.reason == "replay"
    t.check(usm(6, 1, b"e" * 12))  # the sender rebooted: a new boot resets its clock
    with pytest.raises(UsmError):
        t.check(usm(5, 10_040, b"f" * 12))


def v3(flags: int = 0x03, model: int = 3, version: int = 3, user: bytes = b"u") -> bytes:
    def i(v: int) -> bytes:
        return tlv(0x02, int_content(v))

    header = tlv(0x30, i(1) + i(65507) + tlv(0x04, bytes([flags])) + i(model))
    params = tlv(
        0x30,
        tlv(0x04, b"\x80\x00\x1f\x88\x01")
        + i(1)
        + i(2)
        + tlv(0x04, user)
        + tlv(0x04, bytes(12))
        + tlv(0x04, bytes(8)),
    )
    return tlv(0x30, i(version) + header + tlv(0x04, params) + tlv(0x04, b"\x00" * 16))


def test_v3_decoder_reads_header_and_refuses_what_rfc3412_forbids() -> None:
    msg = decode_v3_message(v3())
    assert (msg.msg_id, msg.max_size, msg.flags) == (1, 65507, 3)
    assert (msg.usm.engine_boots, msg.usm.engine_time, msg.usm.user_name) == (1, 2, b"u")
    assert msg.encrypted == b"\x00" * 16 and msg.scoped_pdu is None
    assert message_version(v3()) == 3
    for bad, why in (
        (v3(flags=0x02), "privacy without authentication"),
        (v3(model=2), "not USM"),
        (v3(version=1), "msgVersion 1 is not 3"),
        (v3(user=b"x" * 33), "msgUserName longer than 32"),
        (v3()[:-1], "length"),
    ):
        with pytest.raises(SnmpDecodeError, match=why):
            decode_v3_message(bad)
