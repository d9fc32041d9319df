"""A probe's seq conflicts show on GET /api/v1/probes/{id}."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo
from collector.mqtt.schema import to_decoded, validate_batch
from collector.pipeline import IngestPipeline
from collector.store.store import Store
from netqos.config import Settings

TOKEN = "seq-conflict-token-1234567890"
T0 = 1_795_852_800_000


def test_seq_conflicts_are_shown_on_the_probe(tmp_path: Path) -> None:
    store = Store(tmp_path / "netqos.db")
    store.register_probes([ProbeInfo("p1")])
    p = IngestPipeline(store, IngestSettings())
    for rtt in (1.0, 2.0, 3.0):  # seq 7 three times, each time with other content: 2 conflicts
        m = {"ts": T0, "target": "t", "technology": "4G", "operator": "vnpt", "metrics": {"rtt_ms": rtt}}
        got = to_decoded(validate_batch({"v": 1, "probe_id": "p1", "seq": 7, "measurements": [m]}))
        assert not p.is_duplicate(got)
        p.accept(got)
    asyncio.run(p.flush())
    settings = Settings()
    settings.api.tokens = [SecretStr(TOKEN)]
    with TestClient(create_app(settings, store)) as c:
        body = c.get("/api/v1/probes/p1", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert body["seq_conflicts_total"] == 2 and body["seq_conflict_last_ms"] is not None
    assert body["messages_total"] == 3 and body["measurements_total"] == 3
    store.close()
