"""Loss, jitter and throughput definitions; the parsers of ping, chronyc and timedatectl; batching."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.agent import clock, icmp, measure
from probes.agent.agent import Batcher, valid_metrics

rtt = st.floats(min_value=0.0, max_value=10_000.0, allow_nan=False)


def test_loss_ratio() -> None:
    assert measure.loss_ratio(10, 10) == 0.0
    assert measure.loss_ratio(10, 7) == pytest.approx(0.3)
    assert measure.loss_ratio(4, 0) == 1.0
    with pytest.raises(ValueError):
        measure.loss_ratio(0, 0)


def test_jitter_is_mean_absolute_difference_of_consecutive_rtts() -> None:
    # |12-10| + |11-12| + |15-11| = 2 + 1 + 4 = 7, over 3 differences
    assert measure.jitter_ms([10.0, 12.0, 11.0, 15.0]) == pytest.approx(7 / 3)
    assert measure.jitter_ms([20.0, 20.0, 20.0]) == 0.0
    assert measure.jitter_ms([20.0]) is None
    assert measure.jitter_ms([]) is None


def test_jitter_depends_on_order_not_only_on_spread() -> None:
    # Same values, same P95-P50: but alternating delays are worse for a voice call.
    assert measure.jitter_ms([10, 30, 10, 30]) == 20.0
    assert measure.jitter_ms([10, 10, 30, 30]) == pytest.approx(20 / 3)


def test_summarize_rtts() -> None:
    assert measure.summarize_rtts(5, [10.0, 20.0, 30.0]) == {
        "loss_ratio": 0.4,
        "rtt_ms": 20.0,
        "jitter_ms": 10.0,
    }
    assert measure.summarize_rtts(5, [42.0]) == {"loss_ratio": 0.8, "rtt_ms": 42.0}  # no jitter from one
    assert measure.summarize_rtts(3, []) == {"loss_ratio": 1.0}  # no RTT without replies


@given(st.lists(rtt, min_size=1, max_size=50), st.integers(min_value=0, max_value=50))
def test_summary_properties(rtts: list[float], extra_lost: int) -> None:
    sent = len(rtts) + extra_lost
    m = measure.summarize_rtts(sent, rtts)
    assert 0.0 <= m["loss_ratio"] <= 1.0
    assert m["loss_ratio"] == pytest.approx(extra_lost / sent, abs=1e-6)
    assert min(rtts) - 1e-3 <= m["rtt_ms"] <= max(rtts) + 1e-3
    if len(rtts) >= 2:
        assert 0.0 <= m["jitter_ms"] <= max(rtts) - min(rtts) + 1e-3
    else:
        assert "jitter_ms" not in m


def test_throughput() -> None:
    assert measure.throughput_bps(1_000_000, 2.0) == 4_000_000.0  # bytes x 8 / seconds
    with pytest.raises(measure.MeasurementError):
        measure.throughput_bps(10, 0.0)


# --- parsers ----------------------------------------------------------------------------

BUSYBOX_OUTPUT = """\
PING 127.0.0.1 (127.0.0.1): 56 data bytes
64 bytes from 127.0.0.1: seq=0 ttl=64 time=0.062 ms
64 bytes from 127.0.0.1: seq=2 ttl=64 time=0.081 ms

