"""Peer side of the SNMP benchmark: prometheus-snmp-exporter walking IF-MIB on real snmpd agents.

What is measured
    How fast Debian's ``prometheus-snmp-exporter`` (0.21) walks ifTable and ifXTable
    (1.3.6.1.2.1.2.2 and 1.3.6.1.2.1.31.1.1, GETBULK with max-repetitions 50, SNMPv2c, or
    SNMPv3 authPriv with ``--v3``) of N net-snmp agents, each scraped K times through
    ``/snmp?target=127.0.0.1:PORT&module=if_mib``, at most C scrapes in flight. Figures:

    * ``varbinds``: varbinds the exporter walked, summed from ``snmp_scrape_pdus_returned``
      of every timed scrape (each scrape is checked to return as many as the untimed
      warm-up scrape of the same agent, and to hold one sample per walked column cell);
    * ``wall_s``: wall time from the first request to the last response;
    * ``cpu_s``: the exporter process's utime + stime (``/proc/PID/stat``) over the same
      span; agents' CPU is reported separately (``agent_cpu_s``) and not counted;
    * ``varbinds_per_s`` = varbinds / wall_s, ``varbinds_per_cpu_s`` = varbinds / cpu_s.

Large tables
    ``--netns-pairs P`` runs the agents inside a network namespace of our own holding P veth
    pairs (tests/snmpd.py ``NetnsIfTable``: 2P + 1 interfaces, e.g. 201 rows for P = 100).
    The exporter runs in that namespace too and the scraping threads enter it, so all
    traffic stays on the namespace's loopback. Without it the agents show the host's few
    interfaces. Needs root.

Run ``python bench/snmp_peer.py --netns-pairs 100`` (defaults: 4 agents x 25 scrapes x 3
runs on the same processes, medians reported; 15-30 s) or ``--quick`` (one run of 2 x 5, a
few seconds). The last line is ``RESULT key=value ...`` (rates: medians of the runs; counts
and seconds: totals); a scrape that fails or returns a different number of varbinds prints
``error:`` and exits 1.
The collector side (bench/snmp.py) imports ``run_peer``/``measure_exporter`` from here.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/snmp_peer.py` puts only bench/ on the path
    sys.path.insert(0, str(ROOT))

from tests.snmpd import (  # noqa: E402
    LOOPBACK,
    NetnsIfTable,
    SnmpdAgent,
    V3User,
    enter_netns,
    free_tcp_port,
    netns_entered,
)

EXPORTER = "/usr/bin/prometheus-snmp-exporter"
IF_TABLE = "1.3.6.1.2.1.2.2"
IF_XTABLE = "1.3.6.1.2.1.31.1.1"
MODULE = "if_mib"
MODULE_V3 = "if_mib_v3"
MAX_SCRAPES = 100_000
START_TIMEOUT_S = 15.0

# (name, column OID, exporter type) for every ifEntry / ifXEntry column snmpd serves.
# ifSpecific (ifEntry.22, an OBJECT IDENTIFIER) is walked but has no metric, as in the
# exporter's generated if_mib module. net-snmp 5.9 serves 22 ifEntry columns and 18 ifXEntry
# columns (not ifLinkUpDownTrapEnable): 40 varbinds and 39 samples per interface.
IF_TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ifIndex", f"{IF_TABLE}.1.1", "gauge"),
    ("ifDescr", f"{IF_TABLE}.1.2", "DisplayString"),
    ("ifType", f"{IF_TABLE}.1.3", "gauge"),
    ("ifMtu", f"{IF_TABLE}.1.4", "gauge"),
    ("ifSpeed", f"{IF_TABLE}.1.5", "gauge"),
    ("ifPhysAddress", f"{IF_TABLE}.1.6", "PhysAddress48"),
    ("ifAdminStatus", f"{IF_TABLE}.1.7", "gauge"),
    ("ifOperStatus", f"{IF_TABLE}.1.8", "gauge"),
    ("ifLastChange", f"{IF_TABLE}.1.9", "gauge"),
    ("ifInOctets", f"{IF_TABLE}.1.10", "counter"),
    ("ifInUcastPkts", f"{IF_TABLE}.1.11", "counter"),
    ("ifInNUcastPkts", f"{IF_TABLE}.1.12", "counter"),
    ("ifInDiscards", f"{IF_TABLE}.1.13", "counter"),
    ("ifInErrors", f"{IF_TABLE}.1.14", "counter"),
    ("ifInUnknownProtos", f"{IF_TABLE}.1.15", "counter"),
    ("ifOutOctets", f"{IF_TABLE}.1.16", "counter"),
    ("ifOutUcastPkts", f"{IF_TABLE}.1.17", "counter"),
    ("ifOutNUcastPkts", f"{IF_TABLE}.1.18", "counter"),
    ("ifOutDiscards", f"{IF_TABLE}.1.19", "counter"),
    ("ifOutErrors", f"{IF_TABLE}.1.20", "counter"),
    ("ifOutQLen", f"{IF_TABLE}.1.21", "gauge"),
)
IF_XTABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ifName", f"{IF_XTABLE}.1.1", "DisplayString"),
    ("ifInMulticastPkts", f"{IF_XTABLE}.1.2", "counter"),
    ("ifInBroadcastPkts", f"{IF_XTABLE}.1.3", "counter"),
    ("ifOutMulticastPkts", f"{IF_XTABLE}.1.4", "counter"),
    ("ifOutBroadcastPkts", f"{IF_XTABLE}.1.5", "counter"),
    ("ifHCInOctets", f"{IF_XTABLE}.1.6", "counter"),
    ("ifHCInUcastPkts", f"{IF_XTABLE}.1.7", "counter"),
    ("ifHCInMulticastPkts", f"{IF_XTABLE}.1.8", "counter"),
    ("ifHCInBroadcastPkts", f"{IF_XTABLE}.1.9", "counter"),
    ("ifHCOutOctets", f"{IF_XTABLE}.1.10", "counter"),
    ("ifHCOutUcastPkts", f"{IF_XTABLE}.1.11", "counter"),
    ("ifHCOutMulticastPkts", f"{IF_XTABLE}.1.12", "counter"),
    ("ifHCOutBroadcastPkts", f"{IF_XTABLE}.1.13", "counter"),
    ("ifLinkUpDownTrapEnable", f"{IF_XTABLE}.1.14", "gauge"),
    ("ifHighSpeed", f"{IF_XTABLE}.1.15", "gauge"),
    ("ifPromiscuousMode", f"{IF_XTABLE}.1.16", "gauge"),
    ("ifConnectorPresent", f"{IF_XTABLE}.1.17", "gauge"),
    ("ifAlias", f"{IF_XTABLE}.1.18", "DisplayString"),
    ("ifCounterDiscontinuityTime", f"{IF_XTABLE}.1.19", "gauge"),
)
METRIC_NAMES = frozenset(name for name, _, _ in IF_TABLE_COLUMNS + IF_XTABLE_COLUMNS)

# net-snmp spelling -> snmp_exporter 0.21 (gosnmp) spelling. gosnmp's AES192/AES256 use the
# Blumenthal key extension, like net-snmp's AES-192/AES-256.
EXPORTER_AUTH = {
    "MD5": "MD5",
    "SHA": "SHA",
    "SHA-224": "SHA224",
    "SHA-256": "SHA256",
    "SHA-384": "SHA384",
    "SHA-512": "SHA512",
}
EXPORTER_PRIV = {"DES": "DES", "AES": "AES", "AES-192": "AES192", "AES-256": "AES256"}


class PeerError(Exception):
    """The exporter could not produce a valid figure (failed scrape, wrong varbind count...)."""


@dataclass(frozen=True, slots=True)
class PeerResult:
    agents: int
    scrapes: int
    varbinds: int
    samples: int
    requests: int  # SNMP requests the exporter sent (GETBULKs)
    wall_s: float
    cpu_s: float  # exporter utime + stime
    agent_cpu_s: float  # all agents' utime + stime, for information
    varbinds_per_s: float
    varbinds_per_cpu_s: float

    def result_line(self, **extra: object) -> str:
        fields: dict[str, object] = {
            "peer_varbinds_per_s": f"{self.varbinds_per_s:.0f}",
            "peer_varbinds_per_cpu_s": f"{self.varbinds_per_cpu_s:.0f}",
            "varbinds": self.varbinds,
            "samples": self.samples,
            "requests": self.requests,
            "scrapes": self.scrapes,
            "agents": self.agents,
            "wall_s": f"{self.wall_s:.3f}",
            "exporter_cpu_s": f"{self.cpu_s:.2f}",
            "agent_cpu_s": f"{self.agent_cpu_s:.2f}",
            **extra,
        }
        return "RESULT " + " ".join(f"{k}={v}" for k, v in fields.items())


@dataclass(frozen=True, slots=True)
class Scrape:
    target: str
    varbinds: int  # snmp_scrape_pdus_returned
    requests: int  # snmp_scrape_packets_sent (GETBULK round trips, retries included)
    samples: int  # IF-MIB samples in the output
    walk_s: float  # snmp_scrape_walk_duration_seconds


# -- helpers ------------------------------------------------------------------------------------


def exporter_binary() -> str:
    path = EXPORTER if os.access(EXPORTER, os.X_OK) else shutil.which("prometheus-snmp-exporter")
    if path is None:
        raise PeerError(
            "prometheus-snmp-exporter is not installed: run `bash deploy/ci/install-system-deps.sh`"
        )
    return path


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (not its children), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; fields[0] is state
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def _metric(name: str, oid: str, type_: str) -> dict[str, Any]:
    return {
        "name": name,
        "oid": oid,
        "type": type_,
        "help": f"{name} - {oid}",
        "indexes": [{"labelname": "ifIndex", "type": "gauge"}],
    }


def snmp_yml(
    *,
    community: str,
    v3: V3User | None = None,
    max_repetitions: int = 50,
    timeout_s: float = 10.0,
    retries: int = 0,
) -> str:
    """snmp.yml in the 0.21 format: modules at top level, each with its own ``auth:``.

    (The ``auths:``/``modules:`` split came with 0.23; 0.21 rejects it.)
    """
    metrics = [_metric(*c) for c in IF_TABLE_COLUMNS + IF_XTABLE_COLUMNS]
    base: dict[str, Any] = {
        "walk": [IF_TABLE, IF_XTABLE],
        "max_repetitions": max_repetitions,
        "retries": retries,
        "timeout": f"{timeout_s:g}s",
        "metrics": metrics,
    }
    modules: dict[str, Any] = {MODULE: {**base, "version": 2, "auth": {"community": community}}}
    if v3 is not None:
        modules[MODULE_V3] = {
            **base,
            "version": 3,
            "auth": {
                "username": v3.name,
                "security_level": "authPriv",
                "password": v3.auth_password,
                "auth_protocol": EXPORTER_AUTH[v3.auth_protocol],
                "priv_protocol": EXPORTER_PRIV[v3.priv_protocol],
                "priv_password": v3.priv_password,
            },
        }
    return "# written by bench/snmp_peer.py\n" + yaml.safe_dump(modules, sort_keys=False)


_SAMPLE_RE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)", re.MULTILINE)


def parse_scrape(target: str, text: str) -> Scrape:
    varbinds = walk_s = requests = None
    samples = 0
    for m in _SAMPLE_RE.finditer(text):
        name = m.group(1)
        if name == "snmp_scrape_pdus_returned":
            varbinds = int(float(m.group(3)))
        elif name == "snmp_scrape_packets_sent":
            requests = int(float(m.group(3)))
        elif name == "snmp_scrape_walk_duration_seconds":
            walk_s = float(m.group(3))
        elif name in METRIC_NAMES:
            samples += 1
    if varbinds is None or walk_s is None or requests is None:
        raise PeerError(f"scrape of {target} lacks snmp_scrape_* metrics: {text[:300]!r}")
    return Scrape(target, varbinds, requests, samples, walk_s)


# -- the exporter -----------------------------------------------------------------------------


class SnmpExporter:
    """prometheus-snmp-exporter on a free 127.0.0.1 port (inside `netns` if given)."""

    def __init__(
        self,
        config_text: str,
        *,
        netns: str | None = None,
        workdir: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.netns = netns
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="netqos-snmp-exporter-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "snmp.yml"
        self.config_path.write_text(config_text)
        self.log_path = self.workdir / "snmp_exporter.log"
        if port is None:
            with netns_entered(netns):
                port = free_tcp_port()
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None or self._proc.poll() is not None:
            raise PeerError("snmp_exporter is not running")
        return self._proc.pid

    def command(self) -> list[str]:
        argv = [
            exporter_binary(),
            f"--config.file={self.config_path}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--log.level=warn",
        ]
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def get(self, path: str, timeout_s: float = 60.0) -> tuple[int, str]:
        """HTTP GET from the calling thread (which must be in the exporter's netns, if any)."""
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=timeout_s)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    def start(self) -> Self:
        proc = subprocess.run(
            [*self.command(), "--dry-run"], capture_output=True, text=True, timeout=30, check=False
        )
        if proc.returncode != 0:
            raise PeerError(f"snmp_exporter rejects {self.config_path}:\n{proc.stderr[-2000:]}")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        for _ in range(10_000):
            if self._proc.poll() is not None:
                raise PeerError(f"snmp_exporter exited at start:\n{self.log_tail()}")
            with contextlib.suppress(OSError), netns_entered(self.netns):
                if self.get("/", timeout_s=1.0)[0] == 200:
                    return self
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise PeerError(f"snmp_exporter not listening on port {self.port}:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def scrape(exporter: SnmpExporter, target: str, module: str = MODULE) -> Scrape:
    """One /snmp scrape from the calling thread; raises PeerError unless it is a clean 200."""
    query = urllib.parse.urlencode({"target": target, "module": module})
    status, text = exporter.get(f"/snmp?{query}")
    if status != 200:
        raise PeerError(f"scrape of {target} failed with HTTP {status}: {text[:500]}")
    return parse_scrape(target, text)


def _agent_cpu(agents: Sequence[SnmpdAgent]) -> float:
    return sum(process_cpu_seconds(a.pid) for a in agents if a.pid is not None)


def measure_exporter(
    exporter: SnmpExporter,
    agents: Sequence[SnmpdAgent],
    *,
    scrapes_per_agent: int,
    concurrency: int,
    module: str = MODULE,
) -> PeerResult:
    """Scrape every agent `scrapes_per_agent` times, at most `concurrency` in flight, and time it.

    One untimed warm-up scrape per agent gives the varbind count every timed scrape of that
    agent must match (the tables do not change during a run).
    """
    if not agents or not 1 <= scrapes_per_agent * len(agents) <= MAX_SCRAPES:
        raise ValueError(f"need 1..{MAX_SCRAPES} scrapes and at least one agent")
    concurrency = max(1, min(concurrency, 64))
    targets = [f"{a.host}:{a.port}" if ":" not in a.host else f"[{a.host}]:{a.port}" for a in agents]

    def init() -> None:
        if exporter.netns:
            enter_netns(exporter.netns)

    with ThreadPoolExecutor(max_workers=concurrency, initializer=init) as pool:
        warm = list(pool.map(lambda t: scrape(exporter, t, module), targets))
        expected = {s.target: s for s in warm}
        for s in warm:
            if s.varbinds <= 0 or s.samples <= 0:
                raise PeerError(f"warm-up scrape of {s.target} walked nothing: {s}")
        jobs = [t for _ in range(scrapes_per_agent) for t in targets]
        cpu0, agent_cpu0 = process_cpu_seconds(exporter.pid), _agent_cpu(agents)
        t0 = time.perf_counter()
        done = list(pool.map(lambda t: scrape(exporter, t, module), jobs))
        wall = time.perf_counter() - t0
        cpu, agent_cpu = process_cpu_seconds(exporter.pid) - cpu0, _agent_cpu(agents) - agent_cpu0
    for s in done:
        ref = expected[s.target]
        if (s.varbinds, s.samples) != (ref.varbinds, ref.samples):
            raise PeerError(
                f"scrape of {s.target} returned {s.varbinds} varbinds / {s.samples} samples, "
                f"warm-up had {ref.varbinds} / {ref.samples}"
            )
    varbinds = sum(s.varbinds for s in done)
    return PeerResult(
        agents=len(agents),
        scrapes=len(done),
        varbinds=varbinds,
        samples=sum(s.samples for s in done),
        requests=sum(s.requests for s in done),
        wall_s=wall,
        cpu_s=cpu,
        agent_cpu_s=agent_cpu,
        varbinds_per_s=varbinds / wall if wall > 0 else float("nan"),
        varbinds_per_cpu_s=varbinds / cpu if cpu > 0 else float("inf"),
    )


@contextlib.contextmanager
def peer_agents(
    n_agents: int, *, netns_pairs: int = 0, community: str | None = None, **agent_kwargs: Any
) -> Iterator[tuple[list[SnmpdAgent], str | None]]:
    """N started SnmpdAgents sharing one community and v3 user: (agents, netns name or None)."""
    if not 1 <= n_agents <= 64:
        raise ValueError("1..64 agents")
    kwargs: dict[str, Any] = {
        "community": community or "bench-" + secrets.token_hex(6),
        "auth_password": "bench-auth-" + secrets.token_hex(6),
        "priv_password": "bench-priv-" + secrets.token_hex(6),
        **agent_kwargs,
    }
    with contextlib.ExitStack() as stack:
        netns: str | None = None
        agents: list[SnmpdAgent] = []
        if netns_pairs > 0:
            table = stack.enter_context(NetnsIfTable(netns_pairs, start_agent=False))
            netns = table.name
            for i in range(n_agents):
                agents.append(table.new_agent(sys_name=f"bench-{i}", **kwargs).start())
        else:
            for i in range(n_agents):
                agents.append(stack.enter_context(SnmpdAgent(sys_name=f"bench-{i}", **kwargs)))
        yield agents, netns


def run_peer(
    *,
    agents: int = 4,
    scrapes: int = 25,
    concurrency: int | None = None,
    netns_pairs: int = 0,
    max_repetitions: int = 50,
    v3: bool = False,
    repeat: int = 1,
) -> list[PeerResult]:
    """Start agents and the exporter, measure `repeat` times (same processes), stop everything."""
    if not 1 <= repeat <= 100:
        raise ValueError("repeat must be within 1..100")
    with peer_agents(agents, netns_pairs=netns_pairs) as (started, netns):
        first = started[0]
        config = snmp_yml(community=first.community, v3=first.v3, max_repetitions=max_repetitions)
        with SnmpExporter(config, netns=netns) as exporter:
            return [
                measure_exporter(
                    exporter,
                    started,
                    scrapes_per_agent=scrapes,
                    concurrency=concurrency or agents,
                    module=MODULE_V3 if v3 else MODULE,
                )
                for _ in range(repeat)
            ]


def median_result(results: Sequence[PeerResult]) -> PeerResult:
    """Totals of all runs, with the median of each run's rates (drift and noise hit all alike)."""
    if not results:
        raise ValueError("no results")
    return PeerResult(
        agents=results[0].agents,
        scrapes=sum(r.scrapes for r in results),
        varbinds=sum(r.varbinds for r in results),
        samples=sum(r.samples for r in results),
        requests=sum(r.requests for r in results),
        wall_s=sum(r.wall_s for r in results),
        cpu_s=sum(r.cpu_s for r in results),
        agent_cpu_s=sum(r.agent_cpu_s for r in results),
        varbinds_per_s=statistics.median(r.varbinds_per_s for r in results),
        varbinds_per_cpu_s=statistics.median(r.varbinds_per_cpu_s for r in results),
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--agents", type=int, default=4, help="snmpd agents (default 4)")
    ap.add_argument("--scrapes", type=int, default=25, help="timed scrapes per agent and repeat (default 25)")
    ap.add_argument("--concurrency", type=int, default=None, help="scrapes in flight (default: agents)")
    ap.add_argument(
        "--netns-pairs",
        type=int,
        default=0,
        help="veth pairs in a private netns (2P+1 interfaces per agent); 0: host's",
    )
    ap.add_argument("--max-repetitions", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs; medians are reported (default 3)")
    ap.add_argument("--v3", action="store_true", help="SNMPv3 authPriv (SHA-256/AES) instead of v2c")
    ap.add_argument("--quick", action="store_true", help="at most 2 agents x 5 scrapes, one run")
    args = ap.parse_args(argv)
    if args.quick:
        args.agents, args.scrapes, args.repeat = min(args.agents, 2), min(args.scrapes, 5), 1
    interfaces = 2 * args.netns_pairs + 1 if args.netns_pairs else "host"
    print(
        f"snmp_exporter peer: {args.agents} agents x {args.scrapes} scrapes x {args.repeat} runs, "
        f"concurrency {args.concurrency or args.agents}, interfaces per agent: {interfaces}, "
        f"{'v3 authPriv' if args.v3 else 'v2c'}, max-repetitions {args.max_repetitions}",
        flush=True,
    )
    try:
        runs = run_peer(
            agents=args.agents,
            scrapes=args.scrapes,
            concurrency=args.concurrency,
            netns_pairs=args.netns_pairs,
            max_repetitions=args.max_repetitions,
            v3=args.v3,
            repeat=args.repeat,
        )
    except PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for i, r in enumerate(runs, 1):
        print(
            f"  run {i}: {r.varbinds} varbinds ({r.varbinds // r.scrapes} per scrape, "
            f"{r.requests // r.scrapes} requests per scrape) in {r.wall_s:.3f} s, exporter CPU "
            f"{r.cpu_s:.2f} s, agents' CPU {r.agent_cpu_s:.2f} s: {r.varbinds_per_s:,.0f} varbinds/s, "
            f"{r.varbinds_per_cpu_s:,.0f} varbinds per exporter CPU-second"
        )
    res = median_result(runs)
    print(res.result_line(interfaces=interfaces, v3=int(args.v3), repeats=len(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
