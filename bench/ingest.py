"""End-to-end ingest benchmark: measurements/s from the broker into SQLite rollups.

What is measured
    How fast netqos drains a backlog of schema-v1 measurement batches from mosquitto
    (MQTT QoS 1, persistent session) through validation, the columnar buffer, the numba
    rollup core and the SQLite merge, until every sample is stored and queryable. The
    same backlog, on the same broker, is drained by ``mosquitto_sub`` (the peer), which
    only receives and prints the messages. ``ratio`` = ours ÷ peer measurements/s.

Method (for each of R repeats, peer and ours alternating so drift hits both alike)
    1. A private mosquitto on a free 127.0.0.1 port (unlimited queue and in-flight
       window, no persistence) runs for the whole benchmark.
    2. N messages (default 2,000 x 50 measurements, each with rtt_ms, loss_ratio and
       jitter_ms, so 3 samples per measurement) are generated once, before any timing,
       from 200 registered probes, timestamps spread over the last 10 minutes.
    3. Peer: ``mosquitto_sub -c -i ID -q 1 -E`` creates a persistent session and exits;
       all N messages are published with QoS 1 (paho-mqtt, every PUBACK awaited), so they
       sit queued in the broker; then ``mosquitto_sub -c -i ID -q 1 -C N`` is timed from
       process start until it exits having read N messages (its output is counted to
       check exactly N arrived).
    4. Ours: a fresh SQLite store with the probes registered; an MqttConsumer (persistent
       session, fixed client id) connects once to create the session and stops; the same
       N messages are published the same way; then the consumer and the pipeline's flush
       loop are started and timed until ``store.total_count(metric="rtt_ms")`` equals
       N x batch (polled every 20 ms from a worker thread). After a short settle pause
       (not timed) the consumer is stopped, the pipeline drained, and every count checked
       exactly: a lost or double-counted sample is an error (exit status 1).
    5. Each session is wiped after use (reconnect with a clean session), so later
       publishes do not also queue messages for an earlier, idle session.

Why it is fair
    Both sides start from the identical situation, N messages already queued in the same
    broker for a persistent QoS 1 session, and are timed from process/task start
    (connect and subscribe included) until they are done with all N. Publishing is not
    timed, so the publisher's speed cannot favour either side. Nothing is subtracted from
    either figure. Numba compilation happens before timing (``warm_up``, printed
    separately), and the start-up heap is then frozen as ``netqos serve`` does
    (``freeze_startup_heap``). Besides wall rates, each run prints ours' CPU µs per
    measurement (all threads, all workers), the figure this shared machine's load moves
    least, and mosquitto's CPU µs per measurement over the same interval (from /proc).
    Ours is timed to "stored in SQLite", which includes the flush timer
    (``flush_interval_s``, the production default unless ``--flush-interval`` is given):
    that is what a user of the service waits for, and it is part of ours, not the
    peer's, cost.

Run ``python bench/ingest.py`` (a few minutes at most) or ``--quick`` (well under a
minute). The last line is ``RESULT key=value ...``; nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from collector.core import warm_up
from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo
from collector.mqtt.consumer import MqttConsumer
from collector.mqtt.scan import Scanned
from collector.mqtt.schema import Decoded, MeasurementBatch
from collector.mqtt.settings import MqttSettings
from collector.pipeline import IngestPipeline, OnRejected
from collector.store.store import Store
from ground.aio import freeze_startup_heap

HOST = "127.0.0.1"
TOPIC_FILTER = "netqos/v1/probes/+/measurements"
METRICS = ("rtt_ms", "loss_ratio", "jitter_ms")
N_PROBES = 200
TARGETS = ("speedtest.example.vn", "dns.example.vn")
OPERATORS = ("viettel", "vnpt", "mobifone")
TECHNOLOGIES = ("4G", "5G", "FTTH")
SPREAD_MS = 10 * 60_000  # timestamps over the last ten minutes
POLL_S = 0.02
CONNECT_TIMEOUT_S = 15.0


class BenchError(Exception):
    """The benchmark could not produce a valid figure (lost data, timeout, broker down...)."""


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class PeerRun:
    seconds: float
    messages: int


@dataclass(slots=True)
class OursRun:
    seconds: float
    publish_s: float
    intake_s: float  # until the last message was validated and buffered
    flushes: list[tuple[int, float]] = field(default_factory=list)  # (samples, seconds)
    cpu_s: float = 0.0  # CPU time of the whole process (all threads) while draining
    broker_cpu_s: float = 0.0  # mosquitto's CPU time meanwhile (0 where /proc is missing)


# -- workload ---------------------------------------------------------------------------


def probe_id(i: int) -> str:
    return f"bn-{10000 + i // 10}-p{i % 10:03d}"


def make_probes(n: int) -> list[ProbeInfo]:
    return [
        ProbeInfo(
            probe_id(i),
            commune=f"{10000 + i // 10}",
            village=f"{10000 + i // 10}-v{i % 3:02d}",
            site=f"site-{i:03d}",
            operator=OPERATORS[i % len(OPERATORS)],
            technology=TECHNOLOGIES[i % len(TECHNOLOGIES)],
        )
        for i in range(n)
    ]


def make_messages(n_messages: int, batch: int, n_probes: int, now_ms: int, seed: int = 1) -> list[Message]:
    """N valid schema-v1 batches; probe k % n_probes, seq increasing per probe, ts in the past."""
    rng = random.Random(seed)
    oldest = now_ms - SPREAD_MS
    out: list[Message] = []
    for k in range(n_messages):
        p = k % n_probes
        pid = probe_id(p)
        measurements = []
        for j in range(batch):
            measurements.append(
                {
                    "ts": oldest + rng.randrange(SPREAD_MS - 5_000),
                    "target": TARGETS[j % len(TARGETS)],
                    "technology": TECHNOLOGIES[p % len(TECHNOLOGIES)],
                    "operator": OPERATORS[p % len(OPERATORS)],
                    "metrics": {
                        "rtt_ms": round(rng.uniform(5.0, 250.0), 2),
                        "loss_ratio": round(rng.uniform(0.0, 0.05), 4),
                        "jitter_ms": round(rng.uniform(0.0, 30.0), 2),
                    },
                }
            )
        body = {
            "v": 1,
            "probe_id": pid,
            "seq": k // n_probes,
            "sent_ts": now_ms,
            "measurements": measurements,
        }
        out.append(Message(f"netqos/v1/probes/{pid}/measurements", json.dumps(body).encode()))
    return out


# -- broker -----------------------------------------------------------------------------


def find_binary(name: str, fallback: str) -> str:
    path = shutil.which(name) or (fallback if Path(fallback).exists() else None)
    if path is None:
        raise BenchError(f"{name} is not installed (Debian: apt-get install mosquitto mosquitto-clients)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"mosquitto exited with {proc.returncode}: {tail(log)}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise BenchError(f"mosquitto does not listen on {HOST}:{port} after {timeout_s} s: {tail(log)}")


def tail(path: Path, chars: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip() or "(empty log)"
    except OSError:
        return "(nothing logged)"


def start_mosquitto(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    log = workdir / "mosquitto.log"
    conf.write_text(
        "\n".join(
            [
                f"listener {port} {HOST}",
                "allow_anonymous true",
                "persistence false",
                "max_queued_messages 0",  # unlimited: the whole backlog stays queued
                "max_inflight_messages 0",  # unlimited: the broker never waits for PUBACKs
                f"log_dest file {log}",
                "log_type error",
                "log_type warning",
                "",
            ]
        )
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, log)
    except BaseException:
        stop_process(proc)
        raise
    return proc, port, log


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mosquitto_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "-h"], capture_output=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "mosquitto"
    first = out.decode(errors="replace").splitlines()[:1]
    return first[0].strip() if first else "mosquitto"


# -- publisher --------------------------------------------------------------------------


def publish_all(port: int, messages: Sequence[Message], client_id: str, timeout_s: float) -> float:
    """Publish every message with QoS 1 and wait for every PUBACK; returns the seconds taken."""
    connected = threading.Event()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311, clean_session=True
    )
    client.max_inflight_messages_set(0)  # unlimited: a fast publisher
    client.max_queued_messages_set(0)
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    t0 = time.perf_counter()
    client.connect(HOST, port, keepalive=60)
    client.loop_start()
    try:
        if not connected.wait(CONNECT_TIMEOUT_S):
            raise BenchError(f"publisher could not connect to {HOST}:{port}")
        infos = [client.publish(m.topic, m.payload, qos=1) for m in messages]
        deadline = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
        unacked = sum(1 for info in infos if not info.is_published())
        if unacked:
            raise BenchError(f"{unacked} of {len(infos)} publishes not acknowledged after {timeout_s} s")
        return time.perf_counter() - t0
    finally:
        client.disconnect()
        client.loop_stop()


# -- peer: mosquitto_sub ----------------------------------------------------------------


def sub_cmd(binary: str, port: int, client_id: str, *extra: str) -> list[str]:
    return [binary, "-h", HOST, "-p", str(port), "-q", "1", "-i", client_id, "-t", TOPIC_FILTER, *extra]


def run_quick(cmd: list[str], what: str) -> None:
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=CONNECT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what}: mosquitto_sub did not finish in {CONNECT_TIMEOUT_S} s") from exc
    if res.returncode != 0:
        raise BenchError(
            f"{what}: mosquitto_sub exited {res.returncode}: {res.stderr.decode(errors='replace')}"
        )


def count_lines(stream: IO[bytes], out: list[int]) -> None:
    """Count newline bytes until EOF (bounded by the process's life, which is bounded)."""
    fd = stream.fileno()
    n = 0
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        n += chunk.count(b"\n")
    out.append(n)


def peer_once(
    binary: str, port: int, messages: Sequence[Message], k: int, workdir: Path, timeout_s: float
) -> PeerRun:
    cid = f"bench-peer-{k}"
    n = len(messages)
    run_quick(sub_cmd(binary, port, cid, "-c", "-E"), "create peer session")
    publish_all(port, messages, f"bench-pub-peer-{k}", timeout_s)
    err_path = workdir / f"peer-{k}.stderr"
    cmd = sub_cmd(binary, port, cid, "-c", "-C", str(n), "-W", str(max(1, math.ceil(timeout_s))))
    counted: list[int] = []
    with err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        reader = threading.Thread(target=count_lines, args=(proc.stdout, counted), daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=timeout_s + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise BenchError(f"mosquitto_sub did not read {n} messages in {timeout_s} s") from None
        finally:
            elapsed = time.perf_counter() - t0
            reader.join(timeout=10)
            proc.stdout.close()
    if rc != 0:
        raise BenchError(f"mosquitto_sub exited {rc}: {tail(err_path)}")
    got = counted[0] if counted else -1
    if got != n:
        raise BenchError(f"mosquitto_sub printed {got} messages, expected {n}")
    run_quick(sub_cmd(binary, port, cid, "-E"), "clear peer session")
    return PeerRun(elapsed, got)


# -- ours: MqttConsumer + IngestPipeline + Store ------------------------------------


class TimedPipeline(IngestPipeline):
    """The real pipeline, recording (samples, seconds) of every flush that stored something."""

    def __init__(self, store: Store, settings: IngestSettings) -> None:
        super().__init__(store, settings)
        self.flushes: list[tuple[int, float]] = []
        self.accepted = 0
        self.last_accept = 0.0  # perf_counter() of the latest accepted batch

    def accept(
        self,
        batch: Decoded | MeasurementBatch,
        on_stored: Callable[[], None] | None = None,
        on_rejected: OnRejected | None = None,
    ) -> int:
        added = super().accept(batch, on_stored, on_rejected)
        self.accepted += 1
        self.last_accept = time.perf_counter()
        return added

    def commit(
        self, got: Scanned, on_stored: Callable[[], None] | None = None, on_rejected: OnRejected | None = None
    ) -> int:
        added = super().commit(got, on_stored, on_rejected)
        self.accepted += 1
        self.last_accept = time.perf_counter()
        return added

    async def flush(self) -> int:
        t0 = time.perf_counter()
        stored = await super().flush()
        if stored:
            self.flushes.append((stored, time.perf_counter() - t0))
        return stored


async def stop_tasks(stop: asyncio.Event, tasks: Sequence[asyncio.Task[None]]) -> None:
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=CONNECT_TIMEOUT_S)


async def ours_once(
    port: int,
    messages: Sequence[Message],
    probes: Sequence[ProbeInfo],
    batch: int,
    k: int,
    workdir: Path,
    settings: IngestSettings,
    timeout_s: float,
    broker_pid: int,
) -> OursRun:
    n_meas = len(messages) * batch
    store = Store(workdir / f"ours-{k}" / "netqos.db")
    mqtt = MqttSettings(host=HOST, port=port, client_id=f"bench-ours-{k}")
    try:
        store.register_probes(probes)
        # 1. Create the persistent session, then go away.
        stop = asyncio.Event()
        first = MqttConsumer(mqtt, settings, IngestPipeline(store, settings))
        tasks = [asyncio.create_task(first.run(stop))]
        try:
            await asyncio.wait_for(first.subscribed.wait(), timeout=CONNECT_TIMEOUT_S)
        finally:
            await stop_tasks(stop, tasks)
        # 2. Queue the backlog in the broker.
        publish_s = await asyncio.to_thread(publish_all, port, messages, f"bench-pub-ours-{k}", timeout_s)
        # 3. Drain it, timed until every rtt_ms sample is stored.
        pipeline = TimedPipeline(store, settings)
        consumer = MqttConsumer(mqtt, settings, pipeline)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        stored = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-poll") as poller:
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            broker0 = process_cpu_s(broker_pid)
            deadline = t0 + timeout_s
            tasks = [asyncio.create_task(consumer.run(stop)), asyncio.create_task(pipeline.run(stop))]
            try:
                while time.perf_counter() < deadline:
                    stored = await loop.run_in_executor(poller, lambda: store.total_count(metric="rtt_ms"))
                    if stored >= n_meas:
                        break
                    await asyncio.sleep(POLL_S)
                elapsed = time.perf_counter() - t0
                cpu_s = time.process_time() - cpu0
                broker_s = process_cpu_s(broker_pid) - broker0
                if stored >= n_meas:
                    # Not timed: give a late duplicate the chance to be flushed and show up.
                    await asyncio.sleep(settings.flush_interval_s + 0.25)
            finally:
                await stop_tasks(stop, tasks)
                unflushed = await pipeline.drain()
        if stored < n_meas:
            raise BenchError(f"ours stored {stored} of {n_meas} rtt_ms samples in {timeout_s} s")
        check_counts(store, len(messages), n_meas, unflushed)
        # 4. Wipe the session so later publishes are not queued for it.
        async with aiomqtt.Client(HOST, port, identifier=mqtt.client_id, clean_session=True):
            pass
        return OursRun(elapsed, publish_s, pipeline.last_accept - t0, pipeline.flushes, cpu_s, broker_s)
    finally:
        store.close()


# -- N workers on one shared subscription ------------------------------------------------

SHARED_TOPIC = "$share/bench/netqos/v1/probes/+/measurements"


def worker_main(port: int, db: str, client_id: str, flush_interval_s: float) -> int:
    """One ingest worker process (``--worker``): creates its persistent session on the
    shared subscription, says ``session``; drains on ``go``, stops on ``stop`` and prints
    its CPU seconds. Lines on stdin/stdout are the whole protocol with the parent."""
    warm_up()
    freeze_startup_heap()  # as `netqos serve` does once started
    settings = IngestSettings(flush_interval_s=flush_interval_s)
    mqtt = MqttSettings(host=HOST, port=port, client_id=client_id, topic=SHARED_TOPIC)

    async def run() -> None:
        store = Store(db)
        try:
            stop = asyncio.Event()
            first = MqttConsumer(mqtt, settings, IngestPipeline(store, settings))
            tasks = [asyncio.create_task(first.run(stop))]
            try:
                await asyncio.wait_for(first.subscribed.wait(), timeout=CONNECT_TIMEOUT_S)
            finally:
                await stop_tasks(stop, tasks)
            print("session", flush=True)
            line = await asyncio.to_thread(sys.stdin.readline)
            if line.strip() != "go":
                return
            cpu0 = time.process_time()
            pipeline = IngestPipeline(store, settings)
            consumer = MqttConsumer(mqtt, settings, pipeline)
            stop = asyncio.Event()
            tasks = [asyncio.create_task(consumer.run(stop)), asyncio.create_task(pipeline.run(stop))]
            await asyncio.to_thread(sys.stdin.readline)  # "stop" (or EOF: the parent went away)
            cpu = time.process_time() - cpu0
            await stop_tasks(stop, tasks)
            left = await pipeline.drain()
            print(f"done cpu_s={cpu:.3f} unflushed={left}", flush=True)
        finally:
            store.close()

    asyncio.run(run())
    return 0


def workers_once(
    port: int,
    messages: Sequence[Message],
    probes: Sequence[ProbeInfo],
    batch: int,
    k: int,
    workdir: Path,
    settings: IngestSettings,
    timeout_s: float,
    n_workers: int,
    broker_pid: int,
) -> OursRun:
    """Ours with `n_workers` processes sharing the stream (MQTT shared subscription) and one
    SQLite file: timed from "go" (processes started, warmed up and subscribed before, as a
    running service's are) until every sample is stored."""
    n_meas = len(messages) * batch
    db = workdir / f"workers-{k}" / "netqos.db"
    store = Store(db)
    procs: list[subprocess.Popen[str]] = []
    try:
        store.register_probes(probes)
        for i in range(n_workers):
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                f"{port},{db},bench-w{k}-{i},{settings.flush_interval_s}",
            ]
            procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "session":
                raise BenchError("a worker did not start (see its error above)")
        publish_s = publish_all(port, messages, f"bench-pub-w{k}", timeout_s)
        t0 = time.perf_counter()
        broker0 = process_cpu_s(broker_pid)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        deadline = t0 + timeout_s
        stored = 0
        while time.perf_counter() < deadline:
            stored = store.total_count(metric="rtt_ms")
            if stored >= n_meas:
                break
            time.sleep(POLL_S)
        elapsed = time.perf_counter() - t0
        broker_s = process_cpu_s(broker_pid) - broker0
        time.sleep(settings.flush_interval_s + 0.25)  # not timed: room for a late duplicate
        cpu = 0.0
        unflushed = 0
        for proc in procs:
            out, _ = proc.communicate("stop\n", timeout=60)
            fields = dict(f.split("=") for f in out.split()[1:]) if out.startswith("done") else {}
            if not fields:
                raise BenchError(f"a worker ended badly: {out!r}")
            cpu += float(fields["cpu_s"])
            unflushed += int(fields["unflushed"])
        if stored < n_meas:
            raise BenchError(f"workers stored {stored} of {n_meas} rtt_ms samples in {timeout_s} s")
        check_counts(store, len(messages), n_meas, unflushed)
        return OursRun(elapsed, publish_s, elapsed, [], cpu, broker_s)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        store.close()
        asyncio.run(wipe_sessions(port, [f"bench-w{k}-{i}" for i in range(n_workers)]))


