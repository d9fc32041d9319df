"""The `compliance` and `kpi` sections, read by the compliance, KPI and report code.

Kept apart from that code (which loads numpy and the store) so reading the configuration stays light."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from ground.settings import Section

OPERATOR_PATTERN = r"^[a-z0-9_-]{1,32}$"


class ComplianceSettings(Section):
    profiles_dir: Path | None = Field(
        None, description="regulation profiles (YAML) beside the built-in ones; same id+version replaces"
    )
    declared_speeds_file: Path | None = Field(
        None, description="operator-declared (and contracted) speeds per operator and zone; default: built-in"
    )


class KpiSettings(Section):
    plan_file: Path | None = Field(
        None, description="the plan's indicators and report kinds; default: built-in"
    )
    # The operator registry: reports are accepted only for these slugs, and a KPI summing
    # operator reports is complete only when every one of them has filed (0 where none).
    operators: list[Annotated[str, Field(pattern=OPERATOR_PATTERN)]] = Field(
        default_factory=lambda: ["viettel", "vnpt", "mobifone"],
        min_length=1,
        description="operators that file the plan's reports (slugs); others are refused",
    )
