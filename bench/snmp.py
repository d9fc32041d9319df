"""SNMP walk benchmark: netqos's collector against prometheus-snmp-exporter, in one run.

Both walk the same IF-MIB tables (every ifEntry and ifXEntry column net-snmp serves: 40
per interface) of the same net-snmp agents with GETBULK max-repetitions 50, SNMPv2c.
With ``--netns-pairs 100`` (the default) each agent runs in a network namespace of our
own with 100 veth pairs, i.e. 201 interfaces and 8,040 varbinds per walk; the exporter
and our client join that namespace, so all traffic stays on its loopback
(tests/snmpd.py explains why).

Ours: ``collector.snmp.client.V2cSession.walk`` on the 40 column OIDs, which decodes
every response in the numba kernel straight into columnar arrays (row index, tag,
signed/unsigned value, string offsets) — the full decode the poller uses. It runs on
its own event loop in one thread; its CPU is that thread's CPU time
(``time.thread_time``), so nothing else in this process is counted. Peer: the
exporter's own process CPU (``/proc/PID/stat``). Agents' CPU is counted for neither.

The headline is varbinds per CPU-second (the machine is shared and has 2 cores, so
wall-clock rates swing with whatever else runs; CPU-seconds do much less).
``ratio`` = ours / peer varbinds per CPU-second. Each walk's varbind count is checked
against the exporter's count for the same agent.

Per-ONU scale (``--onus``, on by default): an OLT with 8 PON cards x 16 ports x 128 ONUs
(16,384 rows of a 6-column ONU table indexed ifIndex.ontId, 97,650 varbinds: the 327 offline
ONUs have no optical readings) served by the project's simulated agent
(probes/simulate/snmp_agent.py, in a process of its own, on 127.0.0.1). Ours walks its six
columns with ``V2cSession.walk`` (CPU: the thread's, as above); the peer is net-snmp's
``snmpbulkwalk`` on the table's subtree, same agent, same max-repetitions, in the same run
(CPU: the child's utime + stime from ``wait4``; numeric OIDs, no MIB files loaded, output
read through a pipe and its lines counted). ``onu_ratio`` = ours / peer varbinds per
CPU-second. Then one full poll through the Poller (walk, join by index, names, states,
series, device rows) against ``snmp.deadline_s``: the poll's duration, then the write of its
16,384 rows to a scratch SQLite store, timed apart (it happens after the deadline's span).

Run: ``python bench/snmp.py`` (4 agents x 25 walks x 3 runs; ONU: 5 walks each side) or
``--quick`` (2 x 5 x 1; ONU: 1 walk each side, one poll).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from snmp_peer import (  # noqa: E402
    IF_TABLE_COLUMNS,
    IF_XTABLE_COLUMNS,
    MODULE,
    PeerError,
    SnmpExporter,
    measure_exporter,
    peer_agents,
    snmp_yml,
)

from collector.core.kernels import warm_up  # noqa: E402
from collector.snmp.ber import parse_oid  # noqa: E402
from collector.snmp.client import V2cSession  # noqa: E402
from probes.simulate.snmp_agent import ONU_COLUMNS, ONU_ENTRY  # noqa: E402
from tests.snmpd import SnmpdAgent, enter_netns  # noqa: E402

# The exporter walks the two subtrees, so it also reads ifSpecific (ifEntry.22, an OID).
_ALL = (*IF_TABLE_COLUMNS, ("ifSpecific", "1.3.6.1.2.1.2.2.1.22", "OID"), *IF_XTABLE_COLUMNS)
COLUMNS = [parse_oid(oid) for _, oid, _ in _ALL]
STRING_COLUMNS = {i for i, (_, _, t) in enumerate(_ALL) if t not in ("gauge", "counter")}


@dataclass
class OursResult:
    walks: int
    varbinds: int
    requests: int
    wall_s: float
    cpu_s: float

    @property
    def varbinds_per_s(self) -> float:
        return self.varbinds / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def varbinds_per_cpu_s(self) -> float:
        return self.varbinds / self.cpu_s if self.cpu_s > 0 else float("inf")


def measure_ours(
    agents: Sequence[SnmpdAgent],
    netns: str | None,
    *,
    walks_per_agent: int,
    concurrency: int,
    max_repetitions: int,
) -> tuple[OursResult, dict[int, int]]:
    """Walk every agent `walks_per_agent` times on a private loop in a thread inside the namespace."""
    out: dict[str, object] = {}

    async def walk_once(agent: SnmpdAgent) -> tuple[int, int]:
        s = V2cSession(agent.host, agent.port, agent.community.encode(), timeout_s=5.0, retries=1)
        try:
            cols = await s.walk(COLUMNS, STRING_COLUMNS, max_repetitions)
        finally:
            await s.close()
        n = sum(len(c) for c in cols)
        return n, s.requests

    async def main() -> None:
        warm = [await walk_once(a) for a in agents]  # untimed: the expected count per agent
        sem = asyncio.Semaphore(concurrency)

        async def job(a: SnmpdAgent) -> tuple[int, int, int]:
            async with sem:
                n, req = await walk_once(a)
                return a.port, n, req

        cpu0, t0 = time.thread_time(), time.perf_counter()
        done = await asyncio.gather(*(job(a) for _ in range(walks_per_agent) for a in agents))
        wall, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
        out["warm"] = {a.port: n for a, (n, _) in zip(agents, warm, strict=True)}
        out["done"] = done
        out["wall"], out["cpu"] = wall, cpu

    def thread_main() -> None:
        try:
            if netns:
                enter_netns(netns)
            warm_up("collector.snmp.ber")
            asyncio.run(main())
        except BaseException as exc:  # handed to the caller's thread
            out["error"] = exc

    t = threading.Thread(target=thread_main, name="ours")
    t.start()
    t.join(timeout=600)
    if t.is_alive():
        raise PeerError("our walks did not finish in 600 s")
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    warm: dict[int, int] = out["warm"]  # type: ignore[assignment]
    done: list[tuple[int, int, int]] = out["done"]  # type: ignore[assignment]
    for port, n, _ in done:
        if n != warm[port]:
            raise PeerError(f"walk of port {port} returned {n} varbinds, the first walk {warm[port]}")
    res = OursResult(
        walks=len(done),
        varbinds=sum(n for _, n, _ in done),
        requests=sum(r for _, _, r in done),
        wall_s=float(out["wall"]),  # type: ignore[arg-type]
        cpu_s=float(out["cpu"]),  # type: ignore[arg-type]
    )
    return res, warm


# -- per-ONU scale ------------------------------------------------------------------------------

ONU_SHAPE = (8, 16, 128)  # PON cards, ports per card, ONUs per port: 16,384 ONUs
ONU_OIDS = [(*ONU_ENTRY, sub) for sub, _ in ONU_COLUMNS]
ONU_STRING_COLUMNS = {0}  # onuDescription
ONU_PROFILE = """
name: gpon_bench
scalars:
  - {name: sysUpTime, oid: 1.3.6.1.2.1.1.3.0, type: timeticks}
