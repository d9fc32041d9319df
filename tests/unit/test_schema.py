"""Payload schema v1: every reason a message can be refused for, and what is accepted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from collector.mqtt.schema import (
    REJECT_REASONS,
    MeasurementBatch,
    Rejection,
    parse,
    probe_id_of_topic,
    validate_batch,
)

NOW = 1_795_852_800_000
FILTER = "netqos/v1/probes/+/measurements"
TOPIC = "netqos/v1/probes/p1/measurements"


def body(**over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "v": 1,
        "probe_id": "p1",
        "seq": 7,
        "measurements": [
            {
                "ts": NOW - 1000,
                "target": "8.8.8.8",
                "technology": "4G",
                "operator": "viettel",
                "metrics": {"rtt_ms": 12.5, "loss_ratio": 0, "rsrp_dbm": -95},
            }
        ],
    }
    b.update(over)
    return b


def run(payload: bytes | dict[str, Any], topic: str = TOPIC) -> MeasurementBatch | Rejection:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse(
        topic,
        raw,
        topic_filter=FILTER,
        now_ms=NOW,
        max_payload_bytes=256 * 1024,
        max_future_ms=300_000,
        max_measurements=5000,
        known_probes={"p1", "p2"},
        max_late_ms=3_600_000,
    )


def meas(**over: Any) -> list[dict[str, Any]]:
    m = body()["measurements"][0]
    m.update(over)
    return [m]


def test_good_batch_is_accepted() -> None:
    r = run(body())
    assert not isinstance(r, Rejection), r
    metrics = r["measurements"][0]["metrics"]
    assert metrics == {"rtt_ms": 12.5, "loss_ratio": 0.0, "rsrp_dbm": -95.0}
    assert isinstance(metrics["loss_ratio"], float)  # an int is a fine JSON number, stored as a float


def test_unknown_top_level_fields_are_ignored_for_forward_compatibility() -> None:
    assert not isinstance(run(body(firmware="1.2.3")), Rejection)


CASES: list[tuple[str, bytes | dict[str, Any], str]] = [
    ("too_large", b"{" + b" " * (256 * 1024) + b"}", TOPIC),
    ("not_json", b"{not json", TOPIC),
    ("not_json", b"\xff\xfe\x00garbage", TOPIC),
    ("non_finite", json.dumps(body()).replace("12.5", "NaN").encode(), TOPIC),
    ("non_finite", json.dumps(body()).replace("12.5", "Infinity").encode(), TOPIC),
    ("non_finite", json.dumps(body()).replace("12.5", "1e999").encode(), TOPIC),
    ("missing_field", {k: v for k, v in body().items() if k != "seq"}, TOPIC),
    (
        "missing_field",
        body(measurements=[{"ts": NOW, "target": "x", "technology": "4G", "operator": "vnpt"}]),
        TOPIC,
    ),
    ("wrong_type", body(seq="7"), TOPIC),
    ("wrong_type", body(seq=7.0), TOPIC),
    ("wrong_type", body(measurements=meas(metrics={"rtt_ms": "12"})), TOPIC),
    ("wrong_type", b"[1, 2, 3]", TOPIC),
    ("wrong_type", body(measurements={"a": 1}), TOPIC),
    ("unsupported_version", body(v=2), TOPIC),
    ("unknown_metric", body(measurements=meas(metrics={"rtt_ms": 1, "volume_db": 3})), TOPIC),
    ("out_of_range", body(measurements=meas(metrics={"loss_ratio": 1.01})), TOPIC),
    ("out_of_range", body(measurements=meas(metrics={"rtt_ms": -0.5})), TOPIC),
    ("out_of_range", body(measurements=meas(metrics={"rsrp_dbm": 5})), TOPIC),
    ("out_of_range", body(measurements=meas(metrics={})), TOPIC),
    ("out_of_range", body(measurements=[]), TOPIC),
    ("out_of_range", body(measurements=meas(target="")), TOPIC),
    ("out_of_range", body(seq=-1), TOPIC),
    ("invalid_value", body(measurements=meas(technology="6G")), TOPIC),
    ("invalid_value", body(measurements=meas(operator="Viettel Telecom")), TOPIC),
    ("future_ts", body(measurements=meas(ts=NOW + 301_000)), TOPIC),
    ("too_late", body(measurements=[*meas(ts=NOW - 3_601_000), *meas()]), TOPIC),
    ("topic_mismatch", body(probe_id="p2"), TOPIC),
    ("unknown_probe", body(probe_id="p9"), "netqos/v1/probes/p9/measurements"),
    ("bad_topic", body(), "netqos/v1/probes/p1/other"),
    ("bad_topic", body(), "netqos/v1/probes/bad id!/measurements"),
]


@pytest.mark.parametrize(("reason", "payload", "topic"), CASES)
def test_each_bad_message_gets_its_reason(reason: str, payload: bytes | dict[str, Any], topic: str) -> None:
    r = run(payload, topic)
    assert isinstance(r, Rejection), r
    assert r.reason == reason, r.detail
    assert r.detail


def test_every_reason_is_exercised_and_documented() -> None:
    # internal_error is not a property of the payload; the consumer test covers it.
    assert {c[0] for c in CASES} == set(REJECT_REASONS) - {"internal_error"}
    doc = (Path(__file__).parents[2] / "docs" / "payload-v1.md").read_text(encoding="utf-8")
    assert all(f"| `{r}` |" in doc for r in REJECT_REASONS)


def test_future_limit_is_inclusive_of_5_minutes() -> None:
    assert not isinstance(run(body(measurements=meas(ts=NOW + 300_000))), Rejection)


def test_topic_probe_extraction_handles_shared_subscriptions() -> None:
    assert probe_id_of_topic(TOPIC, FILTER) == "p1"
    assert probe_id_of_topic(TOPIC, "$share/netqos/" + FILTER) == "p1"
    assert probe_id_of_topic("netqos/v1/probes/p1", FILTER) is None


def test_validate_batch_takes_decoded_json() -> None:
    b = validate_batch(body())
    assert b["probe_id"] == "p1" and b["measurements"][0]["technology"] == "4G"
