"""The API against careless and hostile requests, in process (a real SQLite store): strong
tokens only, wrong tokens rate-limited, values out of range answered 4xx (never 500),
X-Forwarded-For believed only from a configured proxy, list and body limits at their
edges, /docs without a CDN, and asyncio's repeated complaints logged once with a count.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from api.server import RepeatFilter, connections_within, server_config
from collector.inventory.units import CommuneUnit
from collector.store.sqlite import SQLiteStore
from collector.store.units import UnitRepo
from ground.errors import ConfigError
from netqos.config import Settings, load_settings
from tests.conftest import LOOPBACK, free_port, wait_port
from tests.department_data import ADMIN, auth, seed, settings_with_keys

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path_factory.mktemp("hardening") / "netqos.db")
    seed(s)
    yield s
    s.close()


@pytest.fixture
def client(store: SQLiteStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings_with_keys(), store), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("~", "at least 16 characters"),  # 1 character
        ("abcdefghijklmno", "at least 16 characters"),  # 15
        ("abababababababab", "at least 6 different characters"),  # 16, but 2 different
        ("abcdeabcdeabcdea", "at least 6 different characters"),  # 16, 5 different
    ],
)
def test_weak_tokens_are_a_configuration_error(tmp_path: Path, token: str, why: str) -> None:
    for text in (
        f"api:\n  tokens: ['{token}']\n",
        f"api:\n  keys:\n    - {{name: k, role: admin, token: '{token}'}}\n",
    ):
        cfg = tmp_path / "netqos.yaml"
        cfg.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_settings(cfg)
        assert why in str(err.value) and token not in str(err.value)


def test_tokens_just_strong_enough_are_accepted(tmp_path: Path) -> None:
    cfg = tmp_path / "netqos.yaml"
    # 16 characters, 6 different.
    cfg.write_text(
        "api:\n  tokens: ['abcdefabcdefabcd']\n  keys:\n    - {name: k, token: 'abcdefabcdefabcd'}\n"
    )
    s = load_settings(cfg)
    assert len(s.api.tokens) == 1 and len(s.api.keys) == 1


def test_wrong_tokens_are_rate_limited_per_client(store: SQLiteStore) -> None:
    """auth_failure_burst = 3: three wrong tokens get 401, the fourth 429 with Retry-After,
    and then even the right token is not looked at (a lucky guess would tell nothing)."""
    settings = settings_with_keys()
    settings.api.auth_failure_burst = 3
    settings.api.auth_failures_per_min = 1
    with TestClient(create_app(settings, store)) as c:
        wrong = {"Authorization": "Bearer wrong-token-0000000000"}
        assert [c.get("/api/v1/probes", headers=wrong).status_code for _ in range(3)] == [401, 401, 401]
        r = c.get("/api/v1/probes", headers=wrong)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert "wrong tokens" in r.json()["detail"]
        assert c.get("/api/v1/probes", headers=auth(ADMIN)).status_code == 429
        # Right tokens never count: another app, many good requests, no 429.
    with TestClient(create_app(settings, store)) as c:
        assert {c.get("/api/v1/probes", headers=auth(ADMIN)).status_code for _ in range(10)} == {200}


def test_values_out_of_range_are_4xx_not_500(client: TestClient) -> None:
    h = auth(ADMIN)
    for params in (
        {"metric": "rtt_ms", "from": "0001-01-01T00:00:00", "to": "0001-01-02T00:00:00Z"},
        {"metric": "rtt_ms", "to": "0001-01-01T00:00:00Z"},
        {"metric": "rtt_ms", "from": "9999-12-31T00:00:00Z"},
        {"metric": "rtt_ms", "step": "9" * 40},
    ):
        r = client.get("/api/v1/qos", params=params, headers=h)
        assert r.status_code == 422, (params, r.text)
    r = client.get("/api/v1/qos", params={"metric": "rtt_ms", "to": "0001-01-01T00:00:00Z"}, headers=h)
    assert "between 1970-01-01 and 2100-01-01" in r.json()["detail"]
    # The first and last instants allowed are answered.
    edge = {"metric": "rtt_ms", "from": "1970-01-01T00:00:00Z", "to": "1970-01-01T01:00:00Z"}
    assert client.get("/api/v1/qos", params=edge, headers=h).status_code == 200
    edge = {"metric": "rtt_ms", "from": "2099-12-31T23:00:00Z", "to": "2100-01-01T00:00:00Z"}
    assert client.get("/api/v1/qos", params=edge, headers=h).status_code == 200
    # Naive year-1 times (local time, shifted to UTC, fall before year 1): 422 wherever they go.
    year_1 = {"from": "0001-01-01T00:00:00", "to": "0001-01-01T00:00:00"}
    for path in ("/api/v1/availability", "/api/v1/devices/bts-1/outages"):
        r = client.get(path, params=year_1, headers=h)
        assert r.status_code == 422 and "out of range" in r.json()["detail"], (path, r.text)
    body = {"matchers": ['entity="x"'], "creator": "me", "ends_at": "0001-01-02T00:00:00"}
    r = client.post("/api/v1/silences", json={**body, "starts_at": "0001-01-01T00:00:00"}, headers=h)
    assert r.status_code == 422 and "out of range" in r.json()["detail"], r.text
    for offset in ("1" * 40, str(2**63), str(2**63 - 1)):
        r = client.get("/api/v1/incidents", params={"offset": offset}, headers=h)
        assert r.status_code == (200 if offset == str(2**63 - 1) else 422), (offset, r.text)


def test_deeply_nested_json_is_4xx_not_500(client: TestClient) -> None:
    h = {**auth(ADMIN), "content-type": "application/json"}
    deep = b"[" * 100_000 + b"]" * 100_000
    r = client.post("/api/v1/silences", content=deep, headers=h)
    assert r.status_code == 400, r.text
    r = client.post("/api/v1/units/communes", content=deep, headers=h)
    assert r.status_code == 422 and "nested too deeply" in r.json()["errors"][0]["message"], r.text
    in_a_row = b'[{"code": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]"
    r = client.post("/api/v1/units/communes", content=in_a_row, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["line"] == 1, r.text


def test_absurd_content_length_is_413(client: TestClient) -> None:
    r = client.post(
        "/api/v1/silences",
        content=b"{}",
        headers={"content-length": "9" * 40, "content-type": "application/json"},
    )
    assert r.status_code == 413 and "api.max_body_bytes" in r.json()["detail"]


def test_list_rows_limit(tmp_path: Path) -> None:
    """api.max_list_rows = 100: 100 communes are listed, 101 refused (413) naming the limit."""
    store = SQLiteStore(tmp_path / "netqos.db")
    settings = settings_with_keys()
    settings.api.max_list_rows = 100
    with TestClient(create_app(settings, store)) as c:
        for n in (100, 101):
            with store.transaction() as conn:
                UnitRepo.upsert_communes(
                    conn, [CommuneUnit(f"{i:05d}", f"C{i}", "xa", 21.0, 105.8) for i in range(n)]
                )
            r = c.get("/api/v1/communes", headers=auth(ADMIN))
            if n == 100:
                assert r.status_code == 200 and r.json()["total"] == 100
            else:
                assert (
                    r.status_code == 413 and "101 communes exceed the limit api.max_list_rows (100)" in r.text
                )
    store.close()


def _serve(settings: Settings, store: SQLiteStore) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    settings.api.host = LOOPBACK
    server = uvicorn.Server(server_config(create_app(settings, store), settings.api, port))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_port(port, timeout_s=30)
    return server, thread, f"http://{LOOPBACK}:{port}"


@pytest.mark.parametrize("trusted", [[], ["127.0.0.1"]])
def test_forwarded_for_believed_only_from_trusted_proxies(store: SQLiteStore, trusted: list[str]) -> None:
    settings = settings_with_keys()
    settings.api.trusted_proxies = trusted
    server, thread, url = _serve(settings, store)
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            h = {**auth(ADMIN), "X-Forwarded-For": "203.0.113.9", "content-type": "text/csv"}
            body = "code,name,type,lat,lon\n19001,Xa Proxy,xa,19.9,105.5\n"
            assert http.post("/api/v1/units/communes", content=body, headers=h).status_code == 200
            entries = http.get(
                "/api/v1/audit", params={"action": "units.communes"}, headers=auth(ADMIN)
            ).json()
        assert entries["entries"][0]["client"] == ("203.0.113.9" if trusted else "127.0.0.1")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_docs_load_nothing_from_another_origin(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        for u in urls:
            r = client.get(u)
            assert (r.status_code == 200 and len(r.content) > 1000) or u.endswith(".png"), u
    assert '"validatorUrl": null' in client.get("/docs").text


def test_repeated_asyncio_complaints_are_logged_once_with_a_count() -> None:
    logger = logging.getLogger("test-repeat")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger.addHandler(Keep())
    logger.propagate = False
    f = RepeatFilter(every_s=0.2)
    logger.addFilter(f)
    for _ in range(1000):
        logger.error("socket.accept() out of system resource")
    logger.error("another kind")
    assert records == ["socket.accept() out of system resource", "another kind"]
    time.sleep(0.25)  # the next one of that kind, after every_s
    logger.error("socket.accept() out of system resource")
    assert records[-1].startswith("socket.accept() out of system resource (and 999 more like it")


def test_connection_limit_closes_the_longest_idle_and_silent_ones_time_out(store: SQLiteStore) -> None:
    """api.max_connections = 16: with 16 silent connections open, a 17th (a real request) is
    served and the connection idle longest is closed to make room; the other silent ones are
    closed once api.header_timeout_s has passed without a request."""
    settings = settings_with_keys()
    settings.api.max_connections = 16
    settings.api.header_timeout_s = 3.0
    server, thread, url = _serve(settings, store)
    port = int(url.rsplit(":", 1)[1])
    silent = []
    try:
        for _ in range(16):
            silent.append(socket.create_connection((LOOPBACK, port), timeout=10))
            time.sleep(0.01)  # connected in this order: silent[0] is idle longest
        time.sleep(0.2)
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        assert silent[0].recv(1) == b""  # closed by the server to make room
        silent[1].setblocking(False)
        with pytest.raises(BlockingIOError):  # still open: no data, no end
            silent[1].recv(1)
        silent[1].setblocking(True)
        silent[1].settimeout(10)
        started = time.monotonic()
        for s in silent[2:]:
            s.settimeout(10)
        assert all(s.recv(1) == b"" for s in silent[1:])  # the header timeout
        assert time.monotonic() - started < 10
    finally:
        for s in silent:
            s.close()
        server.should_exit = True
        thread.join(timeout=30)


def test_connection_limit_fits_the_open_files_limit() -> None:
    # 1,024 descriptors are kept for the store, the broker and the logs (half of a small limit).
    assert connections_within(10_000, 20_000) == 10_000
    assert connections_within(10_000, 11_024) == 10_000
    assert connections_within(10_000, 11_023) == 9_999
    assert connections_within(10_000, 2_048) == 1_024
    assert connections_within(10_000, 2_047) == 2_047 - 1_023
    assert connections_within(10_000, 256) == 128
    assert connections_within(10_000, 20) == 16
