"""Central measurement schedules and the monthly data budget, as the agent sees them.

The server publishes each probe's effective schedule, retained, on
``<prefix>/<probe_id>/schedule`` (and serves the same JSON at ``GET /api/v1/probe/schedule``
with the probe's token)::

    {"v": 1, "probe_id": "...", "name": "...", "version": 7, "digest": "<sha256 hex>",
     "tests": [ ...the same test entries as probe.yaml's tests... ],
     "budget_bytes_month": 5000000000 | null, "issued_ms": ...}

``digest`` is :func:`schedule_digest` of ``tests`` and ``budget_bytes_month``; the server
computes it with this very function, so a message damaged or edited on the way is refused.
A schedule is refused (and the last good one kept) when it is not JSON, names another probe,
has a bad digest, a test the agent cannot run, or a version lower than the one running. The
agent reports what it runs and what it refused, retained, on ``<prefix>/<probe_id>/agent``.

Python 3.9 syntax; nothing from the server (this module ships in ``netqos-probe``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Optional

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from probes.agent.config import TEST_KINDS, MeasurementSpec

log = logging.getLogger(__name__)

SCHEDULE_FORMAT: Final = 1
SCHEDULE_TOPIC: Final = "schedule"  # <prefix>/<probe_id>/schedule: server -> probe, retained
AGENT_TOPIC: Final = "agent"  # <prefix>/<probe_id>/agent: probe -> server, retained status
MAX_SCHEDULE_BYTES: Final = 64 * 1024
MAX_TESTS: Final = 100
THROUGHPUT_KINDS: Final = ("http_download", "http_upload")

_tests_adapter: TypeAdapter[list[MeasurementSpec]] = TypeAdapter(list[MeasurementSpec])


def canonical_json(value: Any) -> bytes:
    """The one byte form both sides hash: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def schedule_digest(tests: list[dict[str, Any]], budget_bytes_month: Optional[int]) -> str:
    """SHA-256 (hex) of what a schedule makes a probe do: its tests and its budget."""
    body = {"tests": tests, "budget_bytes_month": budget_bytes_month}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def validate_tests(tests: Any) -> list[MeasurementSpec]:
    """The tests as the agent runs them; ValueError with the first problem (``tests.2.port: ...``)."""
    if not isinstance(tests, list):
        raise ValueError("tests must be a list")
    if len(tests) > MAX_TESTS:
        raise ValueError(f"at most {MAX_TESTS} tests")
    try:
        return _tests_adapter.validate_python(tests)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        # Without pydantic's union tag (tests.0.tcp.port -> tests.0.port), as probe.yaml errors read.
        loc = [str(p) for p in err["loc"] if p not in TEST_KINDS]
        raise ValueError(f"tests.{'.'.join(loc)}: {err['msg']}") from None


class ScheduleRefused(Exception):
    """A schedule the agent will not run: its version (when readable) and why."""

    def __init__(self, version: Optional[int], digest: Optional[str], reason: str) -> None:
        self.version = version
        self.digest = digest
        self.reason = reason
        super().__init__(f"schedule version {version}: {reason}")


@dataclass(frozen=True)
class Schedule:
    """A validated central schedule."""

    name: str
    version: int
    digest: str
    tests: list[MeasurementSpec]
    budget_bytes_month: Optional[int]
    raw: dict[str, Any]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    v: int
    probe_id: str
    name: str = Field("", max_length=100)
    version: int = Field(ge=1)
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    tests: list[Any]
    budget_bytes_month: Optional[int] = Field(None, ge=0, le=10**15)


