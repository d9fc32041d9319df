"""Central measurement schedules for the probe fleet, and what the agents report back.

The department keeps one YAML file (``probes.schedules_file``)::

    version: 4                # monotonic; the API bumps it, a hand edit must too
    schedules:
      - name: default         # match {} = every probe
        match: {}
        budget_bytes_month: 2000000000
        tests: [{kind: icmp, target: 203.0.113.1, interval_s: 60}]
      - name: ftth-16021
        match: {commune: "16021", technology: FTTH}
        tests: [...]

A probe gets the schedule whose ``match`` (exact commune, operator, technology) fits it
and is the most specific: commune outweighs operator, which outweighs technology (weights
4, 2, 1, so no two different match sets tie). Two schedules with the same match set are
refused. Each probe's effective schedule (``ProbeSchedule.message``: the document version,
the digest of its tests and budget, probes.agent.schedule's wire format) is published
retained on ``<prefix>/<probe_id>/schedule`` and served over HTTPS to the probe's token.

Agents report, retained on ``<prefix>/<probe_id>/agent`` (or over HTTPS), the version they
run, the one they refused and why, their data use and queue depth: ``AgentReports`` keeps
the latest of each probe for the fleet view. The MQTT reports are retained, so a restarted
server has them back as soon as it subscribes; the HTTPS ones are kept in the store
(``probe_agent_reports``) and loaded at start. A retained report older (by the agent's own
``ts``) than the one loaded does not replace it: the probe reported over HTTPS since.

A revoked probe (``probes.revoked_ms``, set by ``netqos probes revoke``) gets no schedule:
the service clears its retained schedule and agent topics (empty retained payloads, with the
netqos-ingest account, which the production ACL lets write both) and forgets its report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiomqtt
import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collector.model import ProbeInfo
from probes.agent.payload import DEFAULT_TOPIC_PREFIX
from probes.agent.schedule import (
    MAX_SCHEDULE_BYTES,
    SCHEDULE_FORMAT,
    canonical_json,
    schedule_digest,
    validate_tests,
)

if TYPE_CHECKING:
    from collector.store.probes import ProbeRepo

log = logging.getLogger(__name__)

MATCH_WEIGHTS: Final = {"commune": 4, "operator": 2, "technology": 1}
MAX_REPORT_BYTES: Final = 16 * 1024
_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ScheduleError(Exception):
    """A schedules document that cannot be used: where and why (the old one stays in force)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Match(_Strict):
    """Which probes a schedule is for: every given label must equal the probe's."""

    commune: str | None = Field(None, min_length=1, max_length=64)
    operator: str | None = Field(None, min_length=1, max_length=32)
    technology: str | None = Field(None, min_length=1, max_length=16)

    def weight(self) -> int:
        """Specificity: the sum of MATCH_WEIGHTS of the labels given."""
        return sum(w for k, w in MATCH_WEIGHTS.items() if getattr(self, k) is not None)

    def fits(self, probe: ProbeInfo) -> bool:
        """Whether the probe carries every label given here."""
        return all(getattr(self, k) in (None, getattr(probe, k)) for k in MATCH_WEIGHTS)

    def key(self) -> tuple[str | None, ...]:
        return tuple(getattr(self, k) for k in MATCH_WEIGHTS)


