"""The agent's tests against real local servers and the real kernel, on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from probes.agent import icmp, measure
from probes.agent.config import IcmpSpec
from tests.conftest import LOOPBACK, free_port
from tests.integration.test_probe_agent_support import local_http, start_dns, start_tcp_listener

REPO = Path(__file__).resolve().parents[2]


# --- ICMP -------------------------------------------------------------------------------


def _can_open(kind: str) -> bool:
    try:
        icmp.open_socket(kind).close()  # type: ignore[arg-type]
    except PermissionError:
        return False
    return True


async def test_icmp_auto_method_measures_loopback() -> None:
    # Root here: "auto" gets dgram where ping_group_range allows it, else raw.
    result = await icmp.echo(LOOPBACK, count=5, timeout_s=1.0, spacing_s=0.01)
    assert result.sent == 5 and len(result.rtts_ms) == 5
    assert result.method in ("dgram", "raw")
    assert all(0 < r < 100 for r in result.rtts_ms)
    m = measure.summarize_rtts(result.sent, result.rtts_ms)
    assert m["loss_ratio"] == 0.0 and m["rtt_ms"] > 0 and m["jitter_ms"] >= 0


async def test_icmp_raw_socket_matches_only_its_own_replies() -> None:
    assert _can_open("raw"), "these tests run as root: a raw ICMP socket must be allowed"
    # Two tests at once: each raw socket sees the other's replies and must ignore them.
    a, b = await asyncio.gather(
        icmp.echo(LOOPBACK, count=8, timeout_s=1.0, spacing_s=0.005, method="raw"),
        icmp.echo(LOOPBACK, count=8, timeout_s=1.0, spacing_s=0.005, method="raw"),
    )
    assert len(a.rtts_ms) == 8 and len(b.rtts_ms) == 8


def test_icmp_datagram_socket_in_own_network_namespace(tmp_path: Path) -> None:
    """The unprivileged path: a user+network namespace where ping_group_range includes us."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "unshare (util-linux) is needed for this test"
    script = tmp_path / "dgram.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, fcntl, json, socket, struct, sys
            sys.path.insert(0, {str(REPO)!r})
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # SIOCSIFFLAGS: bring lo up (IFF_UP | IFF_LOOPBACK | IFF_RUNNING) in the new namespace.
            fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", 0x1 | 0x8 | 0x40))
            with open("/proc/sys/net/ipv4/ping_group_range", "w") as f:
                f.write("0 0")
            from probes.agent import icmp
            r = asyncio.run(icmp.echo("127.0.0.1", count=4, timeout_s=1.0, spacing_s=0.01, method="dgram"))
            print(json.dumps({{"sent": r.sent, "rtts": r.rtts_ms, "method": r.method}}))
            """
        )
    )
    proc = subprocess.run(
        [unshare, "-rn", sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["method"] == "dgram" and out["sent"] == 4 and len(out["rtts"]) == 4


IPUTILS_OUTPUT = """\
PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.
64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=10.0 ms
64 bytes from 127.0.0.1: icmp_seq=3 ttl=64 time=14.0 ms
64 bytes from 127.0.0.1: icmp_seq=3 ttl=64 time=15.0 ms (DUP!)
64 bytes from 127.0.0.1: icmp_seq=4 ttl=64 time=11.0 ms

