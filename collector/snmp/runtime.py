"""What the poller keeps about one device between polls (`DeviceRuntime`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from collector.inventory import Credential, Device
from collector.snmp.client import ColumnData, RowIds
from collector.snmp.counters import CounterTracker
from collector.snmp.profile import Profile
from collector.snmp.state import Reachability

# `RowIds` may hold this many more composite ids than the last poll saw before it is pruned.
ROW_IDS_SLACK = 1024


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


def prune_rows(rt: DeviceRuntime, data: list[ColumnData]) -> None:
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
