"""The fast decoders against the reference (pydantic): the msgspec decoder and the numba
scanner make the same decision on every payload and give the same data when they accept,
and the fast paths are really taken for plain batches."""

from __future__ import annotations

import json
import math
import string
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.mqtt import schema
from collector.mqtt.scan import Scanner
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


@st.composite
def rarely(draw: st.DrawFn, extra: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """`extra` once in ten draws, else nothing (an unknown key sends every payload to the
    reference decoder, so it must not be in most of them)."""
    return draw(extra) if draw(st.integers(0, 9)) == 0 else {}


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
        elif draw(st.booleans()):
            out[name] = draw(st.floats(lo, hi))
        else:  # as probes write them: a few decimals (what the scanner converts exactly)
            out[name] = round(draw(st.floats(lo, hi)), draw(st.integers(0, 6)))
    return out


# Mostly well-formed documents (so that acceptance is common), a field now and then replaced
# by anything, the odd unknown key or empty list.
measurement = st.builds(
    lambda d, extra: {**d, **extra},
    st.fixed_dictionaries(
        {
            "ts": sometimes_bad(st.integers(NOW - 3_700_000, NOW + 310_000)),
            "target": sometimes_bad(
                st.one_of(st.text(min_size=1, max_size=8), st.text(string.printable, min_size=1, max_size=8))
            ),
            "technology": sometimes_bad(st.sampled_from(schema.TECHNOLOGIES)),
            "operator": sometimes_bad(st.sampled_from(["viettel", "vnpt", "mobi-fone_2"])),
            "metrics": sometimes_bad(metrics()),
        }
    ),
    rarely(st.fixed_dictionaries({"extra": any_scalar})),
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
        "clock_offset_ms": sometimes_bad(st.one_of(st.floats(-1e8, 1e8), st.integers(-1000, 1000))),
        "clock_synced": sometimes_bad(st.booleans()),
    },
).flatmap(lambda d: rarely(st.fixed_dictionaries({"other": any_scalar})).map(lambda extra: {**d, **extra}))


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
    scanned = scan(raw, topic_probe)
    if scanned is not None:  # the scanner may leave any payload to the reference, never accept more
        assert not isinstance(ref, Rejection), ref
        assert same(scanned, to_decoded(ref))


def scan(raw: bytes, topic_probe: str = "p1") -> Decoded | None:
    """The numba scanner's result as a Decoded (None: left to the reference decoder), with
    the caller's checks of IngestPipeline.scan (probe, lateness, future)."""
    cap = LIMITS["max_measurements"]
    ts = np.full(cap + 3, -7, dtype=np.int64)
    values = np.full((cap + 3, len(METRIC_NAMES)), -7.0)
    key = np.full(cap + 3, -7, dtype=np.int32)
    got = Scanner().scan(raw, cap, ts, values, key, 3)
    if (
        got is None
        or got.probe_id != topic_probe
        or got.probe_id not in LIMITS["known_probes"]
        or got.oldest_ts < NOW - LIMITS["max_late_ms"]
        or got.newest_ts > NOW + LIMITS["max_future_ms"]
    ):
        return None
    rows = slice(3, 3 + got.rows)
    assert (ts[:3] == -7).all() and (ts[3 + got.rows :] == -7).all()  # nothing written outside
    return Decoded(
        probe_id=got.probe_id,
        seq=got.seq,
        keys=[got.keys[k] for k in key[rows].tolist()],
        ts=ts[rows].tolist(),
        values=[tuple(v) for v in values[rows].tolist()],
        newest_ts=got.newest_ts,
        oldest_ts=got.oldest_ts,
        clock_offset_ms=got.clock_offset_ms,
        clock_synced=got.clock_synced,
    )


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
    scanned = scan(valid())
    assert scanned is not None and same(scanned, got)
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


# -- the scanner on the documents it is built for, written in every way JSON allows ---------

ws = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])


