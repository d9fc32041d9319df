"""Real receivers for the alerting tests, on free loopback ports.

``WebhookSink``
    A threaded HTTP server that records every POST (body, headers) and answers with a
    status the test sets (500 to play a broken receiver, 200 again once it recovers).
``SmtpSink``
    aiosmtpd's SMTP server (optionally with AUTH LOGIN/PLAIN) keeping every message.
``start_alertmanager``
    The Debian ``prometheus-alertmanager`` with its own config, storage path and no
    clustering (``--cluster.listen-address=``), on a free loopback port.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from alerts.settings import AlertSettings
from collector.events import StateChange
from collector.inventory import Device
from collector.model import ProbeInfo
from collector.store.devices import DeviceRepo, PollRecord
from collector.store.store import Store
from tests.conftest import LOOPBACK, free_port
from tests.services import ManagedProcess, binary


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int  # what the sink answered


class WebhookSink:
    """POSTs land in `received` (answered ones) and `refused` (answered with an error)."""

    def __init__(self) -> None:
        self.status = 200
        self.received: list[Received] = []
        self.refused: list[Received] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with sink._lock:
                    status = sink.status
                    rec = Received(self.path, dict(self.headers.items()), body, status)
                    (sink.received if status < 300 else sink.refused).append(rec)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            # Senders that deliver concurrently (Alertmanager) open many connections at once:
            # the default listen backlog of 5 would drop their SYNs and stall them for seconds.
            request_queue_size = 1024

        self.server = Server((LOOPBACK, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://{LOOPBACK}:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.received]

    def wait_for(self, n: int, timeout_s: float) -> list[Any]:
        """The received bodies once there are at least `n` (or when `timeout_s` is over)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.received) < n:
            time.sleep(0.05)
        return self.bodies()


@dataclass
class SmtpSink:
    """aiosmtpd on a free port; messages (parsed) in `messages`, logins in `logins`."""

    username: str | None = None
    password: str | None = None
    messages: list[Message] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    port: int = 0

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.messages.append(message_from_bytes(envelope.original_content or b""))
        return "250 Message accepted for delivery"

    def _auth(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    def __enter__(self) -> SmtpSink:
        self.port = free_port()
        kw: dict[str, Any] = {}
        if self.username is not None:
            # Loopback only, no TLS in the test: allow AUTH without it.
            kw = {"authenticator": self._auth, "auth_require_tls": False}
        self._controller = Controller(self, hostname=LOOPBACK, port=self.port, **kw)
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def wait_for(self, n: int, timeout_s: float) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.messages) < n:
            time.sleep(0.05)
        return list(self.messages)


ALERTMANAGER = "prometheus-alertmanager"

ALERTMANAGER_CONFIG = """
route:
  receiver: devnull
  group_wait: 1s
receivers:
  - name: devnull
"""


def alertmanager_binary() -> str:
    return binary(
        ALERTMANAGER,
        "/usr/bin/" + ALERTMANAGER,
        hint="run `make test` or `bash deploy/ci/install-system-deps.sh`",
    )


def start_alertmanager(
    workdir: Path, config: str = ALERTMANAGER_CONFIG
) -> tuple[subprocess.Popen[bytes], str]:
    """A real Alertmanager on a free loopback port, clustering off; returns (process, base URL)."""
    port = free_port()
    conf = workdir / "alertmanager.yml"
    conf.write_text(config)
    (workdir / "data").mkdir(exist_ok=True)
    proc = ManagedProcess(
        "alertmanager",
        [
            alertmanager_binary(),
            f"--config.file={conf}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--cluster.listen-address=",
        ],
        log=workdir / "alertmanager.log",
    )
    popen = proc.start()
    base = f"http://{LOOPBACK}:{port}"
    proc.wait_ready(
        lambda: _ready(base), timeout_s=30.0, what=f"alertmanager ready at {base}", interval_s=0.1
    )
    return popen, base


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# -- a small network in a real store, written the way the poller writes it ------------------

T0 = 1_795_852_800_000


def alert_settings(**kw: Any) -> AlertSettings:
    base: dict[str, Any] = {
        "receivers": [{"type": "webhook", "name": "hook", "url": "http://127.0.0.1:9/hook"}],
        "route": {"receivers": ["hook"], "group_wait_s": 0, "group_interval_s": 1},
        "topology_settle_max_s": 60,
    }
    base.update(kw)
    return AlertSettings.model_validate(base)


class Net:
    """A store with a router, its children and a probe, and helpers that write what the poller would."""

    def __init__(self, where: Path | Store, n_children: int = 3) -> None:
        """`where`: an open store (any backend), or the path of a SQLite file to open."""
        self.store = where if isinstance(where, Store) else Store(where)
        self.repo = DeviceRepo(self.store)
        devs = [
            Device(id="rtr", host="127.0.0.1", credentials="c", kind="router", commune="16021", site="AGG")
        ]
        devs += [
            Device(
                id=f"bts-{i}",
                host="127.0.0.1",
                credentials="c",
                kind="bts",
                parent="rtr",
                commune="16021",
                site=f"SITE-{i}",
            )
            for i in range(n_children)
        ]
        self.children = [d.id for d in devs[1:]]
        self.repo.sync_inventory(devs, {d.id: d.kind for d in devs}, {d.id: 10.0 for d in devs})
        self.store.register_probes([ProbeInfo("p-0", commune="16021", site="SITE-0", expected_interval_s=10)])
        for d in devs:
            self.poll(d.id, T0 - 5_000, ok=True)

    def poll(self, dev: str, ts: int, *, ok: bool) -> None:
        self.repo.write([PollRecord(dev, ts, ok, 0.01, error=None if ok else "timeout")], [])

    def change(self, kind: str, entity: str, state: str, ts: int, device_id: str = "") -> None:
        self.repo.write([], [StateChange(kind, entity, state, ts, "poll", "", device_id or entity)])

    def down(self, dev: str, since: int, now: int) -> None:
        self.poll(dev, now, ok=False)
        self.change("device", dev, "down", since)

    def up(self, dev: str, ts: int) -> None:
        self.poll(dev, ts, ok=True)
        self.change("device", dev, "up", ts)
