"""The polling engine: every device on its own schedule, none waiting for another.

Each device has a task that sleeps until its next due time (interval with jitter),
takes a slot of the global concurrency limit, and polls under a hard deadline. A slow
or dead agent only ever holds its own slot, so the rest keep their schedule (the pain
of one slow device stalling a whole Telegraf snmp block). Results flow one way:
rates and gauges -> SampleBatch (the ingest pipeline), state changes and poll status ->
the device tables.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from collector.events import DOWN_STATES, StateChange
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
from collector.snmp.client import ColumnData, RowIds, Session, SnmpError, open_session
from collector.snmp.counters import CounterTracker
from collector.snmp.naming import compose_names, strings_by_row
from collector.snmp.profile import (
    Column,
    Profile,
    ProfileError,
    ProfileSource,
    Table,
    unknown_profiles,
)
from collector.snmp.settings import SnmpSettings
from collector.snmp.state import Reachability, uptime_verdict
from collector.snmp.transform import Dropped, add_ratios, drop_sentinels, gauge_values
from collector.store.devices import DeviceRepo, PollRecord
from ground.aio import wait_stop

log = logging.getLogger(__name__)

TAG_EXCEPTIONS = 0x80
# States that are no news when a row is first seen (ifOperStatus up, a GPON ONU online, an
# ENTITY-SENSOR ok, an administratively disabled port).
FIRST_SIGHT_QUIET = frozenset({"up", "online", "ok", "disabled"})
# `RowIds` may hold this many more composite ids than the last poll saw before it is pruned.
ROW_IDS_SLACK = 1024
# The detail of a `gone` state change (and so the end reason of the outage it closes).
GONE_DETAIL = "row no longer in the table"


@dataclass(slots=True)
class DeviceRuntime:
    """Everything the poller keeps about one device between polls.

    Rows are identified by their index (a row id of `row_ids`: the ifIndex itself for a
    table indexed by one sub-identifier, an interned id for ifIndex.ontId and the like),
    never by their name: names are labels that may change or repeat. `enums` and
    `row_names` are keyed by (table, row id) so the trap receiver finds an interface by its
    ifIndex; `row_names` holds the label that names the row in its series and its entity
    (`device/label`), unique within the table (see `row_labels`).
    """

    device: Device
    cred: Credential
    profile: Profile
    interval_s: float
    reach: Reachability
    counters: dict[str, CounterTracker] = field(default_factory=dict)
    enums: dict[tuple[str, int, str], int] = field(default_factory=dict)
    # Fallback columns (32-bit) still needed: set after a poll showed rows without the 64-bit one.
    need_fallback: dict[str, bool] = field(default_factory=dict)
    series: dict[tuple[str, str, int, str], int] = field(default_factory=dict)
    row_names: dict[tuple[str, int], str] = field(default_factory=dict)
    row_ids: RowIds = field(default_factory=RowIds)
    # Row ids each table answered with at its last poll (rows gone since are told from them).
    present: dict[str, np.ndarray] = field(default_factory=dict)
    # The last sysUpTime reading and when it was taken (ms): a restart is told from the wrap.
    uptime: tuple[int, int] | None = None
    task: asyncio.Task[None] | None = None
    polls: int = 0


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
            self._table(rt, t, by_table.get(t.name, {}), tracker, ts_ms, restarted, record, changes)
            tracker.commit(ts_ms, uptime_cs)
        if len(rt.row_ids) > ROW_IDS_SLACK:
            _prune_rows(rt, data)
        return record, changes

    def _table(
        self,
        rt: DeviceRuntime,
        t: Table,
        cols: dict[str, ColumnData],
        tracker: CounterTracker,
        ts_ms: int,
        restarted: bool,
        record: PollRecord,
        changes: list[StateChange],
    ) -> None:
        # Every row seen in any column, by row id: columns are joined on the whole index, so a
        # row missing from one column (a hole, an ONU without a reading) leaves only that
        # cell empty and never shifts a neighbour's value onto it.
        present = [cd.index for cd in cols.values() if len(cd)]
        if not present:
            return
        rows = np.unique(np.concatenate(present))
        index_names = [rt.row_ids.name(r) for r in rows.tolist()]
        names, unnamed = _row_names(t, cols, rows, index_names)
        if t.row_name_fallback:
            rt.need_fallback[f"{t.name}.{t.row_name_fallback}"] = unnamed
        parts = _index_parts(t, rt.row_ids, rows)
        if t.row_name_format is not None:  # "{interfaces[ifIndex]}:{ontId}": see naming.py
            names = compose_names(
                t.row_name_format, rows, cols, parts, index_names, lambda tb, r: rt.row_names.get((tb, r))
            )
        labels = row_labels(names, index_names)
        raw = {c.name: cols[c.name] for c in t.columns if c.name in cols and len(cols[c.name])}
        # Gauge and enum columns as read (float per row, NaN where the row has none), each
        # value signed or unsigned by its own ASN.1 type.
        cells = {
            c.name: _aligned(rows, raw[c.name])
            for c in t.columns
            if c.type in ("gauge", "enum") and c.name in raw
        }
        dropped = Dropped()
        drop_sentinels(t, cells, dropped)  # "no reading" values (2147483647) are no values
        for c in t.columns:
            if c.type == "gauge" and c.fallback is not None:
                self._gauge_fallback(rt, t, c, rows, cells)
        metrics: dict[str, np.ndarray] = {}  # what becomes series: metric name -> value per row
        for c in t.columns:
            if c.type == "gauge" and c.metric is not None and c.name in cells:
                metrics[c.metric] = gauge_values(c, cells, dropped)
            if c.is_counter and not c.fallback_only:
                self._rates(rt, t, c, raw, cells, rows, tracker, ts_ms, restarted, metrics)
        add_ratios(t, metrics)
        for reason, n in (
            ("sentinel", dropped.sentinel),
            ("unscaled", dropped.unscaled),
            ("invalid", dropped.invalid),
        ):
            if n:
                m.VALUES_DROPPED.labels(device=rt.device.id, reason=reason).inc(n)
        for metric, series in metrics.items():
            self._emit(rt, t, metric, rows, labels, series, ts_ms, parts)
        changes.extend(self._gone_rows(rt, t, rows, ts_ms))
        changes.extend(self._enum_changes(rt, t, rows, labels, cells, ts_ms, (names, index_names)))
        if t.name not in rt.present:
            changes.extend(self._gone_since_restart(rt, t, labels, ts_ms))
        rt.present[t.name] = rows
        for r, label in zip(rows.tolist(), labels, strict=True):
            rt.row_names[(t.name, r)] = label
        strings = {
            c.name: strings_by_row(raw[c.name]) for c in t.columns if c.type == "string" and c.name in raw
        }
        # Per row in Python lists: numpy scalars one at a time cost more than the whole table.
        enums = [(c, cells[c.name].tolist()) for c in t.columns if c.type == "enum" and c.name in cells]
        values = [(k, series.tolist()) for k, series in metrics.items()]
        out_rows = []
        for i, rid in enumerate(rows.tolist()):
            row_vals: dict[str, Any] = dict(parts[i]) if parts else {}
            for c, col_vals in enums:
                v = col_vals[i]
                if math.isfinite(v):
                    row_vals[c.name] = c.states.get(int(v), int(v))
            for name, by_row in strings.items():
                row_vals[name] = by_row.get(rid, "")
            for k, col_vals in values:
                v = col_vals[i]
                if math.isfinite(v):
                    row_vals[k] = v
            out_rows.append((index_names[i], names[i], row_vals))
        record.rows[t.name] = out_rows

    def _gauge_fallback(
        self, rt: DeviceRuntime, t: Table, c: Column, rows: np.ndarray, cells: dict[str, np.ndarray]
    ) -> None:
        """Fill a gauge's rows that lack it or read 0 from its fallback, in the gauge's units
        (ifHighSpeed in Mbit/s from ifSpeed in bit/s), and say whether the fallback is still
        needed (it is walked only while some row lacks the gauge)."""
        primary = cells.get(c.name)
        merged = np.full(rows.shape[0], np.nan) if primary is None else primary.copy()
        lacking = ~np.isfinite(merged) | (merged == 0)
        assert c.fallback is not None
        rt.need_fallback[f"{t.name}.{c.fallback}"] = bool(lacking.any())
        fb = cells.get(c.fallback)
        if fb is None:
            return
        use = lacking & np.isfinite(fb)
        merged[use] = fb[use] * t.column(c.fallback).scale / c.scale
        cells[c.name] = merged

    def _rates(
        self,
        rt: DeviceRuntime,
        t: Table,
        c: Column,
        raw: dict[str, ColumnData],
        cells: dict[str, np.ndarray],
        rows: np.ndarray,
        tracker: CounterTracker,
        ts_ms: int,
        restarted: bool,
        metrics: dict[str, np.ndarray],
    ) -> None:
        """Rate (and utilisation) metrics of one counter column, 64-bit with 32-bit fallback.

        The fallback is per row: a row with a 64-bit reading uses it, a row without one (an
        agent filling ifHCInOctets for some interfaces only) its 32-bit reading. The 32-bit
        column is walked again only while some row lacks the 64-bit one."""
        # Every part goes through the tracker, also empty: a baseline left from an older
        # poll must never meet a reading taken many polls later.
        cd = raw.get(c.name)
        have, vals = np.empty(0, np.int64), np.empty(0, np.uint64)
        if cd is not None:
            ok = cd.tag < TAG_EXCEPTIONS
            have, vals = cd.index[ok], cd.uval[ok]
        parts: list[tuple[Column, np.ndarray, np.ndarray]] = [(c, have, vals)]
        if c.fallback:
            missing = ~np.isin(rows, have)
            rt.need_fallback[f"{t.name}.{c.fallback}"] = bool(missing.any())
            fb, fb_cd = t.column(c.fallback), raw.get(c.fallback)
            idx32, vals32 = np.empty(0, np.int64), np.empty(0, np.uint64)
            if fb_cd is not None:
                ok32 = (fb_cd.tag < TAG_EXCEPTIONS) & ~np.isin(fb_cd.index, have)
                idx32, vals32 = fb_cd.index[ok32], fb_cd.uval[ok32]
            parts.append((fb, idx32, vals32))
        speed = cells.get(c.utilisation.speed) if c.utilisation else None
        if speed is not None and c.utilisation is not None and c.utilisation.uncapped_types:
            kind = cells.get(c.utilisation.type_column or "")
            if kind is not None:
                speed = np.where(np.isin(kind, c.utilisation.uncapped_types), np.nan, speed)
        rate = np.full(rows.shape[0], np.nan)
        for col, idx, values in parts:
            pos = np.searchsorted(rows, idx)
            max_rate = None
            if speed is not None and c.utilisation is not None:
                # An octet counter cannot carry more than the link: speed (bit/s) per row.
                max_rate = speed[pos] * c.utilisation.speed_scale
                max_rate[max_rate <= 0] = np.nan
            res = tracker.rates(
                col.name,
                idx,
                values,
                bits=col.bits,
                ts_ms=ts_ms,
                restarted=restarted,
                scale=c.scale,
                max_rate=max_rate,
            )
            if res.discontinuities:
                m.COUNTER_DISCONTINUITIES.inc(res.discontinuities)
            rate[pos] = res.rates
        assert c.metric is not None  # a counter column without metric is rejected by the profile
        metrics[c.metric] = rate
        if c.utilisation is not None and speed is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                util = rate / (speed * c.utilisation.speed_scale)
            util[~np.isfinite(util)] = np.nan
            metrics[c.utilisation.metric] = util

    def _enum_changes(
        self,
        rt: DeviceRuntime,
        t: Table,
        rows: np.ndarray,
        labels: list[str],
        cells: dict[str, np.ndarray],
        ts_ms: int,
        plain: tuple[list[str], list[str]] | None = None,
    ) -> list[StateChange]:
        """StateChanges of enum columns marked `state_changes` (e.g. ifOperStatus), by row id.

        A row's state is its column's state name, or `disabled` while ifAdminStatus is down
        (an administratively down port never opens an outage). A change is news; a first
        sight is not: a row first seen healthy or down (an unused port at onboarding or after
        a restart) records no change, and opens no outage — unless its entity has an outage
        still open from before (a restart), which a healthy first sight closes.
        A row whose label changed (renamed, or its name now shared with another row) is the
        same row under a new entity: the old entity gets `unknown` (which closes its outage;
        detail `renamed to ...`), the new one its current state unless that is healthy.
        The same holds at a row's first sight for an outage left open under the entity the
        row had before rows were told apart by index (`plain`: its bare name, or its index
        where it had no name), so no outage of an upgrade is left open for ever."""
        out: list[StateChange] = []
        kind = "interface" if t.name == "interfaces" else t.name
        dev = rt.device.id
        enum_cols = [c for c in t.columns if c.type == "enum" and c.name in cells]
        tracked = [c for c in enum_cols if c.state_changes]
        admin_col = "ifAdminStatus" if "ifAdminStatus" in cells else None
        row_ids = rows.tolist()
        as_lists = {c.name: cells[c.name].tolist() for c in enum_cols}
        carried: set[tuple[str, str]] = set()
        for i, r in enumerate(row_ids):
            label = labels[i]
            old = rt.row_names.get((t.name, r))
            renamed = old is not None and old != label
            prev = {c.name: rt.enums.get((t.name, r, c.name)) for c in enum_cols}
            cur: dict[str, int | None] = {}
            for c in enum_cols:
                v = as_lists[c.name][i]
                cur[c.name] = int(v) if math.isfinite(v) else None
                if cur[c.name] is not None:
                    rt.enums[(t.name, r, c.name)] = int(v)
            if renamed and any(prev[c.name] is not None for c in tracked):
                out.append(
                    StateChange(kind, f"{dev}/{old}", "unknown", ts_ms, "poll", f"renamed to {label}", dev)
                )
            elif old is None and tracked and plain is not None and self._open_outages:
                for legacy in dict.fromkeys((plain[0][i], plain[1][i])):
                    key = (kind, f"{dev}/{legacy}")
                    if legacy == label or key not in self._open_outages:
                        continue
                    renamed = True  # every row that had this entity carries its own state on
                    if key not in carried:  # rows that shared a name close it once
                        carried.add(key)
                        out.append(
                            StateChange(kind, key[1], "unknown", ts_ms, "poll", f"renamed to {label}", dev)
                        )
            for c in tracked:
                v_now = cur[c.name]
                if v_now is None:
                    continue
                state = _state_of(c, v_now, cur.get(admin_col) if admin_col else None)
                entity = f"{dev}/{label}"
                before = prev[c.name]
                if renamed:
                    if state in FIRST_SIGHT_QUIET:
                        continue
                elif before is None:
                    was_open = (kind, entity) in self._open_outages
                    if state in DOWN_STATES or (state in FIRST_SIGHT_QUIET and not was_open):
                        continue
                    self._open_outages.discard((kind, entity))  # closed by this change
                elif _state_of(c, before, prev.get(admin_col) if admin_col else None) == state:
                    continue
                out.append(StateChange(kind, entity, state, ts_ms, "poll", f"{c.name}={v_now}", dev))
        self._open_outages -= carried
        return out

    def _gone_rows(self, rt: DeviceRuntime, t: Table, rows: np.ndarray, ts_ms: int) -> list[StateChange]:
        """Rows of the last poll missing from this one are gone: a row with a state gets the
        state `gone` (which closes an outage it had open: an ONU deleted while offline), and
        its states, label and series are forgotten, so a row back under the same index is a
        first sight. Only called for a table that answered with rows: a table answering with
        none (every column ended at once) is taken for the agent's fault, not as every row
        deleted."""
        before = rt.present.get(t.name)
        if before is None:
            return []
        vanished = np.setdiff1d(before, rows, assume_unique=True).tolist()
        if not vanished:
            return []
        out: list[StateChange] = []
        kind = "interface" if t.name == "interfaces" else t.name
        tracked = [c.name for c in t.columns if c.type == "enum" and c.state_changes]
        enum_cols = [c.name for c in t.columns if c.type == "enum"]
        gone = set(vanished)
        for r in vanished:
            label = rt.row_names.pop((t.name, r), None)
            had_state = [rt.enums.pop((t.name, r, c), None) for c in enum_cols]
            known = any(v is not None for c, v in zip(enum_cols, had_state, strict=True) if c in tracked)
            if label is not None and known:
                entity = f"{rt.device.id}/{label}"
                out.append(StateChange(kind, entity, "gone", ts_ms, "poll", GONE_DETAIL, rt.device.id))
        rt.series = {k: v for k, v in rt.series.items() if k[1] != t.name or k[2] not in gone}
        return out

    def _gone_since_restart(
        self, rt: DeviceRuntime, t: Table, labels: list[str], ts_ms: int
    ) -> list[StateChange]:
        """At a table's first poll since the start: outages left open by the run before for
        rows of this table that are no longer in it (deleted while netqos was stopped) are
        closed as gone. Called after `_enum_changes`, which has already taken the outages a
        row carries on (renamed, or still down)."""
        kind = "interface" if t.name == "interfaces" else t.name
        prefix = f"{rt.device.id}/"
        current = {prefix + lb for lb in labels}
        stale = sorted(
            e for k, e in self._open_outages if k == kind and e.startswith(prefix) and e not in current
        )
        for e in stale:
            self._open_outages.discard((kind, e))
        return [StateChange(kind, e, "gone", ts_ms, "poll", GONE_DETAIL, rt.device.id) for e in stale]

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


def _prune_rows(rt: DeviceRuntime, data: list[ColumnData]) -> None:
    """Forget composite rows no longer seen once they outnumber the seen ones (LLDP rows are
    re-indexed by a new timeMark on every neighbour change): their ids, states and series."""
    seen = np.unique(np.concatenate([cd.index[cd.index < 0] for cd in data] or [np.empty(0, np.int64)]))
    if len(rt.row_ids) <= 2 * seen.shape[0] + ROW_IDS_SLACK:
        return
    keep = set(seen.tolist())
    rt.row_ids.prune(keep)
    rt.enums = {k: v for k, v in rt.enums.items() if k[1] >= 0 or k[1] in keep}
    rt.row_names = {k: v for k, v in rt.row_names.items() if k[1] >= 0 or k[1] in keep}
    rt.series = {k: v for k, v in rt.series.items() if k[2] >= 0 or k[2] in keep}


def _state_of(c: Column, value: int, admin: int | None) -> str:
    """The state name of a state column's value; `disabled` while ifAdminStatus is down(2)."""
    if admin == 2:
        return "disabled"
    return c.states.get(value, str(value))


