"""Every limit the Grafana dashboards draw is a limit of the regulation profiles, drawn against
the statistic the profile judges (the API's): one source for every limit.

The dashboards' JSON (what Grafana loads) is read as it is, and the profiles' YAML with a
plain YAML reader, not through deploy/grafana/build.py or compliance/. Which statistic a
panel shows is read from its PromQL. The regulations' numbers written below come from their
texts (each profile's `reference` names it), not from either file.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
PROFILES = sorted((ROOT / "compliance" / "standards" / "profiles").glob("*.yaml"))

# Thresholds that are not regulation limits: the panel (dashboard uid, title) and why.
OPERATIONAL = {
    ("netqos-overview", "Villages with 4G/5G measurements"): "the plan's KPI target, 100 % of villages",
    ("netqos-overview", "Villages with FTTH measurements"): "the plan's KPI target, 100 % of villages",
    ("netqos-availability", "Elements down now"): "any element down",
    ("netqos-availability", "Probes silent for 3 intervals"): "any probe silent",
    ("netqos-availability", "Element state"): "up (1) or down (0)",
    ("netqos-probes", "Last seen (seconds ago)"): "3 and 15 minutes of silence",
    ("netqos-probes", "Completeness over the range"): "batches received against promised",
    ("netqos-probes", "Clock offset"): "100 ms clock offset",
    ("netqos-probes", "Probes with a synchronised clock"): "every probe synchronised",
}
# A limit on something no metric measures, drawn on the nearest figure the data holds.
STANDS_IN = {"device_up": ("qcvn-34-2022", "service_availability")}


def _profiles() -> dict[str, dict[str, Any]]:
    """The newest version of each profile, by id."""
    out: dict[str, dict[str, Any]] = {}
    for path in PROFILES:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if doc["id"] not in out or doc["version"] > out[doc["id"]]["version"]:
            out[doc["id"]] = doc
    return out


def _limits() -> list[dict[str, Any]]:
    """Every drawable limit: one value for all operators (declared speeds are per operator, so
    not one line), in the metric's own unit (the profile's unit divided by its scale)."""
    out = []
    for prof in _profiles().values():
        for ind in prof["indicators"]:
            metric = ind.get("metric")
            metrics = [metric] if isinstance(metric, str) else list(metric or [])
            ref = ind["limit"]
            if isinstance(ref, dict):
                if "by_technology" not in ref:
                    continue
                values = [v * ref.get("factor", 1.0) for v in ref["by_technology"].values()]
            else:
                values = [float(ref)]
            if metrics:
                values = [v / ind.get("scale", 1.0) for v in values]
            elif ind.get("unit") == "%":
                values = [v / 100 for v in values]
            out.append(
                {
                    "profile": prof["id"],
                    "indicator": ind["id"],
                    "metrics": metrics,
                    "stat": ind["stat"],
                    "op": ind["op"],
                    "values": values,
                }
            )
    return out


def _statistic(expr: str) -> tuple[str, str]:
    """(metric, statistic) a PromQL expression shows; ("", "") when it is none of the forms
    a profile's statistic is drawn with."""
    m = re.search(r"netqos_1m_(\w+)_sum\{.*netqos_1m_\1_count\{", expr)
    if m and " / " in expr:
        return m.group(1), "mean"
    m = re.search(r"quantile(?: by \([^)]*\))? \(0\.5, quantile_over_time\(0\.5, netqos_(\w+)\{", expr)
    if m:
        return m.group(1), "median"
    m = re.search(r"quantile(?: by \([^)]*\))? \(0\.5, netqos_1m_(\w+)_p50\{", expr)
    if m:
        return m.group(1), "median"
    m = re.search(r"max by \([^)]*\) \(avg_over_time\(netqos_(\w+)\{", expr)
    if m:
        return m.group(1), "max_series_mean"
    m = re.search(r"^avg(?: by \([^)]*\))? ?\(avg_over_time\(netqos_(\w+)[{\[]", expr)
    if m:
        return m.group(1), "mean"
    return "", ""


def _panels() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        out += [(board["uid"], p) for p in board["panels"]]
    return out


def _drawn(panel: dict[str, Any]) -> list[float]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [float(s["value"]) for s in steps if s["value"] is not None]


def _regulation_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(uid, p) for uid, p in _panels() if _drawn(p) and (uid, p["title"]) not in OPERATIONAL]


