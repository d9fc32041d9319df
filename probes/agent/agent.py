"""The probe agent: schedules the tests, batches their measurements, queues, publishes.

::

    tests (one task each, interval +- jitter) --+
    (probe.yaml's, or the server's schedule)    |
    radio (every radio.interval_s) -------------+--> Batcher --> BatchQueue (disk) --> Publisher
                                                    (max size / max wait)  (seq)      (MQTT / HTTPS)

Measurements are queued durably before anything is sent, so a broker outage, a
reboot or a power cut loses nothing that was queued (up to ``queue.max_batches``).

A schedule from the server (``probes.agent.schedule``) replaces the tests without a restart:
each test loop is keyed by its whole definition, so an unchanged test keeps its rhythm, a new
or changed one starts within its interval and a removed one stops before its next run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import yaml

from probes.agent import __version__, compat, icmp
from probes.agent.clock import ClockReader, cached, read_clock_status
from probes.agent.config import (
    HttpDownloadSpec,
    HttpUploadSpec,
    MeasurementSpec,
    ProbeConfig,
    ProbeConfigError,
    load_config,
    masked,
    target_of,
)
from probes.agent.logs import setup_logging
from probes.agent.measure import ByteTally, EchoFunc, MeasurementError, run_spec
from probes.agent.payload import SCHEMA_VERSION, metric_ok
from probes.agent.publisher import Publisher
from probes.agent.queue import BatchQueue, QueueError
from probes.agent.radio import RadioReading, RadioSource, source_from_config
from probes.agent.schedule import (
    DataBudget,
    Schedule,
    ScheduleRefused,
    canonical_json,
    load_last_good,
    parse_schedule,
    save_last_good,
)

log = logging.getLogger(__name__)

EXIT_CONFIG: Final = 2
EXIT_RUNTIME: Final = 1
# Room for v, probe_id, seq, sent_ts and the clock fields around the measurements.
_ENVELOPE_BYTES: Final = 512


def now_ms() -> int:
    """Wall-clock time in ms since the Unix epoch (the payload's `ts`)."""
    return time.time_ns() // 1_000_000


def valid_metrics(metrics: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """The metrics the server's schema accepts, and the names of those it would refuse.

    One value out of its range makes the server refuse the *whole* batch; dropping
    it here keeps the rest.
    """
    good: dict[str, float] = {}
    bad: list[str] = []
    for name, value in metrics.items():
        if metric_ok(name, value):
            good[name] = value
        else:
            bad.append(name)
    return good, bad


class Batcher:
    """Groups measurements into batches closed at `max_measurements`, `max_bytes` (JSON) or
    `max_wait_s` after their first measurement."""

    def __init__(self, *, max_measurements: int, max_bytes: int, max_wait_s: float) -> None:
        self.max_measurements = max_measurements
        self.max_bytes = max_bytes
        self.max_wait_s = max_wait_s
        self.closed: deque[list[dict[str, Any]]] = deque()
        self._current: list[dict[str, Any]] = []
        self._bytes = _ENVELOPE_BYTES
        self._opened_at = 0.0
        self.changed = asyncio.Event()

    def add(self, measurement: dict[str, Any]) -> None:
        """Add one measurement; closes the current batch first when it would overflow."""
        size = len(orjson.dumps(measurement)) + 1
        if self._current and (
            len(self._current) >= self.max_measurements or self._bytes + size > self.max_bytes
        ):
            self.close()
        if not self._current:
            self._opened_at = time.monotonic()
        self._current.append(measurement)
        self._bytes += size
        if len(self._current) >= self.max_measurements:
            self.close()
        self.changed.set()

    def close(self) -> None:
        """Close the current batch (if any) so it is queued next."""
        if self._current:
            self.closed.append(self._current)
            self._current = []
            self._bytes = _ENVELOPE_BYTES
            self.changed.set()

    def due_in(self) -> float | None:
        """Seconds until the open batch reaches max_wait_s; None when none is open."""
        if not self._current:
            return None
        return max(0.0, self._opened_at + self.max_wait_s - time.monotonic())

    @property
    def pending(self) -> int:
        """Measurements not yet queued (open and closed batches)."""
        return len(self._current) + sum(len(b) for b in self.closed)


@dataclass
class AgentStats:
    """Counters of a running agent; updated in place."""

    measurements: int = 0
    batches_queued: int = 0
    tests_run: Counter[str] = field(default_factory=Counter)
    tests_failed: Counter[str] = field(default_factory=Counter)
    metrics_dropped: int = 0
    radio_failures: int = 0
    tests_skipped_budget: Counter[str] = field(default_factory=Counter)


def _budget_s(spec: MeasurementSpec) -> float:
    """The longest a test may run before it is abandoned (a safety net over its own timeouts)."""
    count = getattr(spec, "count", 1)
    spacing = getattr(spec, "spacing_s", 0.0)
    if isinstance(spec, HttpDownloadSpec):
        return 2 * spec.timeout_s + 10  # headers, then up to timeout_s of body
    return count * (spec.timeout_s + spacing) + 10


class ProbeAgent:
    """Runs a probe: its tests on schedule, radio readings, batching, durable queue, publishing."""

    def __init__(
        self,
        config: ProbeConfig,
        *,
        radio: RadioSource | None = None,
        clock: ClockReader | None = None,
        queue: BatchQueue | None = None,
        echo: EchoFunc = icmp.echo,
        rng: random.Random | None = None,
        grace_s: float = 10.0,
    ) -> None:
        self.config = config
        if radio is None and config.radio is not None:
            radio = source_from_config(
                config.radio.source,
                modem=config.radio.modem,
                timeout_s=config.radio.timeout_s,
                operator_codes=config.radio.operator_codes,
            )
        self.radio = radio
        self.clock = clock or cached(read_clock_status)
        self._own_queue = queue is None
        # `is None`, not `or`: an empty queue is falsy (it has a length).
        self.queue = (
            queue
            if queue is not None
            else BatchQueue(config.queue.path, probe_id=config.probe_id, max_batches=config.queue.max_batches)
        )
        self.echo = echo
        self.rng = rng or random.Random()
        self.stats = AgentStats()
        self.batcher = Batcher(
            max_measurements=config.batch.max_measurements,
            max_bytes=config.batch.max_bytes,
            max_wait_s=config.batch.max_wait_s,
        )
        self.publisher = Publisher(config, self.queue, clock=self.clock, grace_s=grace_s)
        self._reading: tuple[float, RadioReading] | None = None
        # Throughput tests take the link: never two at once, or each measures half.
        self._heavy = asyncio.Lock()
        self._queue_lock = threading.Lock()
        self._icmp_warned = False
        # What runs: probe.yaml's tests until the server sends a schedule (kept across restarts).
        self.tests: list[MeasurementSpec] = list(config.tests)
        self.schedule: Schedule | None = None
        self.refused: dict[str, Any] | None = None
        self.budget = DataBudget(config.state_dir / "budget.json", now_s=time.time())
        self._schedule_path = config.state_dir / "schedule.json"
        self._loops: dict[str, asyncio.Task[None]] = {}  # test key -> its loop (the current tests)
        self._all_loops: set[asyncio.Task[None]] = set()  # those, and removed ones finishing a run
        self._busy: set[str] = set()  # keys of the tests running right now
        self._running = False
        if config.schedule.enabled:
            last = load_last_good(self._schedule_path, config.probe_id)
            if last is not None:
                self._use(last)
            self.publisher.on_schedule = self.on_schedule_message
        self.publisher.report(self.status_message())

    def close(self) -> None:
        """Close the queue file if this agent opened it."""
        if self._own_queue:
            self.queue.close()

    # -- measurements --------------------------------------------------------------------

    def _labels(self) -> tuple[str, str]:
        """(technology, operator): the radio's when it told recently, else the configured ones."""
        technology: str = self.config.technology
        operator = self.config.operator
        if self._reading is not None and self.config.radio is not None:
            at, reading = self._reading
            if time.monotonic() - at <= 3 * self.config.radio.interval_s:
                technology = reading.technology or technology
                operator = reading.operator or operator
        return technology, operator

    def record(self, ts_ms: int, target: str, metrics: dict[str, float]) -> bool:
        """Add one measurement to the current batch; False when no metric value was valid."""
        good, bad = valid_metrics(metrics)
        if bad:
            self.stats.metrics_dropped += len(bad)
            log.warning(
                "event=probe_metric_dropped target=%s metrics=%s reason=out_of_schema_range",
                target,
                {k: metrics[k] for k in bad},
            )
        if not good:
            return False
        technology, operator = self._labels()
        self.batcher.add(
            {
                "ts": ts_ms,
                "target": target[:255],
                "technology": technology,
                "operator": operator,
                "metrics": good,
            }
        )
        self.stats.measurements += 1
        return True

    async def run_test_once(self, spec: MeasurementSpec) -> dict[str, float] | None:
        """Run one test now and record its measurement; its metrics, or None if it failed."""
        kind = spec.kind
        heavy = isinstance(spec, (HttpDownloadSpec, HttpUploadSpec))
        tally = ByteTally()
        try:
            async with self._heavy if heavy else contextlib.nullcontext():
                if heavy and not self.budget.allows(
                    self.budget_bytes, getattr(spec, "bytes", None), now_s=time.time()
                ):
                    self.stats.tests_skipped_budget[kind] += 1
                    self.budget.skip(now_s=time.time())
                    log.warning(
                        "event=probe_test_skipped kind=%s target=%s reason=data_budget used_bytes=%d "
                        "budget_bytes=%s",
                        kind,
                        target_of(spec),
                        self.budget.used_bytes,
                        self.budget_bytes,
                    )
                    self.report()
                    return None
                ts = now_ms()
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                    # that arrives as the test finishes, and a stopping agent would never stop.
                    async with compat.timeout(_budget_s(spec)):
                        metrics = await run_spec(spec, echo=self.echo, tally=tally)
                finally:
                    if heavy:
                        # What crossed the link counts, whether the test succeeded or not.
                        self.budget.spend(tally.n, now_s=time.time())
                        self.report()
        except icmp.IcmpUnavailable as exc:
            self.stats.tests_failed[kind] += 1
            if not self._icmp_warned:
                log.error("event=probe_icmp_unavailable target=%s error=%r", target_of(spec), str(exc))
                self._icmp_warned = True
            return None
        except (MeasurementError, TimeoutError) as exc:
            self.stats.tests_failed[kind] += 1
            log.warning("event=probe_test_failed kind=%s target=%s error=%r", kind, target_of(spec), str(exc))
            return None
        self.stats.tests_run[kind] += 1
        self.record(ts, target_of(spec), metrics)
        return metrics

    async def _test_loop(self, key: str, spec: MeasurementSpec) -> None:
        loop = asyncio.get_running_loop()
        interval = spec.interval_s
        jitter = self.config.schedule_jitter_ratio
        # The first runs are spread out, so a probe's tests do not all start together.
        due = loop.time() + self.rng.uniform(0, min(interval, 30.0))
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            if self._loops.get(key) is not asyncio.current_task():
                return  # a new schedule dropped this test
            self._busy.add(key)
            try:
                await self.run_test_once(spec)
            except Exception:
                # A bug in one test must not stop the others, nor the probe.
                self.stats.tests_failed[spec.kind] += 1
                log.exception("event=probe_test_crashed kind=%s target=%s", spec.kind, target_of(spec))
            finally:
                self._busy.discard(key)
            due += interval * (1 + self.rng.uniform(-jitter, jitter))
            now = loop.time()
            if due < now:
                # Ran longer than its interval (or the box was suspended): skip, don't burst.
                due = now + interval * self.rng.uniform(1 - jitter, 1 + jitter)

    # -- central schedule and data budget -------------------------------------------------

    @property
    def budget_bytes(self) -> int | None:
        """This month's throughput budget in bytes (from the schedule); None: unlimited."""
        return self.schedule.budget_bytes_month if self.schedule is not None else None

    def _use(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.tests = list(schedule.tests)

    def _sync_loops(self) -> None:
        """Start a loop for each current test without one; retire the loops of the others.

        A retired loop that is sleeping is cancelled; one in the middle of a run finishes it
        (a throughput test cut short would waste its bytes) and then returns.
        """
        wanted: dict[str, MeasurementSpec] = {}
        for spec in self.tests:
            base = canonical_json(spec.model_dump(mode="json")).decode()
            n = sum(1 for k in wanted if k.split("#", 1)[1] == base)
            wanted[f"{n}#{base}"] = spec  # the same test twice runs twice
        for key in list(self._loops):
            if key not in wanted:
                task = self._loops.pop(key)
                if key not in self._busy:
                    task.cancel()
        for key, spec in wanted.items():
            if key not in self._loops:
                task = asyncio.create_task(self._test_loop(key, spec), name=f"test-{spec.kind}")
                self._loops[key] = task
                self._all_loops.add(task)
                task.add_done_callback(self._all_loops.discard)

    def on_schedule_message(self, raw: bytes, via: str) -> None:
        """A schedule from the server (MQTT or HTTPS): run it, or refuse it and keep the last good one."""
        if not raw:
            return  # the retained message was cleared: keep running what runs
        running = self.schedule.version if self.schedule is not None else None
        try:
            schedule = parse_schedule(raw, probe_id=self.config.probe_id, running_version=running)
        except ScheduleRefused as exc:
            seen = self.refused is not None and (self.refused["version"], self.refused["digest"]) == (
                exc.version,
                exc.digest,
            )
            self.refused = {
                "version": exc.version,
                "digest": exc.digest,
                "reason": exc.reason,
                "ts": now_ms(),
            }
            if not seen:  # a retained message comes again at every reconnect: log it once
                log.error(
                    "event=probe_schedule_refused version=%s via=%s reason=%r running_version=%s",
                    exc.version,
                    via,
                    exc.reason,
                    running,
                )
                self.report(urgent=True)  # on the HTTPS fallback too: the department must hear of it
            return
        if self.schedule is not None and (schedule.version, schedule.digest) == (
            self.schedule.version,
            self.schedule.digest,
        ):
            return  # what runs already
        try:
            save_last_good(self._schedule_path, schedule)
        except OSError as exc:
            log.error("event=probe_schedule_not_saved path=%s error=%r", self._schedule_path, str(exc))
        self._use(schedule)
        if self.refused is not None and (self.refused["version"] or 0) <= schedule.version:
            self.refused = None  # superseded by a good one
        if self._running:
            self._sync_loops()
        log.info(
            "event=probe_schedule_applied name=%s version=%d digest=%s tests=%d budget_bytes_month=%s via=%s",
            schedule.name,
            schedule.version,
            schedule.digest[:12],
            len(schedule.tests),
            schedule.budget_bytes_month,
            via,
        )
        self.report(urgent=True)

    def status_message(self) -> bytes:
        """The agent's status report (retained on `<prefix>/<id>/agent`; docs/probe-agent.md)."""
        q = self.queue.stats()
        sched = self.schedule
        radio: dict[str, Any] | None = None
        if self._reading is not None:
            at, reading = self._reading
            radio = {"age_s": round(time.monotonic() - at, 1), **dataclasses.asdict(reading)}
        return orjson.dumps(
            {
                "v": 1,
                "probe_id": self.config.probe_id,
                "ts": now_ms(),
                "agent_version": __version__,
                "schedule": {
                    "source": "server" if sched is not None else "local",
                    "name": sched.name if sched is not None else None,
                    "version": sched.version if sched is not None else None,
                    "digest": sched.digest if sched is not None else None,
                    "tests": len(self.tests),
                },
                "refused": self.refused,
                "budget": {
                    "month": self.budget.month,
                    "used_bytes": self.budget.used_bytes,
                    "budget_bytes": self.budget_bytes,
                    "skipped_tests": self.budget.skipped,
                },
                "queue": {
                    "batches": q.pending_batches,
                    "measurements": q.pending_measurements,
                    "dropped_batches": q.dropped_batches,
                },
                "radio": radio,
            }
        )

    def report(self, *, urgent: bool = False) -> None:
        """Hand the publisher a fresh status report (sent at once when connected; `urgent`:
        over the HTTPS fallback too, without waiting for its next poll)."""
        self.publisher.report(self.status_message(), urgent=urgent)

    async def read_radio_once(self) -> RadioReading | None:
        """Take a radio reading now and record its metrics (rsrp_dbm, rsrq_db, sinr_db)."""
        assert self.radio is not None
        timeout = self.config.radio.timeout_s * 4 if self.config.radio is not None else 40.0
        ts = now_ms()
        try:
            async with compat.timeout(timeout):
                reading = await self.radio.read()
        except TimeoutError:
            reading = None
        if reading is None:
            self.stats.radio_failures += 1
            return None
        self._reading = (time.monotonic(), reading)
        metrics = reading.metrics()
        if metrics:
            self.record(ts, reading.target, metrics)
        return reading

    async def _radio_loop(self) -> None:
        assert self.config.radio is not None
        interval = self.config.radio.interval_s
        while True:
            try:
                await self.read_radio_once()
            except Exception:
                self.stats.radio_failures += 1
                log.exception("event=probe_radio_crashed")
            await asyncio.sleep(interval)

    # -- batching and queueing -----------------------------------------------------------

    def _queue_head(self) -> tuple[int, int] | None:
        """Move the oldest closed batch to the disk queue: (seq, measurements), or None.

        Runs in a worker thread, under a lock, so that a cancelled caller (stopping) can never
        leave a batch both queued and still waiting in the batcher: it would be sent twice.
        """
        with self._queue_lock:
            if not self.batcher.closed:
                return None
            measurements = self.batcher.closed[0]
            batch = {"v": SCHEMA_VERSION, "probe_id": self.config.probe_id, "measurements": measurements}
            seq = self.queue.enqueue(batch)
            self.batcher.closed.popleft()  # only once it is on disk
            return seq, len(measurements)

    async def flush(self, *, close_open: bool = False) -> int:
        """Queue the closed batches (and the open one with `close_open`); returns how many."""
        if close_open:
            self.batcher.close()
        n = 0
        while self.batcher.closed:
            queued = await asyncio.to_thread(self._queue_head)
            if queued is None:
                break
            self.stats.batches_queued += 1
            n += 1
            log.debug("event=probe_batch_queued seq=%d measurements=%d", *queued)
            self.publisher.notify()
        return n

    async def _flush_loop(self) -> None:
        while True:
            due = self.batcher.due_in()
            with contextlib.suppress(TimeoutError):
                async with compat.timeout(due):
                    await self.batcher.changed.wait()
            self.batcher.changed.clear()
            due = self.batcher.due_in()
            await self.flush(close_open=due is not None and due <= 0)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.schedule.report_interval_s)
            self.log_status()
            self.report()

    def log_status(self) -> None:
        """One log line with the queue's and the publisher's counters."""
        q = self.queue.stats()
        p = self.publisher.stats
        log.info(
            "event=probe_status queued_batches=%d queued_measurements=%d dropped_batches=%d "
            "mqtt_up=%s mqtt_published=%d https_published=%d measurements=%d tests_failed=%d",
            q.pending_batches,
            q.pending_measurements,
            q.dropped_batches,
            self.publisher.online.is_set(),
            p.mqtt_published,
            p.https_published,
            self.stats.measurements,
            sum(self.stats.tests_failed.values()),
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Measure and publish until `stop` is set; then queue what was measured and give the
        publisher its grace period to deliver it. Whatever is still queued stays on disk."""
        log.info(
            "event=probe_start probe_id=%s version=%s tests=%d schedule_version=%s radio=%s queue=%s "
            "next_seq=%d",
            self.config.probe_id,
            __version__,
            len(self.tests),
            self.schedule.version if self.schedule is not None else "local",
            self.config.radio.source if self.config.radio else "none",
            self.config.queue.path,
            self.queue.stats().next_seq,
        )
        pub_stop = asyncio.Event()
        publisher = asyncio.create_task(self.publisher.run(pub_stop), name="probe-publisher")
        self._running = True
        self._sync_loops()
        producers: list[asyncio.Task[Any]] = []
        if self.radio is not None:
            producers.append(asyncio.create_task(self._radio_loop()))
        producers.append(asyncio.create_task(self._flush_loop()))
        producers.append(asyncio.create_task(self._status_loop()))
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({stopper, publisher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._running = False
            self._loops.clear()
            await _cancel_all([*producers, *self._all_loops, stopper])
            # Measured is measured: on disk before the process goes.
            await self.flush(close_open=True)
            self.report()  # the last queue depth and budget, sent within the grace period
            pub_stop.set()
            self.publisher.notify()
            try:
                await publisher
            finally:
                self.log_status()
                log.info("event=probe_stop")


async def _cancel_all(tasks: list[asyncio.Task[Any]], rounds: int = 20) -> None:
    """Cancel the tasks and wait for them; cancel again those that swallowed it (a library
    catching CancelledError), a bounded number of times, then leave them be."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(rounds):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    log.error("event=probe_tasks_not_stopping count=%d", len(pending))


# -- command line -------------------------------------------------------------------------


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run the field probe agent: measure, queue durably, publish over MQTT (HTTPS fallback).",
    )
    p.add_argument("--config", type=Path, required=True, help="the probe's YAML file (docs/probe-agent.md)")
    p.add_argument(
        "--check", action="store_true", help="validate the configuration, print it (secrets masked)"
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="run every test and read the radio once, print JSON, publish nothing",
    )
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="overrides log_level")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    return p


async def _once(config: ProbeConfig) -> list[dict[str, Any]]:
    """Run every test once (and the radio), queueing nothing: for installers checking a box."""
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="netqos-probe-once-") as tmp:
        queue = BatchQueue(Path(tmp) / "queue.db", probe_id=config.probe_id, first_seq=0)
        agent = ProbeAgent(config, queue=queue)
        try:
            if agent.radio is not None:
                reading = await agent.read_radio_once()
                out.append({"radio": None if reading is None else dataclasses.asdict(reading)})
            for spec in agent.tests:  # the server's last schedule, if one came
                metrics = await agent.run_test_once(spec)
                out.append({"kind": spec.kind, "target": target_of(spec), "metrics": metrics})
        finally:
            queue.close()
    return out


async def _run(config: ProbeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    agent = ProbeAgent(config)
    try:
        await agent.run(stop)
    finally:
        agent.close()


def cli(argv: list[str], *, prog: str = "netqos probe") -> int:
    """`netqos probe ARGS`: returns the exit code (0 ok, 1 runtime error, 2 configuration error)."""
    args = _parser(prog).parse_args(argv)
    try:
        config = load_config(args.config)
    except ProbeConfigError as exc:
        print(f"{prog}: configuration error: {exc.source}: {exc.key}: {exc.reason}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(args.log_level or config.log_level, args.log_format)
    if args.check:
        print(yaml.safe_dump(masked(config), sort_keys=False, allow_unicode=True), end="")
        return 0
    try:
        if args.once:
            print(orjson.dumps(asyncio.run(_once(config)), option=orjson.OPT_INDENT_2).decode())
        else:
            asyncio.run(_run(config))
    except QueueError as exc:
        print(f"{prog}: queue error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `netqos-probe` and ``python -m probes.agent``: `cli` with the process's arguments."""
    return cli(sys.argv[1:] if argv is None else argv, prog="netqos-probe")
