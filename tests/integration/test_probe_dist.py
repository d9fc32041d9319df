"""The slim agent as a probe box gets it: `make probe-dist` artefacts (wheel and zipapp),
the wheel installed into a clean virtual environment holding nothing else, then that agent
against a real mosquitto and a real `netqos ingest` worker, every measurement stored."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import yaml

from collector.model import ProbeInfo
from collector.store.settings import StoreSettings
from collector.store.store import open_store
from tests.conftest import LOOPBACK, Broker
from tests.integration.test_ingest_faults import Worker
from tests.integration.test_probe_agent_mqtt import subscriber
from tests.integration.test_probe_agent_support import (
    probe_config_dict,
    start_tcp_listener,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MAX_INSTALLED_BYTES = 25 * 1024 * 1024  # the limit, dependencies included


@dataclass
class Dist:
    wheel: Path
    pyz: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _clean_env(tmp: Path) -> dict[str, str]:
    """No PYTHONPATH, no user site, HOME in tmp: nothing of the server's environment leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env["HOME"] = str(tmp)
    env["PYTHONNOUSERSITE"] = "1"
    env["NETQOS_PROBE_CACHE"] = str(tmp / "pyz-cache")
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dist]:
    """Build as `make probe-dist` does, then install the wheel alone into a fresh venv."""
    tmp = tmp_path_factory.mktemp("probe-dist")
    out = tmp / "dist"
    subprocess.run(
        [sys.executable, str(REPO / "probes/agent/packaging/build.py"), "--out", str(out)],
        check=True,
        timeout=300,
        cwd=tmp,
    )
    (wheel,) = out.glob("netqos_probe-*-py3-none-any.whl")
    pyz = out / "netqos-probe.pyz"
    venv = tmp / "venv"
    # No pip inside: the venv holds the agent and its dependencies and nothing else; the
    # test's own pip installs into it (--python).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    offline = ["-q", "--no-index", "--find-links", str(out / "wheelhouse")]
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", *offline, str(wheel)],
        check=True,
        timeout=300,
    )
    yield Dist(wheel, pyz, venv)


def _site_packages(venv: Path) -> Path:
    (sp,) = venv.glob("lib/python3*/site-packages")
    return sp


def test_clean_venv_holds_the_agent_only_and_is_small(dist: Dist, tmp_path: Path) -> None:
    sp = _site_packages(dist.venv)
    size = sum(f.stat().st_size for f in sp.rglob("*") if f.is_file() and not f.is_symlink())
    assert 0 < size <= MAX_INSTALLED_BYTES, f"{size:,} bytes installed"
    probe = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n        importlib.import_module(name)\n        print(name, 'IMPORTED')\n"
        "    except ModuleNotFoundError:\n        print(name, 'missing')\n"
    )
    server_side = ["numpy", "numba", "fastapi", "psycopg", "collector", "netqos", "api"]
    out = subprocess.run(
        [str(dist.python), "-c", probe, *server_side, "probes.agent.agent"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: its packages must not be importable by accident
        env=_clean_env(tmp_path),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == [*(f"{m} missing" for m in server_side), "probes.agent.agent IMPORTED"]


def test_zipapp_runs_alone_on_a_bare_python(dist: Dist, tmp_path: Path) -> None:
    """`python3 netqos-probe.pyz --config ...` with an interpreter that has no agent dependency
    at all (-I: no site-packages of any venv, no environment variables)."""
    cfg = write_config(
        tmp_path / "probe.yaml",
        probe_config_dict(
            "th-pyz-p001", port=1883, queue_path=tmp_path / "q.db", radio={"source": "fixture"}
        ),
    )
    bare = [sys.executable, "-I", "-S"]  # -S: not even this venv's site-packages
    missing = subprocess.run([*bare, "-c", "import pydantic"], capture_output=True, timeout=60, cwd=tmp_path)
    assert missing.returncode != 0  # so what runs below comes from the archive
    env = _clean_env(tmp_path)
    for _ in range(2):  # first run unpacks into the cache, the second finds it there
        out = subprocess.run(
            [*bare, str(dist.pyz), "--config", str(cfg), "--check"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert yaml.safe_load(out.stdout)["probe_id"] == "th-pyz-p001"
    assert len(list((tmp_path / "pyz-cache").iterdir())) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.read_text().replace("technology: 4G", "technology: 6G"))
    bad.chmod(0o600)
    out = subprocess.run(
        [*bare, str(dist.pyz), "--config", str(bad), "--check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2 and "netqos-probe: configuration error" in out.stderr


async def test_installed_agent_end_to_end_every_measurement_stored(
    dist: Dist, mosquitto: Broker, tmp_path: Path
) -> None:
    pid = f"th-dist-p{os.getpid() % 1000:03d}"
    topic = f"netqos/v1/probes/{pid}/measurements"
    db = StoreSettings(sqlite_path=tmp_path / "netqos.db")
    store = open_store(db)
    store.register_probes([ProbeInfo(pid, commune="16021")])
    store.close()
    worker = Worker(tmp_path, "w-dist", mosquitto, db, "netqos/v1/probes/+/measurements")
    listener, tcp_port = await start_tcp_listener()
    cfg = write_config(
        tmp_path / "probe.yaml",
        probe_config_dict(
            pid,
            port=mosquitto.port,
            queue_path=tmp_path / "queue.db",
            tests=[
                {"kind": "tcp", "target": LOOPBACK, "port": tcp_port, "interval_s": 0.05, "count": 1},
            ],
            batch={"max_measurements": 10, "max_wait_s": 0.3},
            schedule_jitter_ratio=0,
        ),
    )
    try:
        worker.start()
        await asyncio.to_thread(worker.wait_subscribed)
        async with listener, subscriber(mosquitto.host, mosquitto.port, [topic]) as col:
            agent = await asyncio.create_subprocess_exec(
                str(dist.venv / "bin/netqos-probe"),
                "--config",
                str(cfg),
                "--log-level",
                "WARNING",
                cwd=tmp_path,
                env=_clean_env(tmp_path),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                assert await wait_for(lambda: len(col.on(topic)) >= 5, timeout_s=60)
            finally:
                agent.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(agent.communicate(), timeout=30)
            assert agent.returncode == 0, err.decode(errors="replace")[-2000:]
            await asyncio.sleep(0.5)  # the last batches published on the way out
        batches = [orjson.loads(m.payload) for m in col.on(topic)]
        seqs = [b["seq"] for b in batches]
        assert seqs == sorted(set(seqs)) and len(seqs) >= 5  # in order, once each
        sent = [m["metrics"]["rtt_ms"] for b in batches for m in b["measurements"]]

        def stored() -> tuple[int, float, float, float]:
            s = open_store(db)
            try:
                row = (
                    s.reader()
                    .execute(
                        "SELECT coalesce(sum(r.count), 0), coalesce(sum(r.sum), 0), min(r.min), max(r.max)"
                        " FROM rollups r JOIN series s USING (series_id)"
                        " WHERE r.resolution_s = 60 AND s.metric = 'rtt_ms' AND s.entity = ?",
                        (pid,),
                    )
                    .fetchone()
                )
                return int(row[0]), float(row[1]), float(row[2] or 0), float(row[3] or 0)
            finally:
                s.close()

        assert await wait_for(lambda: stored()[0] >= len(sent), timeout_s=60)
        count, total, low, high = stored()
        assert count == len(sent)
        assert total == pytest.approx(sum(sent), rel=1e-9)
        assert (low, high) == (min(sent), max(sent))
    finally:
        worker.stop()
