"""Central schedules and data budgets, without a network: the wire format's digest, what an
agent refuses, the budget's limit and month, and which schedule a probe gets."""

from __future__ import annotations

import calendar
import hashlib
import json
import re
from pathlib import Path

import pytest

import probes.agent
from collector.model import ProbeInfo
from collector.probe_schedules import ScheduleError, ScheduleService, parse_doc, probe_schedule, read_doc
from probes.agent.schedule import DataBudget, ScheduleRefused, parse_schedule, schedule_digest

PID = "th-16021-p001"
TCP = {"kind": "tcp", "target": "127.0.0.1", "port": 443, "interval_s": 60}
# Hand-made: sorted keys, no spaces (budget_bytes_month < tests; interval_s < kind < port < target).
TCP_JSON = (
    '{"budget_bytes_month":5000,"tests":[{"interval_s":60,"kind":"tcp","port":443,"target":"127.0.0.1"}]}'
)


def message(version: int = 2, tests: list[dict[str, object]] | None = None, **over: object) -> bytes:
    tests = [TCP] if tests is None else tests
    body: dict[str, object] = {
        "v": 1,
        "probe_id": PID,
        "name": "default",
        "version": version,
        "digest": schedule_digest(tests, 5000),
        "tests": tests,
        "budget_bytes_month": 5000,
    }
    body.update(over)
    return json.dumps(body).encode()


def test_digest_is_sha256_of_the_canonical_json() -> None:
    assert schedule_digest([TCP], 5000) == hashlib.sha256(TCP_JSON.encode()).hexdigest()
    empty = b'{"budget_bytes_month":null,"tests":[]}'
    assert schedule_digest([], None) == hashlib.sha256(empty).hexdigest()


def test_a_good_schedule_is_read() -> None:
    s = parse_schedule(message(), probe_id=PID, running_version=2)  # the same version again: fine
    assert (s.name, s.version, s.budget_bytes_month) == ("default", 2, 5000)
    assert [(t.kind, t.target, t.interval_s) for t in s.tests] == [("tcp", "127.0.0.1", 60.0)]


@pytest.mark.parametrize(
    ("raw", "running", "version", "reason"),
    [
        (b"{not json", None, None, r"^not JSON"),
        (message(probe_id="th-16021-p002"), None, 2, r"for probe 'th-16021-p002', not this one"),
        (message(digest="0" * 64), None, 2, r"^digest does not match"),
        (message(v=2), None, 2, r"format v=2"),
        (message(version=2), 3, 2, r"^older than the running version 3$"),
        (message(version=0), None, 0, r"^version: "),
        (message(tests=[{**TCP, "kind": "twamp"}]), None, 2, r"^tests\.0: "),
        (message(tests=[{**TCP, "port": 65536}]), None, 2, r"^tests\.0\.port: "),
        (message(tests=[{**TCP, "colour": "red"}]), None, 2, r"^tests\.0\.colour: "),
        (b"x" * (64 * 1024 + 1), None, None, r"^larger than 65536 bytes"),
    ],
)
def test_bad_schedules_are_refused_with_their_version_and_reason(
    raw: bytes, running: int | None, version: int | None, reason: str
) -> None:
    with pytest.raises(ScheduleRefused) as err:
        parse_schedule(raw, probe_id=PID, running_version=running)
    assert err.value.version == version
    assert re.search(reason, err.value.reason), err.value.reason


def _ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    return float(calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)))


def test_budget_limits_on_below_and_above(tmp_path: Path) -> None:
    now = _ts(2026, 12, 7, 12)
    b = DataBudget(tmp_path / "budget.json", now_s=now)
    assert b.allows(1000, 1000, now_s=now)  # fits exactly: on the limit
    assert not b.allows(1000, 1001, now_s=now)  # one byte above
    assert b.allows(None, 10**12, now_s=now)  # no budget: no limit
    b.spend(999, now_s=now)
    assert b.allows(1000, 1, now_s=now) and not b.allows(1000, 2, now_s=now)
    assert b.allows(1000, None, now_s=now)  # unknown size: while anything is left (999 < 1000)
    b.spend(1, now_s=now)
    assert not b.allows(1000, None, now_s=now) and not b.allows(1000, 1, now_s=now)
    assert b.allows(1000, 0, now_s=now)
    b.skip(now_s=now)
    # Kept across a restart, within the month.
    again = DataBudget(tmp_path / "budget.json", now_s=now)
    assert (again.month, again.used_bytes, again.skipped) == ("2026-12", 1000, 1)


