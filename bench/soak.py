"""Soak: the whole pipeline on this machine for a given duration, and nothing lost at the end.

What runs
    * a private mosquitto on a free 127.0.0.1 port (the production broker, not the embedded one);
    * the service, ``netqos serve`` (netqos.serve, every role) in a child process of its own,
      so its RSS and open file descriptors are its own: MQTT consumer, numba core, SQLite,
      SNMP poller, tier roller, the alert engine with the default rules, the time-series sink
      and the API;
    * a real VictoriaMetrics (Debian's ``victoria-metrics``) on a free loopback port that the
      sink writes to (``--no-tsdb`` leaves it out);
    * a viewer asking the API, every report interval, for the last 5 minutes' RTT p95 per operator
      and for the active incidents (status and latency recorded: a soak is also read from);
    * N simulated field probes (default 5,000, probes/simulate) publishing schema-v1 batches
      over MQTT QoS 1 every ``--interval`` seconds (default 60, the probes' real cadence);
    * M simulated SNMP agents (default 500, probes/simulate/snmp_agent.py: real SNMP v2c on
      UDP loopback ports) that the service polls every ``--snmp-interval`` seconds. They stand
      in for snmpd: 500 snmpd processes would cost far more memory than the service under test.

What it reports
    A line every ``--report-every`` seconds: measurements published and stored, ingest rate
    (stored per second over the last interval), lag (published but not yet stored), the
    service's RSS and open file descriptors, SNMP responses served, the API's latency. At the end, once the
    fleet has stopped and the service has drained and exited on SIGTERM, the store is read
    back: every measurement published (PUBACKed by the broker) must be stored exactly once
    (sum of the probes' measurements_total, and one probe_batches row per message).
    The service's own counters (scraped from /metrics before it stops) tell what the sink
    wrote and dropped and whether any alert-engine step failed; none may have.

    RSS growth is measured after warm-up (``--warmup`` seconds, default a fifth of the run):
    (median RSS of the last third of the samples - median of the first third) / the first
    third's median, a trend rather than one sample; ``rss_peak_pct`` is the largest sample
    against the first one (a swing's top counts there).

There is no peer for a soak: ``ratio`` is stored ÷ published measurements (1 = nothing lost).
Run ``python bench/soak.py --duration 600`` or ``--quick`` (30 s of load, 500 probes, 50 devices;
under a minute in all).
The last line is ``RESULT key=value ...``; exit status 1 when anything was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import httpx  # noqa: E402
import yaml  # noqa: E402
from ingest import BenchError, find_binary, free_port, start_mosquitto, stop_process, tail  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from collector.store.sqlite import SQLiteStore  # noqa: E402
from probes.simulate import build_fleet, run_fleet  # noqa: E402
from probes.simulate.devices import build_device_fleet, inventory_rows, sim_devices  # noqa: E402
from probes.simulate.run import FleetStats  # noqa: E402
from probes.simulate.snmp_agent import AgentFleet, serve_devices  # noqa: E402
from tests.victoria import VictoriaMetrics  # noqa: E402

HOST = "127.0.0.1"


@dataclass
class Sample:
    t_s: float
    published: int
    stored: int
    rss_kb: int
    fds: int
    snmp_responses: int
    api_ms: float  # the slowest of the viewer's requests this interval (0: none)


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    api_ms: list[float] = field(default_factory=list)
    api_errors: list[str] = field(default_factory=list)


# What the service's /metrics tells at the end: our name -> the sample's name there.
SERVICE_COUNTERS = {
    "tsdb_submitted": "netqos_tsdb_points_submitted_total",
    "tsdb_written": "netqos_tsdb_points_written_total",
    "tsdb_dropped": "netqos_tsdb_points_dropped_total",
    "alert_rules": "netqos_alert_rules_loaded",
    "alert_engine_failures": "netqos_alert_engine_failures_total",
    "rule_failures": "netqos_alert_rule_evaluation_failures_total",
    "notifications_enqueued": "netqos_notifications_enqueued_total",
}


def service_counters(api: str) -> dict[str, float]:
    """Sums of SERVICE_COUNTERS' samples (over their labels) from the service's /metrics."""
    text = httpx.get(f"{api}/metrics", timeout=10.0).text
    total = dict.fromkeys(SERVICE_COUNTERS, 0.0)
    by_family = {v: k for k, v in SERVICE_COUNTERS.items()}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            key = by_family.get(smp.name)
            if key is not None:
                total[key] += smp.value
    return total


async def ask_api(client: httpx.AsyncClient, run: Run) -> float:
    """One round of a viewer's questions; the slowest answer's milliseconds. Failures are kept."""
    slowest = 0.0
    for path, params in (
        (
            "/api/v1/qos",
            # The last 5 minutes: a question of constant size once the soak is 5 minutes in, so
            # that memory it takes is not mistaken for growth (a last-hour question's data grows
            # for the first hour, and so does what answering it holds).
            {"metric": "rtt_ms", "stat": "p95", "group_by": "operator", "from": str(int(time.time()) - 300)},
        ),
        ("/api/v1/incidents", {"state": "active"}),
    ):
        t = time.perf_counter()
        try:
            r = await client.get(path, params=params)
            if r.status_code != 200:
                run.api_errors.append(f"{path} {r.status_code} {r.text[:200]}")
        except httpx.HTTPError as exc:
            run.api_errors.append(f"{path} {exc!r}")
        ms = (time.perf_counter() - t) * 1000
        run.api_ms.append(ms)
        slowest = max(slowest, ms)
    return slowest


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def stored_measurements(store: SQLiteStore) -> tuple[int, int]:
    """(measurements, messages) stored, from the probes' counters (committed with the data)."""
    row = (
        store.reader()
        .execute("SELECT coalesce(sum(measurements_total), 0), coalesce(sum(messages_total), 0) FROM probes")
        .fetchone()
    )
    return int(row[0]), int(row[1])