async def wipe_sessions(port: int, client_ids: Sequence[str]) -> None:
    """End persistent sessions, so later publishes are not queued for them."""
    for cid in client_ids:
        async with aiomqtt.Client(HOST, port, identifier=cid, clean_session=True):
            pass


def check_counts(store: Store, n_messages: int, n_meas: int, unflushed: int) -> None:
    problems = []
    if unflushed:
        problems.append(f"{unflushed} samples left unflushed")
    for metric in METRICS:
        got = store.total_count(metric=metric)
        if got != n_meas:
            problems.append(f"{metric}: stored {got}, sent {n_meas}")
    total = store.total_count()
    if total != len(METRICS) * n_meas:
        problems.append(f"all metrics: stored {total}, sent {len(METRICS) * n_meas}")
    probes = store.probes()
    msgs = sum(p.messages_total for p in probes)
    meas = sum(p.measurements_total for p in probes)
    if msgs != n_messages or meas != n_meas:
        problems.append(
            f"probe activity: {msgs} messages / {meas} measurements, sent {n_messages} / {n_meas}"
        )
    if problems:
        raise BenchError("lost or double-counted data: " + "; ".join(problems))


# -- reporting --------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty sequence."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="400 messages, 1 repeat (well under a minute)")
    ap.add_argument("--messages", type=int, help="messages per run (default 10000, quick 400)")
    ap.add_argument(
        "--batch",
        type=int,
        default=None,
        help="run only this workload: measurements per message (default: 1 and 50)",
    )
    ap.add_argument(
        "--single-messages", type=int, help="single-measurement messages (default 20000, quick 2000)"
    )
    ap.add_argument("--repeat", type=int, help="runs per side, median reported (default 3, quick 1)")
    ap.add_argument(
        "--flush-interval",
        type=float,
        default=IngestSettings().flush_interval_s,
        help="ingest.flush_interval_s for ours (default: the service default, %(default)s s)",
    )
    ap.add_argument("--timeout", type=float, default=120.0, help="bound on each publish/drain, seconds")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="ours as N ingest processes on one shared subscription and one SQLite file (default 1)",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run as one of those processes
    args = ap.parse_args(argv)
    if args.messages is None:
        args.messages = 400 if args.quick else 10_000
    if args.single_messages is None:
        args.single_messages = 2000 if args.quick else 20_000
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if not 1 <= args.messages <= 1_000_000:
        ap.error("--messages must be 1..1000000")
    if args.batch is not None and not 1 <= args.batch <= IngestSettings().max_measurements_per_message:
        ap.error(f"--batch must be 1..{IngestSettings().max_measurements_per_message}")
    if not 1 <= args.repeat <= 50:
        ap.error("--repeat must be 1..50")
    if not 0 < args.timeout <= 3600:
        ap.error("--timeout must be in (0, 3600]")
    if not 1 <= args.workers <= 16:
        ap.error("--workers must be 1..16")
    return args