def parse_schedule(raw: bytes, *, probe_id: str, running_version: Optional[int]) -> Schedule:
    """Check a schedule message; raises ScheduleRefused with the reason."""
    if len(raw) > MAX_SCHEDULE_BYTES:
        raise ScheduleRefused(None, None, f"larger than {MAX_SCHEDULE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScheduleRefused(None, None, f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ScheduleRefused(None, None, "not a JSON object")
    version = data.get("version") if isinstance(data.get("version"), int) else None
    digest = data.get("digest") if isinstance(data.get("digest"), str) else None
    try:
        msg = _Message.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in err["loc"]) or "-"
        raise ScheduleRefused(version, digest, f"{key}: {err['msg']}") from None
    if msg.v != SCHEDULE_FORMAT:
        raise ScheduleRefused(version, digest, f"format v={msg.v}; this agent reads v={SCHEDULE_FORMAT}")
    if msg.probe_id != probe_id:
        raise ScheduleRefused(version, digest, f"for probe {msg.probe_id!r}, not this one")
    if schedule_digest(msg.tests, msg.budget_bytes_month) != msg.digest:
        raise ScheduleRefused(version, digest, "digest does not match the tests and budget")
    if running_version is not None and msg.version < running_version:
        raise ScheduleRefused(version, digest, f"older than the running version {running_version}")
    try:
        tests = validate_tests(msg.tests)
    except ValueError as exc:
        raise ScheduleRefused(version, digest, str(exc)) from None
    return Schedule(msg.name, msg.version, msg.digest, tests, msg.budget_bytes_month, data)


def _write_json(path: Path, data: Any) -> None:
    """Replace `path` atomically (a power cut leaves the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(canonical_json(data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    """Remove a temporary file, ignoring that it is gone already."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def load_last_good(path: Path, probe_id: str) -> Optional[Schedule]:
    """The schedule the agent last ran (kept across restarts), or None."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        return parse_schedule(raw, probe_id=probe_id, running_version=None)
    except ScheduleRefused as exc:
        log.error("event=probe_schedule_file_bad path=%s reason=%r", path, exc.reason)
        return None


def save_last_good(path: Path, schedule: Schedule) -> None:
    """Keep the schedule for the next start."""
    _write_json(path, schedule.raw)


def month_of(ts_s: float) -> str:
    """The UTC calendar month of a Unix time: ``2026-12``. Budgets reset when it changes."""
    return dt.datetime.fromtimestamp(ts_s, tz=dt.timezone.utc).strftime("%Y-%m")


class DataBudget:
    """Bytes moved by throughput tests this UTC month, against the schedule's budget.

    Kept in a small JSON file so a restart does not hand the month's budget out again.
    """

    def __init__(self, path: Path, *, now_s: float) -> None:
        self.path = path
        self.month = month_of(now_s)
        self.used_bytes = 0
        self.skipped = 0
        try:
            data = json.loads(path.read_bytes())
            if isinstance(data, dict) and data.get("month") == self.month:
                self.used_bytes = max(0, int(data.get("used_bytes", 0)))
                self.skipped = max(0, int(data.get("skipped", 0)))
        except (OSError, ValueError, TypeError):
            pass

    def _roll(self, now_s: float) -> None:
        month = month_of(now_s)
        if month != self.month:
            self.month, self.used_bytes, self.skipped = month, 0, 0

    def allows(self, budget: Optional[int], planned_bytes: Optional[int], *, now_s: float) -> bool:
        """Whether a throughput test of `planned_bytes` (None: unknown) may run now.

        With a known size the test runs only if it fits whole (used + planned <= budget); with
        an unknown size, while anything is left (used < budget). No budget: always.
        """
        self._roll(now_s)
        if budget is None:
            return True
        if planned_bytes is not None:
            return self.used_bytes + planned_bytes <= budget
        return self.used_bytes < budget

    def spend(self, n_bytes: int, *, now_s: float) -> None:
        """Count bytes a throughput test moved (failed or partial transfers too)."""
        self._roll(now_s)
        self.used_bytes += max(0, n_bytes)
        self._save()

    def skip(self, *, now_s: float) -> None:
        """Count a test skipped because the budget is spent."""
        self._roll(now_s)
        self.skipped += 1
        self._save()

    def _save(self) -> None:
        try:
            state = {"month": self.month, "used_bytes": self.used_bytes, "skipped": self.skipped}
            _write_json(self.path, state)
        except OSError as exc:
            log.warning("event=probe_budget_not_saved path=%s error=%r", self.path, str(exc))