@st.composite
def number_text(draw: st.DrawFn, lo: float, hi: float) -> str:
    """A number near [lo, hi], written as JSON allows: ints, decimals, exponents, -0, ..."""
    style = draw(st.integers(0, 12))
    if style == 0:
        return str(draw(st.integers(int(lo) - 2, int(hi) + 2)))
    if style == 1:
        return repr(round(draw(st.floats(lo - 1, hi + 1)), draw(st.integers(0, 5))))
    if style == 2:
        mant = draw(st.integers(-(10**6), 10**6))
        exp = draw(st.integers(-9, 9))
        e = draw(st.sampled_from(["e", "E"]))
        sign = draw(st.sampled_from(["", "+", "-"] if exp >= 0 else ["-"]))
        return f"{mant}{e}{sign}{abs(exp)}"
    if style == 3 and draw(st.booleans()):
        return draw(
            st.sampled_from(
                [
                    "-0",
                    "-0.0",
                    "0.000",
                    "1.50",
                    "0.1e-3",
                    "1e0",
                    "10E+1",
                    "01",
                    "1.",
                    ".5",
                    "1e",
                    "+1",
                    "-",
                    "1e400",
                    "123456789012345678",
                    "0.30000000000000004",
                    "9007199254740993",
                ]
            )
        )
    if style == 4:
        return f"{draw(st.integers(0, 999))}.{draw(st.integers(0, 10**8)):0{draw(st.integers(1, 9))}d}"
    if style == 5:
        return repr(draw(st.floats(lo, hi)))
    return repr(round(draw(st.floats(lo, hi)), draw(st.integers(0, 4))))


@st.composite
def raw_batch(draw: st.DrawFn) -> bytes:
    """A schema-v1 payload of the kind the scanner is for, spelt in many ways, with the odd
    value past a limit or of a form the scanner leaves to the reference."""
    w = lambda: draw(ws)  # noqa: E731

    def obj(members: list[tuple[str, str]]) -> str:
        order = draw(st.permutations(members))
        inner = ",".join(f'{w()}"{k}"{w()}:{w()}{v}{w()}' for k, v in order)
        return "{" + (inner or w()) + "}"

    def text(alphabet: str, lo: int, hi: int) -> str:
        return '"' + draw(st.text(alphabet, min_size=lo, max_size=hi)) + '"'

    safe_chars = "".join(c for c in string.printable if c not in '"\\\n\r\t\x0b\x0c')
    measurements = []
    for _ in range(draw(st.integers(1, 4))):
        names = draw(st.lists(st.sampled_from(METRIC_NAMES), min_size=1, max_size=4, unique=True))
        mets = [(n, draw(number_text(*RANGES.get(n, (0, 600_000))))) for n in names]
        measurements.append(
            obj(
                [
                    (
                        "ts",
                        draw(
                            st.sampled_from(
                                [str(NOW - draw(st.integers(-400_000, 3_700_000)))] * 10 + ["1.5", "-3"]
                            )
                        ),
                    ),
                    (
                        "target",
                        draw(st.sampled_from([text(safe_chars, 1, 6)] * 8 + ['""', '"' + "a" * 256 + '"'])),
                    ),
                    (
                        "technology",
                        '"' + draw(st.sampled_from([*schema.TECHNOLOGIES] * 2 + ["4g", "6G"])) + '"',
                    ),
                    (
                        "operator",
                        '"'
                        + draw(st.sampled_from(["viettel", "vnpt", "mobi-fone_2"] * 4 + ["VNPT", "a" * 33]))
                        + '"',
                    ),
                    ("metrics", obj(mets)),
                ]
            )
        )
    members = [
        ("v", draw(st.sampled_from(["1"] * 10 + ["1.0", "2"]))),
        ("probe_id", '"' + draw(st.sampled_from(["p1", "p1", "p2", "p3"])) + '"'),
        ("seq", draw(st.sampled_from(["0", "17", str(2**53)] * 4 + [str(2**53 + 1), "-1", "1e3"]))),
        ("measurements", "[" + ",".join(f"{w()}{m}{w()}" for m in measurements) + "]"),
    ]
    if draw(st.booleans()):
        members.append(("clock_offset_ms", draw(number_text(-86_400_000, 86_400_000))))
    if draw(st.booleans()):
        members.append(("clock_synced", draw(st.sampled_from(["true", "false", "null", "1"]))))
    if draw(st.booleans()):
        members.append(("sent_ts", str(NOW)))
    return (w() + obj(members) + w()).encode()


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_batch())
def test_scanner_decides_like_the_reference_on_every_spelling(raw: bytes) -> None:
    topic = "netqos/v1/probes/p1/measurements"
    ref = parse(topic, raw, **LIMITS)
    scanned = scan(raw)
    if scanned is not None:
        assert not isinstance(ref, Rejection), (ref, raw)
        assert same(scanned, to_decoded(ref)), raw
    got = decode(topic, raw, **LIMITS)
    if isinstance(ref, Rejection):
        assert got == ref
    else:
        assert isinstance(got, Decoded) and same(got, to_decoded(ref))