def test_budget_restarts_with_the_utc_month(tmp_path: Path) -> None:
    last_second = _ts(2026, 12, 31, 23, 59, 59)
    b = DataBudget(tmp_path / "budget.json", now_s=last_second)
    b.spend(1000, now_s=last_second)
    assert not b.allows(1000, 1, now_s=last_second)
    new_year = _ts(2027, 1, 1)
    assert b.allows(1000, 1000, now_s=new_year)
    assert (b.month, b.used_bytes) == ("2027-01", 0)
    # A file of another month counts nothing.
    assert DataBudget(tmp_path / "budget.json", now_s=_ts(2027, 2, 1)).used_bytes == 0


def _probe(commune: str, operator: str, technology: str) -> ProbeInfo:
    return ProbeInfo(PID, commune=commune, operator=operator, technology=technology)


DOC = {
    "version": 3,
    "schedules": [
        {"name": "all", "match": {}, "tests": [TCP]},
        {"name": "ftth", "match": {"technology": "FTTH"}, "tests": [TCP]},
        {"name": "viettel", "match": {"operator": "viettel"}, "tests": [TCP]},
        {"name": "c16021", "match": {"commune": "16021"}, "budget_bytes_month": 10**9, "tests": [TCP]},
        {"name": "c16021-ftth", "match": {"commune": "16021", "technology": "FTTH"}, "tests": [TCP]},
    ],
}


@pytest.mark.parametrize(
    ("probe", "name"),
    [
        (_probe("16021", "vnpt", "FTTH"), "c16021-ftth"),  # commune + technology (5)
        (_probe("16021", "viettel", "4G"), "c16021"),  # commune (4) over operator (2)
        (_probe("16022", "viettel", "FTTH"), "viettel"),  # operator (2) over technology (1)
        (_probe("16022", "vnpt", "FTTH"), "ftth"),
        (_probe("16022", "vnpt", "4G"), "all"),
    ],
)
def test_the_most_specific_schedule_wins(probe: ProbeInfo, name: str) -> None:
    doc = parse_doc(DOC, "test")
    ps = probe_schedule(doc, probe, now_ms=1)
    assert ps is not None and ps.name == name and ps.version == 3
    # What the server sends is what the agent accepts.
    s = parse_schedule(ps.message, probe_id=PID, running_version=3)
    assert s.name == name and s.digest == ps.digest


def test_no_schedule_when_none_fits() -> None:
    doc = parse_doc(
        {"version": 1, "schedules": [{"name": "x", "match": {"commune": "1"}, "tests": [TCP]}]}, "t"
    )
    assert probe_schedule(doc, _probe("2", "vnpt", "4G"), now_ms=1) is None


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"schedules": [{"name": "a", "tests": [TCP]}, {"name": "b", "tests": [TCP]}]}, "same match"),
        (
            {
                "schedules": [
                    {"name": "a", "tests": [TCP]},
                    {"name": "a", "match": {"commune": "1"}, "tests": [TCP]},
                ]
            },
            "two schedules are named 'a'",
        ),
        (
            {"schedules": [{"name": "a", "tests": [{**TCP, "kind": "twamp"}]}]},
            "schedules.0.tests: Value error, tests.0: ",
        ),
        ({"schedules": [{"name": "a", "tests": []}]}, "schedules.0.tests: List should have at least 1 item"),
        (
            {"schedules": [{"name": "a", "match": {"village": "x"}, "tests": [TCP]}]},
            "schedules.0.match.village: unknown key",
        ),
        ({"schedules": [{"name": "a", "budget_bytes_month": -1, "tests": [TCP]}]}, "budget_bytes_month: "),
        ({"version": -1}, "version: "),
    ],
)
def test_bad_documents_are_refused(doc: dict[str, object], reason: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(reason)):
        parse_doc(doc, "test")


def test_a_hand_edit_must_raise_the_version(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(json.dumps(DOC))
    service = ScheduleService(path, list, broker=None)
    assert service.doc.version == 3 and not service.reload()
    edited = {**DOC, "schedules": DOC["schedules"][:1]}  # type: ignore[index]
    path.write_text(json.dumps(edited))
    with pytest.raises(ScheduleError, match="version 3 is not above 3"):
        service.reload()
    assert len(service.doc.schedules) == 5  # the running one stays
    path.write_text(json.dumps({**edited, "version": 4}) + "\n")
    assert service.reload() and service.doc.version == 4 and len(service.doc.schedules) == 1
    # replace() bumps the version and writes the file (read back as it is).
    doc = service.replace(service.doc.schedules, expected_version=4)
    assert doc.version == 5 and read_doc(path) == doc


def test_agent_version_is_the_distribution_version() -> None:
    # One version source: the repository's pyproject.toml (the agent's wheel takes it from the
    # VERSION file its build writes); the agent's own constant must say the same.
    text = (Path(probes.agent.__file__).parents[2] / "pyproject.toml").read_text()
    (version,) = re.findall(r'^version = "([^"]+)"', text, flags=re.M)
    assert probes.agent.__version__ == version
