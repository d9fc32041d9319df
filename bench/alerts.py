"""Alert-to-webhook benchmark: netqos's alerting path against Prometheus Alertmanager, in one run.

Workload: N devices go down at once, each its own incident (no parents), and every one
must reach a webhook receiver as one notification. Both sides deliver to the same local
HTTP receiver (tests/alerting.py's WebhookSink), and each run checks that exactly N
distinct notifications arrived.

Ours: the store holds the N devices; their N `down` StateChanges are written the way the
poller writes them, and the clock starts. The engine (rules -> alerts -> incidents ->
route/group/mute/dedup -> durable outbox, every decision committed to SQLite) and the
webhook dispatcher (in order, at least once) run as in `netqos serve`. The clock stops when
the receiver has all N.

Peer: the Debian `prometheus-alertmanager` (on a free loopback port, its own storage,
clustering off), grouping by an `incident` label with `group_wait: 0s` so every alert is a
notification of its own, as ours. The clock starts when the N alerts are POSTed to its API
v2 (one request) and stops when the receiver has all N.

Headline: notifications delivered per second, end to end. ``ratio`` = ours / peer.
Alertmanager keeps its state in memory and sends groups concurrently; ours commits every
step to SQLite and delivers one receiver's notifications strictly in order (so a receiver
that was down gets them in order): the ratio prices that durability and ordering.

Run: ``python bench/alerts.py`` (N = 1000, 3 runs) or ``--quick`` (N = 200, one run).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import httpx  # noqa: E402

from alerts.engine import AlertEngine  # noqa: E402
from alerts.notify import make_receivers  # noqa: E402
from alerts.notify.outbox import Dispatcher, Outbox, Receiver  # noqa: E402
from alerts.rules import parse_rules  # noqa: E402
from alerts.settings import AlertSettings  # noqa: E402
from collector.events import StateChange  # noqa: E402
from collector.inventory import Device  # noqa: E402
from collector.store.devices import DeviceRepo, PollRecord  # noqa: E402
from collector.store.store import Store  # noqa: E402
from tests.alerting import WebhookSink, start_alertmanager  # noqa: E402
from tests.conftest import terminate  # noqa: E402

RULES = (
    "rules:\n  - {name: device_down, kind: state, entity_kind: device, states: [down], severity: critical}\n"
)
PEER_CONFIG = """
route:
  receiver: sink
  group_by: [incident]
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 24h
receivers:
  - name: sink
    webhook_configs:
      - url: {url}
        send_resolved: false
"""


class BenchError(Exception):
    pass


async def ours(workdir: Path, n: int, sink: WebhookSink) -> float:
    """Seconds from N down StateChanges in the store until the receiver has N notifications."""
    store = Store(workdir / "bench.db")
    repo = DeviceRepo(store)
    devs = [Device(id=f"bts-{i:05d}", host="127.0.0.1", credentials="c", kind="bts") for i in range(n)]
    repo.sync_inventory(devs, {d.id: "bts" for d in devs}, {d.id: 60.0 for d in devs})
    now = int(time.time() * 1000)
    repo.write([PollRecord(d.id, now - 1000, True, 0.01) for d in devs], [])
    settings = AlertSettings.model_validate(
        {
            "eval_interval_s": 0.2,
            "receivers": [{"type": "webhook", "name": "sink", "url": sink.url}],
            "route": {"receivers": ["sink"], "group_wait_s": 0, "group_interval_s": 300},
        }
    )
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    engine = AlertEngine(
        store, settings, rules=parse_rules(RULES), on_enqueue=lambda: loop.call_soon_threadsafe(wake.set)
    )
    receiver: Receiver = make_receivers(settings)[0]  # type: ignore[assignment]
    dispatcher = Dispatcher(Outbox(store), receiver, settings, wake)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(engine.run(stop)), asyncio.create_task(dispatcher.run(stop))]
    await asyncio.sleep(0.2)
    before = len(sink.received)
    started = time.perf_counter()
    down_ms = int(time.time() * 1000)
    repo.write([], [StateChange("device", d.id, "down", down_ms, "poll", "bench", d.id) for d in devs])
    await asyncio.to_thread(sink.wait_for, before + n, 600)
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    store.close()
    got = sink.bodies()[before:]
    entities = {b["alerts"][0]["labels"]["entity"] for b in got}
    if len(got) != n or len(entities) != n:
        raise BenchError(f"ours: {len(got)} notifications for {len(entities)} devices, expected {n}")
    return elapsed


def peer(workdir: Path, n: int, sink: WebhookSink) -> float:
    """Seconds from POSTing N alerts to Alertmanager until the receiver has N notifications."""
    proc, base = start_alertmanager(workdir, PEER_CONFIG.format(url=sink.url))
    try:
        before = len(sink.received)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        alerts = [
            {
                "labels": {"alertname": "device_down", "entity": f"bts-{i:05d}", "incident": str(i + 1)},
                "annotations": {"root_cause": f"bts-{i:05d}"},
                "startsAt": now,
            }
            for i in range(n)
        ]
        started = time.perf_counter()
        httpx.post(f"{base}/api/v2/alerts", json=alerts, timeout=60).raise_for_status()
        sink.wait_for(before + n, 600)
        elapsed = time.perf_counter() - started
    finally:
        terminate(proc)
    got = sink.bodies()[before:]
    entities = {a["labels"]["entity"] for b in got for a in b["alerts"]}
    if len(got) != n or len(entities) != n:
        raise BenchError(f"alertmanager: {len(got)} notifications for {len(entities)} alerts, expected {n}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--incidents", type=int, default=1000, help="devices going down at once (N)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="N = 200, one run")
    args = ap.parse_args(argv)
    if args.quick:
        args.incidents, args.repeat = 200, 1
    n = args.incidents
    ours_s: list[float] = []
    peer_s: list[float] = []
    started = time.perf_counter()
    try:
        with WebhookSink() as sink:
            for run in range(1, args.repeat + 1):
                with tempfile.TemporaryDirectory(prefix="netqos-bench-alerts-") as tmp:
                    o = asyncio.run(ours(Path(tmp), n, sink))
                with tempfile.TemporaryDirectory(prefix="netqos-bench-am-") as tmp:
                    p = peer(Path(tmp), n, sink)
                ours_s.append(o)
                peer_s.append(p)
                print(
                    f"  run {run}: {n} incidents | ours {o:.2f} s ({n / o:,.0f}/s)"
                    f" | alertmanager {p:.2f} s ({n / p:,.0f}/s)",
                    flush=True,
                )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    o_rate, p_rate = n / statistics.median(ours_s), n / statistics.median(peer_s)
    print(f"ours  netqos alerting -> webhook   {o_rate:>10,.0f} notifications/s (each committed, in order)")
    print(f"peer  prometheus-alertmanager      {p_rate:>10,.0f} notifications/s")
    print(f"ratio: {o_rate / p_rate:.2f}; wall {time.perf_counter() - started:.1f} s")
    print(
        f"RESULT ours_notifications_per_s={o_rate:.0f} peer_notifications_per_s={p_rate:.0f}"
        f" ratio={o_rate / p_rate:.3f} incidents={n} repeats={args.repeat}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
