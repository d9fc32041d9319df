"""The fast decoder (msgspec) against the reference (pydantic): the same decision on every
payload, the same data when accepted, and the fast path really taken for plain batches."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.mqtt import schema
from collector.mqtt.schema import METRIC_NAMES, Decoded, Rejection, decode, parse, to_decoded

NOW = 1_795_852_800_000
FILTER = "netqos/v1/probes/+/measurements"
LIMITS: dict[str, Any] = {
    "topic_filter": FILTER,
    "now_ms": NOW,
    "max_payload_bytes": 64 * 1024,
    "max_future_ms": 300_000,
    "max_measurements": 20,
    "known_probes": {"p1", "p2"},
    "max_late_ms": 3_600_000,
}

# Values near and across every limit, of every JSON type, so that both decoders are pushed
# onto their edges (range ends, ints for floats, bools, nulls, strings, huge numbers).
edge_numbers = st.sampled_from(
    [
        0,
        0.0,
        -0.0,
        1,
        -1,
        0.5,
        1.0000001,
        -30,
        -30.5,
        -160,
        -160.1,
        50,
        600_000,
        600_000.1,
        1e12,
        1e12 + 1,
        1e308,
        -1e308,
        2**53,
        2**53 + 1,
        2**63,
        NOW,
        NOW - 3_600_000,
        NOW - 3_600_001,
        NOW + 300_000,
        NOW + 300_001,
        86_400_000,
        -86_400_001,
    ]
)
any_scalar = st.one_of(
    edge_numbers,
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.booleans(),
    st.none(),
    st.sampled_from(
        ["", "4G", "x", "viettel", "Viettel", "vnpt\n", "a" * 33, "a" * 256, "p1", "p3", "é", "\u0000"]
    ),
    st.just([]),
)


@st.composite
def sometimes_bad(draw: st.DrawFn, good: st.SearchStrategy[Any], odds: int = 80) -> Any:
    """`good`, or once in `odds` draws anything at all."""
    return draw(any_scalar) if draw(st.integers(0, odds - 1)) == 0 else draw(good)


RANGES = {
    "loss_ratio": (0, 1),
    "access_failed": (0, 1),
    "rsrp_dbm": (-160, -30),
    "rsrq_db": (-40, 10),
    "sinr_db": (-30, 50),
}


@st.composite
def metrics(draw: st.DrawFn) -> dict[str, Any]:
    """Some metrics, each mostly within its range (ints too), now and then on or past an edge."""
    names = draw(st.lists(st.sampled_from([*METRIC_NAMES, "rtt"]), max_size=4, unique=True))
    out: dict[str, Any] = {}
    for name in names:
        lo, hi = RANGES.get(name, (0, 600_000))
        if draw(st.integers(0, 9)) == 0:
            out[name] = draw(edge_numbers)
        elif draw(st.booleans()):
            out[name] = draw(st.integers(lo, hi))
        else:
            out[name] = draw(st.floats(lo, hi))
    return out


# Mostly well-formed documents (so that acceptance is common), a field now and then replaced
# by anything, the odd unknown key or empty list.
measurement = st.fixed_dictionaries(
    {
        "ts": sometimes_bad(st.integers(NOW - 3_700_000, NOW + 310_000)),
        "target": sometimes_bad(st.text(min_size=1, max_size=8)),
        "technology": sometimes_bad(st.sampled_from(schema.TECHNOLOGIES)),
        "operator": sometimes_bad(st.sampled_from(["viettel", "vnpt", "mobi-fone_2"])),
        "metrics": sometimes_bad(metrics()),
    },
    optional={"extra": any_scalar},
)
batch = st.fixed_dictionaries(
    {
        "v": sometimes_bad(st.just(1)),
        "probe_id": sometimes_bad(st.sampled_from(["p1", "p1", "p2", "p3"])),
        "seq": sometimes_bad(st.integers(0, 2**53 + 1)),
        "measurements": sometimes_bad(st.lists(measurement, min_size=1, max_size=6)),
    },
    optional={
        "sent_ts": sometimes_bad(st.integers(0, 2**53)),
        "clock_offset_ms": sometimes_bad(st.floats(-1e8, 1e8)),
        "clock_synced": sometimes_bad(st.booleans()),
        "other": any_scalar,
    },
)


def same(fast: Decoded, ref: Decoded) -> bool:
    def eq(a: float, b: float) -> bool:
        return (math.isnan(a) and math.isnan(b)) or a == b

    return (
        (fast.probe_id, fast.seq, fast.keys, fast.ts, fast.newest_ts, fast.oldest_ts)
        == (ref.probe_id, ref.seq, ref.keys, ref.ts, ref.newest_ts, ref.oldest_ts)
        and fast.clock_offset_ms == ref.clock_offset_ms
        and fast.clock_synced == ref.clock_synced
        and len(fast.values) == len(ref.values)
        and all(
            eq(a, b)
            for fv, rv in zip(fast.values, ref.values, strict=True)
            for a, b in zip(fv, rv, strict=True)
        )
    )


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch, st.sampled_from(["p1", "p1", "p2", "p3", "bad id"]))
def test_fast_decoder_decides_like_the_reference(doc: dict[str, Any], topic_probe: str) -> None:
    topic = f"netqos/v1/probes/{topic_probe}/measurements"
    raw = json.dumps(doc).encode()
    ref = parse(topic, raw, **LIMITS)
    got = decode(topic, raw, **LIMITS)
    if isinstance(ref, Rejection):
        assert got == ref
    else:
        assert isinstance(got, Decoded)
        assert same(got, to_decoded(ref))


def valid(n: int = 3) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "probe_id": "p1",
            "seq": 9,
            "clock_offset_ms": -1.5,
            "clock_synced": True,
            "measurements": [
                {
                    "ts": NOW - 1000 * i,
                    "target": "8.8.8.8",
                    "technology": "4G",
                    "operator": "viettel",
                    "metrics": {"rtt_ms": 10.0 + i, "loss_ratio": 0},
                }
                for i in range(n)
            ],
        }
    ).encode()


def test_plain_batches_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    slow: list[bytes] = []
    real = schema.parse

    def counting(topic: str, payload: bytes, **kw: Any) -> Any:
        slow.append(payload)
        return real(topic, payload, **kw)

    monkeypatch.setattr(schema, "parse", counting)
    got = decode("netqos/v1/probes/p1/measurements", valid(), **LIMITS)
    assert isinstance(got, Decoded) and not slow
    assert got.keys == [("8.8.8.8", "4G", "viettel")] * 3
    assert got.ts == [NOW, NOW - 1000, NOW - 2000] and (got.newest_ts, got.oldest_ts) == (NOW, NOW - 2000)
    i_rtt, i_loss = METRIC_NAMES.index("rtt_ms"), METRIC_NAMES.index("loss_ratio")
    assert [v[i_rtt] for v in got.values] == [10.0, 11.0, 12.0] and all(v[i_loss] == 0.0 for v in got.values)
    assert sum(1 for v in got.values[0] if not math.isnan(v)) == 2
    assert (got.clock_offset_ms, got.clock_synced) == (-1.5, True)
    # A string escape sends the batch to the reference decoder, with the same answer.
    escaped = valid().replace(b'"8.8.8.8"', b'"8.8.8.\\u0038"')
    again = decode("netqos/v1/probes/p1/measurements", escaped, **LIMITS)
    assert slow == [escaped] and isinstance(again, Decoded) and again.keys == got.keys


def test_a_measurement_without_metrics_is_refused_by_both() -> None:
    doc = json.loads(valid())
    doc["measurements"][1]["metrics"] = {}
    got = decode("netqos/v1/probes/p1/measurements", json.dumps(doc).encode(), **LIMITS)
    assert (
        isinstance(got, Rejection) and got.reason == "out_of_range" and "measurements.1.metrics" in got.detail
    )
