"""Shared fixtures: real services on free loopback ports, started and stopped by the tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from collector.store.settings import StoreSettings
from tests.services import LOOPBACK, ManagedProcess, accepts, binary, free_port, terminate, wait_port

if TYPE_CHECKING:
    from tests.postgres import PostgresServer

# Also imported from here by many tests (the helpers live in tests.services).
__all__ = ["LOOPBACK", "free_port", "terminate", "wait_port"]


# -- markers ---------------------------------------------------------------------------

TESTS = Path(__file__).resolve().parent
# tests/<folder>/... -> the marker every test in it carries (`pytest -m unit`, ...).
FOLDER_MARKERS = {"unit": "unit", "integration": "integration", "e2e": "e2e", "deploy": "deploy"}
# Tests of these folders run parts together with their real services: all marked `services`.
SERVICE_FOLDERS = frozenset({"integration", "e2e"})
# Elsewhere, a test using one of these fixtures (directly or through another fixture) is
# marked `services`. The PostgreSQL side of `store_settings` carries the marker as a param
# mark; a test that starts a service itself carries it explicitly. `make unit` runs with
# NETQOS_TEST_NO_SERVICES=1, under which starting a service fails: a test missing its marker
# is found, not quietly run against a server.
SERVICE_FIXTURES = frozenset({"mosquitto", "postgres", "pg_store_settings"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from the folder, and `services` from the fixtures: `make unit` runs
    `tests/unit -m "not services"` and needs no server at all."""
    for item in items:
        try:
            parts = item.path.resolve().relative_to(TESTS).parts
        except ValueError:
            continue
        folder = parts[0] if len(parts) > 1 else ""
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])
        if folder in SERVICE_FOLDERS or SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker("services")


# -- mosquitto ---------------------------------------------------------------------------


def mosquitto_binary() -> str:
    return binary("mosquitto", "/usr/sbin/mosquitto", hint="run `make test` (it installs it with apt-get)")


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
    # Its own log is `log` (log_dest file): what it prints before opening it goes beside.
    proc = ManagedProcess("mosquitto", [mosquitto_binary(), "-c", str(conf)], log=workdir / "mosquitto.out")
    popen = proc.start()
    proc.wait_ready(lambda: accepts(port), timeout_s=10.0, what=f"mosquitto listening on {LOOPBACK}:{port}")
    return popen, Broker(LOOPBACK, port, log)


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
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.services),
]


@pytest.fixture(params=STORE_BACKENDS)
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    """An empty store's settings, once per backend: the same test runs on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return StoreSettings(sqlite_path=tmp_path / "netqos.db")
    settings: StoreSettings = request.getfixturevalue("pg_store_settings")
    return settings
