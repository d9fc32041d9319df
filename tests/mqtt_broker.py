"""A real mosquitto configured like production (``deploy/mosquitto/``), for tests.

``MosquittoBroker`` starts ``/usr/sbin/mosquitto`` in a temporary directory with a config
derived from ``deploy/mosquitto/mosquitto.conf``:

* every option outside the listener blocks is kept (``allow_anonymous false``, persistence,
  queue and size limits, ...), except the paths, ``user`` and logging, which point into the
  temporary directory instead;
* each production listener becomes a plain listener on a free ``127.0.0.1`` port, with its
  TLS options dropped and its other options kept. The loopback listener (1883 in production,
  for the ingest workers) is ``port``; the TLS one (8883, for the probes) is ``probe_port``,
  which keeps e.g. ``use_username_as_clientid``;
* the ACL is ``deploy/mosquitto/acl`` itself (not a copy); the password file is generated
  with ``mosquitto_passwd`` for the users given.

::

    with MosquittoBroker({"p1": "pw1", "netqos-ingest": "pw-i"}) as broker:
        ...connect to broker.host, broker.port with username/password...
        broker.stop(); broker.start()      # same ports, same mosquitto.db: sessions survive
        broker.add_user("p2", "pw2")       # mosquitto_passwd + SIGHUP, waits for the reload
        broker.kill()                      # SIGKILL: only what was autosaved survives

Every wait is bounded (``start_timeout_s``, ``stop_timeout_s``); on failure the error carries
the tail of the broker's log. Nothing listens outside 127.0.0.1.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.services import LOOPBACK, ManagedProcess, ProcessExited, binary, eventually, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = REPO_ROOT / "deploy" / "mosquitto"
DEPLOY_CONF = DEPLOY_DIR / "mosquitto.conf"
DEPLOY_ACL = DEPLOY_DIR / "acl"

# Global options that name paths or the process owner: replaced by the test's own.
_REPLACED_GLOBAL = frozenset(
    {
        "user",
        "pid_file",
        "password_file",
        "acl_file",
        "persistence_location",
        "persistence_file",
        "log_dest",
        "log_type",
        "log_timestamp",
        "log_timestamp_format",
        "include_dir",
    }
)
# Listener options that are about TLS, or about where to listen (the test decides that).
_DROPPED_LISTENER = frozenset(
    {
        "cafile",
        "capath",
        "certfile",
        "keyfile",
        "ciphers",
        "ciphers_tls1.3",
        "crlfile",
        "dhparamfile",
        "require_certificate",
        "tls_engine",
        "tls_engine_kpass_sha1",
        "tls_keyform",
        "tls_version",
        "use_identity_as_username",
        "use_subject_as_username",
        "psk_hint",
        "bind_address",
        "bind_interface",
        "socket_domain",
    }
)
_TLS_MARKERS = frozenset({"certfile", "keyfile", "psk_hint"})
# A username must work with mosquitto_passwd (':' separates the hash) and with the ACL's %u
# patterns (mosquitto never matches a pattern for a name with '+' or '#'; '/' would add levels).
_USERNAME_RE = re.compile(r"[^\s:/+#]{1,64}")
_RELOAD_LINE = "Reloading config"


def mosquitto_binary() -> str:
    return binary(
        "mosquitto", "/usr/sbin/mosquitto", hint="run `make system-deps` (apt-get install mosquitto)"
    )


def mosquitto_passwd_binary() -> str:
    return binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd", hint="it comes with the mosquitto package")


# MQTT 3.1.1 CONNECT, clean session, keepalive 10 s, client id "netqos-ready", no username.
_PING_CLIENT_ID = b"netqos-ready"
_PING_CONNECT = (
    b"\x10"
    + bytes([10 + 2 + len(_PING_CLIENT_ID)])
    + b"\x00\x04MQTT\x04\x02\x00\x0a"
    + len(_PING_CLIENT_ID).to_bytes(2, "big")
    + _PING_CLIENT_ID
)


def mqtt_ready(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether the broker's event loop answers a CONNECT with a CONNACK (any return code: with
    allow_anonymous false it is "not authorised"). A plain TCP connect would not do: the kernel
    completes it from the listen backlog before mosquitto looks at it."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(_PING_CONNECT)
            data = b""
            while len(data) < 4:
                chunk = s.recv(4 - len(data))
                if not chunk:
                    return False
                data += chunk
            return data[0] == 0x20
    except OSError:
        return False


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class ListenerBlock:
    """One ``listener`` section of the production config."""

    port: int
    address: str | None
    options: tuple[str, ...]  # the lines after `listener`, TLS options included
    tls: bool


@dataclass(frozen=True)
class ProductionConfig:
    """``deploy/mosquitto/mosquitto.conf`` split into global option lines and listener blocks."""

    global_lines: tuple[str, ...]
    listeners: tuple[ListenerBlock, ...]

    @classmethod
    def parse(cls, text: str) -> ProductionConfig:
        global_lines: list[str] = []
        listeners: list[ListenerBlock] = []
        current: tuple[int, str | None, list[str]] | None = None

        def close() -> None:
            if current is not None:
                port, address, opts = current
                tls = any(line.split()[0] in _TLS_MARKERS for line in opts)
                listeners.append(ListenerBlock(port, address, tuple(opts), tls))

        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, *rest = line.split()
            if key == "listener":
                close()
                if not rest:
                    raise ValueError(f"listener without a port: {raw!r}")
                current = (int(rest[0]), rest[1] if len(rest) > 1 else None, [])
            elif current is not None:
                current[2].append(line)
            else:
                global_lines.append(line)
        close()
        return cls(tuple(global_lines), tuple(listeners))

    def global_option(self, key: str) -> str | None:
        """The value of the last global `key` line, as mosquitto would use it."""
        value = None
        for line in self.global_lines:
            k, _, v = line.partition(" ")
            if k == key:
                value = v.strip()
        return value

    def loopback_listener(self) -> ListenerBlock:
        for block in self.listeners:
            if not block.tls and block.address in ("127.0.0.1", "::1", "localhost"):
                return block
        raise ValueError("the production config has no plain listener on loopback (for the ingest)")

    def tls_listener(self) -> ListenerBlock:
        for block in self.listeners:
            if block.tls:
                return block
        raise ValueError("the production config has no TLS listener (for the probes)")


class MosquittoBroker:
    """A private mosquitto on free loopback ports, configured like production (module docstring).

    ``users`` maps username -> password (the password file is generated from it). ``port`` is
    the mirror of the production loopback listener (ingest), ``probe_port`` the mirror of the
    production TLS listener (probes), without TLS. ``extra_config`` lines are appended to the
    global options (e.g. ``"autosave_interval 1"``); ``workdir`` (kept afterwards) or a temporary
    directory (removed on exit) holds mosquitto.conf, passwd, mosquitto.db and mosquitto.log.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        conf_template: Path = DEPLOY_CONF,
        acl_file: Path = DEPLOY_ACL,
        extra_config: Sequence[str] = (),
        workdir: Path | str | None = None,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 10.0,
        log_debug: bool = False,
    ) -> None:
        self.host = LOOPBACK
        self.production = ProductionConfig.parse(Path(conf_template).read_text())
        # Fail early if the production config lost one of its two listeners.
        self.production.loopback_listener()
        self.production.tls_listener()
        self.acl_file = Path(acl_file).resolve()
        if not self.acl_file.is_file():
            raise FileNotFoundError(self.acl_file)
        self.extra_config = tuple(extra_config)
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.log_debug = log_debug
        self._users: dict[str, str] = {}
        for name, password in (users or {}).items():
            self._users[_check_username(name)] = _check_password(password)
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="netqos-mqtt-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.probe_port = free_port()
        while self.probe_port == self.port:
            self.probe_port = free_port()
        self._ports_fixed = False  # after the first successful start, restarts reuse the ports
        self._proc: ManagedProcess | None = None
        self.starts = 0
        try:
            self._write_passwd()
        except BaseException:
            if self._own_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    # -- paths and state ---------------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def passwd_path(self) -> Path:
        return self.workdir / "passwd"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "mosquitto.stderr"

    @property
    def db_path(self) -> Path:
        return self.workdir / "mosquitto.db"

    @property
    def users(self) -> dict[str, str]:
        """username -> password, as in the password file (a copy)."""
        return dict(self._users)

    def password(self, username: str) -> str:
        return self._users[username]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines) + "\n--- stderr ---\n" + _tail(self.stderr_path, 10)

    # -- config ---------------------------------------------------------------------------------------

    def config_text(self) -> str:
        lines = [f"# written by tests/mqtt_broker.py from {DEPLOY_CONF.relative_to(REPO_ROOT)}"]
        for line in self.production.global_lines:
            if line.split()[0] not in _REPLACED_GLOBAL:
                lines.append(line)
        # Started as root, mosquitto would switch to the `mosquitto` user, which cannot write
        # our private (0700) directory; as anyone else `user` has no effect.
        lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        lines += [
            f"password_file {self.passwd_path}",
            f"acl_file {self.acl_file}",
            f"persistence_location {self.workdir}/",
            "persistence_file mosquitto.db",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            *(["log_type debug"] if self.log_debug else []),
            *self.extra_config,
        ]
        for block, port in (
            (self.production.loopback_listener(), self.port),
            (self.production.tls_listener(), self.probe_port),
        ):
            lines.append(f"listener {port} {LOOPBACK}")
            lines += [opt for opt in block.options if opt.split()[0] not in _DROPPED_LISTENER]
        return "\n".join(lines) + "\n"

    def _write_passwd(self) -> None:
        # mosquitto_passwd -U hashes a plaintext "user:password" file in place, in one call.
        self.passwd_path.write_text("".join(f"{u}:{p}\n" for u, p in self._users.items()))
        self.passwd_path.chmod(0o600)
        if self._users:
            _run([mosquitto_passwd_binary(), "-U", str(self.passwd_path)])

    # -- users --------------------------------------------------------------------------------------

    def add_user(self, username: str, password: str, *, reload: bool = True) -> None:
        """Add a user (or set its password) with ``mosquitto_passwd -b``; then reload a running
        broker (SIGHUP) and wait until it has reloaded."""
        name = _check_username(username)
        pw = _check_password(password)
        _run([mosquitto_passwd_binary(), "-b", str(self.passwd_path), name, pw])
        self._users[name] = pw
        if reload and self.running:
            self.reload()

    def remove_user(self, username: str, *, reload: bool = True) -> None:
        """Delete a user (``mosquitto_passwd -D``), then reload a running broker."""
        _run([mosquitto_passwd_binary(), "-D", str(self.passwd_path), username])
        self._users.pop(username, None)
        if reload and self.running:
            self.reload()

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads the password and ACL files. Returns once the broker logged
        the reload; it handles the reload before any packet read after that line."""
        proc = self._require_running()
        before = self._count_log(_RELOAD_LINE)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + self.start_timeout_s
        while self._count_log(_RELOAD_LINE) <= before:
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited during reload:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"mosquitto did not reload within {self.start_timeout_s} s:\n{self.log_tail()}"
                )
            time.sleep(0.02)
        # The line is written as the reload starts, in the broker's only thread; an MQTT round
        # trip through its event loop shows the reload is over.
        self._wait_listening(proc, time.monotonic() + self.start_timeout_s)

    def _count_log(self, needle: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except FileNotFoundError:
            return 0

    # -- process --------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start mosquitto (again: on the same ports, with the same mosquitto.db) and wait until
        both listeners accept connections."""
        if self.running:
            return self
        attempts = 1 if self._ports_fixed else 3
        for attempt in range(attempts):
            self.conf_path.write_text(self.config_text())
            proc = self._proc = ManagedProcess(
                "mosquitto",
                [mosquitto_binary(), "-c", str(self.conf_path)],
                log=self.stderr_path,
                cwd=self.workdir,
                stop_timeout_s=self.stop_timeout_s,
            )
            proc.start()
            try:
                self._wait_listening(proc, time.monotonic() + self.start_timeout_s)
            except ProcessExited as exc:
                self._proc = None
                log = self.log_tail()
                if attempt + 1 < attempts and "Address already in use" in log:
                    # Another process took a port between free_port() and mosquitto's bind.
                    self.port, self.probe_port = free_port(), free_port()
                    continue
                raise RuntimeError(f"mosquitto exited at start (rc {exc.returncode}):\n{log}") from None
            except BaseException:
                proc.stop()
                self._proc = None
                raise
            self._ports_fixed = True
            self.starts += 1
            return self
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """SIGTERM and wait: mosquitto writes mosquitto.db as it exits. SIGKILL if it does not exit
        within stop_timeout_s (then only the last autosave is on disk)."""
        if self._proc is not None:
            self._proc.stop()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL, like a crash: nothing is saved beyond the last autosave (autosave_interval)."""
        if self._proc is not None:
            self._proc.kill()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the broker and remove its directory (if it is ours)."""
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _wait_listening(self, proc: ManagedProcess, deadline: float) -> None:
        for port in (self.port, self.probe_port):
            try:
                eventually(
                    lambda port=port: mqtt_ready(self.host, port),
                    timeout_s=max(0.0, deadline - time.monotonic()),
                    what=f"mosquitto listening on {self.host}:{port}",
                    interval_s=0.02,
                    process=proc,
                )
            except TimeoutError as exc:
                raise TimeoutError(
                    f"{exc} (start_timeout_s {self.start_timeout_s}):\n{self.log_tail()}"
                ) from None

    def _require_running(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.proc is None or self._proc.returncode is not None:
            raise RuntimeError("mosquitto is not running")
        return self._proc.proc


def _check_username(name: str) -> str:
    if not _USERNAME_RE.fullmatch(name):
        raise ValueError(f"username {name!r}: 1-64 characters, none of whitespace : / + #")
    return name


def _check_password(password: str) -> str:
    if not password or any(c in password for c in "\n\r\0"):
        raise ValueError("password must be non-empty, without newlines or NUL")
    return password


def _run(argv: list[str]) -> None:
    res = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    if res.returncode != 0:
        shown = [a if i < 4 else "***" for i, a in enumerate(argv)] if "-b" in argv else argv
        raise RuntimeError(f"{shown} failed (rc {res.returncode}): {res.stderr.decode(errors='replace')}")
