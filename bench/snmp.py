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

Run: ``python bench/snmp.py`` (4 agents x 25 walks x 3 runs) or ``--quick`` (2 x 5 x 1).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
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

from collector.snmp.ber import parse_oid  # noqa: E402
from collector.snmp.ber import warm_up as ber_warm_up  # noqa: E402
from collector.snmp.client import V2cSession  # noqa: E402
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
            ber_warm_up()
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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--walks", type=int, default=25, help="timed walks per agent and run, each side")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--netns-pairs", type=int, default=100, help="2P+1 interfaces per agent; 0: the host's")
    ap.add_argument("--max-repetitions", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="2 agents x 5 walks, one run")
    args = ap.parse_args(argv)
    if args.quick:
        args.agents, args.walks, args.repeat = min(args.agents, 2), min(args.walks, 5), 1
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
    print(
        f"RESULT ours_varbinds_per_cpu_s={ours_cpu:.0f} peer_varbinds_per_cpu_s={p_cpu:.0f}"
        f" ratio={ours_cpu / p_cpu:.3f} "
        f"ours_varbinds_per_s={ours_wall:.0f} peer_varbinds_per_s={p_wall:.0f} interfaces={interfaces} "
        f"agents={args.agents} walks={args.walks} repeats={args.repeat}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
