"""The NOC view at /noc in a real headless Chromium: what is down now, open incidents with their
root cause and symptoms, probes offline and the province's last-hour p95 RTT per operator."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.incidents import add_symptom_in, open_in
from api.app import create_app
from collector.events import StateChange
from collector.ingest_settings import IngestSettings
from collector.pipeline import IngestPipeline
from collector.store.devices import DeviceRepo, PollRecord
from collector.store.sqlite import SQLiteStore
from tests.department_data import VIEWER, seed, settings_with_keys
from tests.e2e.test_page import _measure, headless
from tests.live_api import serve

pytestmark = pytest.mark.e2e

# The last hour's RTT, one sample a minute for 50 minutes (by hand: every p95 is the value
# itself, within the quantile sketch's 1 %): viettel's 5G probe 42 ms, vnpt's FTTH probe 9 ms.
RTT = {("p-a-vtl-5g", "viettel", "5G"): 42.0, ("p-a-vnp-ftth", "vnpt", "FTTH"): 9.0}


@pytest.fixture(scope="module")
def noc_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = SQLiteStore(tmp_path_factory.mktemp("noc") / "netqos.db")
    seed(store)
    now = int(time.time() * 1000)
    pipeline = IngestPipeline(store, IngestSettings())
    for (probe, op, tech), v in RTT.items():
        rows = [(now - (50 - i) * 60_000, tech, op, {"rtt_ms": v}) for i in range(50)]
        pipeline.accept(_measure(probe, 9000, rows))
    asyncio.run(pipeline.flush())
    # olt-1 has been down for 10 minutes; its uplink and viettel's probe in B went with it.
    DeviceRepo(store).write(
        [PollRecord("olt-1", now - 30_000, False, 2.0, error="timeout")],
        [StateChange("device", "olt-1", "down", now - 600_000, "poll", "no answer", "olt-1")],
    )
    store.set_probe_status([("p-b-vtl-4g", "offline", now - 540_000)])
    with store.transaction() as conn:
        iid = open_in(
            conn,
            kind="device_down",
            alert_key="device_down:olt-1",
            entity="olt-1",
            entity_kind="device",
            labels={"operator": "vnpt", "commune": "15301"},
            annotations={},
            severity="critical",
            opened_ms=now - 600_000,
            ready=True,
        )
        for key, entity, kind, ekind in (
            ("link_down:olt-1/pon-0/1", "olt-1/pon-0/1", "link_down", "interface"),
            ("probe_offline:p-b-vtl-4g", "p-b-vtl-4g", "probe_offline", "probe"),
        ):
            add_symptom_in(
                conn,
                iid,
                alert_key=key,
                entity=entity,
                entity_kind=ekind,
                kind=kind,
                labels={},
                start_ms=now - 590_000,
                now_ms=now - 590_000,
            )
    with serve(create_app(settings_with_keys(), store)) as url:
        yield url
    store.close()


def test_noc_shows_what_is_down_and_the_last_hour(noc_url: str, tmp_path: Path) -> None:
    url = f"{noc_url}/noc#token={VIEWER}"
    r = headless(url, tmp_path / "profile", "--window-size=1366,768", "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert 'data-state="ready"' in dom and 'id="noc-status" hidden' in dom.replace('class="status" ', ""), (
        dom[-3000:]
    )
    tiles = dict(re.findall(r'<div class="tile[^"]*" id="tile-([a-z]+)" data-count="(\d+)"', dom))
    assert tiles == {"devices": "1", "links": "1", "incidents": "1", "probes": "1"}, tiles
    # The device, its incident with root cause and both symptoms, the link and the probe.
    assert re.search(r'<tr data-device="olt-1"><td>olt-1</td><td>olt</td><td>vnpt</td><td>16021</td>', dom)
    m = re.search(r'<tr class="critical" data-incident="1">(.*?)</tr>', dom, re.S)
    assert m, dom[-3000:]
    inc = m.group(1)
    assert "<strong>olt-1</strong>" in inc and "device_down · device" in inc
    assert "<li>link_down: olt-1/pon-0/1</li>" in inc and "<li>probe_offline: p-b-vtl-4g</li>" in inc
    assert 'data-link="olt-1/pon-0/1"' in dom and 'data-probe="p-b-vtl-4g"' in dom
    # The fleet table: every probe with its state; no agent report here, so no version.
    fleet = re.search(r'id="noc-fleet-table">.*?</table>', dom, re.S)
    assert fleet, dom[-3000:]
    assert re.search(
        r'<tr data-probe="p-b-vtl-4g"><td>p-b-vtl-4g</td><td>[^<]* · viettel</td><td>offline</td><td>—</td>',
        fleet.group(0),
    )
    # The last hour per operator: the p95s by hand (within 1 %), and a chart with points and ink.
    for op, v in (("viettel", 42.0), ("vnpt", 9.0)):
        row = re.search(rf'<tr data-operator="{op}"><td>{op}</td><td class="num">([\d,]+) ms</td>', dom)
        assert row, dom[-3000:]
        assert abs(float(row.group(1).replace(",", ".")) - v) <= 0.01 * v
    chart = re.search(r'id="noc-rtt-chart" data-series="(\d+)" data-points="(\d+)" data-ink="(\d+)"', dom)
    assert chart and chart.group(1) == "2" and int(chart.group(2)) >= 20 and int(chart.group(3)) > 2000, chart
    shot = tmp_path / "noc.png"
    r = headless(url, tmp_path / "profile2", "--window-size=1366,900", f"--screenshot={shot}")
    assert r.returncode == 0 and shot.exists() and shot.stat().st_size > 20_000, r.stderr[-2000:]
    print(f"screenshot: {shot}")


def test_noc_refreshes_itself(noc_url: str, tmp_path: Path) -> None:
    """?refresh=5: within the 20 s of virtual time the view has fetched everything again."""
    r = headless(f"{noc_url}/noc?refresh=5#token={VIEWER}", tmp_path / "profile", "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r'data-refreshes="(\d+)"', r.stdout)
    assert m and int(m.group(1)) >= 2, r.stdout[:2000]


def test_noc_without_a_key_asks_for_one(noc_url: str, tmp_path: Path) -> None:
    r = headless(f"{noc_url}/noc", tmp_path / "profile", "--dump-dom")
    assert r.returncode == 0
    assert "an API key is needed" in r.stdout and 'data-refreshes="' not in r.stdout


def test_vendored_chart_library_is_served_from_the_package(noc_url: str) -> None:
    """uPlot comes from the package (no internet), under the page's CSP; only listed names."""
    with urllib.request.urlopen(f"{noc_url}/ui/vendor/uPlot.iife.min.js", timeout=30) as r:
        body = r.read()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/javascript")
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert body.startswith(b"/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    for name in ("uPlot-LICENSE", "uPlot.esm.js", "..%2Fapp.js"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{noc_url}/ui/vendor/{name}", timeout=30)
        assert e.value.code == 404
