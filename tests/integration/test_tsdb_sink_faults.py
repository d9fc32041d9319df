"""The sink's failure handling against a scripted InfluxDB v2 write endpoint.

VictoriaMetrics (tests/integration/test_tsdb_victoria.py) never answers 429, 413 or 400 on
demand; this small HTTP server speaks the same write API (POST /api/v2/write, gzip bodies,
204 on success) and answers what each test scripts, recording every request it got.
"""

from __future__ import annotations

import gzip
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from collector.store.influx import parse_retry_after
from collector.store.settings import TsdbSettings
from collector.store.sink import TsdbSink
from collector.store.spool import Spool

pytestmark = pytest.mark.integration

# (request number, lines in it) -> (status, headers)
Script = Callable[[int, list[str]], tuple[int, dict[str, str]]]


@dataclass
class Request:
    at: float
    query: dict[str, list[str]]
    headers: dict[str, str]
    lines: list[str]
    status: int


@dataclass
class WriteServer:
    """Records requests; answers what `script` says (204 by default)."""

    script: Script = lambda n, lines: (204, {})
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def accepted_lines(self) -> list[str]:
        with self.lock:
            return [ln for r in self.requests if r.status == 204 for ln in r.lines]


@pytest.fixture
def server() -> Iterator[WriteServer]:
    state = WriteServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            lines = body.decode().splitlines()
            with state.lock:
                n = len(state.requests)
                status, headers = (404, {}) if parts.path != "/api/v2/write" else state.script(n, lines)
                state.requests.append(
                    Request(time.monotonic(), parse_qs(parts.query), dict(self.headers), lines, status)
                )
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            msg = b"" if status == 204 else b'{"code":"invalid","message":"scripted failure"}'
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def settings(url: str, tmp_path: Path | None, **kw: object) -> TsdbSettings:
    base: dict[str, object] = {
        "url": url,
        "spool_dir": tmp_path / "spool" if tmp_path is not None else None,
        "retry_initial_s": 0.02,
        "retry_max_s": 0.2,
        "flush_interval_s": 0.05,
        "batch_size": 100,
        "close_timeout_s": 1.0,
    }
    return TsdbSettings.model_validate(base | kw)


def lines(n: int, start: int = 0) -> list[str]:
    return [f"t,probe=p{i % 7} v={i}i {1_795_852_800_000 + i}" for i in range(start, start + n)]


