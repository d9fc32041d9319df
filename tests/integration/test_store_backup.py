"""`netqos backup PATH` and `netqos restore PATH` on both backends: a round trip through the
command line brings back exactly what was stored, and bad backups are refused unchanged."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from collector.core import SampleBatch, rollup
from collector.model import ProbeInfo, SeriesKey
from collector.store.settings import StoreSettings
from collector.store.store import Store, open_store
from netqos.cli import main
from tests.conftest import store_yaml

T0 = 1_795_852_800_000


def config_file(tmp_path: Path, settings: StoreSettings) -> Path:
    path = tmp_path / "netqos.yaml"
    path.write_text(yaml.safe_dump({"store": store_yaml(settings)}), encoding="utf-8")
    return path


def write_samples(store: Store, seed: int, n: int = 5000) -> None:
    ids = store.series_ids([SeriesKey.of("rtt_ms", f"p{i}", {"commune": "16021"}) for i in range(8)])
    rng = np.random.default_rng(seed)
    batch = SampleBatch(
        series_id=np.asarray(ids, dtype=np.int32)[rng.integers(0, len(ids), n)],
        ts_ms=T0 + rng.integers(0, 30 * 60_000, n),
        value=rng.lognormal(3, 1, n),
    )
    store.write_rollups(rollup(batch), 60)


def fingerprint(store: Store) -> dict[str, Any]:
    """Everything a round trip must bring back, in comparable form."""
    sel = store.select_rollups("rtt_ms", 60, 0, 2**62)
    r = sel.rollups
    order = np.lexsort((r.window_start_ms, r.series_id))
    conn = store.reader()
    return {
        "probes": store.probes(),
        "labels": sel.labels,
        "series_id": r.series_id[order].tolist(),
        "window": r.window_start_ms[order].tolist(),
        "count": r.count[order].tolist(),
        "sum": r.sum[order].tolist(),
        "max": r.max[order].tolist(),
        "sketch_keys": r.sketch_keys.tolist(),
        "total": store.total_count(),
        "schema": store.schema_version(),
        "batches": conn.execute("SELECT probe_id, seq FROM probe_batches ORDER BY probe_id, seq").fetchall(),
    }


def test_backup_and_restore_round_trip(
    store_settings: StoreSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config_file(tmp_path, store_settings)
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p1", commune="16021", operator="vnpt"), ProbeInfo("p2")])
    write_samples(store, seed=1)
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO probe_batches (probe_id, seq, stored_ms, measurements, newest_ts_ms)"
            " VALUES ('p1', 7, 0, 10, ?)",
            (T0,),
        )
    before = fingerprint(store)
    assert before["total"] == 5000

    backup = tmp_path / "netqos.backup"
    assert main(["--config", str(cfg), "backup", str(backup)]) == 0
    assert "written to" in capsys.readouterr().out and backup.stat().st_size > 0
    # A backup never overwrites: the same command again is refused and the file stays.
    assert main(["--config", str(cfg), "backup", str(backup)]) == 1
    assert "exists already" in capsys.readouterr().err

    # Life goes on after the backup: more data, a new probe, a table of a later schema.
    write_samples(store, seed=2)
    store.register_probes([ProbeInfo("p3")])
    with store.transaction() as conn:
        conn.execute("CREATE TABLE from_a_later_version (x INTEGER)")
    assert fingerprint(store) != before
    store.close()

    assert main(["--config", str(cfg), "restore", str(backup)]) == 0
    assert "restored" in capsys.readouterr().out
    store = open_store(store_settings)
    assert fingerprint(store) == before
    tables = store.reader().execute("SELECT count(*) FROM series").fetchone()[0]
    assert tables == 8
    with pytest.raises(Exception, match="from_a_later_version"):
        store.reader().execute("SELECT * FROM from_a_later_version").fetchall()
    # The restored store takes new writes as usual (PostgreSQL: identity sequences restored too).
    write_samples(store, seed=3)
    store.series_ids([SeriesKey.of("rtt_ms", "new-probe", {})])
    assert store.total_count() == 10_000
    store.close()


def test_restore_into_an_empty_store(
    store_settings: StoreSettings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A new machine: the backup is restored where nothing is stored yet."""
    store = open_store(store_settings)
    write_samples(store, seed=4)
    before = fingerprint(store)
    store.close()
    backup = tmp_path / "b"
    assert main(["--config", str(config_file(tmp_path, store_settings)), "backup", str(backup)]) == 0
    if store_settings.url is None:
        target = StoreSettings(sqlite_path=tmp_path / "new" / "netqos.db")
    else:
        server = request.getfixturevalue("postgres")
        name = server.create_database()
        request.addfinalizer(lambda: server.drop_database(name))
        target = server.store_settings(name)
    target_dir = tmp_path / "target"
    target_dir.mkdir()
    assert main(["--config", str(config_file(target_dir, target)), "restore", str(backup)]) == 0
    restored = open_store(target)
    assert fingerprint(restored) == before
    restored.close()


def test_bad_backups_are_refused_and_change_nothing(
    store_settings: StoreSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config_file(tmp_path, store_settings)
    store = open_store(store_settings)
    write_samples(store, seed=5)
    before = fingerprint(store)
    backend = store.backend
    store.close()

    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not a backup at all\n" * 10)
    other_kind = tmp_path / "other-kind"
    other_kind.write_bytes(b"SQLite format 3\x00" if store_settings.url else b"PGDMP\x01\x0e\x00")
    # A backup of a store whose schema is newer than this netqos (written by a later version).
    newer = tmp_path / "newer"
    conn = backend.connect()
    conn.execute("INSERT INTO schema_migrations VALUES (999, '0999_future.sql', 0)")
    try:
        assert main(["--config", str(cfg), "backup", str(newer)]) == 0
    finally:
        conn.execute("DELETE FROM schema_migrations WHERE version = 999")
        conn.close()
    capsys.readouterr()
    for path, reason in [
        (garbage, "not a"),
        (other_kind, "backup; this store is" if store_settings.url else "PostgreSQL backup"),
        (newer, "newer than this netqos knows"),
        (tmp_path / "missing", "cannot read"),
    ]:
        assert main(["--config", str(cfg), "restore", str(path)]) == 1, path
        assert reason in capsys.readouterr().err, path
    store = open_store(store_settings)
    assert fingerprint(store) == before
    store.close()


def test_postgres_password_never_reaches_a_command_line(
    pg_store_settings: StoreSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_dump, pg_restore and psql get the password in their environment, not their argv."""
    assert pg_store_settings.password is not None
    secret = pg_store_settings.password.get_secret_value()
    seen: list[list[str]] = []
    real_run = subprocess.run

    def recording_run(argv: list[str], *args: Any, **kw: Any) -> Any:
        seen.append([str(a) for a in argv])
        return real_run(argv, *args, **kw)

    monkeypatch.setattr(subprocess, "run", recording_run)
    open_store(pg_store_settings).close()
    cfg = config_file(tmp_path, pg_store_settings)
    assert main(["--config", str(cfg), "backup", str(tmp_path / "b")]) == 0
    assert main(["--config", str(cfg), "restore", str(tmp_path / "b")]) == 0
    tools = {Path(a[0]).name for a in seen}
    assert {"pg_dump", "pg_restore", "psql"} <= tools
    assert not [a for a in seen if any(secret in part for part in a)]
