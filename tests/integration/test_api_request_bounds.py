"""Every heavy read, list, write and body of the API is bounded (a real SQLite store, a real
uvicorn server where the connection is the point):

- compliance (and the monthly report), availability and KPIs, with their CSV exports, run under
  the query gate: with api.max_queries_per_key = 1 a key's second query while its first runs is
  answered 429 naming the setting, another key's runs, the first completes, /healthz answers;
- silences, maintenance windows and reports are capped at api.max_list_rows (read with SQL
  LIMIT cap + 1): the cap answers 200, one more 413 naming the setting; incidents and audit
  entries take a `limit` with a maximum (422 beyond it); on SQLite and PostgreSQL;
- every state-changing endpoint takes from the key's write bucket (api.write_rate_per_min,
  api.write_burst): beyond it 429 with Retry-After, before the request does anything;
- a request body sent a byte a second is answered 408 naming api.body_timeout_s and the
  connection closed, within the bound; a body slow but whole in time is read; other requests
  are answered meanwhile.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from sqlite3 import Connection

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from alerts.silences import SilenceRepo
from api.app import create_app
from api.server import server_config
from collector.store import audit
from collector.store.reports import ReportRepo
from collector.store.settings import StoreSettings
from collector.store.sqlite import SQLiteStore
from collector.store.store import Store, open_store
from netqos.config import Settings
from tests.conftest import LOOPBACK, free_port, wait_port
from tests.department_data import ADMIN, VIETTEL, VIEWER, auth, seed, settings_with_keys

DAY_MS = 86_400_000


class PausingStore(SQLiteStore):
    """A real SQLite store whose next read, once armed, waits until released: it holds a heavy
    query inside its work (and so inside the query gate) for as long as the test needs."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self._arm_lock = threading.Lock()

    def arm(self) -> None:
        self.entered.clear()
        self.release.clear()
        self.armed = True

    def reader(self) -> Connection:
        with self._arm_lock:
            pause, self.armed = self.armed, False
        if pause:
            self.entered.set()
            self.release.wait(timeout=30)  # bounded: a failing test never hangs
        return super().reader()


def _serve(settings: Settings, store: SQLiteStore) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    settings.api.host = LOOPBACK
    server = uvicorn.Server(server_config(create_app(settings, store), settings.api, port))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_port(port, timeout_s=30)
    return server, thread, f"http://{LOOPBACK}:{port}"


@pytest.fixture(scope="module")
def paused(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PausingStore, str]]:
    store = PausingStore(tmp_path_factory.mktemp("gate") / "netqos.db")
    seed(store)
    settings = settings_with_keys()
    settings.api.max_queries = 4
    settings.api.max_queries_per_key = 1
    server, thread, url = _serve(settings, store)
    try:
        yield store, url
    finally:
        store.release.set()
        server.should_exit = True
        thread.join(timeout=30)
        store.close()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/compliance?period=2025-07",
        "/api/v1/compliance?period=2025-07&format=csv",
        "/api/v1/compliance/report?month=2025-07",
        "/api/v1/compliance/report?month=2025-07&format=csv",
        "/api/v1/availability?kind=probe",
        "/api/v1/kpi",
        "/api/v1/kpi?format=csv",
    ],
)
def test_heavy_queries_are_gated_per_key(paused: tuple[PausingStore, str], path: str) -> None:
    store, url = paused
    first: list[httpx.Response] = []

    def run_first() -> None:
        with httpx.Client(base_url=url, timeout=180) as http:
            first.append(http.get(path, headers=auth(ADMIN)))

    store.arm()
    t = threading.Thread(target=run_first)
    t.start()
    try:
        assert store.entered.wait(timeout=20), "the first query never reached the store"
        with httpx.Client(base_url=url, timeout=10) as http:
            # The same key, while its one query slot (api.max_queries_per_key = 1) is taken.
            second = http.get(path, headers=auth(ADMIN))
            assert second.status_code == 429, second.text
            assert "api.max_queries_per_key" in second.json()["detail"]
            assert second.headers["retry-after"] == "1"
            # The event loop is free: the query waits in a worker thread, not on it.
            started = time.monotonic()
            assert http.get("/healthz").status_code == 200
            assert time.monotonic() - started < 2.0
            # Another key has its own slot (generous time: the first query of a fresh checkout
            # compiles the numba kernels).
            assert http.get(path, headers=auth(VIEWER), timeout=180).status_code == 200
    finally:
        store.release.set()
        t.join(timeout=180)
    assert len(first) == 1 and first[0].status_code == 200, first and first[0].text
    with httpx.Client(base_url=url, timeout=180) as http:
        # The slot is given back when the first has answered.
        assert http.get(path, headers=auth(ADMIN)).status_code == 200


