"""Time to a drawn province view of the department page in headless Chromium.

Builds the browser tests' demo-like store (tests/e2e/test_page.py: the demo's ten communes,
six months of daily trend samples, July's compliance data), serves it on 127.0.0.1, and
opens `/` in Debian's `chromium` through the DevTools protocol, R times with a fresh profile
(no cache), after one load not counted (a running server's first answers). The page records
`performance.now()` (ms since navigation began) when the map
and the compliance matrix are drawn (`overview_ms`) and when the three trend charts are too
(`drawn_ms`), and when the page's HTML had arrived (`html_ms`: the browser's own start-up of
the navigation, before any of the page's code runs). Prints the median and worst of each and
`RESULT overview_ms=... drawn_ms=... html_ms=...`. `--verbose` lists every resource's timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.app import create_app
from collector.store.sqlite import SQLiteStore
from tests.conftest import free_port
from tests.department_data import VIEWER, seed, settings_with_keys
from tests.e2e.test_page import chromium, seed_province
from tests.live_api import serve
from tests.marks_data import seed_approximate_share


def start_browser(profile: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A headless chromium with the DevTools protocol on a loopback port, and its page's socket."""
    port = free_port()
    proc = subprocess.Popen(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--window-size=1366,768",
            f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):  # up to 20 s for the browser to listen
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                targets = [t for t in json.load(r) if t["type"] == "page"]
            if targets:
                return proc, str(targets[0]["webSocketDebuggerUrl"])
        except OSError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("chromium did not start")


RESOURCES = (
    "JSON.stringify(performance.getEntries().map(e => [e.name.slice(-60), Math.round(e.startTime),"
    " Math.round(e.responseEnd || e.startTime + e.duration)]))"
)


def one_load(url: str, profile: Path, verbose: bool = False) -> tuple[float, float, float]:
    proc, ws_url = start_browser(profile)
    try:
        return asyncio.run(measure(ws_url, url, verbose))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def measure(ws_url: str, url: str, verbose: bool) -> tuple[float, float, float]:
    async with websockets.connect(ws_url, max_size=None) as ws:
        n = 0

        async def call(method: str, **params: object) -> Any:
            nonlocal n
            n += 1
            await ws.send(json.dumps({"id": n, "method": method, "params": params}))
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("id") == n:
                    return msg.get("result", {})

        await call("Page.navigate", url=url)
        for _ in range(600):  # up to 60 s
            res = await call(
                "Runtime.evaluate",
                expression="JSON.stringify([document.body && document.body.dataset.overviewMs,"
                " document.body && document.body.dataset.drawnMs,"
                " performance.getEntriesByType('navigation')[0].responseEnd])",
                returnByValue=True,
            )
            value = json.loads(res.get("result", {}).get("value") or "[null, null, null]")
            if value[0] and value[1]:
                if verbose:
                    res = await call(
                        "Runtime.evaluate",
                        expression=RESOURCES,
                        returnByValue=True,
                    )
                    for name, start, end in json.loads(res["result"]["value"]):
                        print(f"  {start:6d} .. {end:6d} ms  {name}")
                return float(value[0]), float(value[1]), float(value[2])
            await asyncio.sleep(0.05)
    raise RuntimeError("the page never finished drawing")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--verbose", action="store_true", help="list each load's resources and when they came")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        store = SQLiteStore(Path(tmp) / "netqos.db")
        seed(store)
        seed_approximate_share(store)
        seed_province(store)
        print(f"store filled in {time.perf_counter() - t:.1f} s")
        with serve(create_app(settings_with_keys(), store)) as base:
            url = f"{base}/?period=2025-07&technology=4G#token={VIEWER}"
            overview, drawn = [], []
            # One load first, not counted: a running server has answered its first requests
            # (imports, the numba kernels' first calls) long before anyone opens the page.
            o, d, h = one_load(url, Path(tmp) / "profile-warm")
            print(f"first load (not counted): map and matrix drawn at {o:.0f} ms, trend charts at {d:.0f} ms")
            html = []
            for i in range(args.repeats):
                o, d, h = one_load(url, Path(tmp) / f"profile-{i}", args.verbose)
                print(
                    f"load {i + 1}: HTML received at {h:.0f} ms, map and matrix drawn at {o:.0f} ms,"
                    f" trend charts at {d:.0f} ms"
                )
                html.append(h)
                overview.append(o)
                drawn.append(d)
        store.close()
    print(
        f"RESULT overview_ms={statistics.median(overview):.0f} overview_max_ms={max(overview):.0f}"
        f" drawn_ms={statistics.median(drawn):.0f} drawn_max_ms={max(drawn):.0f}"
        f" html_ms={statistics.median(html):.0f} repeats={args.repeats}"
    )


if __name__ == "__main__":
    main()