def make_devices(n: int) -> list[object]:
    """The first `n` devices of the demo's device fleet (routers, BTS, OLTs), as many BTS per
    commune as needed to reach `n`."""
    per = 1
    while True:
        specs = build_device_fleet(n_per_commune=per)
        if len(specs) >= n or per >= 99:
            return list(specs[:n])
        per += 1


def write_config(
    work: Path,
    mq_port: int,
    agents: AgentFleet,
    specs: Sequence[object],
    args: argparse.Namespace,
    community: str,
    tsdb_url: str | None,
    api_port: int,
    viewer_token: str,
) -> Path:
    inv = work / "inventory.yaml"
    cred = work / "credentials.yaml"
    rows = inventory_rows(specs, HOST, {s.device.device_id: s.port for s in agents.servers}, "sim")  # type: ignore[arg-type]
    for r in rows:
        r["poll_interval_s"] = args.snmp_interval
    inv.write_text(yaml.safe_dump({"devices": rows}, sort_keys=False))
    cred.write_text(yaml.safe_dump({"credentials": {"sim": {"version": "2c", "community": community}}}))
    cred.chmod(0o600)
    cfg = work / "netqos.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"host": HOST, "port": mq_port, "client_id": "soak-ingest"},
                "store": {"sqlite_path": str(work / "netqos.db")},
                "api": {
                    "host": HOST,
                    "port": api_port,
                    "keys": [{"name": "soak-viewer", "role": "viewer", "token": viewer_token}],
                },
                "snmp": {"inventory_file": str(inv), "credentials_file": str(cred)},
                "log": {"format": "json"},
                # The default alert rules (alerts.rules_file unset), as a fresh install has them.
                "alerts": {"enabled": True},
                **(
                    {"tsdb": {"url": tsdb_url, "spool_dir": str(work / "tsdb-spool")}}
                    if tsdb_url is not None
                    else {}
                ),
            }
        )
    )
    return cfg


