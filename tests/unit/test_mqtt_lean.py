"""collector.mqtt.lean: packet encoding/decoding, fragmentation, malformed input."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.mqtt.lean import (
    LeanClient,
    LeanMessage,
    LeanMqttError,
    PacketParser,
    decode_remaining_length,
    encode_puback,
    encode_publish,
    encode_remaining_length,
)

EDGES = [0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455]


@pytest.mark.parametrize("n", EDGES)
def test_remaining_length_round_trip(n: int) -> None:
    enc = encode_remaining_length(n)
    assert len(enc) == 1 + (n >= 128) + (n >= 16384) + (n >= 2097152)
    assert decode_remaining_length(enc, 0) == (n, len(enc))
    # with a prefix and trailing bytes
    assert decode_remaining_length(b"\x30" + enc + b"xyz", 1) == (n, 1 + len(enc))
    # every strict prefix is incomplete, never an error
    for cut in range(len(enc)):
        assert decode_remaining_length(enc[:cut], 0) is None


def test_remaining_length_out_of_range() -> None:
    with pytest.raises(ValueError):
        encode_remaining_length(268435456)
    with pytest.raises(ValueError):
        encode_remaining_length(-1)
    with pytest.raises(LeanMqttError, match="longer than 4 bytes"):
        decode_remaining_length(b"\xff\xff\xff\xff\x01", 0)


def _msg(
    topic: str, payload: bytes, qos: int, mid: int, dup: bool = False, retain: bool = False
) -> LeanMessage:
    return LeanMessage(topic, payload, qos, mid if qos else 0, dup, retain)


def _enc(m: LeanMessage) -> bytes:
    return encode_publish(m.topic, m.payload, m.qos, m.mid, dup=m.dup, retain=m.retain)


@pytest.mark.parametrize(
    "m",
    [
        _msg("a/b", b"hello", 0, 0),
        _msg("a/b", b"hello", 0, 0, retain=True),
        _msg("netqos/v1/probes/bn-1-p001/measurements", b"{}" * 100, 1, 1),
        _msg("t", b"", 1, 65535, dup=True),
        _msg("tỉnh/Bắc Ninh", bytes(range(256)) * 3, 1, 4242, dup=True, retain=True),
        _msg("", b"x", 0, 0),
    ],
)
def test_publish_parse(m: LeanMessage) -> None:
    p = PacketParser()
    assert p.feed(_enc(m)) == []
    assert list(p.messages) == [m]
    assert p.buffered() == 0


def test_publish_raw_bytes_qos1_dup() -> None:
    # fixed header 0x3a: PUBLISH, DUP, QoS 1; topic "a/b", mid 0x0102, payload "hi"
    raw = b"\x3a\x09\x00\x03a/b\x01\x02hi"
    p = PacketParser()
    p.feed(raw)
    assert list(p.messages) == [LeanMessage("a/b", b"hi", 1, 0x0102, True, False)]


def test_control_packets_returned() -> None:
    p = PacketParser()
    stream = b"\x20\x02\x01\x00" + encode_puback(7) + b"\x90\x03\x00\x01\x01" + b"\xd0\x00"
    assert p.feed(stream) == [(0x20, b"\x01\x00"), (0x40, b"\x00\x07"), (0x90, b"\x00\x01\x01"), (0xD0, b"")]


messages_st = st.lists(
    st.builds(
        _msg,
        st.text(min_size=0, max_size=30).filter(lambda s: len(s.encode()) < 200),
        st.binary(max_size=300),
        st.integers(0, 1),
        st.integers(1, 65535),
        st.booleans(),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


def _feed_all(chunks: list[bytes]) -> list[LeanMessage]:
    p = PacketParser()
    for c in chunks:
        p.feed(c)
    assert p.buffered() == 0
    return list(p.messages)


@settings(max_examples=60, deadline=None)
@given(messages_st)
def test_fragmentation_every_split_position(msgs: list[LeanMessage]) -> None:
    stream = b"".join(_enc(m) for m in msgs)
    for i in range(len(stream) + 1):
        assert _feed_all([stream[:i], stream[i:]]) == msgs


@settings(max_examples=200, deadline=None)
@given(messages_st, st.lists(st.integers(0, 10_000), max_size=20), st.booleans())
def test_fragmentation_random_chunks(msgs: list[LeanMessage], cuts: list[int], pings: bool) -> None:
    parts = [_enc(m) + (b"\xd0\x00" if pings else b"") for m in msgs]
    stream = b"".join(parts)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert _feed_all(chunks) == msgs


def test_byte_by_byte() -> None:
    msgs = [_msg(f"t/{i}", bytes([i]) * (i * 50), i % 2, i + 1) for i in range(10)]
    stream = b"".join(_enc(m) for m in msgs)
    assert _feed_all([stream[i : i + 1] for i in range(len(stream))]) == msgs


MALFORMED = [
    (b"\x30\xff\xff\xff\xff\x01", "longer than 4 bytes"),
    (b"\x30\x80\x80\x80\x80", "longer than 4 bytes"),
    (b"\x90" + encode_remaining_length((1 << 20) + 4097), "too large"),  # only a PUBLISH is read past
    (b"\x40\xff\xff\xff\x7f", "too large"),
    (b"\x30\xff\xff\xff\x7f\x00\x02\xff\xfe", "not UTF-8"),  # oversized, its topic still checked
    (b"\x32\xff\xff\xff\x7f\x00\x01a\x00\x00", "packet id 0"),
    (b"\x34\xff\xff\xff\x7f\x00\x01a\x00\x01", "QoS 2"),
    (b"\x30\x01\x00", "truncated topic length"),
    (b"\x30\x00", "truncated topic length"),
    (b"\x30\x04\x00\x05ab", "topic longer than the packet"),
    (b"\x32\x04\x00\x01a\x00", "truncated packet id"),
    (b"\x32\x05\x00\x01a\x00\x00", "packet id 0"),
    (b"\x34\x05\x00\x01a\x00\x01", "QoS 2"),
    (b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
    (b"\x30\x04\x00\x02\xff\xfe", "not UTF-8"),
    (b"\x20\x03\x00\x00\x00", "CONNACK"),
    (b"\xd0\x01\x00", "PINGRESP"),
    (b"\x90\x02\x00\x01", "SUBACK"),
    (b"\x10\x00", "unexpected packet"),
    (b"\x50\x02\x00\x01", "unexpected packet"),
    (b"\x41\x02\x00\x01", "unexpected packet"),
]


@pytest.mark.parametrize(("raw", "why"), MALFORMED)
def test_malformed_raises_lean_error(raw: bytes, why: str) -> None:
    good = encode_publish("ok", b"1", 1, 1)
    p = PacketParser()
    with pytest.raises(LeanMqttError, match=why):
        p.feed(good + raw + good)
    with pytest.raises(LeanMqttError, match=why):  # stays failed
        p.feed(good)
    # fed one byte at a time: the same error, at the latest once the bad packet is complete
    p2 = PacketParser()
    with pytest.raises(LeanMqttError, match=why):
        for i in range(len(raw)):
            p2.feed(raw[i : i + 1])
        p2.feed(good)


def test_small_max_packet_size_bounds_buffer() -> None:
    p = PacketParser(max_packet_size=100)
    p.feed(encode_publish("t", b"x" * 90, 0))
    with pytest.raises(LeanMqttError, match="too large"):
        p.feed(b"\x90" + encode_remaining_length(101))


@pytest.mark.parametrize("chunk", [1, 7, 101, 4096, 1 << 20])
def test_an_oversized_publish_is_read_past_without_buffering_it(chunk: int) -> None:
    """Limit 100 bytes of remaining length: 100 passes whole, 101 and 10,000 are discarded as they
    come (the buffer never holds more than one packet's limit) and come out as empty messages
    with their payload size; the messages around them are untouched."""
    p = PacketParser(max_packet_size=100)
    at_limit = encode_publish("t/a", b"y" * 93, 1, 1)  # remaining length 2 + 3 + 2 + 93 = 100
    just_over = encode_publish("t/b", b"z" * 94, 1, 2)  # 101
    huge = encode_publish("t/c", b"x" * 10_000, 1, 3)
    qos0 = encode_publish("t/d", b"w" * 5000, 0)
    after = encode_publish("t/e", b"ok", 1, 4)
    stream = at_limit + just_over + huge + qos0 + after
    most = 0
    for i in range(0, len(stream), chunk):
        p.feed(stream[i : i + chunk])
        most = max(most, p.buffered())
    assert most <= 100 + 2  # one packet's remaining length + its fixed header at most
    assert list(p.messages) == [
        LeanMessage("t/a", b"y" * 93, 1, 1, False, False),
        LeanMessage("t/b", b"", 1, 2, False, False, oversized=94),
        LeanMessage("t/c", b"", 1, 3, False, False, oversized=10_000),
        LeanMessage("t/d", b"", 0, 0, False, False, oversized=5000),
        LeanMessage("t/e", b"ok", 1, 4, False, False),
    ]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 50))
def test_arbitrary_bytes_never_crash(data: bytes, step: int) -> None:
    p = PacketParser(max_packet_size=1000)
    try:
        for i in range(0, len(data), step):
            p.feed(data[i : i + step])
    except LeanMqttError:
        return
    assert p.buffered() < 1000 + 5


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.aborted = False
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing or self.aborted

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _client_with_fake() -> tuple[LeanClient, FakeTransport]:
    c = LeanClient("127.0.0.1", 1, client_id="t")
    t = FakeTransport()
    c._transport = t
    return c, t


async def test_client_manual_ack_and_coalesced_writes() -> None:
    c, t = await _client_with_fake()
    c._on_data(b"".join(encode_publish("a", b"%d" % i, 1, i + 1) for i in range(3)))
    assert c.pending() == 3
    got = []
    async for m in c.messages():
        got.append(m)
        c.ack(m.mid)
        if len(got) == 3:
            break
    assert c.pending() == 0
    assert t.written == b""  # never auto-acked, and acks are flushed once per loop turn
    await asyncio.sleep(0)
    assert t.written == encode_puback(1) + encode_puback(2) + encode_puback(3)


async def test_client_malformed_input_fails_iterator() -> None:
    c, t = await _client_with_fake()
    c._on_data(encode_publish("a", b"x", 1, 1) + b"\x30\xff\xff\xff\xff\x01")
    assert t.aborted

    async def drain() -> None:
        async for _ in c.messages():
            pass

    with pytest.raises(LeanMqttError, match="protocol error: malformed packet"):
        await asyncio.wait_for(drain(), 2)
    with pytest.raises(LeanMqttError):
        await c.publish("x", b"y")


async def test_client_lost_connection_fails_pending_publish() -> None:
    c, t = await _client_with_fake()
    pub = asyncio.ensure_future(c.publish("x", b"y", qos=1))
    for _ in range(3):  # the task starts, then the coalesced write is flushed
        await asyncio.sleep(0)
    assert t.written.startswith(b"\x32")
    c._on_lost(ConnectionResetError("reset"))
    with pytest.raises(LeanMqttError, match="connection lost: reset"):
        await asyncio.wait_for(pub, 2)


async def test_client_publish_resolves_on_puback() -> None:
    c, t = await _client_with_fake()
    pub = asyncio.ensure_future(c.publish("x", b"y", qos=1))
    for _ in range(3):  # the task starts, then the coalesced write is flushed
        await asyncio.sleep(0)
    mid = t.written[-3] << 8 | t.written[-2]  # topic "x", then mid, then payload "y"
    c._on_data(encode_puback(mid))
    await asyncio.wait_for(pub, 2)