@pytest.fixture
def small(store_settings: StoreSettings) -> Iterator[tuple[Store, TestClient]]:
    """An empty store on each backend (the lists' SQL LIMIT runs on both), max_list_rows = 100."""
    store = open_store(store_settings)
    settings = settings_with_keys()
    settings.api.max_list_rows = 100  # the smallest the setting allows
    with TestClient(create_app(settings, store), raise_server_exceptions=False) as c:
        yield store, c
    store.close()


def _silences(store: Store, kind: str, n: int, ends_ms: int) -> None:
    repo = SilenceRepo(store)
    for i in range(n):
        repo.create(kind, [f'entity="e{i}"', 'operator="viettel"'], 1_000, ends_ms, "t", "", 1_000)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["silence", "maintenance"])
def test_silence_and_maintenance_lists_are_capped(small: tuple[Store, TestClient], kind: str) -> None:
    """api.max_list_rows = 100: 100 rows answer 200, 101 answer 413 naming the setting; expired
    ones count only with include_expired (the history, which grows without bound)."""
    store, c = small
    path = "/api/v1/silences" if kind == "silence" else "/api/v1/maintenance"
    word = "silences" if kind == "silence" else "maintenance windows"
    future = int(time.time() * 1000) + DAY_MS
    _silences(store, kind, 60, future)
    _silences(store, kind, 40, 2_000)  # long expired
    r = c.get(path, params={"include_expired": "true"}, headers=auth(ADMIN))
    assert r.status_code == 200 and r.json()["total"] == 100, r.text
    _silences(store, kind, 1, 2_000)
    r = c.get(path, params={"include_expired": "true"}, headers=auth(ADMIN))
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == (
        f"more than 100 {word}: over the limit api.max_list_rows (100); narrow the query with filters"
    )
    # In force only: 60, under the cap. An operator key (filtered in Python) has the same cap.
    r = c.get(path, headers=auth(ADMIN))
    assert r.status_code == 200 and r.json()["total"] == 60
    assert c.get(path, params={"include_expired": "true"}, headers=auth(VIETTEL)).status_code == 413


def test_report_list_is_capped(small: tuple[Store, TestClient]) -> None:
    store, c = small
    repo = ReportRepo(store)
    actor = audit.Actor("t", "admin")

    def add(n: int) -> None:
        for _ in range(n):
            repo.add(
                kind="k",
                year=2025,
                operator="",
                fmt="csv",
                sha256="0" * 64,
                rows=0,
                note="",
                values=[],
                actor=actor,
            )

    add(100)
    r = c.get("/api/v1/reports", headers=auth(ADMIN))
    assert r.status_code == 200 and r.json()["total"] == 100, r.text
    add(1)
    r = c.get("/api/v1/reports", headers=auth(ADMIN))
    assert r.status_code == 413 and "more than 100 reports" in r.text and "api.max_list_rows" in r.text
    # A filter narrows it back under the cap.
    assert c.get("/api/v1/reports", params={"year": 2024}, headers=auth(ADMIN)).json()["total"] == 0


@pytest.mark.parametrize(("path", "most"), [("/api/v1/incidents", 1000), ("/api/v1/audit", 10_000)])
def test_incident_and_audit_pages_have_a_largest_limit(
    small: tuple[Store, TestClient], path: str, most: int
) -> None:
    _, c = small
    assert c.get(path, params={"limit": most}, headers=auth(ADMIN)).status_code == 200
    r = c.get(path, params={"limit": most + 1}, headers=auth(ADMIN))
    assert r.status_code == 422 and "limit" in r.text and str(most) in r.text, r.text


