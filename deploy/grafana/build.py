"""Writes the Grafana dashboards (dashboards/*.json) and the commune gazetteer.

The JSON files are what Grafana loads (provisioning/dashboards/netqos.yaml); this script is
where they are edited, so five dashboards share one way of writing a panel, a variable
and a QCVN threshold. Run `python deploy/grafana/build.py` after a change;
tests/integration/test_grafana_dashboards.py fails when the files and the script differ,
and runs every Prometheus query of every panel against VictoriaMetrics filled by
`netqos demo`.

Metric names are those the time-series sink writes (collector/store/README.md):
`netqos_<metric>` raw samples, `netqos_1m_<metric>_<stat>` rollups, `netqos_probe_<field>`
probe activity; and those netqos serves at /metrics (`netqos_ingest_*`, `netqos_snmp_*`,
`netqos_tsdb_*`) when VictoriaMetrics or Prometheus scrapes it.

The QoS limits are read from the regulation profiles (compliance/standards/profiles/), never
written here: see `limit` and `judged`. The file is longer than our ~500 lines on purpose: it
is the five dashboards written out panel by panel, each read beside the JSON it becomes.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's own packages
from compliance.profiles import Indicator, LimitRef, Profile, Standards  # noqa: E402

COMMUNES_CSV = ROOT / "probes" / "simulate" / "data" / "communes.csv"
GAZETTEER = "public/gazetteer/netqos-communes.json"  # where deploy/grafana mounts it in Grafana

PROM = {"type": "prometheus", "uid": "netqos-prom"}
FLUX = {"type": "influxdb", "uid": "netqos-influx"}

# The QoS limits come from the built-in regulation profiles (compliance/standards/profiles/),
# the ones the API judges with: a dashboard draws a limit against the statistic the profile
# judges (a median against a median), never a number of its own. A changed profile changes
# the dashboards on the next build.
STANDARDS = Standards.load()


@dataclass(frozen=True)
class Limit:
    """One limit of a profile's indicator as a panel draws it: in the metric's own unit (bit/s,
    ms, a ratio), against the indicator's statistic."""

    profile: Profile
    indicator: Indicator
    technology: str
    value: float

    @property
    def stat(self) -> str:
        return self.indicator.stat

    @property
    def text(self) -> str:
        ind = self.indicator
        shown = self.value * ind.scale if ind.metrics else self.value * (100 if ind.unit == "%" else 1)
        return (
            f"{shown:g} {ind.unit} ({'statistic: ' + ind.stat}) for {self.technology},"
            f" {self.profile.reference}, {ind.name_en}"
        )


def limit(profile_id: str, indicator_id: str, technology: str) -> Limit:
    """The limit of `indicator_id` in the newest version of `profile_id` for `technology`,
    converted from the profile's unit to the metric's (dividing by the indicator's scale; a
    percentage of something not measured by a metric, to the ratio the panels show)."""
    versions = [p for p in STANDARDS.profiles if p.id == profile_id]
    if not versions:
        raise KeyError(f"no profile {profile_id}")
    prof = max(versions, key=lambda p: p.version)
    ind = next(i for i in prof.indicators if i.id == indicator_id)
    if technology not in prof.technologies:
        raise ValueError(f"{profile_id} does not cover {technology}")
    ref = ind.limit
    if isinstance(ref, LimitRef):
        if ref.by_technology is None:
            raise ValueError(f"{profile_id} {indicator_id}: the limit is per operator, not one line")
        raw = ref.by_technology[technology] * ref.factor
    else:
        raw = float(ref)
    if ind.metrics:
        value = raw / ind.scale
    elif ind.unit == "%":
        value = raw / 100
    else:
        value = raw
    return Limit(prof, ind, technology, float(f"{value:.12g}"))


