"""What only PostgreSQL brings: several processes writing one database, a server that ends
connections, a password to keep secret; and the promise that both backends hold one schema."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from collector.core import SampleBatch, quantiles, rollup
from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo, SeriesKey
from collector.mqtt.schema import validate_batch
from collector.pipeline import IngestPipeline
from collector.store.db import Backend
from collector.store.settings import StoreSettings
from collector.store.store import Store, StoreError, open_store
from ground.errors import ConfigError
from netqos.cli import main
from netqos.config import load_settings
from tests.postgres import PostgresServer

T0 = 1_795_852_800_000
N_SERIES = 12
N_WINDOWS = 6
ROUNDS = 30
PER_ROUND = 1500


def _schema(backend: Backend) -> dict[str, Any]:
    """Tables with their columns in order, and the explicitly created indexes."""
    conn = backend.connect()
    try:
        if backend.name == "sqlite":
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
                )
            ]
            tables = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in names}
            indexes = {
                r[0]
                for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL")
            }
        else:
            tables = {}
            for t, c in conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
            ):
                tables.setdefault(t, []).append(c)
            indexes = {
                r[0]
                for r in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
                    " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
                )
            }
        return {"tables": tables, "indexes": indexes}
    finally:
        conn.close()


def test_both_backends_hold_the_same_schema(tmp_path: Path, pg_store_settings: StoreSettings) -> None:
    """Every SQLite migration has its PostgreSQL twin (same number and name), and after them
    both databases have the same tables, columns (in order) and indexes."""
    lite = open_store(StoreSettings(sqlite_path=tmp_path / "s.db"))
    pg = open_store(pg_store_settings)
    assert [n for _, n, _ in lite.backend.migrations()] == [n for _, n, _ in pg.backend.migrations()]
    a, b = _schema(lite.backend), _schema(pg.backend)
    assert a["tables"] == b["tables"]
    assert a["indexes"] == b["indexes"]
    assert {"probes", "series", "rollups", "devices", "probe_batches", "schema_migrations"} <= set(
        a["tables"]
    )
    lite.close()
    pg.close()


def _batch(ids: list[int], seed: int) -> SampleBatch:
    rng = np.random.default_rng(seed)
    return SampleBatch(
        series_id=np.asarray(ids, dtype=np.int32)[rng.integers(0, len(ids), PER_ROUND)],
        ts_ms=T0 + rng.integers(0, N_WINDOWS * 60_000, PER_ROUND),
        value=rng.lognormal(3, 1, PER_ROUND),
    )


def _keys() -> list[SeriesKey]:
    return [SeriesKey.of("rtt_ms", f"p{i}", {"commune": "16021"}) for i in range(N_SERIES)]


def _writer(url: str, password: str, worker: int, start: Any, done: Any) -> None:
    """One worker process: its own store, every round merged into the same windows."""
    store = open_store(StoreSettings(url=url, password=SecretStr(password)))
    ids = store.series_ids(_keys())  # created concurrently by both workers
    start.wait(120)  # a barrier: both start writing at once, whatever their start-up took
    for r in range(ROUNDS):
        store.write_rollups(rollup(_batch(ids, 1000 * worker + r)), 60)
    store.close()
    done.put(worker)


def test_two_processes_merge_the_same_windows_without_losing_a_sample(
    pg_store_settings: StoreSettings,
) -> None:
    """Rollups are read, merged and written back; two worker processes doing that to the same
    rows at the same time must queue (advisory lock), or one's merge would overwrite the other's."""
    assert pg_store_settings.url is not None and pg_store_settings.password is not None
    open_store(pg_store_settings).close()  # migrated here: the workers race on rollups only
    ctx = multiprocessing.get_context("spawn")
    start, done = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=_writer,
            args=(pg_store_settings.url, pg_store_settings.password.get_secret_value(), w, start, done),
        )
        for w in (1, 2)
    ]
    for p in procs:
        p.start()
    finished: list[int] = []
    deadline = time.monotonic() + 240
    while len(finished) < len(procs) and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            finished.append(done.get(timeout=0.5))
        failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
        assert not failed, f"a worker failed (exit codes {failed}); its traceback is above"
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sorted(finished) == [1, 2]

    store = open_store(pg_store_settings)
    ids = store.series_ids(_keys())
    assert len(set(ids)) == N_SERIES  # both workers got the same ids
    whole = rollup(_concat([_batch(ids, 1000 * w + r) for w in (1, 2) for r in range(ROUNDS)]))
    got = store.select_rollups("rtt_ms", 60, 0, 2**62).rollups
    order = np.lexsort((got.window_start_ms, got.series_id))
    assert store.total_count() == 2 * ROUNDS * PER_ROUND
    assert np.array_equal(got.series_id[order], whole.series_id)
    assert np.array_equal(got.window_start_ms[order], whole.window_start_ms)
    assert np.array_equal(got.count[order], whole.count)
    assert np.array_equal(got.min[order], whole.min) and np.array_equal(got.max[order], whole.max)
    q = np.array([0.5, 0.99])
    assert np.array_equal(quantiles(got, q)[order], quantiles(whole, q))
    store.close()


def _concat(parts: list[SampleBatch]) -> SampleBatch:
    return SampleBatch(
        np.concatenate([p.series_id for p in parts]),
        np.concatenate([p.ts_ms for p in parts]),
        np.concatenate([p.value for p in parts]),
    )


def test_a_flush_after_the_server_ended_the_connections_is_retried(
    postgres: PostgresServer, pg_store_settings: StoreSettings
) -> None:
    """The server ends every session (a restart, a failover): the flush that finds out fails and
    keeps its samples, the next one reconnects and stores them; readers reconnect too."""
    store = open_store(pg_store_settings)
    store.register_probes([ProbeInfo("p1")])
    pipe = IngestPipeline(store, IngestSettings())

    def batch(seq: int) -> Any:
        return validate_batch(
            {
                "v": 1,
                "probe_id": "p1",
                "seq": seq,
                "measurements": [
                    {
                        "ts": T0 + seq * 1000 + i,
                        "target": "t",
                        "technology": "4G",
                        "operator": "vnpt",
                        "metrics": {"rtt_ms": float(i)},
                    }
                    for i in range(10)
                ],
            }
        )

    pipe.accept(batch(0))
    assert asyncio.run(pipe.flush()) == 10
    assert store.total_count() == 10
    dbname = pg_store_settings.url.rsplit("/", 1)[1] if pg_store_settings.url else ""
    with postgres.connect() as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s", (dbname,)
        ).fetchone()
    assert ended is not None and ended[0] >= 2  # the writer and this thread's reader
    pipe.accept(batch(1))
    assert asyncio.run(pipe.flush()) == 0  # failed: the samples stay buffered
    assert pipe.buffered == 10
    assert asyncio.run(pipe.flush()) == 10
    with pytest.raises(Exception, match="terminat"):
        store.total_count()  # this thread's reader learns of it once...
    assert store.total_count() == 20  # ...and the next query has a new connection
    assert store.probes()[0].messages_total == 2
    store.close()


def test_the_password_is_a_secret(
    pg_store_settings: StoreSettings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert pg_store_settings.password is not None and pg_store_settings.url is not None
    secret = pg_store_settings.password.get_secret_value()
    caplog.set_level(logging.DEBUG)
    store = open_store(pg_store_settings)
    store.close()
    wrong = pg_store_settings.model_copy(update={"password": SecretStr("not-" + secret)})
    with pytest.raises(StoreError, match="password authentication failed") as err:
        open_store(wrong)
    assert secret not in str(err.value)
    cfg = tmp_path / "netqos.yaml"
    cfg.write_text(f"store:\n  url: {pg_store_settings.url}\n  password: {secret}\n", encoding="utf-8")
    assert main(["check-config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "password: '********'" in out and pg_store_settings.url in out
    assert secret not in out and secret not in caplog.text


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://netqos:hunter2@127.0.0.1/netqos", "holds a password"),
        ("postgresql://127.0.0.1/netqos?password=hunter2", "holds a password"),
        ("sqlite:///var/netqos.db", "store.sqlite_path"),
        ("mysql://127.0.0.1/netqos", "postgresql://"),
    ],
)
def test_store_url_is_checked(tmp_path: Path, url: str, reason: str) -> None:
    cfg = tmp_path / "netqos.yaml"
    cfg.write_text(f"store:\n  url: '{url}'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert err.value.key == "store.url" and reason in err.value.reason
    assert "hunter2" not in str(err.value)


def test_the_store_is_chosen_by_configuration_only(
    pg_store_settings: StoreSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pg_store_settings.url is not None and pg_store_settings.password is not None
    monkeypatch.setenv("NETQOS_STORE__URL", pg_store_settings.url)
    monkeypatch.setenv("NETQOS_STORE__PASSWORD", pg_store_settings.password.get_secret_value())
    store = open_store(load_settings(None).store)
    assert store.backend.name == "postgresql" and isinstance(store, Store)
    store.close()
    monkeypatch.delenv("NETQOS_STORE__URL")
    monkeypatch.setenv("NETQOS_STORE__SQLITE_PATH", str(tmp_path / "x.db"))
    store = open_store(load_settings(None).store)
    assert store.backend.name == "sqlite" and (tmp_path / "x.db").is_file()
    store.close()