def test_every_write_takes_from_the_keys_write_bucket(tmp_path: Path) -> None:
    """api.write_burst = 2 at 1 a day: a key's 2 writes pass, its next of every kind is 429 with
    Retry-After (before anything is looked up: incident 999 does not exist); other keys go on."""
    store = SQLiteStore(tmp_path / "netqos.db")
    settings = settings_with_keys()
    settings.api.write_rate_per_min = 1 / 1440
    settings.api.write_burst = 2
    ends = "2100-01-01T00:00:00Z"
    silence = {"matchers": ['operator="viettel"'], "ends_at": ends}
    with TestClient(create_app(settings, store), raise_server_exceptions=False) as c:
        h = auth(VIETTEL)
        assert c.post("/api/v1/silences", json=silence, headers=h).status_code == 201
        assert c.post("/api/v1/maintenance", json=silence, headers=h).status_code == 201
        writes = [
            ("POST", "/api/v1/silences", silence),
            ("POST", "/api/v1/maintenance", silence),
            ("DELETE", "/api/v1/silences/1", None),
            ("DELETE", "/api/v1/maintenance/2", None),
            ("POST", "/api/v1/incidents/999/acknowledge", {}),
            ("POST", "/api/v1/incidents/999/resolve", {}),
            ("POST", "/api/v1/incidents/999/comments", {"text": "on it"}),
        ]
        for method, path, body in writes:
            r = c.request(method, path, json=body, headers=h)
            assert r.status_code == 429, (path, r.text)
            assert "too many writes from 'viettel-noc'" in r.text
            # 1 a day: the next token in a day, at most.
            assert 1 <= int(r.headers["retry-after"]) <= 86_400, r.headers
        # Reads are not writes; other keys have their own buckets.
        assert c.get("/api/v1/silences", headers=h).status_code == 200
        assert c.delete("/api/v1/silences/1", headers=auth(ADMIN)).status_code == 200
        assert (
            c.post("/api/v1/incidents/999/comments", json={"text": "x"}, headers=auth(ADMIN)).status_code
            == 404
        )
        r = c.post("/api/v1/reports/999/withdraw", params={"reason": "x"}, headers=auth(ADMIN))
        assert r.status_code == 429 and "retry-after" in r.headers, r.text
        # The refused ones did nothing: one silence (expired by the admin) and one window.
        assert len(SilenceRepo(store).find(since_ms=0)) == 2
    store.close()


def _send_slowly(port: int, body: bytes, pause_s: float, limit_s: float) -> tuple[bytes, float, bool]:
    """POST /api/v1/silences declaring len(body) bytes, sent one piece per `pause_s`; returns the
    answer, the seconds from the headers to it, and whether the server then closed (a FIN or a
    reset)."""
    head = (
        f"POST /api/v1/silences HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer = b""
    with socket.create_connection((LOOPBACK, port), timeout=limit_s) as s:
        s.sendall(head)
        started = time.monotonic()
        for piece in (body[i : i + 1] for i in range(len(body))):
            s.settimeout(pause_s)
            try:
                got = s.recv(65536)  # an answer before the body is whole: stop sending
                answer += got
                break
            except TimeoutError:
                pass
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            if time.monotonic() - started > limit_s:
                break
        s.settimeout(max(0.1, limit_s - (time.monotonic() - started)))
        closed = False
        try:
            while True:
                got = s.recv(65536)
                if not got:
                    closed = True
                    break
                answer += got
                if b"\r\n\r\n" in answer and answer.endswith(b"}") and b"connection: close" not in answer:
                    break
        except ConnectionResetError:
            # Closed too: a byte sent just as the server closed (or still unread in its buffer
            # when it did) makes the server's kernel end the connection with a reset, not a FIN.
            closed = True
        except TimeoutError:
            pass
        took = time.monotonic() - started
    return answer, took, closed


def test_a_body_sent_a_byte_a_second_is_cut_off(tmp_path: Path) -> None:
    """api.body_timeout_s = 2: 60 bytes at one a second get 408 naming the setting within 2 s
    plus a generous 3 s, and the connection is closed; a 4-byte body sent over 0.8 s (whole in
    time) is read and answered (401: no token); other requests are answered meanwhile."""
    store = SQLiteStore(tmp_path / "netqos.db")
    settings = settings_with_keys()
    settings.api.body_timeout_s = 2.0
    server, thread, url = _serve(settings, store)
    port = int(url.rsplit(":", 1)[1])
    try:
        result: list[tuple[bytes, float, bool]] = []
        slow = threading.Thread(
            target=lambda: result.append(_send_slowly(port, b"{" + b" " * 58 + b"}", 1.0, 15.0))
        )
        slow.start()
        time.sleep(0.5)
        with httpx.Client(base_url=url, timeout=5) as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/api/v1/silences", headers=auth(ADMIN)).status_code == 200
        slow.join(timeout=30)
        answer, took, closed = result[0]
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"request body not received within 2 s (the limit api.body_timeout_s)" in answer
        assert 2.0 <= took < 5.0, took
        assert closed
        # Whole in time: read, then answered as usual (no token: 401).
        answer, took, _ = _send_slowly(port, b"{  }", 0.2, 10.0)
        assert answer.startswith(b"HTTP/1.1 401"), answer
        with httpx.Client(base_url=url, timeout=5) as http:
            assert http.get("/healthz").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        store.close()