def test_5xx_is_retried_and_the_batch_arrives_once_with_gzip_and_token(
    server: WriteServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.script = lambda n, _: (503, {}) if n < 3 else (204, {})
    token = "s3cret-token-value"
    sink = TsdbSink(settings(server.url, tmp_path, token=SecretStr(token), org="o1", bucket="b1"))
    caplog.set_level(logging.DEBUG)
    sink.start()
    sink.write_lines(lines(50))
    assert sink.flush(20)
    sink.close()
    assert server.accepted_lines() == lines(50)
    assert [r.status for r in server.requests] == [503, 503, 503, 204]
    first = server.requests[0]
    assert first.headers["Content-Encoding"] == "gzip"
    assert first.headers["Authorization"] == f"Token {token}"
    assert first.query == {"org": ["o1"], "bucket": ["b1"], "precision": ["ms"]}
    assert sink.stats.written == 50 and sink.stats.retries == 3 and sink.stats.dropped_total == 0
    assert token not in caplog.text
    assert "event=tsdb_write_failed" in caplog.text


def test_429_waits_for_retry_after(server: WriteServer, tmp_path: Path) -> None:
    server.script = lambda n, _: (429, {"Retry-After": "1"}) if n == 0 else (204, {})
    sink = TsdbSink(settings(server.url, tmp_path))
    sink.start()
    sink.write_lines(lines(10))
    assert sink.flush(20)
    sink.close()
    first, second = server.requests
    # The back-off alone would retry after 10-20 ms; Retry-After asked for a second.
    assert second.at - first.at >= 0.95
    assert server.accepted_lines() == lines(10)


def test_4xx_is_not_retried_and_counted_dropped(server: WriteServer, tmp_path: Path) -> None:
    server.script = lambda n, _: (400, {}) if n == 0 else (204, {})
    sink = TsdbSink(settings(server.url, tmp_path))
    sink.start()
    sink.write_lines(lines(100))  # one batch, refused
    assert sink.flush(20)
    sink.write_lines(lines(30, start=100))  # the next one goes through
    assert sink.flush(20)
    sink.close()
    assert [r.status for r in server.requests] == [400, 204]
    assert sink.stats.dropped == {"rejected": 100}
    assert server.accepted_lines() == lines(30, start=100)


def test_413_splits_the_batch_until_it_fits(server: WriteServer, tmp_path: Path) -> None:
    server.script = lambda n, body: (413, {}) if len(body) > 30 else (204, {})
    sink = TsdbSink(settings(server.url, tmp_path))
    sink.start()
    sink.write_lines(lines(100))
    assert sink.flush(20)
    sink.close()
    assert server.accepted_lines() == lines(100)  # in order, once each
    assert sink.stats.dropped_total == 0


def test_outage_spills_to_spool_survives_a_restart_and_replays_in_order(
    server: WriteServer, tmp_path: Path
) -> None:
    down = True
    server.script = lambda n, _: (503, {}) if down else (204, {})
    s = settings(server.url, tmp_path, buffer_max_points=250)
    sink = TsdbSink(s)
    sink.start()
    for k in range(10):
        sink.write_lines(lines(100, start=k * 100))
    # Memory holds at most 250 points: the rest went to the spool (the first batch may be in flight).
    assert sink.pending_points == 1000
    spool = Spool(s.spool_dir, s.spool_max_bytes)  # type: ignore[arg-type]
    assert spool.points >= 1000 - 250 - 100
    left = sink.close()  # still down: everything pending is kept on disk
    assert left == 1000 and sink.stats.dropped_total == 0
    assert not server.accepted_lines()

    down = False
    again = TsdbSink(s)  # a new process: the spool from the last run goes first
    again.start()
    again.write_lines(lines(100, start=1000))
    assert again.flush(20)
    again.close()
    assert server.accepted_lines() == lines(1100)  # every point once, in the order written
    assert not list((tmp_path / "spool").iterdir())


def test_a_full_spool_drops_its_oldest_files_and_counts_them(server: WriteServer, tmp_path: Path) -> None:
    server.script = lambda n, _: (503, {})
    s = settings(server.url, tmp_path, buffer_max_points=1, spool_max_bytes=1 << 16, batch_size=500)
    sink = TsdbSink(s)
    sink.start()
    # Incompressible lines: each 500-line file takes ~16 KiB, so 64 KiB hold about four.
    for k in range(20):
        t0 = 1_795_852_800_000 + k * 500
        sink.write_lines([f't v=1i,s="{secrets.token_hex(16)}" {t0 + i}' for i in range(500)])
    sink.close(timeout_s=0)
    dropped = sink.stats.dropped.get("spool_full", 0)
    spool = Spool(tmp_path / "spool", 1 << 16)
    assert dropped > 0 and dropped % 500 == 0
    assert spool.bytes <= 1 << 16
    assert spool.points + dropped == sink.stats.submitted  # nothing lost without being counted


def test_without_spool_memory_overflow_is_counted(server: WriteServer) -> None:
    server.script = lambda n, _: (503, {})
    sink = TsdbSink(settings(server.url, None, buffer_max_points=200))
    sink.start()
    for k in range(5):
        sink.write_lines(lines(100, start=k * 100))
    sink.close(timeout_s=0)
    d = sink.stats.dropped
    assert d.get("no_spool", 0) + d.get("shutdown", 0) == 500


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)
    assert parse_retry_after("99999") == 600.0
