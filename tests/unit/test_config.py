"""Settings: YAML + NETQOS_* environment, masked secrets, one clear error with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ground.errors import ConfigError
from netqos.cli import main
from netqos.config import load_settings


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "netqos.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_are_embedded_and_loopback() -> None:
    s = load_settings(None)
    assert s.mqtt.host is None and s.mqtt.embedded.host == "127.0.0.1"
    assert s.api.host == "127.0.0.1" and s.api.tokens == []
    assert str(s.store.sqlite_path).endswith(".db")


def test_yaml_then_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, "mqtt:\n  host: 127.0.0.1\n  port: 1884\napi:\n  port: 9000\n")
    monkeypatch.setenv("NETQOS_MQTT__PORT", "1999")
    s = load_settings(p)
    assert s.mqtt.host == "127.0.0.1"
    assert s.mqtt.port == 1999  # environment over file
    assert s.api.port == 9000  # file over default


def test_check_config_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(
        tmp_path,
        "mqtt:\n  password: hunter2-very-secret\napi:\n  tokens: [tok-abcdef-123456]\n"
        "tsdb:\n  url: http://127.0.0.1:8428\n  token: influx-tok-987\n",
    )
    assert main(["check-config", str(p)]) == 0
    out = capsys.readouterr().out
    assert "hunter2-very-secret" not in out and "tok-abcdef-123456" not in out
    assert "influx-tok-987" not in out and "token: '********'" in out
    assert "password: '********'" in out
    assert "- '********'" in out


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("mqtt:\n  port: 70000\n", "mqtt.port", "less than or equal to 65535"),
        ("mqtt:\n  prot: 1883\n", "mqtt.prot", "unknown key"),
        ("ingest:\n  flush_interval_s: soon\n", "ingest.flush_interval_s", "valid number"),
        ("log:\n  level: LOUD\n", "log.level", "'DEBUG'"),
        ("mqtt:\n  topic: netqos/v1/probes/all\n", "mqtt.topic", "'+' level"),
        ("mqtt: [1, 2\n", "line", "not valid YAML"),
        ("- just\n- a list\n", "-", "mapping"),
    ],
)
def test_bad_config_names_file_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(p)
    e = err.value
    assert str(p) in e.source
    assert key in e.key
    assert reason in e.reason


def test_bad_config_error_points_at_the_line(tmp_path: Path) -> None:
    p = write(tmp_path, "api:\n  port: 8080\nmqtt:\n  qos: 1\n  port: -5\n")
    with pytest.raises(ConfigError) as err:
        load_settings(p)
    assert err.value.source == f"{p}:5"


def test_bad_environment_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETQOS_API__PORT", "eighty")
    with pytest.raises(ConfigError) as err:
        load_settings(None)
    assert err.value.source == "environment NETQOS_API__PORT"


def test_cli_exit_code_2_and_one_line_error(tmp_path: Path) -> None:
    p = write(tmp_path, "mqtt:\n  port: 0\n")
    r = subprocess.run(
        [sys.executable, "-m", "netqos.cli", "check-config", str(p)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(p) in lines[0] and "mqtt.port" in lines[0] and "greater than or equal to 1" in lines[0]
    assert "Traceback" not in r.stderr


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml")


def all_keys() -> list[str]:
    from pydantic import BaseModel

    from netqos.config import Settings

    out: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            else:
                out.append(prefix + name)

    walk(Settings, "")
    return out


def test_every_key_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [k for k in all_keys() if f"| `{k}` |" not in doc]
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_example_config_is_valid() -> None:
    s = load_settings(Path(__file__).parents[2] / "deploy" / "netqos.example.yaml")
    assert s.mqtt.host == "127.0.0.1" and s.log.format == "json"


def test_the_query_gate_queues_a_moment_then_refuses() -> None:
    """api.query_wait_s: one query over the per-key limit waits for a slot (and runs when one
    frees within the wait), else gets 429 once the wait is over."""
    import threading
    import time

    from fastapi import HTTPException

    from api.limits import QueryGate

    gate = QueryGate(total=4, per_key=1, wait_s=0.5)
    held = threading.Event()
    release = threading.Event()

    def first() -> None:
        with gate.hold("k"):
            held.set()
            release.wait(5)

    t = threading.Thread(target=first)
    t.start()
    assert held.wait(5)
    started = time.monotonic()
    with pytest.raises(HTTPException) as refused, gate.hold("k"):  # nothing frees within 0.5 s
        pass
    assert refused.value.status_code == 429 and "api.max_queries_per_key" in str(refused.value.detail)
    assert 0.4 <= time.monotonic() - started < 3
    with gate.hold("other"):  # another key is not held back
        pass
    threading.Timer(0.1, release.set).start()  # the slot frees within the wait: this one runs
    with gate.hold("k"):
        pass
    t.join(5)
