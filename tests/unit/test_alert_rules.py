"""Alert rules: YAML with line-numbered errors, `netqos rules check`, evaluation over real rollups,
reload without restart."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from alerts.engine import AlertEngine
from alerts.rules import (
    AbsenceRule,
    RulesError,
    ThresholdRule,
    evaluate_absence,
    evaluate_threshold,
    load_rules,
    parse_duration,
    parse_rules,
    render,
)
from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo
from collector.mqtt.schema import validate_batch
from collector.pipeline import IngestPipeline
from collector.store.store import Store
from netqos.cli import main
from tests.alerting import alert_settings

T0 = 1_795_852_800_000  # a whole minute

BAD = """rules:
  - name: rtt_high
    kind: threshold
    metric: rtt_ms
    stat: p101
    op: ">>"
    threshold: 100
  - name: probe_gone
    kind: state
    entity_kind: probe
  - name: ok_rule
    kind: state
    entity_kind: device
    states: [down]
    for: soon
  - name: ok_rule
    kind: absence
    metric: rtt_ms
    group_by: [commune]
    absent_for: 15m
    colour: red
"""


def test_built_in_rules_load() -> None:
    rules = load_rules(None)
    names = {r.name for r in rules}
    assert {"device_down", "link_down", "probe_offline", "rtt_p95_high", "commune_no_data"} <= names
    shipped = Path(__file__).parents[2] / "deploy" / "alerts" / "rules.yaml"
    assert [r.name for r in load_rules(shipped)] == [r.name for r in rules]


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(RulesError) as err:
        parse_rules(BAD, "r.yaml")
    problems = err.value.problems
    assert (
        "r.yaml:5: rules[0] (rtt_high): stat: stat 'p101': the percentile must be between 0 and 100"
        in problems
    )
    assert any(p.startswith("r.yaml:6: rules[0] (rtt_high): op:") for p in problems)
    assert "r.yaml:8: rules[1] (probe_gone): states: Field required" in problems
    assert any(p.startswith("r.yaml:15: rules[2] (ok_rule): for: 'soon' is not a duration") for p in problems)
    assert "r.yaml:21: rules[3] (ok_rule): colour: unknown key" in problems
    assert len(problems) == 5


def test_duplicate_names_and_yaml_errors() -> None:
    dup = "rules:\n  - {name: a, kind: state, entity_kind: device, states: [down]}\n" * 1
    dup += "  - {name: a, kind: state, entity_kind: probe, states: [offline]}\n"
    with pytest.raises(RulesError) as err:
        parse_rules(dup, "d.yaml")
    assert err.value.problems == ["d.yaml:3: rules[1] (a): name: 'a' is already used by rules[0]"]
    with pytest.raises(RulesError, match=r"y.yaml:3: not valid YAML"):
        parse_rules("rules:\n  - [unclosed\n", "y.yaml")


def test_rules_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    assert main(["rules", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:8: rules[1] (probe_gone): states: Field required" in err
    assert "5 problem(s)" in err
    good = tmp_path / "good.yaml"
    good.write_text("rules:\n  - {name: device_down, kind: state, entity_kind: device, states: [down]}\n")
    assert main(["rules", "check", str(good)]) == 0
    assert "1 rules OK (1 state)" in capsys.readouterr().out
    assert main(["rules", "check", str(tmp_path / "missing.yaml")]) == 2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("10m", 600.0), ("1h", 3600.0), ("2d", 172800.0), (15, 15.0), ("500ms", 0.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_render_fills_fields_without_attribute_access() -> None:
    labels = {"commune": "16021", "operator": "vnpt"}
    assert (
        render("p95 {value:.0f} ms in {commune} ({operator})", labels, 123.4) == "p95 123 ms in 16021 (vnpt)"
    )
    assert render("{commune.__class__} {missing}", labels, None) == "{commune.__class__} {missing}"


@pytest.fixture
def filled(tmp_path: Path) -> Store:
    """Two communes' probes, 10 minutes of rtt: 16021 around 50 ms, 16030 around 200 ms."""
    store = Store(tmp_path / "r.db")
    store.register_probes(
        [
            ProbeInfo("p-a", commune="16021", operator="vnpt"),
            ProbeInfo("p-b", commune="16030", operator="vnpt"),
        ]
    )
    pipeline = IngestPipeline(store, IngestSettings())
    rng = np.random.default_rng(3)
    for seq, minute in enumerate(range(10)):
        for pid, centre in (("p-a", 50.0), ("p-b", 200.0)):
            batch = validate_batch(
                {
                    "v": 1,
                    "probe_id": pid,
                    "seq": seq,
                    "measurements": [
                        {
                            "ts": T0 + minute * 60_000 + i * 10_000,
                            "target": "t",
                            "technology": "4G",
                            "operator": "vnpt",
                            "metrics": {"rtt_ms": float(centre * rng.uniform(0.8, 1.2))},
                        }
                        for i in range(6)
                    ],
                }
            )
            pipeline.accept(batch)
    asyncio.run(pipeline.flush())
    return store


def test_threshold_over_rollups(filled: Store) -> None:
    rule = parse_rules(
        "rules:\n  - {name: rtt, kind: threshold, metric: rtt_ms, stat: p95, group_by: [commune],"
        " window: 10m, op: '>', threshold: 100, min_count: 30}\n"
    )[0]
    assert isinstance(rule, ThresholdRule)
    got = {s.labels["commune"]: s for s in evaluate_threshold(filled, rule, T0 + 10 * 60_000 + 30_000)}
    assert set(got) == {"16021", "16030"}
    assert got["16030"].active and 160 <= got["16030"].value <= 245
    assert not got["16021"].active and got["16021"].value < 61
    # Fewer samples than min_count in a short window: not judged at all.
    short = rule.model_copy(update={"window_s": 60.0, "min_count": 30})
    assert evaluate_threshold(filled, short, T0 + 10 * 60_000) == []
    filled.close()


def test_absence_over_rollups(filled: Store) -> None:
    rule = parse_rules(
        "rules:\n  - {name: gone, kind: absence, metric: rtt_ms, group_by: [commune], absent_for: 15m}\n"
    )[0]
    assert isinstance(rule, AbsenceRule)
    newest = T0 + 9 * 60_000 + 50_000
    soon = {s.labels["commune"]: s for s in evaluate_absence(filled, rule, newest + 60_000)}
    assert soon["16021"].value == 60.0 and not soon["16021"].active
    late = {s.labels["commune"]: s for s in evaluate_absence(filled, rule, newest + 16 * 60_000)}
    assert late["16021"].active and late["16030"].active
    assert evaluate_absence(filled, rule, newest + 8 * 86_400_000) == []  # gone, not absent
    filled.close()


def test_rules_reload_on_change_and_keep_old_on_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {name: device_down, kind: state, entity_kind: device, states: [down]}\n")
    store = Store(tmp_path / "e.db")
    engine = AlertEngine(store, alert_settings(rules_file=str(path)))
    assert [r.name for r in engine.rules] == ["device_down"]
    path.write_text(
        path.read_text() + "  - {name: probe_offline, kind: state, entity_kind: probe, states: [offline]}\n"
    )
    os.utime(path, (1, 1))  # a different mtime even within the same second
    engine.tick(T0)
    assert [r.name for r in engine.rules] == ["device_down", "probe_offline"]
    path.write_text("rules:\n  - {name: broken, kind: nonsense}\n")
    engine.request_reload()  # what SIGHUP does
    engine.tick(T0 + 1000)
    assert [r.name for r in engine.rules] == ["device_down", "probe_offline"]
    store.close()