class ScheduleEntry(_Strict):
    """One test set for a group of probes."""

    name: str = Field(pattern=_NAME_PATTERN)
    match: Match = Match()
    budget_bytes_month: int | None = Field(
        None, ge=0, le=10**15, description="bytes of throughput tests per probe per UTC month; none: no limit"
    )
    tests: list[dict[str, Any]] = Field(min_length=1)

    @field_validator("tests")
    @classmethod
    def _tests(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        validate_tests(v)  # the agent's own schema: what it would refuse is refused here
        # Room for the envelope (probe id, name, digest, version) under the agent's limit.
        if len(canonical_json(v)) > MAX_SCHEDULE_BYTES - 1024:
            raise ValueError(f"the tests take more than {MAX_SCHEDULE_BYTES - 1024} bytes as JSON")
        return v


class ScheduleDoc(_Strict):
    """The whole schedules file."""

    version: int = Field(0, ge=0, le=2**53)
    schedules: list[ScheduleEntry] = Field(default_factory=list, max_length=10_000)

    @model_validator(mode="after")
    def _unique(self) -> ScheduleDoc:
        try:
            # What cannot be UTF-8 (a lone surrogate from JSON's \\ud800) could be neither sent
            # to a probe nor written to the file: refused here, with the reason.
            orjson.dumps(self.model_dump(mode="json"))
        except orjson.JSONEncodeError as exc:
            raise ValueError(f"not valid Unicode text: {exc}") from None
        names: set[str] = set()
        keys: dict[tuple[str | None, ...], str] = {}
        for s in self.schedules:
            if s.name in names:
                raise ValueError(f"two schedules are named {s.name!r}")
            names.add(s.name)
            other = keys.get(s.match.key())
            if other is not None:
                raise ValueError(f"schedules {other!r} and {s.name!r} have the same match: which would win?")
            keys[s.match.key()] = s.name
        return self

    def effective(self, probe: ProbeInfo) -> ScheduleEntry | None:
        """The most specific schedule fitting the probe, or None."""
        best: ScheduleEntry | None = None
        for s in self.schedules:
            if s.match.fits(probe) and (best is None or s.match.weight() > best.match.weight()):
                best = s
        return best


def parse_doc(data: Any, source: str) -> ScheduleDoc:
    """Validate a schedules document; ScheduleError naming the key and the reason."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScheduleError(f"{source}: the top level must be a mapping (version, schedules)")
    try:
        return ScheduleDoc.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in err["loc"]) or "-"
        reason = "unknown key" if err["type"] == "extra_forbidden" else str(err["msg"])
        raise ScheduleError(f"{source}: {key}: {reason}") from exc


def read_doc(path: Path) -> ScheduleDoc:
    """The schedules file; a missing file is an empty document (version 0)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ScheduleDoc()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScheduleError(f"{path}: cannot read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScheduleError(f"{path}: not valid YAML: {exc}") from exc
    return parse_doc(data, str(path))


def write_doc(path: Path, doc: ScheduleDoc) -> None:
    """Replace the file atomically (mode 0640: it names the department's test servers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = (
        '# netqos measurement schedules (docs/probe-agent.md, "Central schedules").\n'
        "# Written by PUT /api/v1/schedules; when editing by hand, raise `version`.\n"
    )
    body = yaml.safe_dump(doc.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(head + body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class ProbeSchedule:
    """One probe's effective schedule, as sent to it."""

    probe_id: str
    name: str
    version: int
    digest: str
    message: bytes


def probe_schedule(doc: ScheduleDoc, probe: ProbeInfo, *, now_ms: int) -> ProbeSchedule | None:
    """The probe's effective schedule in the agent's wire format, or None when none fits."""
    entry = doc.effective(probe)
    if entry is None:
        return None
    digest = schedule_digest(entry.tests, entry.budget_bytes_month)
    body = {
        "v": SCHEDULE_FORMAT,
        "probe_id": probe.probe_id,
        "name": entry.name,
        "version": doc.version,
        "digest": digest,
        "tests": entry.tests,
        "budget_bytes_month": entry.budget_bytes_month,
        "issued_ms": now_ms,
    }
    return ProbeSchedule(probe.probe_id, entry.name, doc.version, digest, orjson.dumps(body))


# -- what the agents report --------------------------------------------------------------------


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: Any, n: int = 200) -> str | None:
    return v[:n] if isinstance(v, str) else None


def _obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


@dataclass(frozen=True)
class AgentReport:
    """The latest status an agent reported (fields it did not send are None)."""

    received_ms: int
    via: str
    ts_ms: int | None = None
    agent_version: str | None = None
    schedule_source: str | None = None
    schedule_name: str | None = None
    schedule_version: int | None = None
    schedule_digest: str | None = None
    refused_version: int | None = None
    refused_reason: str | None = None
    refused_ms: int | None = None
    data_month: str | None = None
    data_used_bytes: int | None = None
    data_budget_bytes: int | None = None
    tests_skipped_budget: int | None = None
    queue_batches: int | None = None
    queue_dropped_batches: int | None = None
    radio_technology: str | None = None
    radio_operator: str | None = None
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    cell_id: str | None = None


def parse_report(payload: bytes, probe_id: str, *, via: str, now_ms: int) -> AgentReport:
    """Read an agent's status report; ValueError when it is not one of this probe's."""
    if len(payload) > MAX_REPORT_BYTES:
        raise ValueError(f"larger than {MAX_REPORT_BYTES} bytes")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != 1:
        raise ValueError("not a v1 status object")
    if data.get("probe_id") != probe_id:
        raise ValueError(f"probe_id {data.get('probe_id')!r} is not the sender {probe_id!r}")
    sched, refused, budget = _obj(data.get("schedule")), _obj(data.get("refused")), _obj(data.get("budget"))
    queue, radio = _obj(data.get("queue")), _obj(data.get("radio"))
    return AgentReport(
        received_ms=now_ms,
        via=via,
        ts_ms=_int(data.get("ts")),
        agent_version=_str(data.get("agent_version"), 64),
        schedule_source=_str(sched.get("source"), 16),
        schedule_name=_str(sched.get("name"), 64),
        schedule_version=_int(sched.get("version")),
        schedule_digest=_str(sched.get("digest"), 64),
        refused_version=_int(refused.get("version")),
        refused_reason=_str(refused.get("reason"), 500),
        refused_ms=_int(refused.get("ts")),
        data_month=_str(budget.get("month"), 7),
        data_used_bytes=_int(budget.get("used_bytes")),
        data_budget_bytes=_int(budget.get("budget_bytes")),
        tests_skipped_budget=_int(budget.get("skipped_tests")),
        queue_batches=_int(queue.get("batches")),
        queue_dropped_batches=_int(queue.get("dropped_batches")),
        radio_technology=_str(radio.get("technology"), 16),
        radio_operator=_str(radio.get("operator"), 32),
        rsrp_dbm=_num(radio.get("rsrp_dbm")),
        rsrq_db=_num(radio.get("rsrq_db")),
        sinr_db=_num(radio.get("sinr_db")),
        cell_id=_str(radio.get("cell_id"), 64),
    )


@dataclass
class AgentReports:
    """The latest report of each probe, and how many reports were unusable."""

    latest: dict[str, AgentReport] = field(default_factory=dict)
    bad: int = 0

    def take(
        self,
        probe_id: str,
        payload: bytes,
        *,
        via: str,
        retained: bool = False,
        received_ms: int | None = None,
    ) -> AgentReport | None:
        """Keep a report (logging refusals, which are the department's to act on); None if unusable.

        `retained`: a message the broker kept (delivered on subscribe), not a live one: it does
        not replace a report the agent stamped later (one loaded from the store, sent over HTTPS).
        `received_ms`: when it came (default now; the stored time for a loaded report).
        """
        if not payload:
            self.latest.pop(probe_id, None)  # the retained report was cleared (probe revoked)
            return None
        now_ms = int(time.time() * 1000) if received_ms is None else received_ms
        try:
            report = parse_report(payload, probe_id, via=via, now_ms=now_ms)
        except ValueError as exc:
            self.bad += 1
            log.warning("event=probe_report_bad probe_id=%s via=%s error=%r", probe_id, via, str(exc))
            return None
        old = self.latest.get(probe_id)
        if (
            retained
            and old is not None
            and old.ts_ms is not None
            and report.ts_ms is not None
            and report.ts_ms < old.ts_ms
        ):
            return report  # valid but older than what is kept
        if report.refused_version is not None and (
            old is None
            or (old.refused_version, old.refused_reason) != (report.refused_version, report.refused_reason)
        ):
            log.error(
                "event=probe_schedule_refused probe_id=%s version=%s reason=%r running_version=%s",
                probe_id,
                report.refused_version,
                report.refused_reason,
                report.schedule_version,
            )
        self.latest[probe_id] = report
        return report


# -- the service: publish schedules, collect reports -------------------------------------------


class ScheduleService:
    """Keeps the schedules document, publishes each probe's schedule, collects agent reports.

    One per API process: several API replicas each publish the same retained messages
    (idempotent) and each read every report (retained), so any of them answers the fleet view.
    """

    def __init__(
        self,
        path: Path,
        probes: Callable[[], Iterable[ProbeInfo]],
        *,
        broker: tuple[str, int] | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "netqos-schedules",
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        check_interval_s: float = 5.0,
        reconnect_max_s: float = 30.0,
        repo: ProbeRepo | None = None,
    ) -> None:
        """`repo`: where the HTTPS reports are kept across restarts (None: in memory only)."""
        self.path = path
        self.probes = probes
        self.broker = broker
        self.username = username
        self.password = password
        self.client_id = client_id
        self.prefix = topic_prefix
        self.check_interval_s = check_interval_s
        self.reconnect_max_s = reconnect_max_s
        self.reports = AgentReports()
        self.doc = read_doc(path)  # a bad file at start is a configuration error: raised
        self._mtime = self._file_mtime()
        self._published: dict[str, tuple[int, str] | None] = {}  # probe -> (version, digest) on the broker
        self._cleared: set[str] = set()  # revoked probes whose topics were cleared on this connection
        self.cleared_total = 0
        self.repo = repo
        if repo is not None:
            for probe_id, received_ms, via, payload in repo.agent_reports():
                self.reports.take(probe_id, payload, via=via, received_ms=received_ms)
        self._changed = asyncio.Event()
        self.connected = False
        self.published_total = 0

    # -- the document --

    def _file_mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def reload(self) -> bool:
        """Re-read the file when it changed on disk. A bad file, or changed content without a higher
        version, is refused (ScheduleError) and the running document stays."""
        mtime = self._file_mtime()
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        doc = read_doc(self.path)
        if doc == self.doc:
            return False
        if doc.version <= self.doc.version:
            raise ScheduleError(
                f"{self.path}: changed but its version {doc.version} is not above {self.doc.version}:"
                " raise `version` (the probes refuse an older or equal version with other content)"
            )
        self.doc = doc
        self._changed.set()
        log.info("event=schedules_loaded version=%d schedules=%d", doc.version, len(doc.schedules))
        return True

    def replace(self, schedules: list[ScheduleEntry], *, expected_version: int | None = None) -> ScheduleDoc:
        """Put a new set of schedules in force as version + 1 (written to the file first).

        `expected_version`: refuse (ScheduleConflict) unless it is the running version, so two
        administrators editing at once do not overwrite each other unknowingly.
        """
        if expected_version is not None and expected_version != self.doc.version:
            raise ScheduleConflict(self.doc.version)
        doc = parse_doc(
            {"version": self.doc.version + 1, "schedules": [s.model_dump(mode="json") for s in schedules]},
            "schedules",
        )
        write_doc(self.path, doc)
        self._mtime = self._file_mtime()
        self.doc = doc
        self._changed.set()
        log.info("event=schedules_replaced version=%d schedules=%d", doc.version, len(doc.schedules))
        return doc

    def for_probe(self, probe: ProbeInfo) -> ProbeSchedule | None:
        """The probe's effective schedule now (none for a revoked probe)."""
        if probe.revoked_ms is not None:
            return None
        return probe_schedule(self.doc, probe, now_ms=int(time.time() * 1000))

    def take_https_report(self, probe_id: str, payload: bytes) -> AgentReport | None:
        """A report POSTed by the probe: kept, and saved in the store (blocking: call it in a
        thread) so that a restart does not lose it; None when it is not a usable report."""
        received_ms = int(time.time() * 1000)
        report = self.reports.take(probe_id, payload, via="https", received_ms=received_ms)
        if report is not None and self.repo is not None:
            self.repo.save_agent_report(probe_id, received_ms, "https", payload)
        return report

    def topic(self, probe_id: str, leaf: str) -> str:
        return f"{self.prefix}/{probe_id}/{leaf}"

    # -- MQTT --

    async def run(self, stop: asyncio.Event) -> None:
        """Publish and collect until `stop`, reconnecting with capped backoff."""
        if self.broker is None:
            return
        delay = 0.5
        while not stop.is_set():
            try:
                async with aiomqtt.Client(
                    self.broker[0],
                    self.broker[1],
                    identifier=self.client_id,
                    username=self.username,
                    password=self.password,
                    clean_session=True,  # the reports are retained: all of them come on subscribe
                ) as client:
                    await client.subscribe(self.topic("+", "agent"), qos=1)
                    self.connected = True
                    delay = 0.5
                    self._published.clear()  # the broker may have lost them: publish all again
                    self._cleared.clear()
                    log.info("event=schedules_connected host=%s port=%d", *self.broker)
                    await self._serve(client, stop)
                    return
            except aiomqtt.MqttError as exc:
                log.warning("event=schedules_mqtt_down error=%r retry_in_s=%.1f", str(exc), delay)
            finally:
                self.connected = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay * (0.5 + random.random()))
            delay = min(delay * 2, self.reconnect_max_s)

    async def _serve(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        async def read() -> None:
            async for message in client.messages:
                parts = str(message.topic).split("/")
                payload = message.payload if isinstance(message.payload, bytes) else b""
                if len(parts) >= 2 and parts[-1] == "agent":
                    self.reports.take(parts[-2], payload, via="mqtt", retained=bool(message.retain))

        async def publish() -> None:
            while not stop.is_set():
                try:
                    self.reload()
                except ScheduleError as exc:
                    log.error("event=schedules_reload_refused error=%r", str(exc))
                self._changed.clear()
                try:
                    await self.publish_all(client)
                except aiomqtt.MqttError:
                    raise
                except Exception:
                    # The store being unreachable for a moment must not stop the service: the next
                    # check (check_interval_s) tries again.
                    log.exception("event=schedules_publish_failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait_changed_or_stop(stop), self.check_interval_s)

        tasks = [asyncio.create_task(read()), asyncio.create_task(publish())]
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (*tasks, stopper):
                t.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
        for t in done:
            if t is not stopper:
                t.result()

    async def _wait_changed_or_stop(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.create_task(self._changed.wait()), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def publish_all(self, client: aiomqtt.Client) -> int:
        """Publish every probe's schedule that differs from what the broker holds; how many."""
        n = 0
        probes = await asyncio.to_thread(lambda: list(self.probes()))
        for probe in probes:
            if probe.revoked_ms is not None:
                await self._clear(client, probe.probe_id)
                continue
            self._cleared.discard(probe.probe_id)
            ps = self.for_probe(probe)
            want = None if ps is None else (ps.version, ps.digest)
            if probe.probe_id in self._published and self._published[probe.probe_id] == want:
                continue
            topic = self.topic(probe.probe_id, "schedule")
            # None fits: clear the retained message (the probe keeps its last good schedule).
            await client.publish(topic, b"" if ps is None else ps.message, qos=1, retain=True)
            self._published[probe.probe_id] = want
            n += 1
        self.published_total += n
        if n:
            log.info("event=schedules_published probes=%d version=%d", n, self.doc.version)
        return n

    async def _clear(self, client: aiomqtt.Client, probe_id: str) -> bool:
        """A revoked probe: clear its retained schedule and agent report (once per connection:
        cheap to repeat after a restart, and it catches a revocation made while the broker was
        down); whether it was done now."""
        if probe_id in self._cleared:
            return False
        for leaf in ("schedule", "agent"):
            await client.publish(self.topic(probe_id, leaf), b"", qos=1, retain=True)
        self._published.pop(probe_id, None)
        self.reports.latest.pop(probe_id, None)
        if self.repo is not None:
            await asyncio.to_thread(self.repo.delete_agent_report, probe_id)
        self._cleared.add(probe_id)
        self.cleared_total += 1
        log.info("event=probe_topics_cleared probe_id=%s reason=revoked", probe_id)
        return True


class ScheduleConflict(Exception):
    """The schedules changed since the caller read them."""

    def __init__(self, version: int) -> None:
        self.version = version
        super().__init__(f"the schedules are at version {version} now")
