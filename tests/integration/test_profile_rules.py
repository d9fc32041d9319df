"""Alert rules that target a profile table's rows: the Huawei GPON ONU table polled from its
recording by a real snmpd (tests/integration/test_snmp_profiles.py), an ONU going offline,
and the incident a state rule on that table opens for exactly that ONU."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alerts.engine import AlertEngine
from alerts.incidents import IncidentRepo
from alerts.rules import RulesError, ThresholdRule, builtin_kinds, evaluate_threshold, load_rules, parse_rules
from tests.alerting import alert_settings
from tests.integration.test_snmp_profiles import HW, P0, P1, Rig, agent, hw_onus, rigs
from tests.snmpd import SnmpdAgent

pytestmark = pytest.mark.integration
__all__ = ["agent", "rigs"]  # fixtures used by name

RULES = """
rules:
  - {name: onu_offline, kind: state, entity_kind: onu, states: [offline], severity: major}
  - {name: onus_invalid, kind: state, entity_kind: onus, states: [invalid]}
  - {name: device_down, kind: state, entity_kind: device, states: [down], severity: critical}
"""


async def test_onu_going_offline_opens_an_incident_through_a_rule_on_the_onu_table(
    agent: tuple[Path, SnmpdAgent], rigs: list[Rig], tmp_path: Path
) -> None:
    path, a = agent
    path.write_text(hw_onus())  # P0.1 is offline from the start: recorded, no incident
    rig = Rig(tmp_path, a, "2c", "huawei_gpon")
    rigs.append(rig)
    await rig.poll()
    path.write_text(hw_onus(p0_0_down=True))  # P0.0 loses power (hwGponDeviceOntControlRunStatus 2)
    await asyncio.sleep(0.01)
    rec = await rig.poll()
    await rig.sink.flush()
    engine = AlertEngine(rig.store, alert_settings(), rules=parse_rules(RULES))
    # Past the topology's settle time (60 s): an ONU is no node of the topology, its verdict is its own.
    for k in range(3):
        engine.tick(rec.ts_ms + 61_000 + k * 1000)
    incidents, total = IncidentRepo(rig.store).find()
    assert total == 1
    inc = incidents[0]
    assert (inc.kind, inc.entity_kind, inc.entity) == ("onu_offline", "onus", "dev-1/GPON 0/1/0:0")
    assert inc.severity == "major"
    firing = {t.labels["entity"]: t.labels for t in engine.alerts.values() if t.state == "firing"}
    assert list(firing) == ["dev-1/GPON 0/1/0:0"]
    assert firing["dev-1/GPON 0/1/0:0"]["device"] == "dev-1"
    assert f"{P0}" not in firing  # (the index is the row's id, its name the entity)


async def test_default_onu_rx_power_rule_on_and_around_minus_27_dbm(
    agent: tuple[Path, SnmpdAgent], rigs: list[Rig], tmp_path: Path
) -> None:
    path, a = agent
    rx = f"{HW}.51.1.4"  # hwGponOntOpticalDdmRxPower, 0.01 dBm
    text = hw_onus()
    for old, new in (
        (f"{rx}.{P0}.0 = INTEGER: -2150", f"{rx}.{P0}.0 = INTEGER: -2700"),  # -27.00 dBm: on the limit
        (f"{rx}.{P0}.2 = INTEGER: 2147483646", f"{rx}.{P0}.2 = INTEGER: -2699"),  # -26.99: just above
        (f"{rx}.{P1}.5 = INTEGER: -2801", f"{rx}.{P1}.5 = INTEGER: -2701"),  # -27.01: just below
    ):
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    rig = Rig(tmp_path, a, "2c", "huawei_gpon")
    rigs.append(rig)
    rec = await rig.poll()
    await rig.pipeline.drain()
    (rule,) = [r for r in load_rules(None) if r.name == "onu_rx_power_low"]
    assert isinstance(rule, ThresholdRule)
    # Two minutes on, the poll's minute is a whole rollup window inside the rule's 5 minutes.
    got = {s.labels["onu"]: s for s in evaluate_threshold(rig.store, rule, rec.ts_ms + 120_000)}
    assert {k: (round(s.value, 2), s.active) for k, s in got.items()} == {
        "GPON 0/1/0:0": (-27.0, False),
        "GPON 0/1/0:2": (-26.99, False),
        "GPON 0/1/1:5": (-27.01, True),
    }
    assert {s.labels["entity"] for s in got.values()} == {"dev-1"}


def test_entity_kinds_of_the_shipped_profiles() -> None:
    kinds = builtin_kinds()
    # huawei_gpon's table `onus` (row label `onu`); interfaces stay `interface`.
    assert kinds["onus"] == frozenset({"onus"}) and "onus" in kinds["onu"]
    assert kinds["interface"] == frozenset({"interface"})
    assert "interfaces" not in kinds


def test_unknown_entity_kind_is_refused_with_its_line() -> None:
    text = """rules:
  - {name: ok, kind: state, entity_kind: onu, states: [offline]}
  - name: typo
    kind: state
    entity_kind: onuss
    states: [offline]
"""
    with pytest.raises(RulesError) as exc:
        parse_rules(text, "r.yaml")
    (problem,) = exc.value.problems
    assert problem.startswith("r.yaml:5: rules[1] (typo): entity_kind: 'onuss' is no kind of entity; known: ")
    assert "onus" in problem and "device" in problem
    # A table of a profile the operator added is known once its kinds are given.
    rules = parse_rules(text, "r.yaml", {**builtin_kinds(), "onuss": frozenset({"onuss"})})
    assert [r.name for r in rules] == ["ok", "typo"]


def test_rules_check_knows_the_tables_of_the_configured_profiles(tmp_path: Path) -> None:
    from netqos.cli import main

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "zte.yaml").write_text(
        "name: zte_example\nextends: olt\ntables:\n  - name: zte_onus\n    row_label: zte_onu\n"
        "    columns:\n      - {name: phase, oid: 1.3.6.1.4.1.32473.2.1.1, type: enum, state_changes: true,"
        " states: {1: working, 2: offline}}\n"
    )
    config = tmp_path / "netqos.yaml"
    config.write_text(f"snmp:\n  profiles_dir: {profiles}\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - {name: zte_onu_offline, kind: state, entity_kind: zte_onu, states: [offline]}\n"
    )
    assert main(["rules", "check", str(rules)]) == 2  # the built-in profiles have no zte_onus
    assert main(["--config", str(config), "rules", "check", str(rules)]) == 0