LIMITS = {
    "latency": limit("qcvn-126-2021", "latency_mean", "5G"),
    "latency_fixed": limit("qcvn-34-2022", "latency_mean", "FTTH"),
    "dl_median_4g": limit("decision-1110-2024", "dl_median", "4G"),
    "dl_median_5g": limit("decision-1110-2024", "dl_median", "5G"),
    "dl_mean_5g": limit("qcvn-126-2021", "dl_mean", "5G"),
    "ul_mean_5g": limit("qcvn-126-2021", "ul_mean", "5G"),
    "access_time": limit("qcvn-81-2019", "access_time", "4G"),
    "availability": limit("qcvn-34-2022", "service_availability", "FTTH"),
    "link_occupancy": limit("qcvn-34-2022", "link_occupancy", "FTTH"),
}

PROBE_SEL = 'operator=~"$operator",technology=~"$technology",commune=~"$commune"'
DEVICE_SEL = 'operator=~"$operator",commune=~"$commune",kind=~"$kind"'


def variable(name: str, label: str, metric: str) -> dict[str, Any]:
    query = f"label_values({metric}, {name})"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": PROM,
        "query": {"query": query, "refId": f"var-{name}"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def at_least(*limits: Limit) -> dict[str, Any]:
    """Red below the lowest limit, yellow between limits, green at or above the highest: the
    limits of indicators judged `>=` on one statistic."""
    _one_statistic(limits, ">=")
    values = sorted({lim.value for lim in limits})
    colours = ["yellow"] * (len(values) - 1) + ["green"]
    return thresholds((None, "red"), *zip(values, colours, strict=True))


def at_most(*limits: Limit) -> dict[str, Any]:
    """Green below the limit, red above: indicators judged `<=` (one value, one statistic)."""
    _one_statistic(limits, "<=")
    values = {lim.value for lim in limits}
    if len(values) != 1:
        raise ValueError(f"one line for {len(values)} limits: {sorted(values)}")
    return above_is_bad(values.pop())


def _one_statistic(limits: tuple[Limit, ...], op: str) -> None:
    if not limits or {(lim.stat, lim.indicator.op) for lim in limits} != {(limits[0].stat, op)}:
        raise ValueError(f"limits on one panel must share one statistic and {op}: {limits}")


def lines(*limits: Limit) -> str:
    """A panel's description of its lines: each limit, its statistic and its source."""
    return "Lines: " + "; ".join(dict.fromkeys(lim.text for lim in limits)) + "."


# QCVN 34 limits the availability of the service, which the probes do not measure: its line is
# drawn on the polled elements' availability, the nearest figure the data holds.
AVAILABILITY_NOTE = (
    f"{lines(LIMITS['availability'])} The regulation limits the service's availability; the panel"
    " shows the polled elements' (the probes do not measure the service's)."
)


def below_is_bad(limit: float) -> dict[str, Any]:
    return thresholds((None, "red"), (limit, "green"))


def above_is_bad(limit: float) -> dict[str, Any]:
    return thresholds((None, "green"), (limit, "red"))


def prom(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A") -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": PROM,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "instant": instant,
        "range": not instant,
        "format": "table" if instant else "time_series",
    }


def flux(query: str, ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "datasource": FLUX, "query": query}


class Board:
    """Panels laid out left to right, top to bottom, on Grafana's 24-column grid."""

    def __init__(self, uid: str, title: str, description: str, variables: list[dict[str, Any]]) -> None:
        self.uid, self.title, self.description = uid, title, description
        self.variables = variables
        self.panels: list[dict[str, Any]] = []
        self._x = self._y = self._row_h = 0

    def add(
        self,
        kind: str,
        title: str,
        targets: list[dict[str, Any]],
        *,
        w: int = 12,
        h: int = 8,
        unit: str = "short",
        th: dict[str, Any] | None = None,
        description: str = "",
        options: dict[str, Any] | None = None,
        custom: dict[str, Any] | None = None,
        mappings: list[dict[str, Any]] | None = None,
        decimals: int | None = None,
    ) -> None:
        if self._x + w > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        defaults: dict[str, Any] = {"unit": unit, "thresholds": th or thresholds((None, "green"))}
        if th is not None and kind == "timeseries":
            # Draw the limit as a dashed line on time series.
            defaults["custom"] = {"thresholdsStyle": {"mode": "dashed"}}
        if custom:
            defaults["custom"] = {**defaults.get("custom", {}), **custom}
        if mappings:
            defaults["mappings"] = mappings
        if decimals is not None:
            defaults["decimals"] = decimals
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": kind,
                "title": title,
                "description": description,
                "gridPos": {"x": self._x, "y": self._y, "w": w, "h": h},
                "datasource": targets[0]["datasource"],
                "targets": targets,
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "options": options or {},
            }
        )
        self._x += w
        self._row_h = max(self._row_h, h)

    def json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["netqos"],
            "timezone": "browser",
            "editable": True,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "1m",
            "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": self.variables},
            "annotations": {"list": []},
            "links": [{"type": "dashboards", "tags": ["netqos"], "asDropdown": True, "title": "netqos"}],
            "panels": self.panels,
        }