--- 127.0.0.1 ping statistics ---
3 packets transmitted, 2 packets received, 33% packet loss
round-trip min/avg/max = 0.062/0.071/0.081 ms
"""


def test_parse_busybox_ping() -> None:
    assert icmp.parse_ping_output(BUSYBOX_OUTPUT) == {0: 0.062, 2: 0.081}


def test_parse_ping_with_errors_only() -> None:
    text = "From 10.0.0.1 icmp_seq=1 Destination Host Unreachable\n"
    assert icmp.parse_ping_output(text) == {}


def test_echo_request_checksum_verifies() -> None:
    pkt = icmp.echo_request(0x1234, 7)
    assert icmp.checksum(pkt) == 0  # a packet with its checksum in sums to zero
    assert struct.unpack_from("!BBHHH", pkt)[3:] == (0x1234, 7)


def test_dns_query_encoding() -> None:
    q = measure.dns_query("www.example.vn.", 0xBEEF)
    assert q[:12] == struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0)
    assert q[12:] == b"\x03www\x07example\x02vn\x00\x00\x01\x00\x01"
    with pytest.raises(ValueError):
        measure.dns_query("a..b", 1)


CHRONY_CSV = (
    "C0A80101,192.168.1.1,3,1795867200.123456789,0.000512000,-0.000001234,0.000023456,"
    "-1.234,-0.001,0.012,0.012345678,0.001234567,64.2,Normal\n"
)


def test_parse_chronyc_tracking() -> None:
    assert clock.parse_chronyc_tracking_csv(CHRONY_CSV) == clock.ClockStatus(0.512, True)
    slow = CHRONY_CSV.replace("0.000512000", "-0.250000000")
    assert clock.parse_chronyc_tracking_csv(slow) == clock.ClockStatus(-250.0, True)
    unsynced = (
        "00000000,,0,0.000000000,0.000000000,0.000000000,0.000000000,"
        "0.000,0.000,0.000,1.0,1.0,0.0,Not synchronised\n"
    )
    assert clock.parse_chronyc_tracking_csv(unsynced) == clock.ClockStatus(0.0, False)
    assert clock.parse_chronyc_tracking_csv("506 Cannot talk to daemon\n") is None


def test_parse_timedatectl_show() -> None:
    text = "Timezone=Asia/Ho_Chi_Minh\nLocalRTC=no\nCanNTP=yes\nNTP=yes\nNTPSynchronized=yes\n"
    assert clock.parse_timedatectl_show(text) == clock.ClockStatus(0.0, True)
    assert clock.parse_timedatectl_show(text.replace("NTPSynchronized=yes", "NTPSynchronized=no")) == (
        clock.ClockStatus(0.0, False)
    )
    assert clock.parse_timedatectl_show("Timezone=UTC\n") is None


async def test_clock_cache_asks_once() -> None:
    calls = 0

    async def reader() -> clock.ClockStatus:
        nonlocal calls
        calls += 1
        return clock.ClockStatus(1.0, True)

    read = clock.cached(reader, max_age_s=60)
    for _ in range(5):
        assert await read() == clock.ClockStatus(1.0, True)
    assert calls == 1


async def test_read_clock_status_never_raises() -> None:
    status = await clock.read_clock_status(timeout_s=2.0)
    assert isinstance(status.synced, bool) and math.isfinite(status.offset_ms)


# --- schema guard and batching ----------------------------------------------------------


def test_valid_metrics_drops_only_out_of_range_values() -> None:
    good, bad = valid_metrics({"rsrp_dbm": -170.0, "rsrq_db": -11.0, "sinr_db": 12.0})
    assert good == {"rsrq_db": -11.0, "sinr_db": 12.0} and bad == ["rsrp_dbm"]
    good, bad = valid_metrics({"rtt_ms": math.nan, "loss_ratio": 0.0})
    assert good == {"loss_ratio": 0.0} and bad == ["rtt_ms"]
    assert valid_metrics({"no_such_metric": 1.0}) == ({}, ["no_such_metric"])


def _m(i: int, target: str = "127.0.0.1") -> dict[str, object]:
    return {
        "ts": 1_795_867_200_000 + i,
        "target": target,
        "technology": "4G",
        "operator": "viettel",
        "metrics": {"rtt_ms": 10.0},
    }


async def test_batcher_closes_at_max_measurements() -> None:
    b = Batcher(max_measurements=3, max_bytes=100_000, max_wait_s=60)
    for i in range(7):
        b.add(_m(i))
    assert [len(x) for x in b.closed] == [3, 3] and b.pending == 7
    b.close()
    assert [len(x) for x in b.closed] == [3, 3, 1]


async def test_batcher_closes_before_max_bytes() -> None:
    b = Batcher(max_measurements=5000, max_bytes=8192, max_wait_s=60)
    for i in range(200):
        b.add(_m(i, target="x" * 200))
    b.close()
    import orjson

    for batch in b.closed:
        assert len(orjson.dumps({"v": 1, "probe_id": "p", "seq": 1, "measurements": batch})) <= 8192
    assert sum(len(x) for x in b.closed) == 200


async def test_batcher_due_in() -> None:
    b = Batcher(max_measurements=10, max_bytes=100_000, max_wait_s=0.0)
    assert b.due_in() is None
    b.add(_m(0))
    assert b.due_in() == 0.0
