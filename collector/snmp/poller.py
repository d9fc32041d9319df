"""The polling engine: every device on its own schedule, none waiting for another.

Each device has a task that sleeps until its next due time (interval with jitter),
takes a slot of the global concurrency limit, and polls under a hard deadline. A slow
or dead agent only ever holds its own slot, so the rest keep their schedule (the pain
of one slow device stalling a whole Telegraf snmp block). Results flow one way:
rates and gauges -> SampleBatch (the ingest pipeline), state changes and poll status ->
the device tables. What one table's rows become (series, state changes, stored rows) is
`collector/snmp/rows.py`; what is kept per device between polls, `collector/snmp/runtime.py`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from collector.events import StateChange
from collector.inventory import (
    Credential,
    Device,
    Inventory,
    InventoryError,
    in_shard,
    load_inventory,
    parse_shard,
)
from collector.model import SeriesKey
from collector.pipeline import IngestPipeline
from collector.snmp import metrics as m
from collector.snmp.client import ColumnData, Session, SnmpError, open_session
from collector.snmp.counters import CounterTracker
from collector.snmp.profile import (
    Column,
    Profile,
    ProfileError,
    ProfileSource,
    Table,
    unknown_profiles,
)
from collector.snmp.rows import read_table
from collector.snmp.runtime import ROW_IDS_SLACK, DeviceRuntime, prune_rows
from collector.snmp.settings import SnmpSettings
from collector.snmp.state import Reachability, uptime_verdict
from collector.store.devices import DeviceRepo, PollRecord
from ground.aio import wait_stop

log = logging.getLogger(__name__)


class PollSink:
    """Collects poll records and state changes; writes them every second in one transaction."""

    def __init__(self, repo: DeviceRepo, interval_s: float = 1.0) -> None:
        self.repo = repo
        self.interval_s = interval_s
        self._polls: list[PollRecord] = []
        self._changes: list[StateChange] = []
        self._lock = asyncio.Lock()
        self.listeners: list[Callable[[StateChange], None]] = []

    def add(self, record: PollRecord | None, changes: list[StateChange]) -> None:
        if record is not None:
            self._polls.append(record)
        self._changes.extend(changes)
        for c in changes:
            log.info(
                "event=state_change kind=%s entity=%s state=%s source=%s",
                c.entity_kind,
                c.entity,
                c.state,
                c.source,
            )
            for listener in self.listeners:
                listener(c)

    async def flush(self) -> None:
        async with self._lock:
            polls, changes = self._polls, self._changes
            self._polls, self._changes = [], []
            if not polls and not changes:
                return
            try:
                await asyncio.to_thread(self.repo.write, polls, changes)
            except Exception:
                log.exception(
                    "event=device_write_failed polls=%d changes=%d action=retry", len(polls), len(changes)
                )
                self._polls[:0] = polls
                self._changes[:0] = changes

    async def run(self, stop: asyncio.Event) -> None:
        while not await wait_stop(stop, self.interval_s):
            await self.flush()
        await self.flush()


class Poller:
    """Polls the inventory's devices (this shard's), reloading the inventory when its files change."""

    def __init__(
        self,
        settings: SnmpSettings,
        pipeline: IngestPipeline,
        sink: PollSink,
        *,
        inventory: Inventory | None = None,
        session_factory: Callable[[Device, Credential], Session] | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.sink = sink
        self.shard = parse_shard(settings.shard)
        self._profile_source = ProfileSource(settings.profiles_dir)
        self.profiles = self._profile_source.profiles
        self._static_inventory = inventory
        self._session_factory = session_factory or (
            lambda d, c: open_session(d, c, timeout_s=settings.timeout_s, retries=settings.retries)
        )
        self.runtimes: dict[str, DeviceRuntime] = {}
        self._sem = asyncio.Semaphore(settings.concurrency)
        self._stop = asyncio.Event()
        self._mtimes: tuple[float, float] | None = None
        self._reload = asyncio.Event()
        self.loaded = asyncio.Event()
        self.reloads = 0  # inventory re-reads asked for by request_reload (SIGHUP), done
        # (entity kind, entity) of row outages left open by an earlier run: a row first seen
        # healthy closes its own; read when devices are added (see `_enum_changes`).
        self._open_outages: set[tuple[str, str]] = set()

    # -- inventory ---------------------------------------------------------------

    def _file_mtimes(self) -> tuple[float, float]:
        def mt(p: Path | None) -> float:
            try:
                return p.stat().st_mtime if p is not None else 0.0
            except OSError:
                return -1.0

        return mt(self.settings.inventory_file), mt(self.settings.credentials_file)

    def load(self) -> Inventory | None:
        """Read the inventory (and the profiles, if their files changed); on a bad file keep
        polling the old one and say why."""
        self._reload_profiles()
        if self._static_inventory is not None:
            return self._static_inventory
        if self.settings.inventory_file is None:
            return Inventory(())
        try:
            inv = load_inventory(self.settings.inventory_file, self.settings.credentials_file)
            unknown_profiles(inv, self.profiles, self.settings.inventory_file)
            return inv
        except InventoryError as exc:
            m.INVENTORY_ERRORS.inc()
            log.error(
                "event=inventory_rejected source=%s where=%r reason=%r", exc.source, exc.where, exc.reason
            )
            return None

    def _reload_profiles(self) -> None:
        """New profiles when `snmp.profiles_dir` changed (applied to the devices by `apply`);
        a broken edit is logged with its file, line and key, and the old profiles stay."""
        try:
            if self._profile_source.refresh():
                self.profiles = self._profile_source.profiles
                log.info("event=profiles_reloaded profiles=%d", len(self.profiles))
        except ProfileError as exc:
            m.INVENTORY_ERRORS.inc()
            log.error(
                "event=profiles_rejected source=%s line=%s key=%s reason=%r action=keep_previous",
                exc.source,
                exc.line,
                exc.key,
                exc.reason,
            )

    def profile_for(self, d: Device) -> Profile:
        """The device's `profile:`, else the profile named like its `kind`, else `generic`.
        A `profile:` that names no profile is an error (see `unknown_profiles`), never generic."""
        if d.profile is not None:
            p = self.profiles.get(d.profile)
            if p is None:
                raise ProfileError(f"device {d.id}", f"no profile {d.profile!r}", None, "profile")
            return p
        return self.profiles.get(d.kind) or self.profiles["generic"]

    def apply(self, inv: Inventory) -> None:
        """Start, update or stop device tasks to match the inventory (this shard's part)."""
        wanted = {d.id: d for d in in_shard(inv.devices, self.shard)}
        for dev_id in list(self.runtimes):
            if dev_id not in wanted:
                rt = self.runtimes.pop(dev_id)
                if rt.task is not None:
                    rt.task.cancel()
                log.info("event=device_removed device=%s", dev_id)
        last = self.sink.repo.last_states()
        if any(dev_id not in self.runtimes for dev_id in wanted):
            self._open_outages = self._read_open_outages()
        for dev_id, d in wanted.items():
            cred = inv.credentials[d.credentials]
            profile = self.profile_for(d)
            interval = d.poll_interval_s or self.settings.default_interval_s
            known = self.runtimes.get(dev_id)
            if known is None:
                reach = Reachability(
                    dev_id, self.settings.down_after_misses, state=last.get(dev_id, "unknown")
                )
                rt = DeviceRuntime(d, cred, profile, interval, reach)
                self.runtimes[dev_id] = rt
                rt.task = asyncio.create_task(self._device_loop(rt), name=f"poll-{dev_id}")
            else:
                if (known.device.host, known.device.port) != (d.host, d.port) or known.profile != profile:
                    known.counters.clear()  # another agent or other columns: no rate across the change
                known.device, known.cred, known.profile, known.interval_s = d, cred, profile, interval
        self.sink.repo.sync_inventory(
            [rt.device for rt in self.runtimes.values()],
            {i: rt.profile.name for i, rt in self.runtimes.items()},
            {i: rt.interval_s for i, rt in self.runtimes.items()},
        )
        m.DEVICES.set(len(self.runtimes))
        log.info("event=inventory_applied devices=%d shard=%d/%d", len(self.runtimes), *self.shard)

    def _read_open_outages(self) -> set[tuple[str, str]]:
        try:
            cur = self.sink.repo.store.reader().execute(
                "SELECT entity_kind, entity FROM outages WHERE end_ms IS NULL AND entity_kind <> 'device'"
            )
            return {(str(k), str(e)) for k, e in cur}
        except Exception:  # the store is down: first sights then close nothing, which is safe
            log.exception("event=open_outages_unreadable action=continue")
            return set()

    def request_reload(self) -> None:
        """Re-read the inventory now, changed or not (SIGHUP), instead of at the next check."""
        self._reload.set()

    async def _wait_for_change(self, stop: asyncio.Event) -> bool:
        """Until the next inventory check; True on a requested reload."""
        pending = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._reload.wait())}
        try:
            await asyncio.wait(
                pending, timeout=self.settings.reload_interval_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for t in pending:
                t.cancel()
        return self._reload.is_set()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop`; re-read the inventory every `reload_interval_s` when its files changed,
        and at once on `request_reload`."""
        self._stop = stop
        inv = await asyncio.to_thread(self.load)
        self._mtimes = self._file_mtimes()
        if inv is not None:
            await asyncio.to_thread(lambda: None)  # let the loop breathe before spawning tasks
            self.apply(inv)
        self.loaded.set()
        while not stop.is_set():
            forced = await self._wait_for_change(stop)
            if stop.is_set():
                break
            self._reload.clear()
            files_changed = forced or self._file_mtimes() != self._mtimes
            if (self._static_inventory is None and files_changed) or self._profile_source.changed():
                self._mtimes = self._file_mtimes()
                inv = await asyncio.to_thread(self.load)
                if inv is not None:
                    self.apply(inv)
            if forced:
                self.reloads += 1
        tasks = [rt.task for rt in self.runtimes.values() if rt.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- scheduling --------------------------------------------------------------

    async def _device_loop(self, rt: DeviceRuntime) -> None:
        # Spread the first polls over one interval so a restart is no thundering herd.
        if await wait_stop(self._stop, random.uniform(0, min(rt.interval_s, 5.0))):
            return
        due = time.monotonic()
        while not self._stop.is_set():
            started = time.monotonic()
            m.SCHEDULE_LAG.observe(max(0.0, started - due))
            async with self._sem:
                await self.poll_once(rt)
            jitter = 1.0 + random.uniform(-self.settings.jitter_ratio, self.settings.jitter_ratio)
            due = max(due + rt.interval_s * jitter, time.monotonic())
            if await wait_stop(self._stop, due - time.monotonic()):
                return

    async def poll_once(self, rt: DeviceRuntime) -> PollRecord:
        """One poll of one device under the hard deadline; never raises for the device's faults."""
        d = rt.device
        ts_ms = int(time.time() * 1000)
        t0 = time.perf_counter()
        session = self._session_factory(d, rt.cred)
        record: PollRecord
        changes: list[StateChange] = []
        try:
            async with asyncio.timeout(self.settings.deadline_s):
                record, changes = await self._poll(rt, session, ts_ms)
        except (SnmpError, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, SnmpError) else "deadline"
            detail = (
                str(exc)
                if isinstance(exc, SnmpError)
                else f"poll exceeded the {self.settings.deadline_s:g} s deadline"
            )
            record = PollRecord(d.id, ts_ms, False, time.perf_counter() - t0, session.varbinds, detail)
            m.POLL_ERRORS.labels(device=d.id, reason=reason).inc()
            change = rt.reach.failure(ts_ms, detail)
            changes = [change] if change else []
        except Exception as exc:  # a bug must not kill the device's schedule
            log.exception("event=poll_crashed device=%s", d.id)
            record = PollRecord(
                d.id, ts_ms, False, time.perf_counter() - t0, session.varbinds, f"internal: {exc!r}"
            )
            m.POLL_ERRORS.labels(device=d.id, reason="internal").inc()
        finally:
            await session.close()
        record.duration_s = time.perf_counter() - t0
        rt.polls += 1
        self._emit_up(rt, ts_ms)
        m.POLL_SECONDS.labels(device=d.id).set(record.duration_s)
        m.POLL_DURATION.observe(record.duration_s)
        m.POLLS.labels(result="ok" if record.ok else "error").inc()
        m.VARBINDS.labels(device=d.id).inc(session.varbinds)
        self.sink.add(record, changes)
        return record

    # -- one poll ----------------------------------------------------------------

    async def _poll(
        self, rt: DeviceRuntime, session: Session, ts_ms: int
    ) -> tuple[PollRecord, list[StateChange]]:
        d, profile = rt.device, rt.profile
        scalars: dict[tuple[int, ...], int | bytes | None] = {}
        if profile.scalars:
            scalars = await session.get([s.oid_tuple for s in profile.scalars])
        uptime_s = profile.uptime_scalar
        uptime = scalars.get(uptime_s.oid_tuple) if uptime_s else None
        uptime_cs = uptime if isinstance(uptime, int) else None
        name = next((scalars.get(s.oid_tuple) for s in profile.scalars if s.name == "sysName"), None)

        walk_cols: list[tuple[Table, Column]] = []
        for t in profile.tables:
            for c in t.columns:
                if c.fallback_only and not rt.need_fallback.get(f"{t.name}.{c.name}", True):
                    continue
                walk_cols.append((t, c))
        string_cols = {i for i, (_, c) in enumerate(walk_cols) if c.type == "string"}
        data = await session.walk(
            [c.oid_tuple for _, c in walk_cols], string_cols, self.settings.max_repetitions, rt.row_ids
        )
        by_table: dict[str, dict[str, ColumnData]] = {}
        for (t, c), cd in zip(walk_cols, data, strict=True):
            by_table.setdefault(t.name, {})[c.name] = cd

        record = PollRecord(
            d.id,
            ts_ms,
            True,
            0.0,
            session.varbinds,
            None,
            name.decode(errors="replace") if isinstance(name, bytes) else None,
            uptime_cs,
        )
        changes: list[StateChange] = []
        up = rt.reach.success(ts_ms)
        if up is not None:
            changes.append(up)
        # Once per device, not per table: a restart resets every table's baselines.
        prev_cs, prev_ms = rt.uptime if rt.uptime is not None else (None, None)
        verdict = uptime_verdict(prev_cs, prev_ms, uptime_cs, ts_ms)
        restarted = verdict == "restart"
        if restarted:
            m.COUNTER_RESETS.inc()
            log.info("event=agent_restarted device=%s uptime_cs=%s", d.id, uptime_cs)
        elif verdict == "wrap":
            log.info("event=sysuptime_wrapped device=%s uptime_cs=%s", d.id, uptime_cs)
        if uptime_cs is not None:
            rt.uptime = (uptime_cs, ts_ms)
        for t in profile.tables:
            tracker = rt.counters.setdefault(t.name, CounterTracker())
            read_table(
                rt,
                t,
                by_table.get(t.name, {}),
                tracker,
                ts_ms,
                restarted,
                record,
                changes,
                self._open_outages,
                self._emit,
            )
            tracker.commit(ts_ms, uptime_cs)
        if len(rt.row_ids) > ROW_IDS_SLACK:
            prune_rows(rt, data)
        return record, changes

    def _emit(
        self,
        rt: DeviceRuntime,
        t: Table,
        metric: str,
        rows: np.ndarray,
        names: list[str],
        vals: np.ndarray,
        ts: int,
        parts: list[dict[str, int]] | None = None,
    ) -> None:
        # Rows without a reading this poll (a hole, an offline ONU) get no sample, nor a series.
        have = np.flatnonzero(np.isfinite(vals))
        if have.shape[0] == 0:
            return
        idx = np.empty(have.shape[0], dtype=np.int64)
        row_ids = rows.tolist()
        for j, i in enumerate(have.tolist()):
            r = row_ids[i]
            key = (metric, t.name, r, names[i])
            li = rt.series.get(key)
            if li is None:
                labels = rt.device.labels() | {t.row_label: names[i]}
                if parts:
                    labels |= {k: str(v) for k, v in parts[i].items()}
                li = rt.series[key] = self.pipeline.series.index(
                    SeriesKey.of(metric, rt.device.id, labels), rt.interval_s
                )
            idx[j] = li
        self.pipeline.accept_samples(idx, ts, vals[have].astype(np.float64, copy=False))

    def _emit_up(self, rt: DeviceRuntime, ts_ms: int) -> None:
        """`device_up` (1 up, 0 down) after every poll: availability is its mean over a window,
        and it follows the same state machine as the StateChanges (down after N misses)."""
        if rt.reach.state not in ("up", "down"):
            return  # unknown: not yet answered, not yet missed often enough
        key = ("device_up", "", 0, "")
        li = rt.series.get(key)
        if li is None:
            sk = SeriesKey.of("device_up", rt.device.id, rt.device.labels())
            li = rt.series[key] = self.pipeline.series.index(sk)
        value = 1.0 if rt.reach.state == "up" else 0.0
        self.pipeline.accept_samples(np.array([li], dtype=np.int64), ts_ms, np.array([value]))

    # -- traps -------------------------------------------------------------------

    def runtime_for_source(self, host: str, port: int) -> DeviceRuntime | None:
        """The device a datagram from host:port comes from: the only device at that address,
        or, where several share it (agents on one host, the demo), the one whose agent port
        sent it. None when unknown or ambiguous."""
        at_host = [rt for rt in self.runtimes.values() if rt.device.host == host]
        if len(at_host) == 1:
            return at_host[0]
        exact = [rt for rt in at_host if rt.device.port == port]
        return exact[0] if len(exact) == 1 else None