def geomap(layer: str) -> dict[str, Any]:
    return {
        "view": {"id": "coords", "lat": 19.95, "lon": 105.45, "zoom": 8.2},
        "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
        "basemap": {"type": "default", "name": "Basemap"},
        "layers": [
            {
                "type": "markers",
                "name": layer,
                "config": {
                    "showLegend": True,
                    "style": {
                        "size": {"fixed": 8, "min": 6, "max": 18, "field": "Value"},
                        "color": {"field": "Value"},
                        "opacity": 0.8,
                        "text": {"field": "commune", "mode": "field"},
                    },
                },
                # Commune codes looked up in the gazetteer built from the communes' coordinates.
                "location": {"mode": "lookup", "lookup": "commune", "gazetteer": GAZETTEER},
                "tooltip": True,
            }
        ],
        "tooltip": {"mode": "details"},
    }


def judged(metric: str, stat: str, by: str, sel: str, window: str | None = None) -> str:
    """The query of a profile's statistic: the one the API judges, so a line drawn on the panel
    is read against the figure it limits. Over a `window` one value per group; without, one
    per minute.

    mean: weighted by the samples (rollup sums over counts), as the API's. median: over a window,
    the median of each series' samples, then the median across the group's series (PromQL
    cannot pool samples across series; the API's median pools them); per minute, the median of
    the series' minute medians. max_series_mean: each series' mean over the window, the largest
    in the group (a link's mean occupancy)."""
    if stat == "mean":
        return mean_of(metric, by, sel, window)
    if stat == "median":
        if window is None:
            return f"quantile by ({by}) (0.5, netqos_1m_{metric}_p50{{{sel}}})"
        return f"quantile by ({by}) (0.5, quantile_over_time(0.5, netqos_{metric}{{{sel}}}[{window}]))"
    if stat == "max_series_mean" and window is not None:
        return f"max by ({by}) (avg_over_time(netqos_{metric}{{{sel}}}[{window}]))"
    raise ValueError(f"no query for the statistic {stat!r} of {metric}: add it to judged()")


STAT_WORDS = {"mean": "mean", "median": "median", "max_series_mean": "busiest series' mean"}


def mean_of(metric: str, by: str, sel: str, window: str | None = None) -> str:
    """Sample-weighted mean from the rollups' sums and counts (a mean of means would not be)."""
    if window is None:
        return (
            f"sum by ({by}) (netqos_1m_{metric}_sum{{{sel}}})"
            f" / sum by ({by}) (netqos_1m_{metric}_count{{{sel}}})"
        )
    return (
        f"sum by ({by}) (sum_over_time(netqos_1m_{metric}_sum{{{sel}}}[{window}]))"
        f" / sum by ({by}) (sum_over_time(netqos_1m_{metric}_count{{{sel}}}[{window}]))"
    )


