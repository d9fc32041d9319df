"""deploy/docker: `docker-compose config` validates the compose file, and its services are wired
as docs/operations.md says (no engine needed; the image is not built here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from netqos.cli import build_parser
from netqos.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed: run deploy/ci/install-system-deps.sh"
    env_dir = tmp_path_factory.mktemp("env")
    for example in (DOCKER / "env").glob("*.env.example"):
        shutil.copy(example, env_dir / example.name.removesuffix(".example"))
    out = subprocess.run(
        [exe, "-f", str(DOCKER / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NETQOS_ENV_DIR": str(env_dir)},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = yaml.safe_load(out.stdout)
    return data


def test_every_service_is_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "mosquitto",
        "influxdb",
        "grafana",
        "alertmanager",
        "postgres",
        "api",
        "ingest",
        "poller",
    }


def test_netqos_roles_run_from_one_image_with_health_checks(compose: dict[str, Any]) -> None:
    svc = compose["services"]
    images = {svc[n]["image"] for n in ("api", "ingest", "poller")}
    assert len(images) == 1
    assert {svc[n]["build"]["dockerfile"] for n in ("api", "ingest", "poller")} == {
        "deploy/docker/Dockerfile"
    }
    assert (ROOT / "deploy/docker/Dockerfile").is_file()
    parser = build_parser()
    assert parser.parse_args(svc["api"]["command"]).roles == "api,alerts,tiers"  # leases: one of each
    poller = parser.parse_args(svc["poller"]["command"])
    assert (poller.roles, poller.shard) == ("poller", "0/1")
    assert svc["ingest"]["entrypoint"][-1].endswith("exec netqos ingest")
    for name, port in (("api", "8080"), ("ingest", "9100"), ("poller", "9100")):
        test = " ".join(svc[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/healthz" in test, name
    # The workers serve their probes on the port the health checks ask.
    assert svc["ingest"]["environment"]["NETQOS_API__HEALTH_PORT"] == "9100"
    # Scalable: no fixed container name or host port on the ingest workers.
    assert "container_name" not in svc["ingest"] and "ports" not in svc["ingest"]
    assert "$share/" in svc["ingest"]["environment"]["NETQOS_MQTT__TOPIC"].replace("$$", "$")


def test_netqos_environment_is_valid_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every NETQOS_* variable the compose file (and the example env file) sets is a real setting."""
    for name in ("api", "ingest", "poller"):
        env = {k: str(v).replace("$$", "$") for k, v in compose["services"][name]["environment"].items()}
        for k in list(os.environ):
            if k.startswith(ENV_PREFIX):
                monkeypatch.delenv(k)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        s = Settings()
        assert s.mqtt.host == "mosquitto" and s.api.health_port == 9100, name
        assert s.tsdb.token is not None and s.tsdb.url == "http://influxdb:8086"


def test_broker_uses_the_deploy_config_and_acl(compose: dict[str, Any]) -> None:
    mq = compose["services"]["mosquitto"]
    sources = {v.split(":")[0] for v in mq["volumes"]}
    assert str(ROOT / "deploy/mosquitto/mosquitto.conf") in sources
    assert str(ROOT / "deploy/mosquitto/acl") in sources
    # The sed in the command must find the line it rewrites, or the workers could not connect.
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
    assert "listener 1883 127.0.0.1" in conf
    grafana = compose["services"]["grafana"]["volumes"]
    assert any(v.startswith(str(ROOT / "deploy/grafana/provisioning")) for v in grafana)


def test_no_secret_is_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "deploy/docker"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [f for f in tracked if f.endswith(".env")], tracked
    for example in (DOCKER / "env").glob("*.env.example"):
        for line in example.read_text().splitlines():
            if "PASSWORD=" in line or "TOKEN=" in line or "TOKENS=" in line:
                assert "change-me" in line, line


def test_dockerfile_is_multi_stage_non_root_with_a_warm_numba_cache() -> None:
    """Not built here (no engine): its instructions are checked against the project instead."""
    text = (DOCKER / "Dockerfile").read_text()
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    froms = [x for x in lines if x.startswith("FROM ")]
    assert len(froms) == 2 and all(x.split()[1] == "python:3.11-slim" for x in froms)
    user = [x for x in lines if x.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root")
    cache_envs = [x for x in text.splitlines() if "NUMBA_CACHE_DIR=" in x]
    paths = {x.split("NUMBA_CACHE_DIR=")[1].split()[0] for x in cache_envs}
    assert len(cache_envs) == 2 and len(paths) == 1, cache_envs  # the same path in both stages
    warm = text.index("-m collector.core.kernels")
    assert text.index("NUMBA_CACHE_DIR") < warm < text.index("FROM", warm)  # warmed in the build stage
    # Every package the project installs is copied into the build, and .dockerignore lets it in.
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = [p.strip('"*') for p in pyproject.split("include = [")[1].split("]")[0].split(", ")]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for pkg in packages:
        assert f"COPY {pkg} {pkg}" in lines, pkg
        assert f"!{pkg}/" in ignore, pkg
