"""The plan file: coverage KPIs carry their method, and a wrong reference is refused at load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from compliance.plan import Plan
from ground.errors import ConfigError


def test_the_coverage_kpis_state_their_method_and_mark_the_floors_ours() -> None:
    plan = Plan.load()
    k = {i.number: i.compute for i in plan.indicators}
    assert k[4].kind == k[7].kind == "village_coverage"
    assert k[4].measured is not None and k[4].measured.floors == {"rsrp_dbm": -115, "dl_bps": 2_000_000}
    assert k[7].measured is not None and k[7].measured.floors == {"dl_bps": 2_000_000}
    assert k[4].measured.unverified and k[7].measured.unverified and "interpretation" in k[4].measured.note
    assert (k[4].declared, k[7].declared) == ("operator_coverage.mobile_broadband", "operator_coverage.ftth")
    assert (k[4].serving_device_kinds, k[7].serving_device_kinds) == ([], ["olt"])
    assert k[4].method and k[7].method
    assert plan.reports["operator_coverage"].rows == "village"


@pytest.mark.parametrize(
    ("declared", "fragment"),
    [
        ("operator_subscribers.ftth_households", "is not a flag of a village report"),
        ("operator_coverage.lte", "is not a flag of a village report"),
    ],
)
def test_a_coverage_kpi_must_read_a_village_flag(tmp_path: Path, declared: str, fragment: str) -> None:
    src = Path(__file__).parents[2] / "compliance" / "standards" / "plan-225-2023.yaml"
    data = yaml.safe_load(src.read_text(encoding="utf-8"))
    data["indicators"][3]["compute"]["declared"] = declared
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=fragment):
        Plan.load(path)