def row_labels(names: list[str], index_names: list[str]) -> list[str]:
    """The label naming each row in its series and entity: its name where no other row of
    the table has it, else `name#index` (eight ONUs sharing four descriptions stay eight).

    A name is kept as is where it is unique, so the common case (ifName) names its series
    and outages exactly as before rows were identified by index."""
    counts = Counter(names)
    labels = [n if counts[n] == 1 else f"{n}#{x}" for n, x in zip(names, index_names, strict=True)]
    for _ in range(3):  # a name that is literally another row's `name#index`: rare, settle it
        counts = Counter(labels)
        if len(counts) == len(labels):
            break
        labels = [lb if counts[lb] == 1 else f"{lb}#{x}" for lb, x in zip(labels, index_names, strict=True)]
    return labels


def _index_parts(t: Table, row_ids: RowIds, rows: np.ndarray) -> list[dict[str, int]] | None:
    """Each row's named index parts (`index: [ifIndex, ontId]`), or None when the table names
    none; a row whose index has another number of sub-identifiers gets none."""
    if not t.index:
        return None
    out = []
    for r in rows.tolist():
        suffix = row_ids.suffix(r)
        out.append(dict(zip(t.index, suffix, strict=True)) if len(suffix) == len(t.index) else {})
    return out


def _row_names(
    t: Table, cols: dict[str, ColumnData], rows: np.ndarray, index_names: list[str]
) -> tuple[list[str], bool]:
    """Each row's name from the table's `row_name_column`, else its `row_name_fallback`, else
    its dotted index; and whether some row had no name from `row_name_column`."""
    first = strings_by_row(cols[t.row_name_column]) if t.row_name_column in cols else {}
    second = strings_by_row(cols[t.row_name_fallback]) if t.row_name_fallback in cols else {}
    names, unnamed = [], False
    for r, x in zip(rows.tolist(), index_names, strict=True):
        name = first.get(r, "").strip()
        if not name:
            unnamed = True
            name = second.get(r, "").strip() or x
        names.append(name)
    return names, unnamed


def _aligned(rows: np.ndarray, cd: ColumnData) -> np.ndarray:
    """The column's numeric values on `rows` (NaN where the row has none)."""
    out = np.full(rows.shape[0], np.nan)
    ok = cd.tag < TAG_EXCEPTIONS
    out[np.searchsorted(rows, cd.index[ok])] = cd.numbers()[ok]
    return out
