"""API replicas share one configuration: their schedule publishers must not share an MQTT client
id, or the broker would hand the connection from one to the other in turn."""

from __future__ import annotations

from pathlib import Path

from collector.store.settings import StoreSettings
from collector.store.store import open_store
from netqos.config import Settings
from netqos.roles.api import schedule_service


def test_two_processes_with_one_config_publish_schedules_under_distinct_client_ids(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "mqtt": {"host": "127.0.0.1", "client_id": "netqos-api"},
            "probes": {"schedules_file": str(tmp_path / "schedules.yaml")},
        }
    )
    store = open_store(StoreSettings(sqlite_path=tmp_path / "netqos.db"))
    try:
        first, second = schedule_service(settings, store), schedule_service(settings, store)
    finally:
        store.close()
    assert first.client_id != second.client_id
    assert all(s.client_id.startswith("netqos-api-schedules-") for s in (first, second))