tables:
  - name: onus
    row_label: onu
    row_name_column: onuDescription
    index: [ifIndex, ontId]
    columns:
      - {name: onuDescription, oid: 1.3.6.1.4.1.32473.16.1.1.2, type: string}
      - {name: onuRunState, oid: 1.3.6.1.4.1.32473.16.1.1.3, type: enum, state_changes: true,
         states: {1: online, 2: offline}}
      - {name: onuRxPower, oid: 1.3.6.1.4.1.32473.16.1.1.4, type: gauge, metric: onu_rx_power_dbm,
         scale: 0.01}
      - {name: onuTxPower, oid: 1.3.6.1.4.1.32473.16.1.1.5, type: gauge, metric: onu_tx_power_dbm,
         scale: 0.01}
      - {name: onuDistance, oid: 1.3.6.1.4.1.32473.16.1.1.6, type: gauge, metric: onu_distance_m}
      - {name: onuLastDownCause, oid: 1.3.6.1.4.1.32473.16.1.1.7, type: enum}
"""
# The agent process: builds the OLT, prints its port, serves until its stdin closes.
_AGENT_CODE = """
import asyncio, sys
from probes.simulate.snmp_agent import SimDevice, serve_devices

async def main() -> None:
    dev = SimDevice("olt-onus", community=sys.argv[1], kind="olt", n_interfaces=2,
                    onus=(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
    fleet = await serve_devices([dev], "127.0.0.1")
    print(fleet.port_of("olt-onus"), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await fleet.close()

asyncio.run(main())
"""


class OnuAgent:
    """The simulated OLT with its ONU table, in a child process (its CPU is nobody's)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.community = "bench-" + secrets.token_hex(6)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _AGENT_CODE, self.community, *map(str, shape)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks while the agent builds its index
        if not line.strip().isdigit():
            self.close()
            raise PeerError(f"the simulated OLT did not start (said {line!r})")
        self.port = int(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@dataclass
class WalkFigures:
    walks: int
    varbinds: int  # per walk
    wall_s: float  # all walks
    cpu_s: float

    @property
    def per_cpu_s(self) -> float:
        return self.walks * self.varbinds / self.cpu_s if self.cpu_s > 0 else float("inf")


def onu_walk_ours(agent: OnuAgent, walks: int, max_repetitions: int) -> WalkFigures:
    """`walks` sequential walks of the six ONU columns on a private loop in a thread."""
    out: dict[str, object] = {}

    async def walk_once() -> int:
        s = V2cSession("127.0.0.1", agent.port, agent.community.encode(), timeout_s=5.0, retries=1)
        try:
            cols = await s.walk(ONU_OIDS, ONU_STRING_COLUMNS, max_repetitions)
        finally:
            await s.close()
        return sum(len(c) for c in cols)

    async def main() -> None:
        expected = await walk_once()  # untimed
        cpu0, t0 = time.thread_time(), time.perf_counter()
        counts = [await walk_once() for _ in range(walks)]
        out["wall"], out["cpu"] = time.perf_counter() - t0, time.thread_time() - cpu0
        if any(n != expected for n in counts):
            raise PeerError(f"ONU walks returned {counts}, the first {expected}")
        out["n"] = expected

    def thread_main() -> None:
        try:
            warm_up("collector.snmp.ber")
            asyncio.run(main())
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=thread_main, name="ours-onu")
    t.start()
    t.join(timeout=600)
    if t.is_alive():
        raise PeerError("our ONU walks did not finish in 600 s")
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return WalkFigures(walks, int(out["n"]), float(out["wall"]), float(out["cpu"]))  # type: ignore[call-overload, arg-type]


def onu_walk_peer(agent: OnuAgent, walks: int, max_repetitions: int) -> WalkFigures:
    """`walks` runs of snmpbulkwalk on the ONU table, CPU of each child from wait4."""
    argv = [
        "snmpbulkwalk",
        "-v2c",
        "-c",
        agent.community,
        f"-Cr{max_repetitions}",
        "-On",
        "-t",
        "5",
        "-r",
        "1",
        f"127.0.0.1:{agent.port}",
        "." + ".".join(map(str, ONU_ENTRY)),
    ]
    env = {**os.environ, "MIBS": "", "MIBDIRS": "/nonexistent"}  # numeric OIDs: no MIB parsing

    def once() -> tuple[int, float, float]:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert proc.stdout is not None
        # The table is the agent's last: the walk ends at endOfMibView, which snmpbulkwalk
        # prints as a line of its own ("No more variables left in this MIB View").
        lines = sum(1 for line in proc.stdout if b"No more variables" not in line)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise PeerError(f"snmpbulkwalk exited {proc.returncode}")
        return lines, time.perf_counter() - t0, usage.ru_utime + usage.ru_stime

    expected, _, _ = once()  # untimed
    runs = [once() for _ in range(walks)]
    if any(n != expected for n, _, _ in runs):
        raise PeerError(f"snmpbulkwalk returned {[n for n, _, _ in runs]} lines, the first {expected}")
    return WalkFigures(walks, expected, sum(w for _, w, _ in runs), sum(c for _, _, c in runs))


def onu_poll(agent: OnuAgent, max_repetitions: int) -> dict[str, float]:
    """Two polls of the OLT through the Poller (first sight, then known rows): their
    durations, rows and varbinds, and the time to write each poll's rows to SQLite."""
    from pydantic import SecretStr

    from collector.ingest_settings import IngestSettings
    from collector.inventory import Credential, Device, Inventory
    from collector.pipeline import IngestPipeline
    from collector.snmp.poller import Poller, PollSink
    from collector.snmp.settings import SnmpSettings
    from collector.store.devices import DeviceRepo
    from collector.store.store import Store

    async def run(tmp: Path) -> dict[str, float]:
        (tmp / "profiles").mkdir()
        (tmp / "profiles" / "gpon_bench.yaml").write_text(ONU_PROFILE)
        store = Store(tmp / "bench.db")
        pipeline = IngestPipeline(store, IngestSettings())
        sink = PollSink(DeviceRepo(store))
        inv = Inventory(
            (Device(id="olt-onus", host="127.0.0.1", port=agent.port, credentials="c", kind="gpon_bench"),),
            {"c": Credential(version="2c", community=SecretStr(agent.community))},
        )
        settings = SnmpSettings(profiles_dir=tmp / "profiles", max_repetitions=max_repetitions)
        poller = Poller(settings, pipeline, sink, inventory=inv)
        stop = asyncio.Event()
        stop.set()  # no schedule loops: polled here
        poller._stop = stop
        poller.apply(inv)
        rt = poller.runtimes["olt-onus"]
        out: dict[str, float] = {"deadline_s": settings.deadline_s}
        try:
            for k in (1, 2):
                rec = await poller.poll_once(rt)
                if not rec.ok:
                    raise PeerError(f"poll {k} of the OLT failed: {rec.error}")
                out[f"poll{k}_s"] = rec.duration_s
                out[f"poll{k}_rows"] = len(rec.rows.get("onus", ()))
                out[f"poll{k}_varbinds"] = rec.varbinds
                t0 = time.perf_counter()
                await sink.flush()
                out[f"write{k}_s"] = time.perf_counter() - t0
                await asyncio.sleep(0.01)
        finally:
            await pipeline.drain()
            store.close()
        return out

    with tempfile.TemporaryDirectory(prefix="netqos-bench-onu-") as d:
        return asyncio.run(run(Path(d)))


def bench_onus(walks: int, max_repetitions: int) -> tuple[float, str]:
    """The ONU walk, ours and snmpbulkwalk's; returns the ONU ratio and its RESULT fields."""
    cards, ports, per_port = ONU_SHAPE
    print(
        f"ONU walk: {cards} cards x {ports} ports x {per_port} ONUs = {cards * ports * per_port:,} rows,"
        f" {len(ONU_OIDS)} columns, simulated agent, v2c, max-repetitions {max_repetitions},"
        f" {walks} walk(s) each side",
        flush=True,
    )
    t0 = time.perf_counter()
    agent = OnuAgent(ONU_SHAPE)
    try:
        print(f"  agent ready in {time.perf_counter() - t0:.1f} s", flush=True)
        ours = onu_walk_ours(agent, walks, max_repetitions)
        peer = onu_walk_peer(agent, walks, max_repetitions)
        if ours.varbinds != peer.varbinds:
            raise PeerError(f"ours walked {ours.varbinds} ONU varbinds, snmpbulkwalk {peer.varbinds}")
        poll = onu_poll(agent, max_repetitions)
    finally:
        agent.close()
    ratio = ours.per_cpu_s / peer.per_cpu_s
    slowest = max(poll["poll1_s"], poll["poll2_s"])
    print(
        f"  ours  V2cSession.walk {ours.varbinds:,} varbinds per walk, {ours.wall_s / walks:.2f} s per walk,"
        f" {ours.per_cpu_s:,.0f} varbinds per CPU-second"
    )
    print(
        f"  peer  snmpbulkwalk    {peer.varbinds:,} varbinds per walk, {peer.wall_s / walks:.2f} s per walk,"
        f" {peer.per_cpu_s:,.0f} varbinds per CPU-second"
    )
    print(
        f"  poll (Poller, deadline {poll['deadline_s']:g} s): first {poll['poll1_s']:.2f} s,"
        f" second {poll['poll2_s']:.2f} s, {int(poll['poll2_rows']):,} rows;"
        f" rows written in {poll['write1_s']:.2f} s / {poll['write2_s']:.2f} s"
    )
    print(f"  ONU ratio (per CPU-second, ours / snmpbulkwalk): {ratio:.2f}")
    return ratio, (
        f"onu_rows={int(poll['poll2_rows'])} onu_varbinds={ours.varbinds}"
        f" onu_walk_s={ours.wall_s / walks:.3f} onu_varbinds_per_cpu_s={ours.per_cpu_s:.0f}"
        f" snmpbulkwalk_walk_s={peer.wall_s / walks:.3f} snmpbulkwalk_varbinds_per_cpu_s={peer.per_cpu_s:.0f}"
        f" onu_ratio={ratio:.3f} onu_poll_s={slowest:.3f}"
        f" deadline_s={poll['deadline_s']:g} within_deadline={int(slowest < poll['deadline_s'])}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--walks", type=int, default=25, help="timed walks per agent and run, each side")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--netns-pairs", type=int, default=100, help="2P+1 interfaces per agent; 0: the host's")
    ap.add_argument("--max-repetitions", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="2 agents x 5 walks, one run; 1 ONU walk")
    ap.add_argument("--onu-walks", type=int, default=5, help="timed ONU-table walks each side; 0: none")
    ap.add_argument("--onus-only", action="store_true", help="only the 16,384-ONU walk")
    args = ap.parse_args(argv)
    if args.quick:
        args.agents, args.walks, args.repeat = min(args.agents, 2), min(args.walks, 5), 1
        args.onu_walks = min(args.onu_walks, 1)
    if not 0 <= args.onu_walks <= 100:
        ap.error("onu-walks 0..100")
    if args.onus_only:
        try:
            onu_ratio, onu_fields = bench_onus(max(1, args.onu_walks), args.max_repetitions)
        except PeerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"RESULT ratio={onu_ratio:.3f} {onu_fields}", flush=True)
        return 0
    if not (1 <= args.agents <= 16 and 1 <= args.walks <= 1000 and 1 <= args.repeat <= 20):
        ap.error("agents 1..16, walks 1..1000, repeat 1..20")
    interfaces = 2 * args.netns_pairs + 1 if args.netns_pairs else "host"
    print(
        f"SNMP walk benchmark: {args.agents} agents x {args.walks} walks x {args.repeat} runs per side, "
        f"ifTable+ifXTable ({len(COLUMNS)} columns), {interfaces} interfaces per agent, v2c, "
        f"max-repetitions {args.max_repetitions}",
        flush=True,
    )
    ours_runs: list[OursResult] = []
    peer_cpu: list[float] = []
    peer_wall: list[float] = []
    started = time.perf_counter()
    try:
        with peer_agents(args.agents, netns_pairs=args.netns_pairs) as (agents, netns):
            first = agents[0]
            config = snmp_yml(community=first.community, v3=first.v3, max_repetitions=args.max_repetitions)
            with SnmpExporter(config, netns=netns) as exporter:
                for run in range(1, args.repeat + 1):
                    peer = measure_exporter(
                        exporter, agents, scrapes_per_agent=args.walks, concurrency=args.agents, module=MODULE
                    )
                    ours, _ = measure_ours(
                        agents,
                        netns,
                        walks_per_agent=args.walks,
                        concurrency=args.agents,
                        max_repetitions=args.max_repetitions,
                    )
                    per_walk_peer = peer.varbinds // peer.scrapes
                    per_walk_ours = ours.varbinds // ours.walks
                    if per_walk_ours != per_walk_peer:
                        raise PeerError(
                            f"ours walked {per_walk_ours} varbinds per walk, the exporter {per_walk_peer}"
                        )
                    ours_runs.append(ours)
                    peer_cpu.append(peer.varbinds_per_cpu_s)
                    peer_wall.append(peer.varbinds_per_s)
                    print(
                        f"  run {run}: {per_walk_ours} varbinds per walk"
                        f" | ours {ours.varbinds_per_cpu_s:,.0f}/CPU-s {ours.varbinds_per_s:,.0f}/s"
                        f" ({ours.requests // ours.walks} requests/walk, CPU {ours.cpu_s:.3f} s) "
                        f"| exporter {peer.varbinds_per_cpu_s:,.0f}/CPU-s {peer.varbinds_per_s:,.0f}/s "
                        f"({peer.requests // peer.scrapes} requests/walk, CPU {peer.cpu_s:.3f} s)",
                        flush=True,
                    )
    except PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ours_cpu = statistics.median(r.varbinds_per_cpu_s for r in ours_runs)
    ours_wall = statistics.median(r.varbinds_per_s for r in ours_runs)
    p_cpu, p_wall = statistics.median(peer_cpu), statistics.median(peer_wall)
    print(
        f"ours  netqos V2cSession.walk   {ours_cpu:>12,.0f} varbinds per CPU-second"
        f"  {ours_wall:>12,.0f} varbinds/s"
    )
    print(
        f"peer  prometheus-snmp-exporter {p_cpu:>12,.0f} varbinds per CPU-second  {p_wall:>12,.0f} varbinds/s"
    )
    print(f"ratio (per CPU-second): {ours_cpu / p_cpu:.2f}; wall {time.perf_counter() - started:.1f} s")
    fields = (
        f"ours_varbinds_per_cpu_s={ours_cpu:.0f} peer_varbinds_per_cpu_s={p_cpu:.0f}"
        f" ratio={ours_cpu / p_cpu:.3f} "
        f"ours_varbinds_per_s={ours_wall:.0f} peer_varbinds_per_s={p_wall:.0f} interfaces={interfaces} "
        f"agents={args.agents} walks={args.walks} repeats={args.repeat}"
    )
    if args.onu_walks:
        try:
            fields += " " + bench_onus(args.onu_walks, args.max_repetitions)[1]
        except PeerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    # One RESULT line, last: the IF-MIB walk's ratio (the bench's headline) and the ONU walk's.
    print(f"RESULT {fields}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