def start_service(cfg: Path, log: Path, work: Path) -> subprocess.Popen[bytes]:
    """`netqos serve` (netqos.serve, every role) in a process of its own, logging to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "netqos.cli", "--config", str(cfg), "serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=work,
        )


async def wait_subscribed(log: Path, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the service exited with {proc.returncode}: {tail(log, 2000)}")
        if "mqtt_subscribed" in await asyncio.to_thread(tail, log, 1 << 20):
            return
        await asyncio.sleep(0.2)
    raise BenchError(f"the service did not subscribe in {timeout_s} s: {tail(log, 2000)}")


def fmt_line(s: Sample, prev: Sample | None) -> str:
    rate = (s.stored - prev.stored) / (s.t_s - prev.t_s) if prev and s.t_s > prev.t_s else 0.0
    return (
        f"t={s.t_s:7.0f}s published={s.published} stored={s.stored} rate={rate:.0f}/s"
        f" lag={s.published - s.stored} rss_mb={s.rss_kb / 1024:.1f} fds={s.fds}"
        f" snmp_responses={s.snmp_responses} api_ms={s.api_ms:.0f}"
    )


async def soak(args: argparse.Namespace, work: Path) -> int:
    broker_bin = find_binary("mosquitto", "/usr/sbin/mosquitto")
    mq_proc, mq_port, _ = start_mosquitto(broker_bin, work)
    community = "soak-" + secrets.token_hex(6)
    specs = make_devices(args.devices)
    agents = await serve_devices(sim_devices(specs, community=community))  # type: ignore[arg-type]
    vm: VictoriaMetrics | None = None
    if args.tsdb:
        vm = VictoriaMetrics(work / "victoria-metrics")
        await asyncio.to_thread(vm.start)
    api_port, viewer_token = free_port(), secrets.token_urlsafe(24)
    api = f"http://{HOST}:{api_port}"
    cfg = write_config(
        work, mq_port, agents, specs, args, community, vm.url if vm else None, api_port, viewer_token
    )
    db = work / "netqos.db"
    fleet = build_fleet(args.probes)
    store = SQLiteStore(db)
    store.register_probes(p.info(args.interval) for p in fleet)
    log = work / "service.log"
    svc = start_service(cfg, log, work)
    stop = asyncio.Event()
    stats = FleetStats()
    run = Run()
    fleet_task: asyncio.Task[FleetStats] | None = None
    exit_code = 0
    counters: dict[str, float] = {}
    client = httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {viewer_token}"}, timeout=30)
    try:
        await wait_subscribed(log, svc)
        print(
            f"service pid {svc.pid} subscribed; {len(fleet)} probes every {args.interval} s,"
            f" {len(agents.servers)} SNMP agents every {args.snmp_interval} s, {args.duration} s",
            flush=True,
        )
        fleet_task = asyncio.create_task(
            run_fleet(
                fleet,
                HOST,
                mq_port,
                interval_s=args.interval,
                connections=args.connections,
                stop=stop,
                stats=stats,
                client_id_prefix="soak-sim",
            )
        )
        t0 = time.monotonic()
        prev: Sample | None = None
        # SIGTERM / Ctrl-C end the load early: the drain, the checks and the report still run,
        # and nothing (broker, service, VictoriaMetrics) is left behind.
        ended = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, ended.set)

        def sample(api_ms: float = 0.0) -> Sample:
            stored, _ = stored_measurements(store)
            return Sample(
                time.monotonic() - t0,
                stats.measurements_published,
                stored,
                rss_kb(svc.pid),
                open_fds(svc.pid),
                sum(d.stats.responses for d in agents.devices),
                api_ms,
            )

        while time.monotonic() - t0 < args.duration and not ended.is_set():
            with contextlib.suppress(TimeoutError):
                left = max(0.0, args.duration - (time.monotonic() - t0))
                await asyncio.wait_for(ended.wait(), min(args.report_every, left))
            if svc.poll() is not None:
                raise BenchError(f"the service died with {svc.returncode}: {tail(log, 2000)}")
            if fleet_task.done():
                raise BenchError(f"the fleet stopped early: {fleet_task.exception()!r}")
            s = sample(await ask_api(client, run))  # the store reader belongs to this thread
            run.samples.append(s)
            print(fmt_line(s, prev), flush=True)
            prev = s
        if ended.is_set():
            args.duration = time.monotonic() - t0  # what the report's duration_s then says
            print(f"ended early by a signal after {args.duration:.0f} s", flush=True)
        stop.set()
        await fleet_task
        # Everything PUBACKed must come through: wait (bounded) for the backlog to be stored.
        for _ in range(int(args.drain_timeout * 2)):  # another process's store: polled, bounded
            if stored_measurements(store)[0] >= stats.measurements_published:
                break
            await asyncio.sleep(0.5)
        final_live = sample()
        print("fleet stopped; " + fmt_line(final_live, prev), flush=True)
        if vm is not None:
            # Let the sink catch up with the last flushes before reading its counters.
            for _ in range(60):  # bounded: 30 s
                counters = await asyncio.to_thread(service_counters, api)
                if counters["tsdb_written"] + counters["tsdb_dropped"] >= counters["tsdb_submitted"]:
                    break
                await asyncio.sleep(0.5)
        else:
            counters = await asyncio.to_thread(service_counters, api)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        exit_code = 2
    finally:
        stop.set()
        if fleet_task is not None and not fleet_task.done():
            fleet_task.cancel()
            with contextlib.suppress(BaseException):
                await fleet_task
        if svc.poll() is None:
            svc.send_signal(signal.SIGTERM)  # graceful: stop intake, drain, store, exit 0
            try:
                await asyncio.to_thread(svc.wait, 60)
            except subprocess.TimeoutExpired:
                svc.kill()
                svc.wait(10)
        await client.aclose()
        await agents.close()
        stop_process(mq_proc)
        if vm is not None:
            await asyncio.to_thread(vm.stop)
    if exit_code:
        store.close()
        return exit_code

    measurements, messages = stored_measurements(store)
    batches = int(store.reader().execute("SELECT count(*) FROM probe_batches").fetchone()[0])
    store.close()
    lost = stats.measurements_published - measurements
    warm = [s for s in run.samples if s.t_s >= args.warmup]
    growth = peak = 0.0
    rss_warm = rss_end = 0.0
    if warm:
        rss_warm, rss_end = warm[0].rss_kb / 1024, warm[-1].rss_kb / 1024
        # Growth is a trend: the median of the last third of the samples against the first
        # third's. The RSS of a Python service swings by tens of MB around its level (collector
        # passes, allocator arenas); one sample at a swing's top is not growth, a leak is.
        third = max(1, len(warm) // 3)
        first = statistics.median(s.rss_kb for s in warm[:third])
        last = statistics.median(s.rss_kb for s in warm[-third:])
        growth = 100.0 * (last - first) / first
        peak = 100.0 * (max(s.rss_kb for s in warm) - warm[0].rss_kb) / warm[0].rss_kb
    rates = [
        (b.stored - a.stored) / (b.t_s - a.t_s) for a, b in zip(run.samples, run.samples[1:], strict=False)
    ]
    mean_rate = sum(rates) / len(rates) if rates else 0.0
    max_lag = max((s.published - s.stored for s in run.samples), default=0)
    fds = [s.fds for s in warm] or [0]
    print(
        f"service exit {svc.returncode}; published {stats.measurements_published} measurements in"
        f" {stats.messages_published} messages; stored {measurements} in {messages} messages"
        f" ({batches} batch rows); fleet errors {stats.errors}, reconnects {stats.reconnects}"
    )
    if svc.returncode != 0:
        print(f"error: the service exited with {svc.returncode}: {tail(log, 2000)}", file=sys.stderr)
    api_sorted = sorted(run.api_ms) or [0.0]
    api_p99 = api_sorted[min(len(api_sorted) - 1, int(0.99 * len(api_sorted)))]
    for err in run.api_errors[:5]:
        print(f"api error: {err}", file=sys.stderr)
    print(
        "service counters: "
        + " ".join(f"{k}={v:.0f}" for k, v in counters.items())
        + (f"; VictoriaMetrics at {vm.url} (stopped)" if vm is not None else "; no time-series sink")
    )
    healthy = (
        not run.api_errors
        and counters.get("tsdb_dropped", 0) == 0
        and counters.get("alert_engine_failures", 0) == 0
        and counters.get("rule_failures", 0) == 0
        and counters.get("alert_rules", 0) > 0
    )
    ok = lost == 0 and messages == stats.messages_published == batches and svc.returncode == 0 and healthy
    ratio = measurements / stats.measurements_published if stats.measurements_published else 0.0
    print(
        f"RESULT ratio={ratio:.6f} lost={lost} published={stats.measurements_published} stored={measurements}"
        f" messages={stats.messages_published} duration_s={args.duration:.0f} probes={len(fleet)}"
        f" devices={len(agents.servers)} ingest_rate_per_s={mean_rate:.0f} max_lag={max_lag}"
        f" rss_warm_mb={rss_warm:.1f} rss_end_mb={rss_end:.1f} rss_growth_pct={growth:.2f}"
        f" rss_peak_pct={peak:.2f}"
        f" fds_min={min(fds)} fds_max={max(fds)}"
        f" snmp_responses={run.samples[-1].snmp_responses if run.samples else 0}"
        f" api_requests={len(run.api_ms)} api_errors={len(run.api_errors)} api_p99_ms={api_p99:.1f}"
        f" tsdb_written={counters.get('tsdb_written', 0):.0f}"
        f" tsdb_dropped={counters.get('tsdb_dropped', 0):.0f}"
        f" alert_rules={counters.get('alert_rules', 0):.0f}"
        f" alert_engine_failures={counters.get('alert_engine_failures', 0):.0f}"
        f" ok={int(ok)}"
    )
    return 0 if ok else 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    p.add_argument("--probes", type=int, default=5000, help="simulated probes (default 5000)")
    p.add_argument("--devices", type=int, default=500, help="simulated SNMP agents (default 500)")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between a probe's batches")
    p.add_argument("--snmp-interval", type=float, default=60.0, help="seconds between a device's polls")
    p.add_argument("--connections", type=int, default=8, help="MQTT connections the fleet shares")
    p.add_argument("--report-every", type=float, default=30.0, help="seconds between report lines")
    p.add_argument(
        "--warmup", type=float, default=None, help="seconds before RSS growth counts (default: 1/5)"
    )
    p.add_argument(
        "--drain-timeout", type=float, default=300.0, help="longest wait for the backlog at the end"
    )
    p.add_argument("--quick", action="store_true", help="30 s, 500 probes, 50 devices, a line every 5 s")
    p.add_argument("--no-tsdb", dest="tsdb", action="store_false", help="run without VictoriaMetrics")
    p.add_argument("--workdir", type=Path, help="keep the broker, store and logs here (default: a temp dir)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.probes, args.devices, args.report_every = 30.0, 500, 50, 5.0
        args.interval = args.snmp_interval = 10.0
    if args.warmup is None:
        args.warmup = args.duration / 5
    if min(args.duration, args.interval, args.snmp_interval, args.report_every) <= 0 or args.probes < 1:
        p.error("durations must be > 0 and --probes >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(soak(args, args.workdir))
    with tempfile.TemporaryDirectory(prefix="netqos-soak-") as tmp:
        return asyncio.run(soak(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