def overview() -> Board:
    b = Board(
        "netqos-overview",
        "netqos · Province overview",
        "QoS per commune on the map and the plan's 2025 KPIs the measurements speak to.",
        [
            variable("operator", "Operator", "netqos_1m_rtt_ms_count"),
            variable("technology", "Technology", "netqos_1m_rtt_ms_count"),
        ],
    )
    sel = 'operator=~"$operator",technology=~"$technology"'
    rtt = (LIMITS["latency"], LIMITS["latency_fixed"])
    b.add(
        "geomap",
        f"RTT per commune ({STAT_WORDS[rtt[0].stat]})",
        [prom(judged("rtt_ms", rtt[0].stat, "commune", sel, "$__range"), instant=True)],
        h=12,
        unit="ms",
        th=at_most(*rtt),
        options=geomap("RTT"),
        description=f"Round-trip time over the range, the statistic the regulations judge. {lines(*rtt)}",
    )
    dl = LIMITS["dl_median_4g"]
    b.add(
        "geomap",
        f"Download per commune ({STAT_WORDS[dl.stat]})",
        [prom(judged("dl_bps", dl.stat, "commune", sel, "$__range"), instant=True)],
        h=12,
        unit="bps",
        th=at_least(dl),
        options=geomap("download"),
        description=lines(dl),
    )
    for tech, key, target in (("4G|5G", "mobile", "4G/5G"), ("FTTH", "fixed", "FTTH")):
        b.add(
            "gauge",
            f"Villages with {target} measurements",
            [
                prom(
                    "count(count by (village) (count_over_time("
                    f'netqos_1m_rtt_ms_count{{technology=~"{tech}"}}[$__range])))'
                    " / count(count by (village) (count_over_time(netqos_probe_batches[$__range])))",
                    instant=True,
                )
            ],
            w=4,
            h=6,
            unit="percentunit",
            th=below_is_bad(1.0),
            description=f"Plan KPI ({key} broadband in every village, target 100 %): villages where a probe"
            f" measured over {target}, out of the villages that have a probe.",
        )
    for tech, lim in (("4G", LIMITS["dl_median_4g"]), ("5G", LIMITS["dl_mean_5g"])):
        b.add(
            "gauge",
            f"{tech} {STAT_WORDS[lim.stat]} download",
            [
                prom(
                    judged(
                        "dl_bps",
                        lim.stat,
                        "technology",
                        f'technology="{tech}",operator=~"$operator"',
                        "$__range",
                    ),
                    instant=True,
                )
            ],
            w=4,
            h=6,
            unit="bps",
            th=at_least(lim),
            description=lines(lim),
        )
    b.add(
        "gauge",
        "Network element availability",
        [prom("avg(avg_over_time(netqos_device_up[$__range]))", instant=True)],
        w=4,
        h=6,
        unit="percentunit",
        th=at_least(LIMITS["availability"]),
        decimals=2,
        description=f"Elements up, as a share of polls. {AVAILABILITY_NOTE}",
    )
    b.add(
        "stat",
        "Probes reporting",
        [prom("count(max_over_time(netqos_probe_last_seen_ms[$__range]))", instant=True)],
        w=4,
        h=6,
    )
    return b


