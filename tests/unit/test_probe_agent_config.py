"""Probe configuration: one clear error (file:line, key, reason), secrets masked, the docs' example valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ground.errors import ConfigError
from probes.agent.agent import cli
from probes.agent.config import (
    HttpDownloadSpec,
    IcmpSpec,
    ProbeConfigError,
    TcpSpec,
    load_config,
    masked,
    target_of,
)

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
probe_id: th-16021-p003
operator: viettel
technology: 4G
broker:
  host: 127.0.0.1
  username: th-16021-p003
  password: s3cret-broker
tests:
  - kind: icmp
    target: 127.0.0.1
  - kind: tcp
    target: 127.0.0.1
    port: 443
  - kind: http_download
    url: http://127.0.0.1:8080/bytes/1000000
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "probe.yaml"
    p.write_text(text, encoding="utf-8")
    p.chmod(0o600)
    return p


def error_of(tmp_path: Path, text: str) -> ProbeConfigError:
    with pytest.raises(ProbeConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value


def test_good_config_and_defaults(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, GOOD))
    assert c.probe_id == "th-16021-p003" and c.broker.effective_port == 1883
    assert c.topic_prefix == "netqos/v1/probes"
    assert c.measurements_topic == "netqos/v1/probes/th-16021-p003/measurements"
    assert c.status_topic == "netqos/v1/probes/th-16021-p003/status"
    assert isinstance(c.tests[0], IcmpSpec) and c.tests[0].count == 10
    assert isinstance(c.tests[1], TcpSpec) and c.tests[1].port == 443
    assert isinstance(c.tests[2], HttpDownloadSpec)
    assert target_of(c.tests[2]) == "http://127.0.0.1:8080/bytes/1000000"  # no target: the URL
    assert c.queue.max_batches == 100_000 and c.batch.max_measurements == 500
    assert not c.https_fallback.enabled and c.radio is None


def test_tls_default_port(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  tls: true\n")))
    assert c.broker.effective_port == 8883


def test_errors_name_file_line_key_and_reason(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD.replace("    port: 443\n", "    port: 70000\n"))
    assert e.source.endswith("probe.yaml:13") and e.key == "tests.1.port"
    assert "less than or equal to 65535" in e.reason
    # Not a netqos.config.ConfigError any more (the slim agent imports nothing from the server);
    # the agent command prints it and exits 2 itself (test_cli_check_and_config_error_exit_codes below).
    assert not isinstance(e, ConfigError)


def test_missing_required_key_points_at_its_parent(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD.replace("    port: 443\n", ""))
    assert e.key == "tests.1.port" and e.reason == "Field required"
    assert e.source.endswith("probe.yaml:11")  # the `- kind: tcp` item


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  passwd: x\n"))
    assert e.key == "broker.passwd" and "unknown key" in e.reason
    assert e.source.endswith("probe.yaml:6")


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        (("kind: icmp", "kind: ping"), "tests.0", "kind must be one of icmp, tcp"),
        (("probe_id: th-16021-p003", "probe_id: 'bad id'"), "probe_id", "should match pattern"),
        (("operator: viettel", "operator: Viettel Telecom"), "operator", "should match pattern"),
        (("technology: 4G", "technology: 6G"), "technology", "Input should be"),
        (
            ("url: http://127.0.0.1:8080/bytes/1000000", "url: ftp://x/y"),
            "tests.2.url",
            "http:// or https://",
        ),
    ],
)
def test_bad_values(tmp_path: Path, change: tuple[str, str], key: str, reason: str) -> None:
    e = error_of(tmp_path, GOOD.replace(*change))
    assert e.key == key and reason in e.reason


def test_missing_kind(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD.replace("  - kind: icmp\n    target", "  - target"))
    assert e.key == "tests.0" and "kind is required" in e.reason


def test_upload_needs_bytes(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD + "  - kind: http_upload\n    url: http://127.0.0.1:8080/upload\n")
    assert e.key == "tests.3.bytes" and e.reason == "Field required"


def test_https_fallback_rules(tmp_path: Path) -> None:
    base = GOOD + "https_fallback:\n  enabled: true\n"
    e = error_of(tmp_path, base)
    assert e.key == "https_fallback" and "url and token are required" in e.reason
    e = error_of(tmp_path, base + "  url: http://netqos.example.vn\n  token: t\n")
    assert e.key == "https_fallback.url" and "must be https://" in e.reason
    ok = load_config(
        write(tmp_path, base + "  url: http://127.0.0.1:8080\n  token: t\n")
    )  # loopback may be http
    assert ok.https_fallback.enabled


def test_radio_source_forms(tmp_path: Path) -> None:
    for source in ("mmcli", "fixture", "file:/run/netqos/radio.json"):
        c = load_config(write(tmp_path, GOOD + f"radio:\n  source: {source}\n"))
        assert c.radio is not None and c.radio.source == source
    e = error_of(tmp_path, GOOD + "radio:\n  source: qmicli\n")
    assert e.key == "radio.source" and "mmcli" in e.reason
    e = error_of(tmp_path, GOOD + "radio:\n  source: mmcli\n  operator_codes: {'45204': Viettel}\n")
    assert e.key == "radio.operator_codes"


def test_nothing_to_measure(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD[: GOOD.index("tests:")])
    assert "nothing to measure" in e.reason


def test_not_yaml_and_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    e = error_of(tmp_path, "probe_id: [unclosed\n")
    assert "not valid YAML" in e.reason and re.search(r":\d+$", e.source)
    e = error_of(tmp_path, "- a\n- b\n")
    assert "mapping" in e.reason
    with pytest.raises(ProbeConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_world_readable_secrets_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = write(tmp_path, GOOD)
    p.chmod(0o644)
    load_config(p)
    assert "probe_config_readable" in caplog.text


def test_masked_hides_secrets(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, GOOD))
    data = masked(c)
    assert data["broker"]["password"] == "********"
    assert "s3cret-broker" not in yaml.safe_dump(data)


def test_cli_check_and_config_error_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, GOOD)
    assert cli(["--config", str(p), "--check"]) == 0
    out = capsys.readouterr().out
    assert "th-16021-p003" in out and "s3cret-broker" not in out
    bad = write(tmp_path, GOOD.replace("technology: 4G", "technology: 6G"))
    assert cli(["--config", str(bad), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netqos probe: configuration error: ") and "technology" in err


def test_the_example_in_the_docs_is_valid(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "probe-agent.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    examples = [b for b in blocks if b.startswith("probe_id:")]
    assert examples, "docs/probe-agent.md should hold an example probe.yaml"
    for text in examples:
        c = load_config(write(tmp_path, text))
        assert c.tests
