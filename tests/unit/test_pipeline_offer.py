"""The ingest front door, `IngestPipeline.offer(probe_id, payload)`: Accepted, Duplicate or a
Rejection, the same whether the scanner or the reference decoder reads the message. Against a
real SQLite store; counts by hand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo
from collector.mqtt.schema import Rejection, topic_rejection
from collector.pipeline import Accepted, Duplicate, IngestPipeline
from collector.store.store import Store

LIMIT = 4096  # max_payload_bytes in these tests
NOW = int(time.time() * 1000) - 60_000  # one time for every payload: a resend is the same bytes


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "netqos.db")
    s.register_probes([ProbeInfo("p1"), ProbeInfo("p2")])
    yield s
    s.close()


def payload(seq: int, n: int = 2, probe: str = "p1", target: str = "t", pad: str = "", **extra: Any) -> bytes:
    doc = {
        "v": 1,
        "probe_id": probe,
        "seq": seq,
        "measurements": [
            {
                "ts": NOW + i,
                "target": target + pad,
                "technology": "4G",
                "operator": "vnpt",
                "metrics": {"rtt_ms": 5.0},
            }
            for i in range(n)
        ],
        **extra,
    }
    return orjson.dumps(doc)


def test_accepted_then_duplicate_then_stored_once(store: Store) -> None:
    p = IngestPipeline(store, IngestSettings())
    stored: list[int] = []
    got = p.offer("p1", payload(1, 3), max_payload_bytes=LIMIT, on_stored=lambda: stored.append(1))
    assert got == Accepted("p1", 1, 3)
    assert p.offer("p1", payload(1, 3), max_payload_bytes=LIMIT) == Duplicate("p1", 1)
    assert asyncio.run(p.flush()) == 3 and stored == [1]
    assert p.offer("p1", payload(1, 3), max_payload_bytes=LIMIT) == Duplicate("p1", 1)  # stored: still one
    assert store.total_count(metric="rtt_ms") == 3


def test_the_decoder_path_gives_the_same_answers(store: Store) -> None:
    # An escaped string is never the scanner's: the reference decoder reads this one.
    p = IngestPipeline(store, IngestSettings())
    escaped = payload(7, 2, target="a\\u0062")
    assert p.offer("p1", escaped, max_payload_bytes=LIMIT) == Accepted("p1", 7, 2)
    assert p.offer("p1", escaped, max_payload_bytes=LIMIT) == Duplicate("p1", 7)


def test_the_payload_limit_holds_at_its_value(store: Store) -> None:
    p = IngestPipeline(store, IngestSettings())
    body = payload(1)
    assert isinstance(p.offer("p1", body, max_payload_bytes=len(body)), Accepted)  # at the limit
    body2 = payload(2)
    got = p.offer("p1", body2, max_payload_bytes=len(body2) - 1)  # one byte over
    assert isinstance(got, Rejection) and got.reason == "too_large"
    assert got.detail == f"{len(body2)} bytes > limit {len(body2) - 1}"


def test_refusals_come_back_as_rejections_and_take_nothing(store: Store) -> None:
    p = IngestPipeline(store, IngestSettings(max_new_label_sets_per_probe_hour=2))
    cases = {
        "topic_mismatch": p.offer("p2", payload(1), max_payload_bytes=LIMIT),  # p1's batch, sent as p2
        "unknown_probe": p.offer("p9", payload(1, probe="p9"), max_payload_bytes=LIMIT),
        "not_json": p.offer("p1", b"{not json", max_payload_bytes=LIMIT),
    }
    for reason, got in cases.items():
        assert isinstance(got, Rejection), reason
        assert got.reason == reason, got
    # The label-set cap (a limit of the probe's, raised inside) is a Rejection here too.
    assert isinstance(p.offer("p1", payload(1, target="a"), max_payload_bytes=LIMIT), Accepted)
    assert isinstance(p.offer("p1", payload(2, target="b"), max_payload_bytes=LIMIT), Accepted)  # 2 of 2
    third = p.offer("p1", payload(3, target="c"), max_payload_bytes=LIMIT)
    assert isinstance(third, Rejection) and third.reason == "too_many_series"
    assert asyncio.run(p.flush()) == 4  # the two accepted batches, 2 measurements each, 1 metric
    # Refused seq 3 was not remembered: once allowed, the same seq is taken.
    assert isinstance(p.offer("p1", payload(3, target="a"), max_payload_bytes=LIMIT), Accepted)


def test_a_topic_refusal_says_size_first_then_topic() -> None:
    f = "netqos/v1/probes/+/measurements"
    assert topic_rejection("x/y", 10, f, 10).reason == "bad_topic"  # at the limit: the topic decides
    assert topic_rejection("x/y", 11, f, 10).reason == "too_large"
    assert topic_rejection("x/y", 11, f, 10).detail == "11 bytes > limit 10"