def operator_qos() -> Board:
    by = "operator, technology"
    b = Board(
        "netqos-operator-qos",
        "netqos · Operator QoS",
        "Latency, loss and throughput per operator and technology against the QCVN limits.",
        [
            variable("operator", "Operator", "netqos_1m_rtt_ms_count"),
            variable("technology", "Technology", "netqos_1m_rtt_ms_count"),
            variable("commune", "Commune", "netqos_1m_rtt_ms_count"),
        ],
    )
    leg = "{{operator}} {{technology}}"
    rtt = (LIMITS["latency"], LIMITS["latency_fixed"])
    b.add(
        "timeseries",
        f"RTT ({STAT_WORDS[rtt[0].stat]})",
        [prom(judged("rtt_ms", rtt[0].stat, by, PROBE_SEL), leg)],
        unit="ms",
        th=at_most(*rtt),
        description=lines(*rtt),
    )
    b.add(
        "timeseries",
        "p95 RTT",
        [prom(f"avg by ({by}) (netqos_1m_rtt_ms_p95{{{PROBE_SEL}}})", leg)],
        unit="ms",
        description="A diagnostic: no regulation judges the p95 (the limit is drawn on the panel beside).",
    )
    b.add(
        "timeseries",
        "Packet loss",
        [prom(mean_of("loss_ratio", by, PROBE_SEL), leg)],
        unit="percentunit",
        description="A diagnostic: packet loss is not a QCVN 81 indicator.",
    )
    access = LIMITS["access_time"]
    b.add(
        "timeseries",
        f"Service access time ({STAT_WORDS[access.stat]})",
        [prom(judged("access_time_ms", access.stat, by, PROBE_SEL), leg)],
        unit="ms",
        th=at_most(access),
        description=lines(access),
    )
    for metric, word, lims in (
        ("dl_bps", "download", (LIMITS["dl_mean_5g"],)),
        ("ul_bps", "upload", (LIMITS["ul_mean_5g"],)),
        ("dl_bps", "download", (LIMITS["dl_median_4g"], LIMITS["dl_median_5g"])),
    ):
        b.add(
            "timeseries",
            f"{STAT_WORDS[lims[0].stat].capitalize()} {word}",
            [prom(judged(metric, lims[0].stat, by, PROBE_SEL), leg)],
            unit="bps",
            th=at_least(*lims),
            description=lines(*lims),
        )
    b.add(
        "table",
        "Over the range, per operator and technology",
        [
            prom(mean_of("dl_bps", by, PROBE_SEL, "$__range"), instant=True, ref="A"),
            prom(mean_of("ul_bps", by, PROBE_SEL, "$__range"), instant=True, ref="B"),
            prom(
                f"avg by ({by}) (avg_over_time(netqos_1m_rtt_ms_p95{{{PROBE_SEL}}}[$__range]))",
                instant=True,
                ref="C",
            ),
            prom(mean_of("loss_ratio", by, PROBE_SEL, "$__range"), instant=True, ref="D"),
        ],
        w=24,
        options={"showHeader": True},
        description="A: mean download, B: mean upload (bit/s), C: typical p95 RTT (ms), D: packet loss.",
    )
    flux_head = (
        "from(bucket: v.defaultBucket)\n"
        "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n"
        '  |> filter(fn: (r) => r._measurement == "netqos_1m" and r._field == "{field}")\n'
        '  |> group(columns: ["operator", "technology"])\n'
        "  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)"
    )
    # No limit lines here: these are means of the minute figures, not the statistics the
    # profiles judge; the panels above draw them.
    b.add(
        "timeseries",
        "p95 RTT (InfluxDB, Flux)",
        [flux(flux_head.format(field="rtt_ms_p95"))],
        unit="ms",
        description="The same figures from InfluxDB through Flux, for deployments writing there"
        " (the limits are drawn on the panels above, against the statistics they judge).",
    )
    b.add(
        "timeseries",
        "Mean download (InfluxDB, Flux)",
        [flux(flux_head.format(field="dl_bps_mean"))],
        unit="bps",
    )
    return b


def network() -> Board:
    b = Board(
        "netqos-network",
        "netqos · Network elements",
        "Interface utilisation, traffic and errors of the polled elements; the poller's own health.",
        [
            variable("operator", "Operator", "netqos_device_up"),
            variable("commune", "Commune", "netqos_device_up"),
            variable("kind", "Kind", "netqos_device_up"),
        ],
    )
    leg = "{{entity}} {{interface}}"
    for way in ("in", "out"):
        b.add(
            "timeseries",
            f"Top 10 interfaces by utilisation ({way})",
            [
                prom(
                    "topk(10, max by (entity, interface)"
                    f" (netqos_if_{way}_utilisation_ratio{{{DEVICE_SEL}}}))",
                    leg,
                )
            ],
            unit="percentunit",
            description="Each minute's utilisation. QCVN 34 limits a link's mean occupancy over the"
            " period: its line is on 'Busiest links over the range'.",
        )
    b.add(
        "timeseries",
        "Traffic in, top 10 elements",
        [prom(f"topk(10, sum by (entity) (netqos_if_in_bps{{{DEVICE_SEL}}}))", "{{entity}}")],
        unit="bps",
    )
    b.add(
        "timeseries",
        "Interface errors, top 10",
        [
            prom(
                "topk(10, sum by (entity, interface)"
                f' ({{__name__=~"netqos_if_(in|out)_errors_per_s",{DEVICE_SEL}}}))',
                leg,
            )
        ],
        unit="short",
    )
    occupancy = LIMITS["link_occupancy"]
    b.add(
        "table",
        "Busiest links over the range",
        [
            prom(
                "topk(20, "
                + judged(
                    "if_in_utilisation_ratio",
                    occupancy.stat,
                    "entity, interface, commune",
                    DEVICE_SEL,
                    "$__range",
                )
                + ")",
                instant=True,
            )
        ],
        unit="percentunit",
        th=at_most(occupancy),
        description=f"Each link's mean utilisation (in) over the range. {lines(occupancy)}",
    )
    b.add(
        "timeseries",
        "Polls by result",
        [prom("sum by (result) (increase(netqos_snmp_polls_total[$__rate_interval]))", "{{result}}")],
        description="From netqos's /metrics, scraped.",
    )
    b.add(
        "timeseries",
        "Slowest polls (last poll's duration)",
        [prom("topk(10, netqos_snmp_poll_duration_seconds)", "{{device}}")],
        unit="s",
        description="From netqos's /metrics, scraped.",
    )
    return b


