"""Pydantic models of every API response (the OpenAPI a client generator reads)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class QosPoint(BaseModel):
    ts: str = Field(description="start of the step, ISO 8601 UTC")
    ts_ms: int = Field(description="start of the step, ms since the Unix epoch")
    value: float | None = Field(description="the statistic; null when the step has no samples")
    count: int = Field(description="samples behind the value")
    expected_count: float | None = Field(
        description="samples the group's series should have delivered in the step (their intervals,"
        " from each series' first sample on, up to now); null when no series of the group has"
        " a known interval"
    )
    completeness_ratio: float | None = Field(
        description="received / expected samples of the series with a known interval, at most 1;"
        " 0 when nothing arrived; null when nothing was expected or expected is unknown"
    )


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
    resolution_s: int = Field(
        description="rollup tier the answer was computed from: the coarsest (60, 3600, 86400) dividing step_s"
    )
    retained_from_ms: int | None = Field(
        description="that tier keeps windows from here on (retention); null: kept forever"
    )
    series: list[QosSeries] = Field(description="one per group, each with a point for every step")


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
    expected_interval_s: float = Field(description="how often the probe is expected to send a batch")
    status: str = Field(description="online, offline (3 expected intervals without a batch) or unknown")
    status_since_ms: int | None
    clock_offset_ms: float | None = Field(description="the probe's last reported clock offset")
    clock_synced: bool | None = Field(description="whether the probe reported a synchronised clock")
    series_refused_total: int = Field(
        0,
        description="batches refused (too_many_series): they would have started more new label sets"
        " in an hour than ingest.max_new_label_sets_per_probe_hour",
    )
    series_refused_last_ms: int | None = Field(None, description="when the last such batch came")
    seq_conflicts_total: int = Field(
        0,
        description="batches without an instance id that repeated a seq already stored for the"
        " probe with other content (the probe restarted its seq): stored, not dropped",
    )
    seq_conflict_last_ms: int | None = Field(None, description="when the last seq conflict came")
    revoked_ms: int | None = Field(
        None,
        description="when `netqos probes revoke` took its credentials (its schedule and agent report"
        " are then cleared); null: not revoked",
    )
    # -- the agent's own report (retained <prefix>/<id>/agent, or POST /api/v1/probe/status) --
    agent_version: str | None = Field(None, description="netqos-probe version the agent reported")
    agent_report_ms: int | None = Field(None, description="when the server got the agent's last report")
    schedule_expected_version: int | None = Field(
        None, description="the version of the schedule the server sends this probe (null: none fits)"
    )
    schedule_name: str | None = Field(None, description="the schedule the agent runs (null: its own tests)")
    schedule_version: int | None = Field(None, description="the schedule version the agent runs")
    schedule_state: str = Field(
        "unknown",
        description="current (runs what the server sends), pending (not yet), refused (refused what the"
        " server sends), local (no schedule fits; runs its own tests), unknown (no report)",
    )
    schedule_refused_version: int | None = Field(None, description="the last schedule version it refused")
    schedule_refused_reason: str | None = Field(None, description="why it refused it")
    queue_batches: int | None = Field(None, description="batches waiting in the agent's queue")
    data_month: str | None = Field(None, description="the UTC month of data_used_bytes (YYYY-MM)")
    data_used_bytes: int | None = Field(None, description="bytes of throughput tests this month")
    data_budget_bytes: int | None = Field(None, description="the month's budget (null: no limit)")
    tests_skipped_budget: int | None = Field(
        None, description="throughput tests skipped this month: budget spent"
    )
    radio_technology: str | None = Field(None, description="what the modem last reported")
    radio_operator: str | None = None
    rsrp_dbm: float | None = None
    sinr_db: float | None = None


class ProbeWindow(BaseModel):
    start_ms: int
    batches: int
    measurements: int
    expected_batches: float
    completeness_ratio: float = Field(description="batches received / expected, at most 1")


class ProbeDetail(ProbeOut):
    windows: list[ProbeWindow] = Field(description="hourly completeness over the last 24 hours")
    state_changes: list[dict[str, Any]]


class ProbeList(BaseModel):
    probes: list[ProbeOut]
    total: int


class Check(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Check]


class ErrorItem(BaseModel):
    line: int = Field(description="1-based line of the uploaded file; 0 for the file as a whole")
    column: str
    message: str


class ErrorOut(BaseModel):
    detail: str
    errors: list[ErrorItem] | None = Field(
        None, description="an upload's errors, line by line (the first 100; errors_total counts all)"
    )
    errors_total: int | None = None


class DeviceOut(BaseModel):
    id: str
    host: str
    port: int
    operator: str
    kind: str
    technology: str
    site: str
    commune: str
    village: str
    parent: str | None
    profile: str
    poll_interval_s: float
    status: str = Field(description="up, down or unknown (never polled)")
    status_since_ms: int | None
    last_poll_ms: int | None
    last_success_ms: int | None
    last_error: str | None
    last_poll_duration_s: float | None
    last_varbinds: int | None
    sys_name: str | None
    polls_total: int
    failures_total: int


class DeviceList(BaseModel):
    devices: list[DeviceOut]
    total: int


class StateChangeOut(BaseModel):
    entity_kind: str
    entity: str
    state: str
    since_ms: int
    source: str
    detail: str
    device_id: str


class DeviceDetail(DeviceOut):
    interfaces: list[dict[str, Any]] = Field(
        description="latest reading per interface: index, name, values (rates in bit/s, utilisation, status)"
    )
    tables: dict[str, list[dict[str, Any]]] = Field(description="latest rows of the profile's other tables")
    gone_rows: list[dict[str, Any]] = Field(
        default_factory=list,
        description="rows of any table no longer in the device's walk (gone_ms: since when),"
        " with their last values; not current",
    )
    state_changes: list[StateChangeOut]


class OutageOut(BaseModel):
    entity_kind: str
    entity: str
    start_ms: int
    end_ms: int | None = Field(description="null while the outage goes on")
    duration_s: float
    cause: str
    end_reason: str = Field(
        "", description="why it ended, e.g. 'ifOperStatus=1' or 'row no longer in the table'"
    )


class OutageList(BaseModel):
    device_id: str
    from_ms: int
    to_ms: int
    outages: list[OutageOut]
    down_s: float = Field(
        description="time the device itself was down within the period, maintenance windows excluded"
    )
    unknown_s: float = Field(description="time with no known state (before the first poll, or unknown)")
    maintenance_s: float = Field(description="time inside maintenance windows: neither up nor down")
    availability_ratio: float | None = Field(
        description="up / (up + down) over the period up to now; null when no state is known in it"
    )


class AvailabilityOut(BaseModel):
    entity_kind: str
    entity: str
    up_s: float
    down_s: float = Field(description="down time outside maintenance windows")
    unknown_s: float = Field(description="no known state: counted neither as up nor as down")
    maintenance_s: float = Field(description="inside maintenance windows: counted neither as up nor as down")
    outages: int = Field(description="down runs with time in the period outside maintenance")
    outage_minutes: float = Field(description="down_s in minutes")
    availability_ratio: float | None = Field(description="up / (up + down); null when nothing is known")


class MaintenanceOut(BaseModel):
    id: int
    matchers: list[str] = Field(description="label matchers selecting the entities (none: every entity)")
    entity_kind: str = Field(description='the kind an `entity_kind="..."` matcher names; empty: none does')
    entity: str = Field(description='the entity an `entity="..."` matcher names; empty: none does')
    start_ms: int
    end_ms: int
    reason: str
    creator: str


class AvailabilityList(BaseModel):
    entity_kind: str
    from_ms: int
    to_ms: int
    until_ms: int = Field(description="the period is counted up to here: min(to, now)")
    entities: list[AvailabilityOut]
    maintenance: list[MaintenanceOut] = Field(description="maintenance windows overlapping the period")


class ProfileRef(BaseModel):
    id: str
    version: int
    kind: str = Field(description="regulation or target")
    reference: str
    title_vi: str
    title_en: str
    technologies: list[str]
    effective_from: str
    effective_from_unverified: bool = Field(False, description="the date is our choice (see the note)")
    effective_from_note: str = ""


class ComplianceRow(BaseModel):
    operator: str
    commune: str
    commune_name: str
    technology: str
    profile: str
    profile_version: int
    indicator: str
    name_vi: str
    name_en: str
    stat: str = Field(description="mean, median, pNN, share_at_least or max_series_mean, as the profile says")
    unit: str
    value: float | None = Field(description="the measured value in `unit`; null without samples")
    op: str = Field(description="'>=' or '<=': value op limit passes")
    limit: float | None = Field(description="null when the limit is unknown (e.g. no declared speed)")
    threshold: float | None = Field(
        description="for share_at_least: the sample threshold, in the metric's unit"
    )
    status: str = Field(description="pass, fail, insufficient_data, not_measured or no_limit")
    passed: bool | None = Field(description="true/false when judged; null otherwise")
    insufficient_data: bool = Field(description="the sample count is below the profile's minimum")
    sample_count: int
    min_samples: int
    unverified: bool = Field(
        description="the limit, method, minimum sample count or effective date is our choice where "
        "the regulation leaves it open (which: `unverified_what`; why: `note`)"
    )
    unverified_what: list[str] = Field(
        default_factory=list,
        description="which parts are our choice: limit, declared_speed, min_samples, effective_from",
    )
    approximate: bool = Field(
        False,
        description="the value is a lower bound, not exact (a share from the quantile sketch alone, "
        "the threshold's bucket counted as failing; see Methods in docs/api.md)",
    )
    not_checked: list[str] = Field(
        default_factory=list, description="the regulation's method conditions the data cannot show"
    )
    note: str


class ComplianceGroup(BaseModel):
    operator: str
    commune: str
    commune_name: str
    technology: str
    status: str = Field(
        description="fail if any indicator fails, else insufficient_data, else pass; not_judged when no"
        " regulation in force covers the technology (`reason`)"
    )
    passed: int
    failed: int
    insufficient: int
    reason: str = Field("", description="why the group is not judged")


class NotJudged(BaseModel):
    technology: str
    probes: int = Field(description="registered probes of this technology in scope")
    reason: str


# The shape of GET /api/v1/compliance: the route encodes compliance.answer's Answer as it is
# (not through this model, too slow for a province's thousands of rows), whose dataclasses
# carry these fields in this order; a test holds them to it.
class ComplianceResponse(BaseModel):
    period: str
    from_ms: int
    to_ms: int
    timezone: str
    filters: dict[str, str]
    profiles: list[ProfileRef]
    declared_speeds: dict[str, str]
    groups: list[ComplianceGroup]
    rows: list[ComplianceRow]
    not_judged: list[NotJudged] = Field(
        default_factory=list, description="technologies with probes in scope that no regulation covers"
    )


class KpiOut(BaseModel):
    number: int
    id: str
    section: str
    name_vi: str
    name_en: str
    target: float
    unit: str
    value: float | None = Field(description="null without data; `missing` says what is missing")
    progress_ratio: float | None = Field(description="value / target")
    status: str = Field(
        description="met, not_met, no_data, incomplete (the inputs cover different operators,"
        " communes or fields: `missing` says what) or inconsistent (a share above 100 %)"
    )
    source: str
    formula: str
    inputs: dict[str, Any]
    missing: list[str]
    note: str
    coverage: dict[str, Any] = Field(
        default_factory=dict,
        description="what the numerator and denominator cover (operators, communes, fields),"
        " or for coverage KPIs the method and the villages measured / declared / with neither",
    )
    reports: list[dict[str, Any]] = Field(
        default_factory=list, description="the report versions this value used (id, kind, operator, version)"
    )


class KpiResponse(BaseModel):
    plan: str
    plan_version: int
    reference: str
    year: int
    indicators: list[KpiOut]
    inventory_as_of_ms: int = Field(
        0,
        description="the device inventory and villages read are as of this time (the store keeps no history)",
    )
    inventory_note: str = Field("", description="what that means for the year asked")


class ReportOut(BaseModel):
    report_id: int
    kind: str
    year: int
    operator: str
    version: int
    uploaded_ms: int
    uploaded_by: str
    uploader_role: str
    format: str
    sha256: str
    rows_count: int
    note: str
    state: str = Field("current", description="current, superseded (by a newer version) or withdrawn")
    replaced_by: int | None = Field(None, description="the report the KPIs read instead of this one")
    withdrawn_ms: int | None = None
    withdrawn_by: str = ""
    withdrawn_reason: str = ""


class ReportValueOut(BaseModel):
    line: int
    commune: str
    field: str
    value: float
    village: str = ""


class ReportDetail(ReportOut):
    values: list[ReportValueOut]


class ReportList(BaseModel):
    reports: list[ReportOut]
    total: int


class CommuneOut(BaseModel):
    code: str
    name: str
    type: str = Field(description="xa (xã) or phuong (phường)")
    lat: float
    lon: float
    villages: int


class CommuneList(BaseModel):
    communes: list[CommuneOut]
    total: int


class VillageOut(BaseModel):
    code: str
    name: str
    commune: str


class VillageList(BaseModel):
    villages: list[VillageOut]
    total: int


class ImportResult(BaseModel):
    imported: int
    audit_id: int


class AuditOut(BaseModel):
    audit_id: int
    ts_ms: int
    actor: str
    role: str
    operator: str
    action: str
    target: str
    client: str
    detail: dict[str, Any]


class AuditList(BaseModel):
    entries: list[AuditOut]
    total: int
