"""Line protocol rendering and the sink's disk spool, without a database."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from collector.store.influx import gunzip_body, gzip_body
from collector.store.lineproto import join_lines, render_fields, render_samples, series_prefix
from collector.store.spool import Spool, SpoolError


def test_prefix_escapes_sorts_and_leaves_out_empty_tags() -> None:
    p = series_prefix("m x,y", [("site", "a=b c"), ("commune", "Xã A, B"), ("village", ""), ("k\\", "v\nw")])
    assert p == "m\\ x\\,y,commune=Xã\\ A\\,\\ B,k\\\\=v\\ w,site=a\\=b\\ c"


def test_samples_render_exact_values_and_ms_timestamps() -> None:
    heads = ["m,a=1 f=", "m,a=2 g="]
    lines = render_samples(
        heads,
        np.array([1, 0], dtype=np.int64),
        np.array([1_795_852_800_001, 5], dtype=np.int64),
        np.array([0.1, 1e-7], dtype=np.float64),
    )
    assert lines == ["m,a=2 g=0.1 1795852800001", "m,a=1 f=1e-07 5"]
    assert float(lines[0].split("=")[-1].split()[0]) == 0.1


def test_fields_types() -> None:
    line = render_fields("m", [("n", 3), ("ok", True), ("x", 2.5), ("a b", 1.0)], 7)
    assert line == "m n=3i,ok=1i,x=2.5,a\\ b=1.0 7"
    assert join_lines(["a", "b"]) == b"a\nb\n" and join_lines([]) == b""


def test_gzip_round_trip_and_damage_is_detected() -> None:
    body = b"m v=1 1\n" * 1000
    gz = gzip_body(body)
    assert gunzip_body(gz) == body
    with pytest.raises(zlib.error):
        gunzip_body(gz[:-5])


def test_spool_orders_by_seq_survives_reopen_and_cleans_up(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    s = Spool(d, 1 << 20)
    assert s.next_seq() == 0
    s.append(5, 10, gzip_body(b"five\n"))
    s.append(6, 20, gzip_body(b"six\n"))
    s.append(3, 1, gzip_body(b"three\n"))  # an older batch (the one in flight) goes in front
    with pytest.raises(SpoolError):
        s.append(5, 1, b"")  # inside the spool: would break the replay order
    (d / "00000000000000000009-4.lp.gz.tmp").write_bytes(b"half")  # a write a crash cut short
    (d / "notes.txt").write_text("not ours")
    again = Spool(d, 1 << 20)
    assert [again.head().seq if again.head() else None] == [3]  # type: ignore[union-attr]
    assert again.points == 31 and again.next_seq() == 7
    assert not (d / "00000000000000000009-4.lp.gz.tmp").exists() and (d / "notes.txt").exists()
    head = again.head()
    assert head is not None and gunzip_body(again.read(head)) == b"three\n"
    again.remove(head)
    assert again.head() is not None and again.head().seq == 5  # type: ignore[union-attr]
    assert not head.path.exists()


def test_spool_over_its_limit_drops_the_oldest_but_never_the_busy_one(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool", 1 << 16)
    blob = np.random.default_rng(0).bytes(20_000)  # incompressible, 20 kB a file
    s.append(0, 100, blob)
    s.busy = 0
    dropped = []
    for seq in range(1, 5):
        dropped += s.append(seq, 100, blob)
    assert [d.seq for d in dropped] == [1, 2]  # three 20 kB files fit in 64 KiB
    assert s.head() is not None and s.head().seq == 0  # type: ignore[union-attr]
    assert s.bytes <= 1 << 16 and s.points == 300