def availability() -> Board:
    b = Board(
        "netqos-availability",
        "netqos · Outages and availability",
        "Which elements and probes are down, and availability over the range.",
        [
            variable("operator", "Operator", "netqos_device_up"),
            variable("commune", "Commune", "netqos_device_up"),
            variable("kind", "Kind", "netqos_device_up"),
        ],
    )
    b.add(
        "stat",
        "Elements down now",
        [prom(f"count(netqos_device_up{{{DEVICE_SEL}}} == 0) or vector(0)", instant=True)],
        w=6,
        h=5,
        th=thresholds((None, "green"), (1, "red")),
    )
    b.add(
        "stat",
        "Probes silent for 3 intervals",
        [
            prom(
                "sum((time() - max by (entity) (max_over_time(netqos_probe_last_seen_ms[$__range])) / 1000)"
                " > bool (3 * max by (entity) (max_over_time(netqos_probe_expected_interval_s[$__range]))))",
                instant=True,
            )
        ],
        w=6,
        h=5,
        th=thresholds((None, "green"), (1, "red")),
    )
    b.add(
        "gauge",
        "Availability, all selected elements",
        [prom(f"avg(avg_over_time(netqos_device_up{{{DEVICE_SEL}}}[$__range]))", instant=True)],
        w=6,
        h=5,
        unit="percentunit",
        th=at_least(LIMITS["availability"]),
        decimals=2,
        description=AVAILABILITY_NOTE,
    )
    b.add(
        "stat",
        "Downtime over the range",
        [
            prom(
                f"sum(1 - avg_over_time(netqos_device_up{{{DEVICE_SEL}}}[$__range])) * $__range_s / 3600",
                instant=True,
            )
        ],
        w=6,
        h=5,
        unit="h",
        description="Element-hours down: each element's unavailability times the range, added up.",
    )
    b.add(
        "state-timeline",
        "Element state",
        [prom(f"min by (entity) (netqos_device_up{{{DEVICE_SEL}}})", "{{entity}}")],
        w=24,
        h=10,
        mappings=[
            {
                "type": "value",
                "options": {"0": {"text": "down", "color": "red"}, "1": {"text": "up", "color": "green"}},
            }
        ],
        th=thresholds((None, "red"), (1, "green")),
    )
    b.add(
        "table",
        "Availability per element over the range",
        [
            prom(
                f"avg by (entity, kind, commune) (avg_over_time(netqos_device_up{{{DEVICE_SEL}}}[$__range]))",
                instant=True,
            )
        ],
        unit="percentunit",
        th=at_least(LIMITS["availability"]),
        decimals=3,
        description="Share of polls the element answered (down after 3 missed polls, as in its outages). "
        + AVAILABILITY_NOTE,
    )
    b.add(
        "bargauge",
        "Availability per commune",
        [
            prom(
                f"avg by (commune) (avg_over_time(netqos_device_up{{{DEVICE_SEL}}}[$__range]))",
                "{{commune}}",
                instant=True,
            )
        ],
        unit="percentunit",
        th=at_least(LIMITS["availability"]),
        decimals=3,
        description=AVAILABILITY_NOTE,
    )
    return b


