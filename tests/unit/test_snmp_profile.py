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


PATCH = """\
name: sw
extends: switch
tables:
  - name: interfaces
    merge: true
    row_label: port
    drop_columns: [ifAlias]
    columns:
      - {name: ifInDiscards, metric: if_in_discards_per_min, scale: 60}
      - {name: ifOutDiscards, oid: 1.3.6.1.2.1.2.2.1.19, type: counter32, metric: if_out_discards_per_s}
"""


def test_a_merge_table_changes_one_column_of_the_inherited_table(tmp_path: Path) -> None:
    extra = tmp_path / "p"
    extra.mkdir()
    (extra / "sw.yaml").write_text(PATCH)
    profiles = load_profiles(extra)
    base = next(t for t in profiles["generic"].tables if t.name == "interfaces")
    got = next(t for t in profiles["sw"].tables if t.name == "interfaces")
    assert got.row_label == "port" and got.row_name_column == "ifName"  # the rest is inherited
    names = [c.name for c in got.columns]
    assert names == [c.name for c in base.columns if c.name != "ifAlias"] + ["ifOutDiscards"]
    d = got.column("ifInDiscards")
    # Changed: metric and scale; kept: the OID (IF-MIB ifInDiscards) and type.
    assert (d.oid, d.type, d.metric, d.scale) == (
        "1.3.6.1.2.1.2.2.1.13",
        "counter32",
        "if_in_discards_per_min",
        60,
    )
    assert got.column("ifHCInOctets") == base.column("ifHCInOctets")
    assert base.column("ifInDiscards").metric == "if_in_discards_per_s"  # the parent is untouched


def test_a_merge_that_breaks_the_table_is_located_at_the_patch(tmp_path: Path) -> None:
    extra = tmp_path / "p"
    extra.mkdir()
    # Line 4: dropping ifSpeed leaves ifHighSpeed's fallback dangling.
    (extra / "sw.yaml").write_text(PATCH.replace("[ifAlias]", "[ifSpeed]"))
    with pytest.raises(ProfileError, match="fallback 'ifSpeed' must be a gauge column") as err:
        load_profiles(extra)
    assert (err.value.source, err.value.line) == (str(extra / "sw.yaml"), 4)
    (extra / "sw.yaml").write_text(PATCH.replace("[ifAlias]", "[ifAlais]"))
    with pytest.raises(ProfileError, match="no inherited column 'ifAlais' to drop") as err:
        load_profiles(extra)
    assert (err.value.line, err.value.key) == (7, "tables.0.drop_columns")
    (extra / "sw.yaml").write_text(PATCH.replace("name: interfaces", "name: interface"))
    with pytest.raises(ProfileError, match="has no table 'interface'") as err:
        load_profiles(extra)
    assert err.value.line == 4
    (extra / "sw.yaml").write_text(PATCH.replace("scale: 60", "scael: 60"))
    with pytest.raises(ProfileError, match="Extra inputs") as err:
        load_profiles(extra)
    assert (err.value.line, err.value.key) == (9, "tables.0.columns.0.scael")
