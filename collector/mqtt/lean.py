"""A lean asyncio MQTT 3.1.1 client: only what the ingest consumer needs, and fast.

Scope: CONNECT/CONNACK, SUBSCRIBE/SUBACK (max QoS 1), incoming PUBLISH QoS 0/1 with
*manual* PUBACKs, outgoing PUBLISH QoS 0/1 (awaiting the PUBACK), PINGREQ keepalive,
DISCONNECT. QoS 2 is not supported: subscriptions ask for at most QoS 1, so a compliant
broker never sends QoS 2; if one arrives anyway the connection is closed with an error.

Parsing happens in ``data_received`` on a bytearray buffer (one pass per chunk, slices
per packet, no per-byte loop except the <= 4-byte remaining-length varint). Received
messages go to a deque that ``messages()`` drains without awaiting while it is not
empty. Outgoing packets written in the same event-loop iteration (typically a run of
PUBACKs) are coalesced into one ``transport.write``.

Safety: a PUBLISH whose remaining length is above ``max_packet_size`` is read past and
discarded as it arrives (never buffered): it comes out as a message with an empty payload
and ``oversized`` set to the payload's size, so the caller can count it and acknowledge it
(closing the connection instead would only get it delivered again at every reconnect). Any
other packet above the limit, a varint longer than 4 bytes, any malformed or unexpected
packet, closes the connection with a ``LeanMqttError`` that names the problem; the
iterator and pending calls then raise it. Nothing in the input can make the client raise
anything else, grow without bound, or hang.

Why one module of ~670 lines: it is one protocol client: the parser, the packet encoders and
the connection state (pending acknowledgements, keepalive, the coalesced writes) are one state
machine, read and tested together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "LeanClient",
    "LeanMessage",
    "LeanMqttError",
    "PacketParser",
    "decode_remaining_length",
    "encode_publish",
    "encode_remaining_length",
]

DEFAULT_MAX_PACKET_SIZE = (1 << 20) + 4096  # remaining length: 1 MiB payload + topic/header room
MAX_REMAINING_LENGTH = 268_435_455  # 4-byte varint maximum (MQTT 3.1.1, 2.2.3)
DEFAULT_MAX_PENDING = 20_000  # stop reading the socket while this many messages wait

CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBACK = 0x90
UNSUBACK = 0xB0
PINGRESP = 0xD0

_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class LeanMqttError(Exception):
    """Any MQTT failure: refused/failed connection, protocol violation, timeout, lost link."""


@dataclass(frozen=True, slots=True)
class LeanMessage:
    topic: str
    payload: bytes
    qos: int
    mid: int  # packet identifier; 0 for QoS 0
    dup: bool
    retain: bool
    oversized: int = 0  # > 0: the payload had this many bytes, over the limit, and was discarded


# -- encoding ---------------------------------------------------------------------------


def encode_remaining_length(n: int) -> bytes:
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {n} out of range 0..{MAX_REMAINING_LENGTH}")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_remaining_length(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(value, position after the varint) from buf[pos:], or None if it is incomplete.

    Raises LeanMqttError if the varint would need more than 4 bytes."""
    value = 0
    shift = 0
    end = len(buf)
    for i in range(pos, pos + 4):
        if i >= end:
            return None
        b = buf[i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    raise LeanMqttError("malformed packet: remaining length longer than 4 bytes")


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("MQTT string longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def encode_publish(
    topic: str, payload: bytes, qos: int = 0, mid: int = 0, *, dup: bool = False, retain: bool = False
) -> bytes:
    if qos not in (0, 1):
        raise ValueError("only QoS 0 and 1 are supported")
    if qos and not 1 <= mid <= 0xFFFF:
        raise ValueError("QoS 1 needs a packet id in 1..65535")
    first = PUBLISH | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    var = _string(topic) + (mid.to_bytes(2, "big") if qos else b"")
    return _packet(first, var + bytes(payload))


def encode_connect(
    client_id: str, keepalive_s: int, clean_session: bool, username: str | None, password: str | None
) -> bytes:
    if password is not None and username is None:
        raise ValueError("MQTT 3.1.1 needs a user name to send a password")
    flags = (0x02 if clean_session else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if password is not None else 0
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + keepalive_s.to_bytes(2, "big") + _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return _packet(0x10, body)


def encode_subscribe(mid: int, topic_filter: str, qos: int) -> bytes:
    return _packet(0x82, mid.to_bytes(2, "big") + _string(topic_filter) + bytes((qos,)))


def encode_puback(mid: int) -> bytes:
    return bytes((PUBACK, 2, mid >> 8, mid & 0xFF))


# -- decoding ---------------------------------------------------------------------------


class PacketParser:
    """Incremental parser: feed() any chunking of the byte stream.

    PUBLISH packets are decoded into ``messages`` (a deque); other packets are returned
    by feed() as (first byte, body) after their fixed header and length were checked.
    The first malformed packet raises LeanMqttError, and so does every later feed()."""

    __slots__ = ("_buf", "_error", "_skip", "max_packet_size", "messages")

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self.messages: deque[LeanMessage] = deque()
        self._buf = bytearray()
        self._error: str | None = None
        self._skip = 0  # bytes of an oversized PUBLISH still to come, dropped as they arrive

    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        if self._error is not None:
            raise LeanMqttError(self._error)
        if self._skip:
            k = min(self._skip, len(data))
            self._skip -= k
            if k == len(data):
                return []
            data = memoryview(data)[k:]
        buf = self._buf
        buf += data
        control: list[tuple[int, bytes]] = []
        pos = 0
        try:
            pos = self._parse(buf, control)
        except LeanMqttError as exc:
            self._error = str(exc)
            buf.clear()
            raise
        if pos:
            del buf[:pos]
        return control

    def _parse(self, buf: bytearray, control: list[tuple[int, bytes]]) -> int:
        n = len(buf)
        pos = 0
        append = self.messages.append
        max_size = self.max_packet_size
        view = memoryview(buf)
        try:
            while n - pos >= 2:
                b0 = buf[pos]
                b = buf[pos + 1]
                if b < 0x80:
                    rl = b
                    start = pos + 2
                else:
                    got = decode_remaining_length(buf, pos + 1)
                    if got is None:
                        break
                    rl, start = got
                end = start + rl
                if rl > max_size:
                    if b0 >> 4 != 3:
                        raise LeanMqttError(
                            f"packet too large: remaining length {rl} > maximum {max_size} bytes"
                        )
                    # Its header (topic, packet id: at most 65,539 bytes) is read; the payload
                    # is dropped as it comes, so memory stays bounded whatever its size.
                    if n - start < 2:
                        break
                    header = 2 + (buf[start] << 8 | buf[start + 1]) + (2 if (b0 >> 1) & 3 else 0)
                    if header > rl:
                        raise LeanMqttError("malformed PUBLISH: topic longer than the packet")
                    if n - start < header:
                        break
                    self._oversized(b0, buf, view, start, start + header, rl - header)
                    if end > n:
                        self._skip = end - n
                        return n
                    pos = end
                    continue
                if end > n:
                    break
                if b0 >> 4 == 3:
                    qos = (b0 >> 1) & 3
                    if qos > 1:
                        raise LeanMqttError(
                            "malformed PUBLISH: QoS 3" if qos == 3 else "QoS 2 PUBLISH is not supported"
                        )
                    if rl < 2:
                        raise LeanMqttError("malformed PUBLISH: truncated topic length")
                    p = start + 2 + (buf[start] << 8 | buf[start + 1])
                    if p > end:
                        raise LeanMqttError("malformed PUBLISH: topic longer than the packet")
                    try:
                        topic = str(view[start + 2 : p], "utf-8")
                    except UnicodeDecodeError:
                        raise LeanMqttError("malformed PUBLISH: topic is not UTF-8") from None
                    if qos:
                        if p + 2 > end:
                            raise LeanMqttError("malformed PUBLISH: truncated packet id")
                        mid = buf[p] << 8 | buf[p + 1]
                        if mid == 0:
                            raise LeanMqttError("malformed PUBLISH: packet id 0")
                        p += 2
                    else:
                        mid = 0
                    append(LeanMessage(topic, bytes(view[p:end]), qos, mid, bool(b0 & 0x08), bool(b0 & 1)))
                else:
                    _check_control(b0, rl)
                    control.append((b0, bytes(view[start:end])))
                pos = end
        finally:
            view.release()
        return pos

    def _oversized(self, b0: int, buf: bytearray, view: memoryview, start: int, end: int, size: int) -> None:
        """The message of an oversized PUBLISH whose header is buf[start:end]: no payload."""
        qos = (b0 >> 1) & 3
        if qos > 1:
            raise LeanMqttError("malformed PUBLISH: QoS 3" if qos == 3 else "QoS 2 PUBLISH is not supported")
        p = end - 2 if qos else end
        try:
            topic = str(view[start + 2 : p], "utf-8")
        except UnicodeDecodeError:
            raise LeanMqttError("malformed PUBLISH: topic is not UTF-8") from None
        mid = buf[p] << 8 | buf[p + 1] if qos else 0
        if qos and mid == 0:
            raise LeanMqttError("malformed PUBLISH: packet id 0")
        self.messages.append(LeanMessage(topic, b"", qos, mid, bool(b0 & 0x08), bool(b0 & 1), max(size, 1)))


_CONTROL_LENGTHS = {CONNACK: "2", PUBACK: "2", UNSUBACK: "2", PINGRESP: "0", SUBACK: "3+"}
_CONTROL_NAMES = {CONNACK: "CONNACK", PUBACK: "PUBACK", UNSUBACK: "UNSUBACK", PINGRESP: "PINGRESP"}


def _check_control(b0: int, rl: int) -> None:
    if b0 == SUBACK:
        if rl < 3:
            raise LeanMqttError(f"malformed SUBACK: remaining length {rl} < 3")
        return
    want = _CONTROL_LENGTHS.get(b0)
    if want is None:
        raise LeanMqttError(f"unexpected packet from the broker: first byte 0x{b0:02x}")
    if rl != int(want):
        raise LeanMqttError(f"malformed {_CONTROL_NAMES[b0]}: remaining length {rl} != {want}")


# -- protocol ---------------------------------------------------------------------------


class _LeanProtocol(asyncio.Protocol):
    def __init__(self, client: LeanClient) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.client._transport = transport

    def data_received(self, data: bytes) -> None:
        self.client._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._on_lost(exc)


class LeanClient:
    """Minimal MQTT 3.1.1 client; use as ``async with LeanClient(...) as c:``.

    Received QoS 1 messages are never acknowledged automatically: call ``ack(mid)``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
        clean_session: bool = False,
        connect_timeout_s: float = 10.0,
        op_timeout_s: float = 10.0,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        if not 0 <= keepalive_s <= 0xFFFF:
            raise ValueError("keepalive_s must be in 0..65535")
        if password is not None and username is None:
            raise ValueError("MQTT 3.1.1 needs a user name to send a password")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.username = username
        self.password = password
        self.keepalive_s = keepalive_s
        self.clean_session = clean_session
        self.connect_timeout_s = connect_timeout_s
        self.op_timeout_s = op_timeout_s
        # Reading pauses at max_pending queued messages, unless a SUBACK/PUBACK is awaited.
        self.max_pending = max_pending
        self.session_present = False
        self.pings_sent = 0
        self._parser = PacketParser(max_packet_size)
        self._queue = self._parser.messages
        self._ready = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self._out = bytearray()
        self._flush_scheduled = False
        self._paused = False
        self._connack: asyncio.Future[bytes] | None = None
        self._waiting: dict[int, asyncio.Future[bytes]] = {}  # mid -> PUBACK/SUBACK body
        self._next_mid = 0
        self._error: LeanMqttError | None = None
        self._closed = False  # disconnect() was called
        self._keepalive_task: asyncio.Task[None] | None = None
        self._lost: asyncio.Future[None] | None = None  # set when the connection is gone
        self._last_rx = 0.0
        self._last_tx = 0.0

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> LeanClient:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.disconnect()

    async def connect(self) -> None:
        """Open the connection (a LeanClient connects once; make a new one to reconnect)."""
        if self._transport is not None or self._closed:
            raise LeanMqttError("a LeanClient connects only once: create a new one")
        loop = asyncio.get_running_loop()
        where = f"{self.host}:{self.port}"
        self._lost = loop.create_future()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await loop.create_connection(lambda: _LeanProtocol(self), self.host, self.port)
        except TimeoutError:
            raise LeanMqttError(
                f"cannot connect to {where}: timed out after {self.connect_timeout_s} s"
            ) from None
        except OSError as exc:
            raise LeanMqttError(f"cannot connect to {where}: {exc}") from exc
        self._last_rx = self._last_tx = loop.time()
        self._connack = loop.create_future()
        self._write(
            encode_connect(self.client_id, self.keepalive_s, self.clean_session, self.username, self.password)
        )
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                body = await self._connack
        except TimeoutError:
            self._abort(LeanMqttError(f"no CONNACK from {where} within {self.connect_timeout_s} s"))
            raise LeanMqttError(f"no CONNACK from {where} within {self.connect_timeout_s} s") from None
        except LeanMqttError:
            self._abort(None)
            raise
        rc = body[1]
        if rc:
            reason = CONNACK_REASONS.get(rc, f"unknown return code {rc}")
            self._abort(LeanMqttError(f"connection refused: {reason}"))
            raise LeanMqttError(f"connection refused by {where}: {reason} (return code {rc})")
        self.session_present = bool(body[0] & 1)
        if self.keepalive_s:
            self._keepalive_task = loop.create_task(self._keepalive())

    async def disconnect(self, timeout_s: float = 5.0) -> None:
        """Send DISCONNECT and close; the message iterator then ends. Idempotent.

        Waits (up to `timeout_s`) for the broker to close the connection, reading and
        dropping whatever still arrives: closing a socket with unread input sends a TCP
        RST, and the broker's kernel would then drop the PUBACKs it has not read yet."""
        if self._closed:
            return
        self._closed = True
        t = self._transport
        graceful = t is not None and not t.is_closing() and self._error is None
        if graceful and t is not None:
            self._out += _DISCONNECT
            self._flush()
            if self._paused:
                self._paused = False
                t.resume_reading()
        self._fail(LeanMqttError("disconnected"))
        if graceful and t is not None and self._lost is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(self._lost)
            except TimeoutError:
                t.abort()
        elif t is not None:
            t.close()
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive_task
            self._keepalive_task = None

    # -- operations ---------------------------------------------------------------------

    async def subscribe(self, topic_filter: str, qos: int = 1) -> int:
        """Subscribe (max QoS 1); returns the granted QoS. Raises on a 0x80 refusal."""
        if qos not in (0, 1):
            raise ValueError("only QoS 0 and 1 are supported")
        mid, fut = self._new_mid()
        self._write(encode_subscribe(mid, topic_filter, qos))
        body = await self._await(fut, mid, f"SUBACK for {topic_filter!r}")
        code = body[2]
        if code == 0x80:
            raise LeanMqttError(f"subscription to {topic_filter!r} refused by the broker")
        if code > 1:
            self._abort(LeanMqttError(f"SUBACK granted QoS {code}, asked for at most 1"))
            raise LeanMqttError(f"SUBACK granted QoS {code}, asked for at most 1")
        return code

    async def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        """QoS 0: written; QoS 1: returns once the broker's PUBACK arrived."""
        self._check_open()
        if qos == 0:
            self._write(encode_publish(topic, payload, 0, retain=retain))
            return
        if qos != 1:
            raise ValueError("only QoS 0 and 1 are supported")
        mid, fut = self._new_mid()
        self._write(encode_publish(topic, payload, 1, mid, retain=retain))
        await self._await(fut, mid, f"PUBACK for a message to {topic[:200]!r}")

    def ack(self, mid: int) -> None:
        """Send the PUBACK of a received QoS 1 message (no-op once the connection is gone:
        the broker then delivers the message again to the session)."""
        if not 1 <= mid <= 0xFFFF:
            raise ValueError(f"packet id {mid} out of range")
        self._write(bytes((PUBACK, 2, mid >> 8, mid & 0xFF)))

    def pending(self) -> int:
        """Messages received and not yet taken from messages()."""
        return len(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._error is None and not self._closed

    async def messages(self) -> AsyncIterator[LeanMessage]:
        """Received messages in arrival order. Ends after disconnect(); raises LeanMqttError
        when the connection is lost (messages still queued then are dropped: they cannot
        be acknowledged any more, so the broker delivers them again)."""
        q = self._queue
        ready = self._ready
        while True:
            while q and self._error is None:
                yield q.popleft()
            if self._error is not None:
                if self._closed:
                    return
                raise LeanMqttError(str(self._error))
            if self._paused:
                self._paused = False
                if self._transport is not None:
                    self._transport.resume_reading()
            ready.clear()
            await ready.wait()

    # -- internals ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._error is not None:
            raise LeanMqttError(str(self._error))
        if self._transport is None:
            raise LeanMqttError("not connected")

    def _new_mid(self) -> tuple[int, asyncio.Future[bytes]]:
        self._check_open()
        if len(self._waiting) >= 0xFFFF:
            raise LeanMqttError("no free packet id: 65535 operations in flight")
        mid = self._next_mid
        while True:
            mid = mid % 0xFFFF + 1
            if mid not in self._waiting:
                break
        self._next_mid = mid
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[mid] = fut
        if self._paused and self._transport is not None:
            # The answer may be queued behind unread messages: read on, whatever the backlog.
            self._paused = False
            self._transport.resume_reading()
        return mid, fut

    async def _await(self, fut: asyncio.Future[bytes], mid: int, what: str) -> bytes:
        try:
            async with asyncio.timeout(self.op_timeout_s):
                return await fut
        except TimeoutError:
            raise LeanMqttError(f"no {what} within {self.op_timeout_s} s") from None
        finally:
            if self._waiting.get(mid) is fut:
                del self._waiting[mid]

    def _write(self, data: bytes) -> None:
        t = self._transport
        if t is None or self._error is not None or t.is_closing():
            return
        self._out += data
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        t = self._transport
        if not self._out or t is None or t.is_closing():
            self._out.clear()
            return
        t.write(bytes(self._out))
        self._out.clear()
        self._last_tx = asyncio.get_running_loop().time()

    def _on_data(self, data: bytes) -> None:
        if self._closed:
            return  # after DISCONNECT: drained and dropped (the broker redelivers unacked ones)
        try:
            control = self._parser.feed(data)
        except LeanMqttError as exc:
            self._abort(LeanMqttError(f"protocol error: {exc}"))
            return
        self._last_rx = asyncio.get_running_loop().time()
        for b0, body in control:
            if b0 in (PUBACK, SUBACK):
                mid = body[0] << 8 | body[1]
                fut = self._waiting.pop(mid, None)
                if fut is not None and not fut.done():
                    fut.set_result(body)
            elif b0 == CONNACK:
                c = self._connack
                if c is None or c.done():
                    self._abort(LeanMqttError("protocol error: unexpected CONNACK"))
                    return
                c.set_result(body)
            # PINGRESP / UNSUBACK: the traffic itself is what counts (_last_rx).
        if self._queue:
            if not self._ready.is_set():
                self._ready.set()
            if (
                len(self._queue) >= self.max_pending
                and not self._paused
                and not self._waiting  # a SUBACK/PUBACK may be behind the messages
                and self._transport is not None
            ):
                self._paused = True
                self._transport.pause_reading()

    def _on_lost(self, exc: Exception | None) -> None:
        why = f"connection lost: {exc}" if exc else "connection lost: closed by the broker"
        self._fail(LeanMqttError(why))
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def _fail(self, err: LeanMqttError) -> None:
        """Record the first error, wake the iterator, fail every waiting operation."""
        if self._error is None:
            self._error = err
        self._queue.clear()
        self._ready.set()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(LeanMqttError(str(self._error)))
        waiting = list(self._waiting.values())
        self._waiting.clear()
        for fut in waiting:
            if not fut.done():
                fut.set_exception(LeanMqttError(str(self._error)))

    def _abort(self, err: LeanMqttError | None) -> None:
        if err is not None:
            self._fail(err)
        if self._transport is not None:
            self._transport.abort()

    async def _keepalive(self) -> None:
        ka = float(self.keepalive_s)
        loop = asyncio.get_running_loop()
        step = max(0.05, ka / 4)
        while self._error is None:
            await asyncio.sleep(step)
            now = loop.time()
            if self._paused:  # not reading: silence is ours, not the broker's
                self._last_rx = now
                continue
            silent_rx = now - self._last_rx
            if silent_rx > ka * 1.5:
                self._abort(LeanMqttError(f"connection lost: nothing from the broker for {silent_rx:.1f} s"))
                return
            if now - self._last_tx >= ka / 2 or silent_rx >= ka / 2:
                self.pings_sent += 1
                self._write(_PINGREQ)
