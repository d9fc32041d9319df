"""Gone rows and outage end reasons in the device tables, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from collector.events import StateChange
from collector.inventory import Device
from collector.store.devices import DeviceRepo, PollRecord
from collector.store.settings import StoreSettings
from collector.store.store import open_store

pytestmark = pytest.mark.integration


def poll(ts_ms: int, rows: list[str] | None) -> PollRecord:
    """A successful poll whose `onus` table answered with `rows` (None: no such table answered)."""
    rec = PollRecord("olt-1", ts_ms, True, 0.1)
    if rows is not None:
        rec.rows["onus"] = [(idx, f"onu {idx}", {"v": ts_ms}) for idx in rows]
    return rec


def test_rows_missing_from_an_answered_table_are_gone_and_come_back(store_settings: StoreSettings) -> None:
    store = open_store(store_settings)
    try:
        repo = DeviceRepo(store)
        repo.sync_inventory(
            [Device(id="olt-1", host="127.0.0.1", credentials="c")], {"olt-1": "g"}, {"olt-1": 60}
        )
        repo.write([poll(1_000, ["7.1", "7.2", "7.3"])], [])
        repo.write([poll(2_000, ["7.1", "7.3"])], [])
        # A poll where the table answered with nothing marks nothing (the agent's fault).
        repo.write([poll(3_000, None)], [])
        got = {r["index"]: (r["gone_ms"], r["values"]["v"]) for r in repo.rows("olt-1")}
        assert got == {"7.1": (None, 2_000), "7.2": (2_000, 1_000), "7.3": (None, 2_000)}
        repo.write([poll(4_000, ["7.1"])], [])
        repo.write([poll(5_000, ["7.1", "7.2"])], [])
        got = {r["index"]: (r["gone_ms"], r["values"]["v"]) for r in repo.rows("olt-1")}
        # 7.2 back (current, new values); 7.3 gone since 4 000, not re-dated at 5 000.
        assert got == {"7.1": (None, 5_000), "7.2": (None, 5_000), "7.3": (4_000, 2_000)}

        # Kept 30 days (2 592 000 000 ms) after it went: 7.3 (gone at 4 000) is kept at
        # 2 592 004 000 exactly, deleted 1 ms later; 7.2, gone at 2 592 004 000, stays.
        repo.write([poll(2_592_004_000, ["7.1"])], [])
        assert {r["index"]: r["gone_ms"] for r in repo.rows("olt-1")} == {
            "7.1": None,
            "7.2": 2_592_004_000,
            "7.3": 4_000,
        }
        repo.write([poll(2_592_004_001, ["7.1"])], [])
        assert {r["index"]: r["gone_ms"] for r in repo.rows("olt-1")} == {"7.1": None, "7.2": 2_592_004_000}

        repo.write([], [StateChange("onus", "olt-1/x", "offline", 10_000, "poll", "onuRunState=2", "olt-1")])
        repo.write(
            [],
            [StateChange("onus", "olt-1/x", "gone", 12_000, "poll", "row no longer in the table", "olt-1")],
        )
        [o] = repo.outages("olt-1", 0, 2**62)
        assert (o.start_ms, o.end_ms, o.cause, o.end_reason) == (
            10_000,
            12_000,
            "onuRunState=2",
            "row no longer in the table",
        )
    finally:
        store.close()
