"""The `alerts` section: rules, routes, inhibit rules and the receivers (alerts/notify/registry.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from alerts.notify.registry import AnyReceiverSettings
from ground.settings import Section


def _check_matchers(v: list[str]) -> list[str]:
    from ground.matchers import MatcherError, parse_matchers

    try:
        parse_matchers(v)
    except MatcherError as exc:
        raise ValueError(str(exc)) from None
    return v


class RouteSettings(Section):
    """Where notifications of matching incidents go and how they are grouped (Alertmanager's route)."""

    matchers: list[str] = Field(
        default_factory=list,
        description='label matchers like `severity="critical"`, `commune=~"16.*"`; all must match',
    )
    receivers: list[str] = Field(default_factory=list, description="names of `alerts.receivers` entries")
    group_by: list[str] = Field(
        default_factory=lambda: ["incident"],
        description="labels that make a group; `incident`: one per incident",
    )
    group_wait_s: float = Field(
        2.0, ge=0, le=3600, description="wait before a new group's first notification"
    )
    group_interval_s: float = Field(
        10.0, ge=0.1, le=86_400, description="wait before notifying a changed group again"
    )
    repeat_interval_s: float = Field(
        4 * 3600.0, ge=1, le=30 * 86_400, description="re-send a still-firing group after this long"
    )
    continue_matching: bool = Field(False, description="also try the routes after this one")

    _matchers_ok = field_validator("matchers")(_check_matchers)


class InhibitRuleSettings(Section):
    """Mute target incidents while a source incident with the same `equal` labels fires."""

    source_matchers: list[str] = Field(min_length=1)
    target_matchers: list[str] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)

    _matchers_ok = field_validator("source_matchers", "target_matchers")(_check_matchers)


class AlertSettings(Section):
    enabled: bool = Field(True, description="run the alert engine in `serve` and `demo`")
    rules_file: Path | None = Field(None, description="YAML rules; unset: the built-in default rules")
    eval_interval_s: float = Field(1.0, gt=0, le=60, description="how often state changes are read")
    receivers: list[AnyReceiverSettings] = Field(default_factory=list)
    route: RouteSettings = RouteSettings()
    routes: list[RouteSettings] = Field(default_factory=list, description="tried in order before `route`")
    inhibit_rules: list[InhibitRuleSettings] = Field(default_factory=list)
    retry_initial_s: float = Field(1.0, gt=0, le=600, description="first retry delay of a failed delivery")
    retry_max_s: float = Field(60.0, gt=0, le=3600, description="longest retry delay (exponential backoff)")
    give_up_after_s: float = Field(
        86_400.0, gt=0, le=30 * 86_400, description="a notification still undelivered after this is dropped"
    )
    topology_settle_max_s: float = Field(
        120.0, ge=0, le=3600, description="longest wait for a parent's or children's verdict"
    )
    flap_window_s: float = Field(600.0, gt=0, le=86_400)
    flap_threshold: int = Field(3, ge=2, le=100, description="firings within flap_window_s that make a flap")
    external_url: str = Field("", description="base URL of this service, for links in notifications")

    @field_validator("receivers")
    @classmethod
    def _unique_names(cls, v: list[Any]) -> list[Any]:
        names = [r.name for r in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"receiver names must be unique: {dup}")
        return v

    @model_validator(mode="after")
    def _routes_name_receivers(self) -> AlertSettings:
        known = {r.name for r in self.receivers}
        for where, route in [("route", self.route), *((f"routes.{i}", r) for i, r in enumerate(self.routes))]:
            unknown = [n for n in route.receivers if n not in known]
            if unknown:
                raise ValueError(f"{where}.receivers: {unknown} are not in alerts.receivers")
        return self
