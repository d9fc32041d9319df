"""Pydantic models of every API response (the OpenAPI a client generator reads)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class QosPoint(BaseModel):
    ts: str = Field(description="start of the step, ISO 8601 UTC")
    ts_ms: int = Field(description="start of the step, ms since the Unix epoch")
    value: float | None = Field(description="the statistic; null when the step has no samples")
    count: int = Field(description="samples behind the value")


class QosSeries(BaseModel):
    labels: dict[str, str]
    points: list[QosPoint]


class QosResponse(BaseModel):
    metric: str
    unit: str
    stat: str
    group_by: list[str]
    filters: dict[str, str]
    from_ms: int
    to_ms: int
    step_s: int
    resolution_s: int = Field(description="rollup tier the answer was computed from")
    series: list[QosSeries]


class ProbeOut(BaseModel):
    probe_id: str
    commune: str
    village: str
    site: str
    operator: str
    technology: str
    registered_at_ms: int
    last_seen_ms: int | None
    last_seq: int | None
    messages_total: int
    measurements_total: int


class ProbeList(BaseModel):
    probes: list[ProbeOut]
    total: int


class Check(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Check]


class ErrorOut(BaseModel):
    detail: str
