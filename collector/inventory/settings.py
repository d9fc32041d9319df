"""The `units` section: the administrative units (communes, villages) imported at start."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ground.settings import Section


class UnitsSettings(Section):
    communes_file: Path | None = Field(None, description="communes CSV imported at start")
    villages_file: Path | None = Field(None, description="villages CSV imported at start (after communes)")
