"""Shared fixtures: real services on free loopback ports, started and stopped by the tests."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from collector.store.settings import StoreSettings

if TYPE_CHECKING:
    from tests.postgres import PostgresServer

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout_s} s")


def terminate(proc: subprocess.Popen[bytes], timeout_s: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """`sig` (SIGTERM), then SIGKILL if the process has not exited after `timeout_s`."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if path is None:
        raise RuntimeError("mosquitto is not installed: run `make test` (it installs it with apt-get)")
    return path


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    log: Path


def start_mosquitto(workdir: Path, *, max_inflight: int = 100) -> tuple[subprocess.Popen[bytes], Broker]:
    """A real mosquitto on a free loopback port, anonymous, its config and log in `workdir`."""
    port = free_port()
    conf = workdir / "mosquitto.conf"
    log = workdir / "mosquitto.log"
    conf.write_text(
        "\n".join(
            [
                f"listener {port} {LOOPBACK}",
                "allow_anonymous true",
                "persistence false",
                # Tests publish bursts to persistent sessions: keep every queued message.
                "max_queued_messages 0",
                f"max_inflight_messages {max_inflight}",
                f"log_dest file {log}",
                "log_type error",
                "log_type warning",
                "",
            ]
        )
    )
    proc = subprocess.Popen(
        [mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
    except BaseException:
        terminate(proc)
        raise
    return proc, Broker(LOOPBACK, port, log)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real mosquitto on a free loopback port, anonymous (ACL tests make their own)."""
    proc, broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield broker
    finally:
        terminate(proc)


# -- the store on both backends ------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL (initdb + postgres) on a free loopback port; fails if it is not installed."""
    from tests.postgres import running_postgres

    with running_postgres() as server:
        yield server


@pytest.fixture
def pg_store_settings(postgres: PostgresServer) -> Iterator[StoreSettings]:
    """Settings of a fresh, empty PostgreSQL database of its own (dropped afterwards)."""
    name = postgres.create_database()
    try:
        yield postgres.store_settings(name)
    finally:
        postgres.drop_database(name)


def store_yaml(settings: StoreSettings) -> dict[str, Any]:
    """The settings as the `store:` section of a config file (a test's own password in clear)."""
    out: dict[str, Any] = {"sqlite_path": str(settings.sqlite_path)}
    if settings.url is not None:
        out["url"] = settings.url
    if settings.password is not None:
        out["password"] = settings.password.get_secret_value()
    if settings.pg_bin_dir is not None:
        out["pg_bin_dir"] = str(settings.pg_bin_dir)
    return out


STORE_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
]


@pytest.fixture(params=STORE_BACKENDS)
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    """An empty store's settings, once per backend: the same test runs on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return StoreSettings(sqlite_path=tmp_path / "netqos.db")
    settings: StoreSettings = request.getfixturevalue("pg_store_settings")
    return settings
