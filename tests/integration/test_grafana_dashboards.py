"""Grafana provisioning and dashboards: structure checked, every Prometheus query run.

Grafana itself is not installed here. The dashboards' JSON is checked for what Grafana
needs (panels on the grid, datasource uids that the provisioning defines, template
variables), and every query of every panel on the Prometheus datasource is run against
a VictoriaMetrics that `netqos demo` fills through the time-series sink, while the same
VictoriaMetrics scrapes the demo's /metrics; each must return data.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import free_port
from tests.victoria import VictoriaMetrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
# Grafana's global variables as a 1-hour dashboard range would set them; every template
# variable at "All". Longest names first: $__range_s before $__range.
GLOBALS = {"$__range_s": "3600", "$__range": "1h", "$__rate_interval": "1m", "$__interval": "15s"}


def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA / "build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    # Registered before it runs, as an import would: its dataclasses look their module up.
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def dashboards() -> list[dict[str, Any]]:
    return [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    ]


def provisioned() -> dict[str, str]:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "netqos.yaml").read_text())
    return {d["uid"]: d["type"] for d in doc["datasources"]}


def substitute(expr: str, variables: list[str]) -> str:
    for k, v in GLOBALS.items():
        expr = expr.replace(k, v)
    for name in variables:
        expr = expr.replace(f"${name}", ".*")
    assert "$" not in expr, f"unresolved variable in {expr}"
    return expr


def test_files_match_their_generator() -> None:
    for path, text in load_build().render().items():
        assert path.exists(), f"{path} missing: run python deploy/grafana/build.py"
        assert path.read_text(encoding="utf-8") == text, f"{path} differs from build.py: rebuild it"


def test_dashboards_are_well_formed_and_use_provisioned_datasources() -> None:
    sources = provisioned()
    assert set(sources.values()) == {"prometheus", "influxdb"}
    influx = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "netqos.yaml").read_text())
    flux = next(d for d in influx["datasources"] if d["type"] == "influxdb")
    assert flux["jsonData"]["version"] == "Flux" and "token" in flux["secureJsonData"]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "netqos.yaml").read_text())
    assert provider["providers"][0]["options"]["path"]
    boards = dashboards()
    assert {b["uid"] for b in boards} == {
        "netqos-overview",
        "netqos-operator-qos",
        "netqos-network",
        "netqos-availability",
        "netqos-probes",
    }
    kinds: set[str] = set()
    for b in boards:
        assert b["title"] and b["schemaVersion"] >= 36
        ids = [p["id"] for p in b["panels"]]
        assert len(ids) == len(set(ids)), b["uid"]
        cells: set[tuple[int, int]] = set()
        for p in b["panels"]:
            kinds.add(p["type"])
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, (b["uid"], p["title"])
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{b['uid']}: {p['title']} overlaps another panel"
            cells |= mine
            assert p["targets"], (b["uid"], p["title"])
            for t in [p, *p["targets"]]:
                ds = t["datasource"]
                assert sources.get(ds["uid"]) == ds["type"], f"{b['uid']}: {p['title']}: datasource {ds}"
            for t in p["targets"]:
                assert t.get("expr") or t.get("query"), (b["uid"], p["title"])
        for v in b["templating"]["list"]:
            assert sources.get(v["datasource"]["uid"]) == v["datasource"]["type"]
    assert {"geomap", "gauge", "timeseries", "table", "stat", "state-timeline"} <= kinds


def test_geomap_finds_every_commune_in_the_gazetteer() -> None:
    with (ROOT / "probes" / "simulate" / "data" / "communes.csv").open(encoding="utf-8") as f:
        communes = {r["code"]: (float(r["lat"]), float(r["lon"])) for r in csv.DictReader(f)}
    gaz = json.loads((GRAFANA / "gazetteer" / "netqos-communes.json").read_text(encoding="utf-8"))
    assert {g["key"]: (g["latitude"], g["longitude"]) for g in gaz} == communes
    maps = [p for b in dashboards() for p in b["panels"] if p["type"] == "geomap"]
    assert maps
    for p in maps:
        (layer,) = p["options"]["layers"]
        assert layer["location"] == {
            "mode": "lookup",
            "lookup": "commune",
            "gazetteer": "public/gazetteer/netqos-communes.json",
        }
        # The lookup field is a label every row of the query keeps.
        assert all("by (commune)" in t["expr"] for t in p["targets"])


@pytest.fixture(scope="module")
def demo_vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """`netqos demo` writing to a VictoriaMetrics that also scrapes the demo's /metrics."""
    work = tmp_path_factory.mktemp("grafana")
    api_port, broker_port = free_port(), free_port()
    scrape = work / "scrape.yaml"
    scrape.write_text(
        yaml.safe_dump(
            {
                "scrape_configs": [
                    {
                        "job_name": "netqos",
                        "scrape_interval": "2s",
                        "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}],
                    }
                ]
            }
        )
    )
    vm = VictoriaMetrics(work / "vm", extra_args=[f"-promscrape.config={scrape}"])
    vm.start()
    env = {
        **os.environ,
        "NETQOS_API__PORT": str(api_port),
        "NETQOS_MQTT__EMBEDDED__PORT": str(broker_port),
        "NETQOS_API__TOKENS": '["grafana-test-token"]',
        "NETQOS_TSDB__URL": vm.url,
        "NETQOS_TSDB__ROLLUP_SETTLE_S": "1",
        "NETQOS_TSDB__FLUSH_INTERVAL_S": "0.5",
    }
    netqos = Path(sys.executable).with_name("netqos")
    args = ["demo", "--probes", "40", "--interval", "2", "--backfill-minutes", "10", "--snmp-interval", "2"]
    proc = subprocess.Popen(
        [str(netqos), *args, "--duration", "240"],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(work / "demo.log").open("wb"),
    )
    try:
        yield vm
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        vm.stop()
        log = (work / "demo.log").read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]