@dataclass
class Figures:
    """Medians of one workload's runs."""

    n_msg: int
    batch: int
    peer_meas: float
    peer_msgs: float
    ours_meas: float
    ours_msgs: float

    @property
    def ratio(self) -> float:
        return self.ours_meas / self.peer_meas


def run_workload(
    n_msg: int,
    batch: int,
    repeats: int,
    settings: IngestSettings,
    timeout_s: float,
    broker_bin: str,
    sub_bin: str,
    workers: int = 1,
) -> Figures:
    """Peer and ours, alternating, `repeats` times on one workload; prints the runs and medians."""
    n_meas = n_msg * batch
    max_payload = MqttSettings().max_payload_bytes
    probes = make_probes(N_PROBES)
    messages = make_messages(n_msg, batch, N_PROBES, int(time.time() * 1000))
    biggest = max(len(m.payload) for m in messages)
    if biggest > max_payload:
        raise BenchError(f"a message is {biggest} bytes, over mqtt.max_payload_bytes={max_payload}")
    total_bytes = sum(len(m.payload) for m in messages)
    peer_runs: list[PeerRun] = []
    ours_runs: list[OursRun] = []
    with tempfile.TemporaryDirectory(prefix="netqos-bench-") as tmp:
        workdir = Path(tmp)
        proc, port, log = start_mosquitto(broker_bin, workdir)
        try:
            print(
                f"workload: {n_msg} messages x {batch} measurements ({len(METRICS)} metrics each), QoS 1,"
                f" {min(N_PROBES, n_msg)} probes, ts over the last {SPREAD_MS // 60_000} min;"
                f" {total_bytes / n_msg:.0f} bytes/message; {mosquitto_version(broker_bin)} at {HOST}:{port}"
            )
            for k in range(repeats):
                peer = peer_once(sub_bin, port, messages, k, workdir, timeout_s)
                peer_runs.append(peer)
                if workers == 1:
                    ours = asyncio.run(
                        ours_once(port, messages, probes, batch, k, workdir, settings, timeout_s, proc.pid)
                    )
                else:
                    ours = workers_once(
                        port, messages, probes, batch, k, workdir, settings, timeout_s, workers, proc.pid
                    )
                ours_runs.append(ours)
                print(
                    f"  run {k + 1}/{repeats}:"
                    f" peer {peer.seconds:.3f} s ({fmt(n_msg / peer.seconds)} msg/s)"
                    f"   ours {ours.seconds:.3f} s ({fmt(n_msg / ours.seconds)} msg/s,"
                    f" {fmt(n_meas / ours.seconds)} meas/s, all buffered at {ours.intake_s:.3f} s,"
                    f" {len(ours.flushes)} flushes, {ours.cpu_s / ours.seconds:.2f} CPUs busy,"
                    f" {ours.cpu_s / n_meas * 1e6:.2f} CPU µs/measurement,"
                    f" mosquitto {ours.broker_cpu_s / n_meas * 1e6:.2f})"
                    f"   [publish {ours.publish_s:.2f} s, not timed]"
                )
        except BenchError as exc:
            raise BenchError(f"{exc}; mosquitto log: {tail(log)}") from None
        finally:
            stop_process(proc)
    fig = Figures(
        n_msg,
        batch,
        peer_meas=statistics.median(n_meas / r.seconds for r in peer_runs),
        peer_msgs=statistics.median(n_msg / r.seconds for r in peer_runs),
        ours_meas=statistics.median(n_meas / r.seconds for r in ours_runs),
        ours_msgs=statistics.median(n_msg / r.seconds for r in ours_runs),
    )
    of = f"(median of {repeats})" if repeats > 1 else "(1 run)"
    print(
        f"  peer  mosquitto_sub  {fmt(fig.peer_msgs):>9} messages/s"
        f"  {fmt(fig.peer_meas):>12} measurements/s  {of}"
    )
    print(
        f"  ours  netqos ingest  {fmt(fig.ours_msgs):>9} messages/s"
        f"  {fmt(fig.ours_meas):>12} measurements/s  {of}"
    )
    flush_s = [s for r in ours_runs for _, s in r.flushes]
    flush_n = [n for r in ours_runs for n, _ in r.flushes]
    if flush_s:
        print(
            f"  ours  store flushes: {len(flush_s)}, samples/flush median {fmt(statistics.median(flush_n))},"
            f" duration p50 {pct(flush_s, 0.5) * 1000:.0f} ms p95 {pct(flush_s, 0.95) * 1000:.0f} ms"
        )
    print(f"  ratio ours/peer: {fig.ratio:.4f}; every sample stored exactly once")
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        port, db, client_id, flush = args.worker.split(",")
        return worker_main(int(port), db, client_id, float(flush))
    wall0 = time.perf_counter()
    repeats = int(args.repeat)
    settings = IngestSettings(flush_interval_s=args.flush_interval)
    try:
        broker_bin = find_binary("mosquitto", "/usr/sbin/mosquitto")
        sub_bin = find_binary("mosquitto_sub", "/usr/bin/mosquitto_sub")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    warm_s = warm_up()
    freeze_startup_heap()  # as `netqos serve` does once started (ours runs in this process)
    print(
        f"netqos ingest benchmark (numba warm-up {warm_s:.2f} s, not timed;"
        f" flush_interval_s={settings.flush_interval_s}, flush_max_samples={settings.flush_max_samples})"
    )
    try:
        if args.batch is not None:  # one workload, as asked
            only = run_workload(
                args.messages, args.batch, repeats, settings, args.timeout, broker_bin, sub_bin, args.workers
            )
            single = batched = only
        else:
            print("single-measurement messages:")
            single = run_workload(
                args.single_messages, 1, repeats, settings, args.timeout, broker_bin, sub_bin, args.workers
            )
            print("batched messages:")
            batched = run_workload(
                args.messages, 50, repeats, settings, args.timeout, broker_bin, sub_bin, args.workers
            )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wall {time.perf_counter() - wall0:.1f} s")
    # Headline (ratio=): single-measurement messages/s against mosquitto_sub at QoS 1.
    print(
        f"RESULT ratio={single.ratio:.4f} single_msgs_per_s={single.ours_msgs:.0f}"
        f" peer_msgs_per_s={single.peer_msgs:.0f} batched_meas_per_s={batched.ours_meas:.0f}"
        f" batched_peer_meas_per_s={batched.peer_meas:.0f} batched_ratio={batched.ratio:.4f}"
        f" batch={batched.batch} repeats={repeats} workers={args.workers}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
