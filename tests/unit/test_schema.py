"""Payload schema v1: every reason a message can be refused for, and what is accepted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from collector.mqtt.scan import Scanner
from collector.mqtt.schema import (
    REJECT_REASONS,
    MeasurementBatch,
    Rejection,
    decode,
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
    ("invalid_value", body(measurements=meas(target="speedtest\u0000.example.vn")), TOPIC),
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
    # internal_error, store_rejected and too_many_series are not properties of the payload
    # alone: the consumer and the pipeline tests cover them.
    others = {"internal_error", "store_rejected", "too_many_series"}
    assert {c[0] for c in CASES} == set(REJECT_REASONS) - others
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


# Characters on each side of "printable" (Unicode categories per the standard's data:
# Cc control, Cf format, Cs surrogate, Co private use, Zs/Zl/Zp separators).
UNPRINTABLE = [
    ("\u0000", 0x0000),  # NUL: PostgreSQL refuses it in text (the poison pill)
    ("\u001f", 0x001F),  # last C0 control
    ("\u007f", 0x007F),  # DEL
    ("\u0085", 0x0085),  # NEL, a C1 control
    ("\u009f", 0x009F),  # last C1 control
    ("\u00a0", 0x00A0),  # no-break space (Zs): looks like a space, is not one
    ("\u200b", 0x200B),  # zero-width space (Cf)
    ("\u202e", 0x202E),  # right-to-left override (Cf): disguises what follows
    ("\u2028", 0x2028),  # line separator (Zl): a new line in a text log
    ("\ue000", 0xE000),  # private use (Co)
]


def test_a_target_with_a_lone_surrogate_is_refused_as_not_json() -> None:
    # "\ud800" alone encodes no character (RFC 8259, 8.2): the JSON decoder refuses it first.
    raw = json.dumps(body(measurements=meas(target="T"))).replace('"T"', '"a\\ud800b"')
    r = run(raw.encode())
    assert isinstance(r, Rejection) and r.reason == "not_json", r


@pytest.mark.parametrize(("char", "code"), UNPRINTABLE)
def test_a_target_with_a_character_that_is_not_printable_is_refused(char: str, code: int) -> None:
    # json.dumps escapes it (\u0000, \ud800, ...): the JSON itself is valid.
    raw = json.dumps(body(measurements=meas(target="T"))).replace('"T"', json.dumps(f"a{char}b"))
    r = run(raw.encode())
    assert isinstance(r, Rejection), r
    assert r.reason == "invalid_value"
    assert r.detail == f"measurements.0.target: must be printable text; U+{code:04X} at character 1"


@pytest.mark.parametrize(
    "target",
    [
        " ",  # U+0020, the one separator allowed
        "~",  # U+007E, the last printable ASCII before DEL
        "\u00a1",  # U+00A1, the first printable after the C1 controls and NBSP
        "đo-tốc-độ.vn",  # Vietnamese letters are printable
        "x" * 255,  # the length limit itself
    ],
)
def test_printable_targets_up_to_255_characters_are_accepted(target: str) -> None:
    raw = json.dumps(body(measurements=meas(target="T"))).replace('"T"', json.dumps(target))
    r = run(raw.encode())
    assert not isinstance(r, Rejection), r
    assert r["measurements"][0]["target"] == json.loads(json.dumps(target))


def test_a_target_of_256_characters_is_refused() -> None:
    r = run(body(measurements=meas(target="x" * 256)))
    assert isinstance(r, Rejection) and r.reason == "out_of_range"


@pytest.mark.parametrize("raw_target", [b"a\x7fb", "a\u202eb".encode(), "a\u00a0b".encode()])
def test_unescaped_unprintable_targets_are_refused_by_the_fast_decoders_too(raw_target: bytes) -> None:
    """Not escaped in the JSON (valid there: only U+0000..U+001F must be escaped), so the fast
    paths (msgspec, the numba scanner) see them first; they must hand them to the reference."""
    raw = json.dumps(body(measurements=meas(target="T"))).encode().replace(b'"T"', b'"' + raw_target + b'"')
    got = decode(
        TOPIC,
        raw,
        topic_filter=FILTER,
        now_ms=NOW,
        max_payload_bytes=256 * 1024,
        max_future_ms=300_000,
        max_measurements=5000,
        known_probes={"p1"},
        max_late_ms=3_600_000,
    )
    assert isinstance(got, Rejection) and got.reason == "invalid_value", got
    n = 8
    cols = (np.zeros(n, np.int64), np.zeros((n, 11), np.float64), np.zeros(n, np.int32))
    assert Scanner().scan(raw, n, *cols, 0) is None