def has_data(vm: VictoriaMetrics, expr: str, instant: bool) -> bool:
    now = time.time()
    if instant:
        return bool(vm.query(expr, at_s=now))
    r = httpx.get(
        f"{vm.url}/api/v1/query_range",
        params={"query": expr, "start": str(now - 900), "end": str(now), "step": "15"},
        timeout=60.0,
    )
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return any(s["values"] for s in body["data"]["result"])


def test_every_prometheus_query_returns_data_from_the_demo(demo_vm: VictoriaMetrics) -> None:
    todo: list[tuple[str, str, bool]] = []  # (where, expr, instant)
    labels: list[tuple[str, str, str]] = []  # (where, label, metric)
    for b in dashboards():
        names = [v["name"] for v in b["templating"]["list"]]
        for v in b["templating"]["list"]:
            metric, label = v["query"]["query"][len("label_values(") : -1].split(", ")
            labels.append((f"{b['uid']} ${v['name']}", label, metric))
        for p in b["panels"]:
            for t in p["targets"]:
                if t["datasource"]["type"] == "prometheus":
                    where = f"{b['uid']} / {p['title']} / {t['refId']}"
                    todo.append((where, substitute(t["expr"], names), bool(t["instant"])))
    assert len(todo) >= 30
    # The demo needs a little time: backfill, two polls for rates, scrapes of /metrics.
    deadline = time.monotonic() + 150
    while True:
        todo = [(w, e, i) for w, e, i in todo if not has_data(demo_vm, e, i)]
        labels = [
            (w, lab, metric)
            for w, lab, metric in labels
            if not httpx.get(
                f"{demo_vm.url}/api/v1/label/{lab}/values", params={"match[]": metric}, timeout=30.0
            ).json()["data"]
        ]
        if (not todo and not labels) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert not labels, f"template variables without values: {labels}"
    assert not todo, "queries without data:\n" + "\n".join(f"{w}: {e}" for w, e, _ in todo)