--- 127.0.0.1 ping statistics ---
4 packets transmitted, 3 received, +1 duplicates, 25% packet loss, time 3004ms
rtt min/avg/max/mdev = 10.0/11.7/14.0/1.7 ms
"""


async def test_icmp_falls_back_to_the_ping_binary(tmp_path: Path) -> None:
    fake = tmp_path / "ping"
    args_file = tmp_path / "args"
    out_file = tmp_path / "out"
    out_file.write_text(IPUTILS_OUTPUT)
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {args_file}\ncat {out_file}\nexit 1\n")
    fake.chmod(0o755)
    result = await icmp.echo(
        LOOPBACK, count=4, timeout_s=2.0, spacing_s=0.5, method="ping", ping_binary=str(fake)
    )
    assert result.method == "ping" and result.sent == 4
    assert result.rtts_ms == (10.0, 14.0, 11.0)  # the DUP! ignored, seq 2 lost
    assert args_file.read_text().split() == ["-n", "-c", "4", "-W", "2", "-i", "0.5", LOOPBACK]
    m = measure.summarize_rtts(result.sent, result.rtts_ms)
    assert m == {"loss_ratio": 0.25, "rtt_ms": 11.667, "jitter_ms": 3.5}


async def test_icmp_test_through_run_spec_with_injected_echo() -> None:
    async def echo(host: str, **kw: object) -> icmp.EchoResult:
        return icmp.EchoResult(sent=10, rtts_ms=(), method="fake")

    spec = IcmpSpec(kind="icmp", target=LOOPBACK, count=10)
    assert await measure.run_spec(spec, echo=echo) == {"loss_ratio": 1.0}


# --- TCP --------------------------------------------------------------------------------


async def test_tcp_connect_to_a_listener() -> None:
    server, port = await start_tcp_listener()
    async with server:
        m = await measure.tcp_connect(LOOPBACK, port, count=5, timeout_s=1.0, spacing_s=0.0)
    assert m["loss_ratio"] == 0.0 and 0 < m["rtt_ms"] < 100 and "jitter_ms" in m


async def test_tcp_connect_refused_is_all_lost() -> None:
    port = free_port()  # nothing listens there
    m = await measure.tcp_connect(LOOPBACK, port, count=3, timeout_s=1.0, spacing_s=0.0)
    assert m == {"loss_ratio": 1.0}


# --- DNS --------------------------------------------------------------------------------


async def test_dns_over_udp_to_a_local_responder() -> None:
    transport, proto, port = await start_dns()
    try:
        m = await measure.dns_lookup(
            "www.example.vn", resolver=f"{LOOPBACK}:{port}", count=3, timeout_s=1.0, spacing_s=0.0
        )
        assert 0 < m["dns_ms"] < 1000
        assert proto.queries == ["www.example.vn"] * 3
        # NXDOMAIN is an answer (the resolver worked); SERVFAIL and silence are failures.
        nx = await measure.dns_lookup(
            "nx.example.vn", resolver=f"{LOOPBACK}:{port}", count=1, timeout_s=1.0, spacing_s=0
        )
        assert nx["dns_ms"] > 0
        for name in ("fail.example.vn", "silent.example.vn"):
            with pytest.raises(measure.MeasurementError):
                await measure.dns_lookup(
                    name, resolver=f"{LOOPBACK}:{port}", count=2, timeout_s=0.3, spacing_s=0
                )
    finally:
        transport.close()


async def test_dns_system_resolver_resolves_localhost() -> None:
    m = await measure.dns_lookup("localhost", resolver=None, count=2, timeout_s=5.0, spacing_s=0.0)
    assert m["dns_ms"] >= 0


# --- HTTP -------------------------------------------------------------------------------


async def test_http_download_throughput() -> None:
    with local_http() as srv:
        m = await measure.http_download(f"{srv.url}/bytes/{8 << 20}", max_bytes=None, timeout_s=30)
        capped = await measure.http_download(f"{srv.url}/bytes/{64 << 20}", max_bytes=1 << 20, timeout_s=30)
    assert m["dl_bps"] > 1e6 and m["dl_bps"] == int(m["dl_bps"])
    assert capped["dl_bps"] > 1e6


async def test_http_download_of_a_missing_file_fails() -> None:
    with local_http() as srv, pytest.raises(measure.MeasurementError, match="HTTP 404"):
        await measure.http_download(f"{srv.url}/status/404", max_bytes=None, timeout_s=5)


async def test_http_upload_sends_exactly_the_bytes() -> None:
    with local_http() as srv:
        size = 3 * (1 << 20) + 12345
        m = await measure.http_upload(f"{srv.url}/upload", size=size, timeout_s=30)
        assert srv.state.uploads == [size]
    assert m["ul_bps"] > 1e6


async def test_service_access_time_and_failures() -> None:
    with local_http() as srv:
        ok = await measure.service_access(f"{srv.url}/", timeout_s=5)
        redirect = await measure.service_access(f"{srv.url}/status/302", timeout_s=5)
        broken = await measure.service_access(f"{srv.url}/status/503", timeout_s=5)
        slow = await measure.service_access(f"{srv.url}/slow/2", timeout_s=0.3)
    assert ok["access_failed"] == 0 and 0 < ok["access_time_ms"] < 5000
    assert redirect["access_failed"] == 0
    assert broken == {"access_failed": 1}
    assert slow == {"access_failed": 1}
    refused = await measure.service_access(f"http://{LOOPBACK}:{free_port()}/", timeout_s=2)
    assert refused == {"access_failed": 1}
