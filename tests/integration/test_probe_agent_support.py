"""Local stand-ins for the probe agent's tests (no test functions here).

Everything listens on 127.0.0.1 only: an HTTP server (download, upload, status codes and
the server's /api/v1/ingest), a DNS responder, a TCP listener, and mosquitto processes
that a test may stop and start again (the session `mosquitto` fixture must stay up).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import yaml

from tests.conftest import LOOPBACK, free_port, mosquitto_binary, wait_port

# --- HTTP -------------------------------------------------------------------------------


@dataclass
class IngestPost:
    """One POST to /api/v1/ingest as the test server saw it."""

    authorization: str | None
    body: dict[str, Any]
    status: int


@dataclass
class HttpState:
    """What the test HTTP server was asked, and how it should answer /api/v1/ingest."""

    uploads: list[int] = field(default_factory=list)
    ingest: list[IngestPost] = field(default_factory=list)
    # Status codes for the next /api/v1/ingest POSTs, in order; 202 once exhausted.
    ingest_script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: HttpState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")
            if parts[0] == "bytes" and len(parts) == 2:
                n = int(parts[1])
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(n))
                self.end_headers()
                block = b"\x5a" * 65536
                while n > 0:
                    take = min(n, len(block))
                    self.wfile.write(block[:take])
                    n -= take
            elif parts[0] == "status" and len(parts) == 2:
                self._reply(int(parts[1]), b'{"detail": "as asked"}')
            elif parts[0] == "slow" and len(parts) == 2:
                time.sleep(float(parts[1]))
                self._reply(200, b"late")
            else:
                self._reply(200, b"ok", "text/plain")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received = 0
            chunks: list[bytes] = []
            while received < length:
                chunk = self.rfile.read(min(1 << 16, length - received))
                if not chunk:
                    break
                received += len(chunk)
                if self.path == "/api/v1/ingest":
                    chunks.append(chunk)
            if self.path == "/upload":
                with state.lock:
                    state.uploads.append(received)
                self._reply(200, json.dumps({"received": received}).encode())
            elif self.path == "/api/v1/ingest":
                with state.lock:
                    status = state.ingest_script.pop(0) if state.ingest_script else 202
                    state.ingest.append(
                        IngestPost(self.headers.get("Authorization"), json.loads(b"".join(chunks)), status)
                    )
                detail = {409: "duplicate seq", 422: "measurements.0.metrics: bad"}.get(status, "")
                self._reply(status, json.dumps({"detail": detail}).encode())
            else:
                self._reply(404, b'{"detail": "no such path"}')

    return Handler


@dataclass
class LocalHttp:
    """A running test HTTP server: base URL and what it recorded."""

    url: str
    state: HttpState
    port: int


@contextmanager
def local_http() -> Iterator[LocalHttp]:
    """An HTTP/1.1 server on 127.0.0.1 in a thread: /bytes/N, /upload, /status/N, /slow/S, /api/v1/ingest."""
    state = HttpState()
    server = ThreadingHTTPServer((LOOPBACK, 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    port = int(server.server_address[1])
    try:
        yield LocalHttp(f"http://{LOOPBACK}:{port}", state, port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- DNS --------------------------------------------------------------------------------


class DnsResponder(asyncio.DatagramProtocol):
    """Answers A queries with 127.0.0.1; names starting with `silent.` get no answer,
    `fail.` get SERVFAIL, `nx.` get NXDOMAIN."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport is not a registered DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        qid, _flags, qdcount = struct.unpack_from("!HHH", data)
        pos, labels = 12, []
        while data[pos]:
            n = data[pos]
            labels.append(data[pos + 1 : pos + 1 + n].decode())
            pos += 1 + n
        question = data[12 : pos + 5]
        name = ".".join(labels)
        self.queries.append(name)
        if name.startswith("silent."):
            return
        rcode = 2 if name.startswith("fail.") else 3 if name.startswith("nx.") else 0
        ancount = 1 if rcode == 0 else 0
        header = struct.pack("!HHHHHH", qid, 0x8180 | rcode, qdcount, ancount, 0, 0)
        answer = b""
        if ancount:
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
        assert self.transport is not None
        self.transport.sendto(header + question + answer, addr)


async def start_dns() -> tuple[asyncio.DatagramTransport, DnsResponder, int]:
    """A DnsResponder on 127.0.0.1 (free UDP port): (transport, protocol, port)."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(DnsResponder, local_addr=(LOOPBACK, 0))
    return transport, proto, int(transport.get_extra_info("sockname")[1])


async def start_tcp_listener() -> tuple[asyncio.Server, int]:
    """A TCP server on 127.0.0.1 that accepts and closes every connection: (server, port)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, LOOPBACK, 0)
    return server, int(server.sockets[0].getsockname()[1])


# --- mosquitto that a test may stop and restart ------------------------------------------


@dataclass
class OwnBroker:
    """A mosquitto this test owns, on a fixed port, with persistence so sessions survive restarts."""

    port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.directory / "mosquitto.conf"

    def start(self) -> None:
        """Start (again) on the same port; persistent sessions come back from disk."""
        assert self.proc is None
        self.directory.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} {LOOPBACK}",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {self.directory}/",
                    "max_queued_messages 0",
                    "max_inflight_messages 100",
                    # As root, mosquitto would switch to user `mosquitto`, which cannot write the
                    # persistence file into pytest's private tmp dirs: stay who we are.
                    *(["user root"] if os.geteuid() == 0 else []),
                    f"log_dest file {self.directory / 'mosquitto.log'}",
                    "log_type error",
                    "log_type warning",
                    "",
                ]
            )
        )
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port)

    def stop(self) -> None:
        """SIGTERM: mosquitto writes its persistence file (sessions, queued messages) and exits."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@contextmanager
def own_broker(directory: Path, *, start: bool = True) -> Iterator[OwnBroker]:
    """An OwnBroker on a free port (started unless `start` is False), stopped at the end."""
    broker = OwnBroker(free_port(), directory)
    if start:
        broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# --- configuration ----------------------------------------------------------------------


def probe_config_dict(
    probe_id: str,
    *,
    port: int,
    queue_path: Path,
    tests: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A probe configuration for tests: loopback broker, fast reconnects, small batches."""
    data: dict[str, Any] = {
        "probe_id": probe_id,
        "operator": "viettel",
        "technology": "4G",
        "broker": {
            "host": LOOPBACK,
            "port": port,
            "keepalive_s": 5,
            "timeout_s": 5,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
        },
        "queue": {"path": str(queue_path)},
        "batch": {"max_measurements": 20, "max_wait_s": 0.3},
        "tests": tests or [],
    }
    data.update(extra)
    return data


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write a probe YAML file (mode 600: it may hold secrets)."""
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path


async def wait_for(pred: Callable[[], bool], timeout_s: float = 30.0, step_s: float = 0.05) -> bool:
    """Poll `pred` until true or `timeout_s`; its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step_s)
    return pred()
