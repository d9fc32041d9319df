"""ICMP echo (IPv4) without privileges where the kernel allows it.

Three ways, tried in this order by ``method="auto"``:

1. ``dgram``: an unprivileged ICMP datagram socket, ``socket(AF_INET, SOCK_DGRAM,
   IPPROTO_ICMP)``. Allowed when the process's group is inside the sysctl
   ``net.ipv4.ping_group_range``; the kernel picks the echo identifier and hands this
   socket only its own replies.
2. ``raw``: a raw ICMP socket, for a root process (or one with CAP_NET_RAW) on a kernel
   whose ping_group_range excludes it (Debian's default ``1 0`` excludes everyone). It
   sees every ICMP packet of the host, so replies are matched on identifier and source.
3. ``ping``: the system ``ping`` binary (setuid or file capabilities), its per-reply
   lines parsed. Slower to start and coarser (its own timing), but works anywhere.

The sockets time replies with kernel receive timestamps (SO_TIMESTAMPNS) when they are
available, so a busy event loop (a concurrent download test) does not inflate RTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import shutil
import socket
import struct
import time
from dataclasses import dataclass
from typing import Literal

from probes.agent import compat

log = logging.getLogger(__name__)

Method = Literal["auto", "dgram", "raw", "ping"]

_ECHO_REQUEST = 8
_ECHO_REPLY = 0
_PAYLOAD = bytes(range(48))  # 56-byte echo like ping(8): 8 header + 48 payload
# Linux values; the socket module does not always export them.
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_SCM_TIMESTAMPNS = _SO_TIMESTAMPNS
_TIMESPEC = struct.Struct("@qq")


class IcmpUnavailable(RuntimeError):
    """No way to send ICMP echo on this host (no permission, no ping binary)."""


@dataclass(frozen=True)
class EchoResult:
    """What one ICMP test saw: echoes sent, and the RTTs (ms) of the replies in send order."""

    sent: int
    rtts_ms: tuple[float, ...]
    method: str


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = _PAYLOAD) -> bytes:
    """An ICMP echo request packet with a valid checksum."""
    header = struct.pack("!BBHHH", _ECHO_REQUEST, 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    csum = checksum(header + payload)
    return struct.pack("!BBHHH", _ECHO_REQUEST, 0, csum, ident & 0xFFFF, seq & 0xFFFF) + payload


def open_socket(kind: Literal["dgram", "raw"]) -> socket.socket:
    """An ICMP socket of that kind; PermissionError when this process may not have one."""
    sock_type = socket.SOCK_DGRAM if kind == "dgram" else socket.SOCK_RAW
    sock = socket.socket(socket.AF_INET, sock_type, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    return sock


async def _resolve4(host: str) -> str:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"no IPv4 address for {host!r}")
    return str(infos[0][4][0])


async def _echo_socket(
    sock: socket.socket, ip: str, *, raw: bool, count: int, timeout_s: float, spacing_s: float
) -> dict[int, float]:
    """Send `count` echoes to `ip` on `sock`; RTT (ms) by sequence number of each reply in time."""
    loop = asyncio.get_running_loop()
    # dgram: the kernel rewrites the identifier and filters replies for us. raw: ours to match.
    ident = random.randrange(1, 0xFFFF) if raw else 0
    seq_base = random.randrange(0, 0xFFFF)
    sent_at: dict[int, tuple[int, int]] = {}  # wire seq -> (realtime ns, perf ns) at send
    rtts: dict[int, float] = {}  # index -> ms
    all_in = asyncio.Event()

    def on_readable() -> None:
        while True:
            try:
                data, anc, _flags, addr = sock.recvmsg(2048, socket.CMSG_SPACE(_TIMESPEC.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # An ICMP error (unreachable...) queued on a dgram socket: that echo is lost.
                continue
            now_perf = time.perf_counter_ns()
            if raw:
                if addr[0] != ip or len(data) < 20:
                    continue
                data = data[(data[0] & 0x0F) * 4 :]  # skip the IP header
            if len(data) < 8:
                continue
            icmp_type, _code, _csum, r_ident, r_seq = struct.unpack_from("!BBHHH", data)
            if icmp_type != _ECHO_REPLY or (raw and r_ident != ident) or r_seq not in sent_at:
                continue
            index = (r_seq - seq_base) & 0xFFFF
            if index in rtts:
                continue  # a duplicate reply
            t_real, t_perf = sent_at[r_seq]
            rtt_ns = now_perf - t_perf
            for level, ctype, cdata in anc:
                if level == socket.SOL_SOCKET and ctype == _SCM_TIMESTAMPNS and len(cdata) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(cdata)
                    kernel_ns = sec * 1_000_000_000 + nsec - t_real
                    # The kernel stamp is wall-clock time: trust it unless the clock stepped.
                    if 0 <= kernel_ns <= rtt_ns:
                        rtt_ns = kernel_ns
            if rtt_ns > timeout_s * 1e9:
                continue  # arrived after its deadline: counted as lost, like ping -W
            rtts[index] = rtt_ns / 1e6
            if len(rtts) == count:
                all_in.set()

    loop.add_reader(sock.fileno(), on_readable)
    try:
        for i in range(count):
            if i:
                await asyncio.sleep(spacing_s)
            wire_seq = (seq_base + i) & 0xFFFF
            packet = echo_request(ident, wire_seq)
            sent_at[wire_seq] = (time.time_ns(), time.perf_counter_ns())
            try:
                await loop.sock_sendto(sock, packet, (ip, 0))
            except OSError as exc:
                # Network unreachable and the like: this echo is lost, the test goes on.
                log.debug("event=icmp_send_failed ip=%s error=%r", ip, str(exc))
        # Wait for the last echo's deadline, or less when every reply is already in.
        with contextlib.suppress(TimeoutError):
            async with compat.timeout(timeout_s):
                await all_in.wait()
    finally:
        loop.remove_reader(sock.fileno())
    return rtts


_PING_LINE = re.compile(r"(?:icmp_seq|seq)=(\d+)\b.*?\btime[=<]\s*([\d.]+)\s*ms")


def parse_ping_output(text: str) -> dict[int, float]:
    """RTT (ms) by sequence number from ping's per-reply lines (iputils and busybox).

    Duplicate replies (``DUP!``) are ignored; the summary lines are not needed.
    """
    out: dict[int, float] = {}
    for line in text.splitlines():
        m = _PING_LINE.search(line)
        if m is None or "DUP!" in line:
            continue
        seq = int(m.group(1))
        out.setdefault(seq, float(m.group(2)))
    return out


async def _echo_ping(
    ip: str, *, count: int, timeout_s: float, spacing_s: float, ping: str
) -> dict[int, float]:
    args = [ping, "-n", "-c", str(count), "-W", str(max(1, round(timeout_s)))]
    if abs(spacing_s - 1.0) > 1e-9:
        args += ["-i", f"{spacing_s:g}"]
    args.append(ip)
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LC_ALL": "C"},
    )
    try:
        async with compat.timeout(count * spacing_s + timeout_s + 5):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    # ping exits 1 when replies are missing: that is loss, not an error. 2+ is an error.
    if proc.returncode not in (0, 1) and not out:
        raise OSError(f"{ping} failed ({proc.returncode}): {err.decode(errors='replace').strip()[:200]}")
    return parse_ping_output(out.decode(errors="replace"))


def _ping_binary() -> str | None:
    return shutil.which("ping") or next(
        (p for p in ("/bin/ping", "/usr/bin/ping", "/sbin/ping") if os.access(p, os.X_OK)), None
    )


async def echo(
    host: str,
    *,
    count: int,
    timeout_s: float,
    spacing_s: float,
    method: Method = "auto",
    ping_binary: str | None = None,
) -> EchoResult:
    """Send `count` ICMP echoes to `host` (IPv4), `spacing_s` apart, and collect the replies.

    A reply counts when it arrives within `timeout_s` of its request. Raises
    IcmpUnavailable when no method is allowed here, OSError when `host` does not resolve.
    """
    ip = await _resolve4(host)
    tried: list[str] = []
    if method in ("auto", "dgram", "raw"):
        kinds: tuple[Literal["dgram", "raw"], ...] = ("dgram", "raw") if method == "auto" else (method,)
        for kind in kinds:
            try:
                sock = open_socket(kind)
            except PermissionError as exc:
                tried.append(f"{kind}: {exc.strerror}")
                continue
            with sock:
                by_index = await _echo_socket(
                    sock, ip, raw=kind == "raw", count=count, timeout_s=timeout_s, spacing_s=spacing_s
                )
            return EchoResult(count, tuple(by_index[i] for i in sorted(by_index)), kind)
    if method in ("auto", "ping"):
        binary = ping_binary or _ping_binary()
        if binary is not None:
            by_seq = await _echo_ping(ip, count=count, timeout_s=timeout_s, spacing_s=spacing_s, ping=binary)
            return EchoResult(count, tuple(by_seq[s] for s in sorted(by_seq)), "ping")
        tried.append("ping: no ping binary")
    raise IcmpUnavailable(
        "no ICMP method works here ("
        + "; ".join(tried)
        + "): widen net.ipv4.ping_group_range, run as root, or install ping"
    )