def probes() -> Board:
    b = Board(
        "netqos-probes",
        "netqos · Probe fleet health",
        "When each probe was last heard from, how complete its data is, how good its clock is.",
        [
            variable("operator", "Operator", "netqos_probe_batches"),
            variable("technology", "Technology", "netqos_probe_batches"),
            variable("commune", "Commune", "netqos_probe_batches"),
        ],
    )
    last = (
        "max by (entity, commune, operator, technology)"
        f" (max_over_time(netqos_probe_last_seen_ms{{{PROBE_SEL}}}[$__range]))"
    )
    b.add(
        "table",
        "Last seen (seconds ago)",
        [prom(f"time() - {last} / 1000", instant=True)],
        unit="s",
        th=thresholds((None, "green"), (180, "yellow"), (900, "red")),
    )
    b.add(
        "table",
        "Completeness over the range",
        [
            prom(
                f"clamp_max(sum by (entity) (sum_over_time(netqos_probe_batches{{{PROBE_SEL}}}[$__range]))"
                " / ($__range_s / max by (entity)"
                f" (max_over_time(netqos_probe_expected_interval_s{{{PROBE_SEL}}}[$__range]))), 1)",
                instant=True,
            )
        ],
        unit="percentunit",
        th=thresholds((None, "red"), (0.9, "yellow"), (0.99, "green")),
        description="Batches received / batches the probe's interval promises over the range.",
    )
    b.add(
        "timeseries",
        "Clock offset",
        [prom(f"max by (entity) (netqos_probe_clock_offset_ms{{{PROBE_SEL}}})", "{{entity}}")],
        unit="ms",
        th=thresholds((None, "green"), (100, "red")),
    )
    b.add(
        "stat",
        "Probes with a synchronised clock",
        [prom(f"avg(last_over_time(netqos_probe_clock_synced{{{PROBE_SEL}}}[$__range]))", instant=True)],
        w=6,
        unit="percentunit",
        th=below_is_bad(1.0),
    )
    b.add(
        "stat",
        "Probes reporting",
        [prom(f"count({last})", instant=True)],
        w=6,
    )
    b.add(
        "timeseries",
        "Measurements received per minute",
        [
            prom(
                f"sum by (technology) (sum_over_time(netqos_probe_measurements{{{PROBE_SEL}}}[1m]))",
                "{{technology}}",
            )
        ],
    )
    b.add(
        "timeseries",
        "Ingest: messages accepted per second",
        [prom("sum(rate(netqos_ingest_messages_accepted_total[$__rate_interval]))", "accepted")],
        unit="short",
        description="From netqos's /metrics, scraped.",
    )
    b.add(
        "timeseries",
        "Time-series sink: written, dropped, spooled",
        [
            prom("sum(rate(netqos_tsdb_points_written_total[$__rate_interval]))", "written/s", ref="A"),
            prom(
                "sum(rate(netqos_tsdb_points_dropped_total[$__rate_interval])) or vector(0)",
                "dropped/s",
                ref="B",
            ),
            prom("sum(netqos_tsdb_spool_points)", "in spool", ref="C"),
        ],
        description="From netqos's /metrics, scraped. Dropped points are counted by reason.",
    )
    return b


BOARDS = (overview, operator_qos, network, availability, probes)


def gazetteer() -> list[dict[str, Any]]:
    """Grafana's worldmap-style gazetteer: one {key, name, latitude, longitude} per commune code."""
    with COMMUNES_CSV.open(encoding="utf-8") as f:
        return [
            {"key": r["code"], "name": r["name"], "latitude": float(r["lat"]), "longitude": float(r["lon"])}
            for r in csv.DictReader(f)
        ]


def render() -> dict[Path, str]:
    """Every generated file and its content."""
    out: dict[Path, str] = {}
    for make in BOARDS:
        board = make()
        out[HERE / "dashboards" / f"{board.uid}.json"] = (
            json.dumps(board.json(), indent=2, ensure_ascii=False) + "\n"
        )
    out[HERE / "gazetteer" / "netqos-communes.json"] = (
        json.dumps(gazetteer(), indent=2, ensure_ascii=False) + "\n"
    )
    return out


def main() -> int:
    for path, text in render().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
