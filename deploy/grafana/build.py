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
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMMUNES_CSV = ROOT / "probes" / "simulate" / "data" / "communes.csv"
GAZETTEER = "public/gazetteer/netqos-communes.json"  # where deploy/grafana mounts it in Grafana

PROM = {"type": "prometheus", "uid": "netqos-prom"}
FLUX = {"type": "influxdb", "uid": "netqos-influx"}

# QoS limits drawn as thresholds (source: the regulations named; change them here, then rebuild).
LIMITS = {
    "latency_ms": 50,  # QCVN 126:2021 (5G access latency) and QCVN 34:2019/2022 (fixed broadband)
    "dl_4g_bps": 40e6,  # Decision 1110/QD-BTTTT (2024): national 4G download target
    "dl_5g_bps": 100e6,  # QCVN 126:2021: 5G average download
    "ul_5g_bps": 30e6,  # QCVN 126:2021: 5G average upload
    "access_time_ms": 5000,  # QCVN 81:2019: LTE average service access time
    "availability": 0.995,  # QCVN 34: fixed broadband service availability
    "link_occupancy": 0.8,  # QCVN 34: average occupancy of links other than international
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
    b.add(
        "geomap",
        "Typical p95 RTT per commune",
        [prom(f"avg by (commune) (avg_over_time(netqos_1m_rtt_ms_p95{{{sel}}}[$__range]))", instant=True)],
        h=12,
        unit="ms",
        th=above_is_bad(LIMITS["latency_ms"]),
        options=geomap("p95 RTT"),
        description="Mean over the range of each probe's per-minute p95 round-trip time.",
    )
    b.add(
        "geomap",
        "Mean download per commune",
        [prom(mean_of("dl_bps", "commune", sel, "$__range"), instant=True)],
        h=12,
        unit="bps",
        th=below_is_bad(LIMITS["dl_4g_bps"]),
        options=geomap("download"),
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
    b.add(
        "gauge",
        "4G mean download",
        [
            prom(
                mean_of("dl_bps", "technology", 'technology="4G",operator=~"$operator"', "$__range"),
                instant=True,
            )
        ],
        w=4,
        h=6,
        unit="bps",
        th=below_is_bad(LIMITS["dl_4g_bps"]),
        description="National 4G target: 40 Mbit/s (Decision 1110/QD-BTTTT).",
    )
    b.add(
        "gauge",
        "5G mean download",
        [
            prom(
                mean_of("dl_bps", "technology", 'technology="5G",operator=~"$operator"', "$__range"),
                instant=True,
            )
        ],
        w=4,
        h=6,
        unit="bps",
        th=below_is_bad(LIMITS["dl_5g_bps"]),
        description="QCVN 126:2021: average download >= 100 Mbit/s.",
    )
    b.add(
        "gauge",
        "Network element availability",
        [prom("avg(avg_over_time(netqos_device_up[$__range]))", instant=True)],
        w=4,
        h=6,
        unit="percentunit",
        th=below_is_bad(LIMITS["availability"]),
        decimals=2,
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
    b.add(
        "timeseries",
        "p50 RTT",
        [prom(f"avg by ({by}) (netqos_1m_rtt_ms_p50{{{PROBE_SEL}}})", leg)],
        unit="ms",
    )
    b.add(
        "timeseries",
        "p95 RTT",
        [prom(f"avg by ({by}) (netqos_1m_rtt_ms_p95{{{PROBE_SEL}}})", leg)],
        unit="ms",
        th=above_is_bad(LIMITS["latency_ms"]),
        description="Limit 50 ms: QCVN 126 (5G access latency), QCVN 34 (fixed broadband latency).",
    )
    b.add(
        "timeseries",
        "Packet loss",
        [prom(mean_of("loss_ratio", by, PROBE_SEL), leg)],
        unit="percentunit",
        description="A diagnostic: packet loss is not a QCVN 81 indicator.",
    )
    b.add(
        "timeseries",
        "Service access time",
        [prom(mean_of("access_time_ms", by, PROBE_SEL), leg)],
        unit="ms",
        th=above_is_bad(LIMITS["access_time_ms"]),
        description="QCVN 81:2019: LTE average service access time <= 5 s.",
    )
    b.add(
        "timeseries",
        "Mean download",
        [prom(mean_of("dl_bps", by, PROBE_SEL), leg)],
        unit="bps",
        th=thresholds((None, "red"), (LIMITS["dl_4g_bps"], "yellow"), (LIMITS["dl_5g_bps"], "green")),
        description="Lines: 40 Mbit/s (4G national target), 100 Mbit/s (QCVN 126, 5G).",
    )
    b.add(
        "timeseries",
        "Mean upload",
        [prom(mean_of("ul_bps", by, PROBE_SEL), leg)],
        unit="bps",
        th=below_is_bad(LIMITS["ul_5g_bps"]),
        description="Line: 30 Mbit/s (QCVN 126, 5G upload).",
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
    b.add(
        "timeseries",
        "p95 RTT (InfluxDB, Flux)",
        [flux(flux_head.format(field="rtt_ms_p95"))],
        unit="ms",
        th=above_is_bad(LIMITS["latency_ms"]),
        description="The same figures from InfluxDB through Flux, for deployments writing there.",
    )
    b.add(
        "timeseries",
        "Mean download (InfluxDB, Flux)",
        [flux(flux_head.format(field="dl_bps_mean"))],
        unit="bps",
        th=thresholds((None, "red"), (LIMITS["dl_4g_bps"], "yellow"), (LIMITS["dl_5g_bps"], "green")),
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
            th=above_is_bad(LIMITS["link_occupancy"]),
            description="Line: 80 % average occupancy (QCVN 34, links other than international).",
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
    b.add(
        "table",
        "Busiest links over the range",
        [
            prom(
                "topk(20, max by (entity, interface, commune) "
                f"(avg_over_time(netqos_if_in_utilisation_ratio{{{DEVICE_SEL}}}[$__range])))",
                instant=True,
            )
        ],
        unit="percentunit",
        th=above_is_bad(LIMITS["link_occupancy"]),
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
        th=below_is_bad(LIMITS["availability"]),
        decimals=2,
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
        th=below_is_bad(LIMITS["availability"]),
        decimals=3,
        description="Share of polls the element answered (down after 3 missed polls, as in its outages).",
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
        th=below_is_bad(LIMITS["availability"]),
        decimals=3,
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
