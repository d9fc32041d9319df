"""The probe's tests, each returning metric values named as in docs/payload-v1.md.

Definitions (docs/probe-agent.md repeats them for the people reading the numbers):

* ``rtt_ms``: the **mean** RTT of the replies of one test (ICMP echo or TCP connect), like
  the ``avg`` of ping(8) and the average delay of QCVN 81. The server computes
  percentiles over many tests, so one test's mean keeps every reply's weight.
* ``loss_ratio``: (sent - answered in time) / sent. A reply later than ``timeout_s``
  after its request counts as lost; a refused TCP connection counts as lost.
* ``jitter_ms``: the mean absolute difference of consecutive RTTs, |R(i) - R(i-1)|,
  over the answered probes in send order: RFC 3550's interarrival jitter without its
  1/16 smoothing (IPDV, RFC 5481), which a test of 5-20 probes is too short for.
  Needs two replies; absent otherwise.
* ``dl_bps`` / ``ul_bps``: bytes x 8 / seconds of the transfer. Download: from the
  response headers to the last byte read (connection set-up and server think time
  excluded); upload: from the first body byte handed to the connection to the server's
  response (which comes once it has read everything).
* ``dns_ms``: the **median** time of the answered lookups of one test (a cold first
  lookup does not drag the value when count > 1).
* ``access_time_ms``: a GET on a fresh connection, from the start (DNS, TCP, TLS
  included) to the response headers (the first bytes); ``access_failed`` is 1 when no
  response came in ``timeout_s`` or its status was >= 400.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import httpx

from probes.agent import compat, icmp
from probes.agent.config import (
    DnsSpec,
    HttpDownloadSpec,
    HttpUploadSpec,
    IcmpSpec,
    MeasurementSpec,
    ServiceAccessSpec,
    TcpSpec,
)

Metrics = dict[str, float]
EchoFunc = Callable[..., Awaitable[icmp.EchoResult]]

_UPLOAD_BLOCK = 1 << 20  # random, and larger than any compressor's window: nothing to squeeze
_upload_block: bytes | None = None


class MeasurementError(Exception):
    """The test produced no value at all (no response, name not resolved, ...)."""


# --- the statistics ------------------------------------------------------------------


def loss_ratio(sent: int, received: int) -> float:
    """Lost / sent, in [0, 1]; `sent` must be positive."""
    if sent <= 0:
        raise ValueError("sent must be > 0")
    return min(1.0, max(0.0, (sent - received) / sent))


def jitter_ms(rtts_ms: Sequence[float]) -> float | None:
    """Mean absolute difference of consecutive RTTs (send order); None with fewer than two."""
    if len(rtts_ms) < 2:
        return None
    return sum(abs(b - a) for a, b in compat.pairwise(rtts_ms)) / (len(rtts_ms) - 1)


def summarize_rtts(sent: int, rtts_ms: Sequence[float]) -> Metrics:
    """rtt_ms (mean), loss_ratio and jitter_ms of one test of `sent` probes.

    `rtts_ms` holds the answered probes' RTTs in send order. With no answer only
    loss_ratio (1.0) is given: an RTT of a test that got nothing back does not exist.
    """
    out: Metrics = {"loss_ratio": round(loss_ratio(sent, len(rtts_ms)), 6)}
    if rtts_ms:
        out["rtt_ms"] = round(statistics.fmean(rtts_ms), 3)
    jitter = jitter_ms(rtts_ms)
    if jitter is not None:
        out["jitter_ms"] = round(jitter, 3)
    return out


def throughput_bps(n_bytes: int, seconds: float) -> float:
    """bytes x 8 / seconds, as an integer-valued float."""
    if seconds <= 0:
        raise MeasurementError("transfer took no measurable time")
    return float(round(n_bytes * 8 / seconds))


# --- ICMP and TCP ----------------------------------------------------------------------


async def icmp_test(spec: IcmpSpec, *, echo: EchoFunc = icmp.echo) -> Metrics:
    """ICMP echo test: rtt_ms, loss_ratio, jitter_ms."""
    try:
        result = await echo(
            spec.target,
            count=spec.count,
            timeout_s=spec.timeout_s,
            spacing_s=spec.spacing_s,
            method=spec.method,
        )
    except OSError as exc:  # the name does not resolve, ping failed to run
        raise MeasurementError(f"icmp {spec.target}: {exc}") from exc
    return summarize_rtts(result.sent, result.rtts_ms)


async def tcp_connect(host: str, port: int, *, count: int, timeout_s: float, spacing_s: float) -> Metrics:
    """`count` TCP connects to host:port: rtt_ms (SYN to SYN-ACK seen), loss_ratio, jitter_ms.

    The name is resolved once, before the first try, so DNS time is not in the RTT.
    """
    loop = asyncio.get_running_loop()
    try:
        async with compat.timeout(timeout_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        raise MeasurementError(f"tcp {host}: cannot resolve: {exc}") from exc
    family, _type, proto, _canon, addr = infos[0]
    rtts: list[float] = []
    for i in range(count):
        if i:
            await asyncio.sleep(spacing_s)
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
        sock.setblocking(False)
        try:
            t0 = time.perf_counter_ns()
            async with compat.timeout(timeout_s):
                await loop.sock_connect(sock, addr)
            rtts.append((time.perf_counter_ns() - t0) / 1e6)
        except (OSError, TimeoutError):
            pass  # refused, unreachable or no answer in time: lost
        finally:
            sock.close()
    return summarize_rtts(count, rtts)


# --- DNS -------------------------------------------------------------------------------


def dns_query(name: str, qid: int, qtype: int = 1) -> bytes:
    """A DNS query message (RD set) for `name`, type A by default."""
    labels = name.rstrip(".").encode("idna").split(b".")
    if not all(0 < len(label) < 64 for label in labels):
        raise ValueError(f"not a valid DNS name: {name!r}")
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)


class _DnsClient(asyncio.DatagramProtocol):
    def __init__(self, qid: int) -> None:
        self.qid = qid
        self.answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        if len(data) < 12 or self.answer.done():
            return
        qid, flags = struct.unpack_from("!HH", data)
        if qid == self.qid and flags & 0x8000:  # our id, and a response
            self.answer.set_result(flags & 0x000F)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


def _split_resolver(resolver: str) -> tuple[str, int]:
    if resolver.count(":") == 1:
        host, port = resolver.split(":")
        return host, int(port)
    return resolver, 53


async def _udp_lookup(name: str, resolver: str, timeout_s: float) -> float:
    loop = asyncio.get_running_loop()
    host, port = _split_resolver(resolver)
    qid = random.randrange(0x10000)
    message = dns_query(name, qid)
    transport, proto = await loop.create_datagram_endpoint(lambda: _DnsClient(qid), remote_addr=(host, port))
    try:
        t0 = time.perf_counter_ns()
        transport.sendto(message)
        async with compat.timeout(timeout_s):
            rcode = await proto.answer
        elapsed = (time.perf_counter_ns() - t0) / 1e6
    finally:
        transport.close()
    # NOERROR and NXDOMAIN are answers; SERVFAIL, REFUSED... are the resolver failing.
    if rcode not in (0, 3):
        raise MeasurementError(f"dns {name}@{resolver}: rcode {rcode}")
    return elapsed


async def _system_lookup(name: str, timeout_s: float) -> float:
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter_ns()
    async with compat.timeout(timeout_s):
        await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return (time.perf_counter_ns() - t0) / 1e6


async def dns_lookup(
    name: str, *, resolver: str | None, count: int, timeout_s: float, spacing_s: float
) -> Metrics:
    """Resolve `name` `count` times: dns_ms, the median of the answered lookups.

    With `resolver` ("host" or "host:port") a type-A query goes over UDP to it, timing one
    request/response exchange; without, the system resolver (getaddrinfo) is timed, as
    an application on this box would see it (caches included).
    """
    times: list[float] = []
    errors: list[str] = []
    for i in range(count):
        if i:
            await asyncio.sleep(spacing_s)
        try:
            if resolver is None:
                times.append(await _system_lookup(name, timeout_s))
            else:
                times.append(await _udp_lookup(name, resolver, timeout_s))
        except (OSError, TimeoutError, MeasurementError, ValueError) as exc:
            errors.append(str(exc) or type(exc).__name__)
    if not times:
        raise MeasurementError(f"dns {name}: no answer ({'; '.join(errors[:3])})")
    return {"dns_ms": round(statistics.median(times), 3)}


# --- HTTP ------------------------------------------------------------------------------

_NO_CACHE = {"Cache-Control": "no-cache", "Accept-Encoding": "identity", "User-Agent": "netqos-probe/1"}


class ByteTally:
    """Bytes a throughput test moved, counted as they go (a failed transfer's too): the data budget."""

    def __init__(self) -> None:
        self.n = 0


async def http_download(
    url: str, *, max_bytes: int | None, timeout_s: float, verify: bool = True, tally: ByteTally | None = None
) -> Metrics:
    """GET `url` and time the body: dl_bps.

    Reads to the end, to `max_bytes`, or for at most `timeout_s` after the headers, which
    ever comes first; the rate is over what was read (a fixed-duration test when the
    file is larger than the link can carry in `timeout_s`).
    """
    n = 0
    async with httpx.AsyncClient(timeout=timeout_s, verify=verify, headers=_NO_CACHE) as client:
        try:
            async with client.stream("GET", url) as resp:
                t_first = time.perf_counter()
                if resp.status_code >= 400:
                    raise MeasurementError(f"download {url}: HTTP {resp.status_code}")
                try:
                    async with compat.timeout(timeout_s):
                        async for chunk in resp.aiter_raw():
                            n += len(chunk)
                            if tally is not None:
                                tally.n += len(chunk)
                            if max_bytes is not None and n >= max_bytes:
                                break
                except (TimeoutError, httpx.TimeoutException):
                    pass  # the time budget is spent: rate over what came in
                t_end = time.perf_counter()
        except httpx.HTTPError as exc:
            raise MeasurementError(f"download {url}: {type(exc).__name__}: {exc}") from exc
    if n == 0:
        raise MeasurementError(f"download {url}: empty body")
    return {"dl_bps": throughput_bps(n, t_end - t_first)}


def _random_block() -> bytes:
    global _upload_block
    if _upload_block is None:
        _upload_block = os.urandom(_UPLOAD_BLOCK)
    return _upload_block


async def http_upload(
    url: str, *, size: int, timeout_s: float, verify: bool = True, tally: ByteTally | None = None
) -> Metrics:
    """POST `size` random bytes to `url`: ul_bps, from the first body byte to the response.

    The body must be taken whole within `timeout_s`, or the test fails (no partial rate:
    what sits in socket buffers has not crossed the link).
    """
    block = _random_block()
    started: list[float] = []

    async def body() -> AsyncIterator[bytes]:
        # Called once the connection is up: the clock starts at the first byte handed over.
        started.append(time.perf_counter())
        left = size
        chunk = 64 * 1024
        offset = 0
        while left > 0:
            take = min(chunk, left, _UPLOAD_BLOCK - offset)
            if tally is not None:
                tally.n += take  # handed to the connection: counted as sent
            yield block[offset : offset + take]
            left -= take
            offset = (offset + take) % _UPLOAD_BLOCK

    headers = {**_NO_CACHE, "Content-Type": "application/octet-stream", "Content-Length": str(size)}
    async with httpx.AsyncClient(timeout=timeout_s, verify=verify) as client:
        try:
            async with compat.timeout(timeout_s):
                resp = await client.post(url, content=body(), headers=headers)
                t_end = time.perf_counter()
        except (httpx.HTTPError, TimeoutError) as exc:
            raise MeasurementError(f"upload {url}: {type(exc).__name__}: {exc}") from exc
    if resp.status_code >= 400:
        raise MeasurementError(f"upload {url}: HTTP {resp.status_code}")
    if not started:
        raise MeasurementError(f"upload {url}: body never sent")
    return {"ul_bps": throughput_bps(size, t_end - started[0])}


async def service_access(url: str, *, timeout_s: float, verify: bool = True) -> Metrics:
    """GET `url` on a fresh connection: access_time_ms and access_failed (0), or access_failed (1).

    Redirects are not followed: a 3xx is the service answering.
    """
    t0 = time.perf_counter()
    try:
        # Nested, not a parenthesised `async with (...)`: that form is Python 3.10+.
        async with compat.timeout(timeout_s):  # noqa: SIM117 (see above)
            async with httpx.AsyncClient(timeout=timeout_s, verify=verify, headers=_NO_CACHE) as client:
                async with client.stream("GET", url) as resp:
                    elapsed_ms = (time.perf_counter() - t0) * 1000
                    status = resp.status_code
    except (httpx.HTTPError, OSError, TimeoutError):
        return {"access_failed": 1}
    if status >= 400:
        return {"access_failed": 1}
    return {"access_time_ms": round(elapsed_ms, 3), "access_failed": 0}


# --- dispatch --------------------------------------------------------------------------


async def run_spec(
    spec: MeasurementSpec, *, echo: EchoFunc = icmp.echo, tally: ByteTally | None = None
) -> Metrics:
    """Run one configured test once; its metrics, or MeasurementError when it yields none.

    `tally` counts the bytes a throughput test moves (http_download, http_upload).

    icmp.IcmpUnavailable propagates: it is a property of the host, not of one run.
    """
    if isinstance(spec, IcmpSpec):
        return await icmp_test(spec, echo=echo)
    if isinstance(spec, TcpSpec):
        return await tcp_connect(
            spec.target, spec.port, count=spec.count, timeout_s=spec.timeout_s, spacing_s=spec.spacing_s
        )
    if isinstance(spec, DnsSpec):
        return await dns_lookup(
            spec.target,
            resolver=spec.resolver,
            count=spec.count,
            timeout_s=spec.timeout_s,
            spacing_s=spec.spacing_s,
        )
    if isinstance(spec, HttpDownloadSpec):
        return await http_download(
            spec.url, max_bytes=spec.bytes, timeout_s=spec.timeout_s, verify=spec.verify_tls, tally=tally
        )
    if isinstance(spec, HttpUploadSpec):
        return await http_upload(
            spec.url, size=spec.bytes, timeout_s=spec.timeout_s, verify=spec.verify_tls, tally=tally
        )
    if isinstance(spec, ServiceAccessSpec):
        return await service_access(spec.url, timeout_s=spec.timeout_s, verify=spec.verify_tls)
    raise TypeError(f"unknown test spec {type(spec).__name__}")
