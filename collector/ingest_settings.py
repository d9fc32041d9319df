"""The `ingest` section: limits and timing of the ingest pipeline (pipeline.py) and its sources."""

from __future__ import annotations

from pydantic import Field, field_validator

from ground.settings import Section


class IngestSettings(Section):
    flush_interval_s: float = Field(
        0.5, gt=0, le=60, description="longest wait before accepted data is stored"
    )
    flush_max_samples: int = Field(600_000, ge=1, le=10_000_000)
    max_future_s: int = Field(300, ge=0, le=86_400, description="reject measurements further in the future")
    max_measurements_per_message: int = Field(5000, ge=1, le=100_000)
    max_lateness_s: int = Field(
        3600, ge=60, le=30 * 86_400, description="older measurements are refused as too_late"
    )
    flush_linger_s: float = Field(
        0.02, ge=0, le=5, description="wait for more messages before a flush that acks are waiting for"
    )
    probe_check_interval_s: float = Field(
        5.0, gt=0, le=3600, description="how often probes are checked for missed intervals (probe_offline)"
    )
    max_new_label_sets_per_probe_hour: int = Field(
        500,
        ge=1,
        le=1_000_000,
        description="new (target, technology, operator) label sets one probe may start per clock hour"
        " (each is up to 11 series, one per metric); a batch that would exceed it is refused as"
        " too_many_series. Counted since the process started",
    )
    max_unacked_messages: int = Field(
        1000, ge=1, le=1_000_000, description="flush once this many received messages wait for their ack"
    )
    metric_interval_s: dict[str, float] = Field(
        default_factory=dict,
        description="expected seconds between samples of a probe metric (completeness); "
        "metrics not listed: the probe's expected_interval_s",
    )

    @field_validator("metric_interval_s")
    @classmethod
    def _positive_intervals(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, x in v.items() if not 0 < x <= 30 * 86_400]
        if bad:
            raise ValueError(f"intervals must be > 0 and at most 30 days: {', '.join(bad)}")
        return v
