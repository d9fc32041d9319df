"""Profile rules added for index handling and IF-MIB fallbacks: named index parts, gauge
fallbacks (ifHighSpeed -> ifSpeed) and row-name fallbacks (ifName -> ifDescr)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.snmp.profile import ProfileError, load_profiles

HEAD = "name: x\ntables:\n  - name: t\n"


def load(tmp_path: Path, table: str) -> None:
    extra = tmp_path / "p"
    extra.mkdir(exist_ok=True)
    (extra / "x.yaml").write_text(HEAD + table)
    load_profiles(extra)


def test_generic_profile_names_rows_by_ifname_then_ifdescr_and_reads_ifspeed_where_needed() -> None:
    t = next(t for t in load_profiles()["generic"].tables if t.name == "interfaces")
    assert (t.row_name_column, t.row_name_fallback) == ("ifName", "ifDescr")
    high = t.column("ifHighSpeed")
    assert high.fallback == "ifSpeed" and high.scale == 1_000_000
    speed = t.column("ifSpeed")
    assert speed.oid == "1.3.6.1.2.1.2.2.1.5" and speed.fallback_only and speed.scale == 1
    assert t.column("ifDescr").oid == "1.3.6.1.2.1.2.2.1.2" and t.column("ifDescr").fallback_only
    assert t.index == ()  # interface series keep their labels: no index-part labels added


COLS = (
    "    columns:\n"
    "      - {name: desc, oid: 1.3.6.1.4.1.32473.1.2, type: string}\n"
    "      - {name: rx, oid: 1.3.6.1.4.1.32473.1.4, type: gauge, metric: rx_dbm}\n"
)


def test_named_index_parts_are_checked(tmp_path: Path) -> None:
    load(tmp_path, "    index: [ifIndex, ontId]\n" + COLS)  # accepted
    for parts, why in (
        ("[ifIndex, ifIndex]", "share a name"),
        ("[ifIndex, desc]", "clashes"),
        ("[commune]", "clashes"),
        ("[row]", "clashes"),  # the default row_label
        ("['9x']", "not a valid name"),
    ):
        with pytest.raises(ProfileError, match=why):
            load(tmp_path, f"    index: {parts}\n" + COLS)


def test_fallbacks_must_name_a_column_of_the_same_kind(tmp_path: Path) -> None:
    gauge_to_string = (
        "    columns:\n"
        "      - {name: desc, oid: 1.3.6.1.4.1.32473.1.2, type: string}\n"
        "      - {name: rx, oid: 1.3.6.1.4.1.32473.1.4, type: gauge, metric: rx_dbm, fallback: desc}\n"
    )
    with pytest.raises(ProfileError, match="must be a gauge column"):
        load(tmp_path, gauge_to_string)
    with pytest.raises(ProfileError, match="row_name_fallback 'rx' is not a string column"):
        load(tmp_path, "    row_name_column: desc\n    row_name_fallback: rx\n" + COLS)
    with pytest.raises(ProfileError, match="only counter and gauge columns take a fallback"):
        load(
            tmp_path,
            "    columns:\n"
            "      - {name: desc, oid: 1.3.6.1.4.1.32473.1.2, type: string, fallback: other}\n"
            "      - {name: other, oid: 1.3.6.1.4.1.32473.1.3, type: string}\n",
        )
