"""Request and response models of the incident, silence and maintenance endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from ground.matchers import MAX_MATCHER_CHARS

# Who acted is always the authenticated key's name; a name typed in a body is only a note.
_NOTE = "optional free-text signature, kept only as a note (who acted is the key's name)"


class SymptomOut(BaseModel):
    entity: str
    entity_kind: str
    kind: str = Field(description="the rule that fired for it (device_down, probe_offline, ...)")
    start_ms: int
    end_ms: int | None = Field(description="null while it lasts")


class TimelineEntry(BaseModel):
    ts_ms: int
    event: str = Field(
        description="opened, symptom_joined, notification_sent, acknowledged, comment, resolved, ..."
    )
    actor: str
    detail: str


class IncidentOut(BaseModel):
    id: int
    kind: str = Field(description="the rule that opened it: device_down, link_down, rtt_p95_high, ...")
    state: str = Field(description="open, acknowledged or resolved")
    severity: str
    entity: str = Field(description="the root cause (empty for a label-group alert)")
    entity_kind: str
    labels: dict[str, str]
    annotations: dict[str, str]
    opened_ms: int
    acknowledged_ms: int | None
    acknowledged_by: str | None = Field(description="the key that acknowledged it")
    resolved_ms: int | None
    resolved_by: str | None = Field(description="the key that resolved it (empty: the engine)")
    root_recovered_ms: int | None = Field(description="when the root cause stopped failing")
    flapping: bool
    symptom_count: int
    outage_s: float = Field(
        description="how long the root cause failed (so far); its symptoms' time is charged here"
    )


class IncidentDetail(IncidentOut):
    symptoms: list[SymptomOut]
    timeline: list[TimelineEntry]


class IncidentList(BaseModel):
    incidents: list[IncidentOut]
    total: int


class IncidentAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field("", max_length=100, description=_NOTE)
    comment: str = Field("", max_length=4000)


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field("", max_length=100, description=_NOTE)
    text: str = Field(min_length=1, max_length=4000)


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matchers: list[Annotated[str, Field(max_length=MAX_MATCHER_CHARS)]] = Field(
        min_length=1,
        max_length=50,
        description="label matchers (Alertmanager syntax, RE2 regular expressions, fully anchored):"
        ' `entity="rtr-16021-vnpt"`, `commune=~"160.*"`; an operator key must include'
        ' `operator="<its operator>"`',
    )
    starts_at: datetime | None = Field(None, description="ISO 8601 or Unix seconds; default now")
    ends_at: datetime = Field(description="ISO 8601 or Unix seconds")
    creator: str = Field("", max_length=100, description=_NOTE)
    comment: str = Field("", max_length=4000)


class MatcherOut(BaseModel):
    name: str
    op: str
    value: str


class SilenceOut(BaseModel):
    id: int
    kind: str = Field(description="silence or maintenance")
    matchers: list[MatcherOut]
    starts_ms: int
    ends_ms: int
    creator: str = Field(description="the key that created it")
    comment: str
    created_ms: int
    status: str = Field(description="pending, active or expired")
    refused: str = Field(
        "",
        description="why a stored matcher is refused (written before the RE2 rules): it then matches"
        " nothing; empty when all are fine",
    )


class SilenceList(BaseModel):
    silences: list[SilenceOut]
    total: int