def test_the_reading_of_the_profiles_holds_the_regulations_numbers() -> None:
    # From the texts: Decision 1110/QD-BTTTT (2024) sets median download targets of 40 Mbit/s
    # (4G) and 100 Mbit/s (5G); QCVN 126:2021 average 5G download >= 100 Mbit/s, upload
    # >= 30 Mbit/s, latency <= 50 ms; QCVN 81:2019 LTE average service access time <= 5 s;
    # QCVN 34:2022 average link occupancy <= 80 %, service availability >= 99.5 %.
    got = {(lim["profile"], lim["indicator"]): (lim["stat"], sorted(lim["values"])) for lim in _limits()}
    assert got[("decision-1110-2024", "dl_median")] == ("median", [40e6, 100e6])
    assert got[("qcvn-126-2021", "dl_mean")] == ("mean", [100e6])
    assert got[("qcvn-126-2021", "ul_mean")] == ("mean", [30e6])
    assert got[("qcvn-126-2021", "latency_mean")] == ("mean", [50.0])
    assert got[("qcvn-81-2019", "access_time")] == ("mean", [5000.0])
    assert got[("qcvn-34-2022", "link_occupancy")] == ("max_series_mean", [0.8])
    assert got[("qcvn-34-2022", "service_availability")] == ("mean", [0.995])


@pytest.mark.parametrize(
    ("uid", "panel"), _regulation_panels(), ids=lambda x: x if isinstance(x, str) else x["title"]
)
def test_every_limit_drawn_is_a_profile_limit_on_the_same_statistic(uid: str, panel: dict[str, Any]) -> None:
    shown = {_statistic(t.get("expr", "")) for t in panel["targets"]}
    assert len(shown) == 1 and ("", "") not in shown, f"{uid} {panel['title']}: which statistic? {shown}"
    metric, stat = shown.pop()
    if metric in STANDS_IN:
        candidates = [lim for lim in _limits() if (lim["profile"], lim["indicator"]) == STANDS_IN[metric]]
    else:
        candidates = [lim for lim in _limits() if metric in lim["metrics"]]
    assert candidates, f"{uid} {panel['title']}: no profile limits {metric}"
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    # Red below the lines: the indicator passes at or above them (>=); green below: at or under.
    op = ">=" if steps[0]["color"] == "red" else "<="
    for value in _drawn(panel):
        matching = [
            lim
            for lim in candidates
            if any(math.isclose(value, v, rel_tol=1e-9) for v in lim["values"])
            and lim["stat"] == stat
            and lim["op"] == op
        ]
        assert matching, (
            f"{uid} {panel['title']}: {value:g} drawn against the {stat} of {metric} ({op}) is no"
            f" profile's limit; the profiles limit {metric}: "
            + "; ".join(
                f"{c['profile']} {c['indicator']} {c['stat']} {c['op']} {c['values']}" for c in candidates
            )
        )


def test_the_decision_1110_gauge_draws_40_mbit_s_against_the_median() -> None:
    gauge = next(p for uid, p in _panels() if uid == "netqos-overview" and p["title"].startswith("4G "))
    assert _statistic(gauge["targets"][0]["expr"]) == ("dl_bps", "median")
    assert _drawn(gauge) == [40e6]


def test_no_limit_is_drawn_on_a_statistic_no_profile_judges() -> None:
    # The p95 RTT is a diagnostic: the 50 ms limit is on the mean (QCVN 126, QCVN 34).
    p95 = [p for _, p in _panels() if "_p95" in json.dumps(p["targets"])]
    assert p95
    for panel in p95:
        assert _drawn(panel) == [], panel["title"]


def test_every_regulation_limit_that_is_one_line_is_drawn_somewhere() -> None:
    drawn = {
        (_statistic(t.get("expr", "")), v)
        for _, p in _regulation_panels()
        for t in p["targets"]
        for v in _drawn(p)
    }
    for key, value in (
        (("dl_bps", "median"), 40e6),
        (("dl_bps", "median"), 100e6),
        (("dl_bps", "mean"), 100e6),
        (("ul_bps", "mean"), 30e6),
        (("rtt_ms", "mean"), 50.0),
        (("access_time_ms", "mean"), 5000.0),
        (("if_in_utilisation_ratio", "max_series_mean"), 0.8),
    ):
        assert (key, value) in drawn, (key, value)
