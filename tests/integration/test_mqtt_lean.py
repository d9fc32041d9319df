"""collector.mqtt.lean against a real mosquitto on 127.0.0.1 (own broker, unlimited in-flight)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.mqtt.lean import LeanClient, LeanMessage, LeanMqttError
from tests.conftest import LOOPBACK, Broker, free_port, start_mosquitto, terminate

MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"


def start_broker(d: Path) -> tuple[subprocess.Popen[bytes], Broker]:
    # Unlimited in-flight: these tests drain large queues without acking as they go.
    return start_mosquitto(d, max_inflight=0)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    proc, b = start_broker(tmp_path_factory.mktemp("lean-mosquitto"))
    try:
        yield b
    finally:
        terminate(proc)


def pub_lines(b: Broker, topic: str, lines: list[bytes], qos: int = 1, timeout_s: float = 60) -> None:
    """Publish each line as one message with mosquitto_pub -l (in order, all PUBACKs awaited)."""
    res = subprocess.run(
        [MOSQUITTO_PUB, "-h", b.host, "-p", str(b.port), "-q", str(qos), "-t", topic, "-l"],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    assert res.returncode == 0, res.stderr.decode(errors="replace")


async def take(c: LeanClient, n: int, timeout_s: float, ack: bool = True) -> list[LeanMessage]:
    out: list[LeanMessage] = []
    if n == 0:
        return out
    async with asyncio.timeout(timeout_s):
        async for m in c.messages():
            out.append(m)
            if ack and m.qos:
                c.ack(m.mid)
            if len(out) >= n:
                break
    return out


def client(b: Broker, cid: str, **kw: object) -> LeanClient:
    return LeanClient(b.host, b.port, client_id=cid, **kw)  # type: ignore[arg-type]


async def test_receive_10000_in_order(broker: Broker) -> None:
    n = 10_000
    lines = [b"msg-%05d-" % i + b"x" * (i % 50) for i in range(n)]
    async with client(broker, "lean-10k", clean_session=True) as c:
        assert await c.subscribe("lean/10k/#", qos=1) == 1
        pub = asyncio.create_task(asyncio.to_thread(pub_lines, broker, "lean/10k/a", lines))
        got = await take(c, n, timeout_s=60)
        await asyncio.wait_for(pub, 60)
        await asyncio.sleep(0.2)
        assert c.pending() == 0
    assert [m.payload for m in got] == lines
    assert all(m.topic == "lean/10k/a" and m.qos == 1 and not m.dup and 1 <= m.mid <= 65535 for m in got)


async def test_unacked_messages_are_redelivered_with_dup(broker: Broker) -> None:
    n = 40
    cid = "lean-redeliver"
    async with client(broker, cid, clean_session=True):
        pass  # wipe any old session
    async with client(broker, cid, clean_session=False) as c:
        await c.subscribe("lean/redeliver", qos=1)
        await asyncio.to_thread(pub_lines, broker, "lean/redeliver", [b"m%02d" % i for i in range(n)])
        first = await take(c, n, timeout_s=10, ack=False)
        for m in first[::2]:
            c.ack(m.mid)
        await asyncio.sleep(0.3)  # nothing else arrives
        assert c.pending() == 0
    unacked = first[1::2]
    async with client(broker, cid, clean_session=False) as c:
        assert c.session_present
        again = await take(c, len(unacked), timeout_s=10)
        await asyncio.sleep(0.5)
        assert c.pending() == 0, "more than the unacked messages were redelivered"
    assert [m.payload for m in again] == [m.payload for m in unacked]
    assert [m.mid for m in again] == [m.mid for m in unacked]
    assert all(m.dup for m in again)
    async with client(broker, cid, clean_session=False) as c:  # everything acked now
        await asyncio.sleep(0.5)
        assert c.pending() == 0
    async with client(broker, cid, clean_session=True):
        pass


async def test_publish_reaches_another_subscriber(broker: Broker) -> None:
    async with client(broker, "lean-sub", clean_session=True) as sub, client(broker, "lean-pub") as pub:
        await sub.subscribe("lean/dead/#", qos=1)
        await pub.publish("lean/dead/schema", b"\x00\x01 payload", qos=1)
        await pub.publish("lean/dead/qos0", b"zero", qos=0)
        await asyncio.gather(*(pub.publish(f"lean/dead/{i}", b"%d" % i, qos=1) for i in range(200)))
        got = await take(sub, 202, timeout_s=10)
    assert (got[0].topic, got[0].payload, got[0].qos) == ("lean/dead/schema", b"\x00\x01 payload", 1)
    assert (got[1].topic, got[1].payload, got[1].qos) == ("lean/dead/qos0", b"zero", 0)
    assert sorted(m.payload for m in got[2:]) == sorted(b"%d" % i for i in range(200))


async def test_wrong_port_is_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(LeanMqttError, match=f"cannot connect to 127.0.0.1:{port}"):
        async with LeanClient(LOOPBACK, port, client_id="nobody", connect_timeout_s=5):
            pass


async def test_refused_connack_is_explained(broker: Broker) -> None:
    # MQTT 3.1.1: an empty client id needs a clean session; mosquitto answers return code 2.
    with pytest.raises(LeanMqttError, match="identifier rejected"):
        async with client(broker, "", clean_session=False):
            pass


async def test_keepalive_keeps_idle_connection(broker: Broker) -> None:
    async with client(broker, "lean-idle", keepalive_s=2, clean_session=True) as c:
        await c.subscribe("lean/idle", qos=1)
        t0 = time.monotonic()
        await asyncio.sleep(5)  # > 1.5 x keepalive: the broker would drop a silent client
        assert time.monotonic() - t0 >= 5
        assert c.connected
        assert c.pings_sent >= 2
        await c.publish("lean/idle", b"still here", qos=1)
        got = await take(c, 1, timeout_s=5)
    assert got[0].payload == b"still here"


async def test_broker_gone_fails_iterator_and_publish(tmp_path: Path) -> None:
    proc, b = start_broker(tmp_path)
    try:
        async with client(b, "lean-lost", clean_session=True) as c:
            await c.subscribe("lean/lost", qos=1)
            terminate(proc)
            with pytest.raises(LeanMqttError, match="connection lost"):
                await take(c, 1, timeout_s=10)
            with pytest.raises(LeanMqttError, match="connection lost"):
                await c.publish("lean/lost", b"x", qos=1)
            assert not c.connected
    finally:
        terminate(proc)


async def test_backpressure_pauses_and_resumes(broker: Broker) -> None:
    cid = "lean-backpressure"
    n = 3000
    async with client(broker, cid, clean_session=True):
        pass
    async with client(broker, cid, clean_session=False) as c:
        await c.subscribe("lean/bp", qos=1)
    lines = [b"%05d" % i + b"x" * 1000 for i in range(n)]  # <= ~260 messages per socket read
    await asyncio.to_thread(pub_lines, broker, "lean/bp", lines)
    async with client(broker, cid, clean_session=False, max_pending=100) as c:
        got: list[LeanMessage] = []
        async with asyncio.timeout(20):
            async for m in c.messages():
                if len(got) < n // 2:  # (while a PUBACK is awaited, reading goes on unbounded)
                    assert c.pending() <= 100 + 300  # max_pending + one socket read
                got.append(m)
                c.ack(m.mid)
                if len(got) == n // 2:
                    await c.publish("lean/other", b"dead letter", qos=1)  # PUBACK behind the backlog
                if len(got) == n:
                    break
    assert [m.payload for m in got] == lines
    async with client(broker, cid, clean_session=True):
        pass


# -- one measurement, printed, not asserted -----------------------------------------------

BENCH_N = 50_000
BENCH_TOPIC = "netqos/v1/probes/bn-10001-p001/measurements"


def bench_lines(n: int) -> list[bytes]:
    # ~150-byte single-measurement messages (no newline inside: mosquitto_pub -l)
    return [
        b'{"v":1,"probe_id":"bn-10001-p001","seq":%d,"measurements":[{"ts":1700000000000,'
        b'"target":"dns.example.vn","metrics":{"rtt_ms":%d.5,"loss_ratio":0.0}}]}' % (i, i % 300)
        for i in range(n)
    ]


def sub_args(b: Broker, cid: str, *extra: str) -> list[str]:
    return [MOSQUITTO_SUB, "-h", b.host, "-p", str(b.port), "-q", "1", "-i", cid, "-t", "netqos/#", *extra]


async def test_measure_drain_rate(broker: Broker) -> None:
    lines = bench_lines(BENCH_N)
    size = sum(len(x) for x in lines) / len(lines)

    # peer: mosquitto_sub -q 1 -c -C N on a queued persistent session
    await asyncio.to_thread(
        subprocess.run, sub_args(broker, "bench-peer", "-c", "-E"), check=True, timeout=15
    )
    await asyncio.to_thread(pub_lines, broker, BENCH_TOPIC, lines, 1, 120)
    t0 = time.perf_counter()
    res = await asyncio.to_thread(
        subprocess.run,
        sub_args(broker, "bench-peer", "-c", "-C", str(BENCH_N), "-W", "120"),
        capture_output=True,
        timeout=130,
        check=False,
    )
    peer_s = time.perf_counter() - t0
    assert res.returncode == 0 and res.stdout.count(b"\n") == BENCH_N
    # wipe the session
    await asyncio.to_thread(subprocess.run, sub_args(broker, "bench-peer", "-E"), check=True, timeout=15)

    # ours: LeanClient receives and acks every message of the same kind of queue
    async with client(broker, "bench-lean", clean_session=True):
        pass
    async with client(broker, "bench-lean", clean_session=False) as c:
        await c.subscribe("netqos/#", qos=1)
    await asyncio.to_thread(pub_lines, broker, BENCH_TOPIC, lines, 1, 120)
    t0 = time.perf_counter()
    n = 0
    seen: list[bytes] = []
    async with client(broker, "bench-lean", clean_session=False) as c:
        await c.subscribe("netqos/#", qos=1)
        async with asyncio.timeout(120):
            async for m in c.messages():
                c.ack(m.mid)
                seen.append(m.payload)
                n += 1
                if n == BENCH_N:
                    break
    ours_s = time.perf_counter() - t0  # including the graceful disconnect (last PUBACKs sent)
    assert seen == lines
    async with client(broker, "bench-lean", clean_session=False) as c:  # every PUBACK arrived
        await asyncio.sleep(0.5)
        assert c.pending() == 0
    async with client(broker, "bench-lean", clean_session=True):
        pass
    print(
        f"\nRESULT lean-drain messages={BENCH_N} avg_bytes={size:.0f} "
        f"lean={BENCH_N / ours_s:,.0f} msg/s ({ours_s:.2f} s) "
        f"mosquitto_sub={BENCH_N / peer_s:,.0f} msg/s ({peer_s:.2f} s) ratio={peer_s / ours_s:.2f}"
    )
