"""Real net-snmp agents (``/usr/sbin/snmpd``) for tests and benchmarks.

Two helpers, both context managers and both usable from pytest fixtures:

``SnmpdAgent``
    One snmpd on a free UDP port of 127.0.0.1 (or ``::1``), in its own temporary directory
    (config, pid file, persistent dir, log). It serves a v2c read community and one SNMPv3
    authPriv user, and can be stopped and started again on the same port, paused
    (SIGSTOP: it stops answering without closing anything) and resumed. Its IF-MIB shows
    the interfaces of the network namespace it runs in.

``NetnsIfTable``
    A network namespace of our own holding K veth pairs (both ends inside, no addresses),
    so that an agent running in it has an ifTable/ifXTable of 2K + 1 rows (lo included),
    e.g. 201 rows for K = 100, without touching the host's interfaces.

Why the client goes into the namespace (and nothing crosses it)
    The agent inside the namespace listens on the namespace's own loopback, 127.0.0.1, which
    the host cannot reach. Bridging it to the host would need a veth link with addresses
    on both sides, i.e. a host-side address that is neither loopback nor inside a namespace
    we created; snmpd cannot serve UDP on a unix socket either, and an agent in the host
    namespace cannot show another namespace's interfaces. So the *client* side joins the
    namespace instead, and all SNMP traffic stays on the namespace's loopback:

    * subprocesses (``snmpbulkwalk``, ``prometheus-snmp-exporter``, ...) are started with
      ``NetnsIfTable.exec_argv(argv)`` = ``ip netns exec NAME argv...``;
    * Python code opens its sockets from a thread that entered the namespace:
      ``with table.entered(): ...`` (or ``enter_netns(name)`` for a worker thread for
      good). ``setns(2)`` moves only the calling thread, a socket stays in the namespace
      it was created in, and threads and subprocesses started from an entered thread are
      in the namespace too. The rest of the process is not affected.

    The veth pairs are created directly inside the namespace (``ip -n NAME link add``), so
    they never appear on the host, and need no addresses: the IF-MIB lists them anyway.
    Cleanup (always, also after errors) stops the agents, deletes the veths and the
    namespace; namespaces left behind by a killed run (``netqos-t-<pid>-<n>`` whose pid
    is gone) are removed the next time a NetnsIfTable is created.

Supported SNMPv3 algorithms (net-snmp 5.9.3 as packaged by Debian, checked with
``createUser`` and ``snmpget``): auth MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512; priv
DES, AES (AES-128), AES-192, AES-256 (Blumenthal key extension; ``AES256`` is accepted as a
spelling too). Unknown names are rejected here before snmpd would silently create an
unusable user (it does so for e.g. ``AES256C``).

Every wait is bounded by count and time; nothing listens outside 127.0.0.1 / ::1 or a
namespace created here.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.services import LOOPBACK, ManagedProcess, ProcessExited, eventually, free_port

SNMPD = "/usr/sbin/snmpd"
IP = "ip"
NETNS_PREFIX = "netqos-t-"
NETNS_RUN_DIR = Path("/run/netns")

AUTH_PROTOCOLS = ("MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512")
PRIV_PROTOCOLS = ("DES", "AES", "AES-192", "AES-256")
_AUTH_ALIASES = {
    "SHA1": "SHA",
    "SHA224": "SHA-224",
    "SHA256": "SHA-256",
    "SHA384": "SHA-384",
    "SHA512": "SHA-512",
}
_PRIV_ALIASES = {"AES128": "AES", "AES-128": "AES", "AES192": "AES-192", "AES256": "AES-256"}

SYS_NAME_OID = "1.3.6.1.2.1.1.5.0"
SYS_UPTIME_OID = "1.3.6.1.2.1.1.3.0"
IF_TABLE_OID = "1.3.6.1.2.1.2.2"
IF_INDEX_OID = "1.3.6.1.2.1.2.2.1.1"
IF_XTABLE_OID = "1.3.6.1.2.1.31.1.1"

_CLONE_NEWNET = 0x40000000
_MAX_PAIRS = 2000
_MAX_LOG_TAIL = 200
_ns_counter = itertools.count(1)
_ns_lock = threading.Lock()


class SnmpdError(RuntimeError):
    """snmpd is missing, did not start, or did not stop."""


class NetnsUnavailable(SnmpdError):
    """Network namespaces cannot be used here (not root, no `ip`, or `ip netns add` fails)."""


# -- small utilities ----------------------------------------------------------------------


def snmpd_binary() -> str:
    path = SNMPD if os.access(SNMPD, os.X_OK) else shutil.which("snmpd")
    if path is None:
        raise SnmpdError(
            "snmpd is not installed: run `make test` or `bash deploy/ci/install-system-deps.sh` "
            "(apt-get install snmpd snmp)"
        )
    return path


def free_udp_port(host: str = LOOPBACK) -> int:
    """A UDP port that nothing is bound to on `host` right now (in this thread's netns)."""
    return free_port(host, "udp")


def free_tcp_port(host: str = LOOPBACK) -> int:
    return free_port(host, "tcp")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-min(lines, _MAX_LOG_TAIL) :])


# -- network namespaces: thread-level setns --------------------------------------------------

_libc: Any = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter_netns(name: str) -> None:
    """Move the calling thread (only it) into network namespace `name`, for good.

    For worker threads (e.g. a ThreadPoolExecutor initializer); see `netns_entered` for a
    scoped version. Sockets created afterwards by this thread live in that namespace.
    """
    fd = os.open(NETNS_RUN_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def netns_entered(name: str | None) -> Iterator[None]:
    """Run the block with the calling thread inside netns `name` (None: stay where it is)."""
    if name is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter_netns(name)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def _run_ip(
    args: Sequence[str], *, timeout_s: float = 30.0, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [IP, *args], input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and proc.returncode != 0:
        raise SnmpdError(f"`ip {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def check_netns_support() -> None:
    """Raise NetnsUnavailable with a clear reason unless we are root and `ip netns` exists."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root (ip netns add); run as root")
    if shutil.which(IP) is None:
        raise NetnsUnavailable("`ip` (iproute2) is not installed")
    proc = subprocess.run([IP, "netns", "list"], capture_output=True, text=True, timeout=10, check=False)
    if proc.returncode != 0:
        raise NetnsUnavailable(f"`ip netns list` failed: {proc.stderr.strip()}")


def netns_unavailable_reason() -> str | None:
    """None if `NetnsIfTable` can be used here, else why not (for pytest.skip)."""
    try:
        check_netns_support()
    except NetnsUnavailable as exc:
        return str(exc)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> list[str]:
    """Delete `netqos-t-<pid>-<n>` namespaces whose creating process no longer exists."""
    removed: list[str] = []
    proc = _run_ip(["netns", "list"], check=False, timeout_s=10)
    for line in proc.stdout.splitlines()[:10_000]:
        name = line.split()[0] if line.split() else ""
        if not name.startswith(NETNS_PREFIX):
            continue
        parts = name[len(NETNS_PREFIX) :].split("-")
        if len(parts) != 2 or not parts[0].isdigit():
            continue
        if int(parts[0]) == os.getpid() or _pid_alive(int(parts[0])):
            continue
        if _run_ip(["netns", "del", name], check=False, timeout_s=10).returncode == 0:
            removed.append(name)
    return removed


# -- a minimal SNMPv2c GET over UDP, for readiness checks -------------------------------------


def _ber_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _ber_len(len(payload)) + payload


def _ber_int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def _ber_oid(oid: str) -> bytes:
    arcs = [int(a) for a in oid.strip(".").split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _read_tlv(buf: bytes, off: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the TLV at `off`; raises ValueError if truncated."""
    if off + 2 > len(buf):
        raise ValueError("truncated")
    tag, first = buf[off], buf[off + 1]
    off += 2
    if first & 0x80:
        n = first & 0x7F
        if n == 0 or n > 4 or off + n > len(buf):
            raise ValueError("bad length")
        length = int.from_bytes(buf[off : off + n], "big")
        off += n
    else:
        length = first
    if off + length > len(buf):
        raise ValueError("truncated")
    return tag, off, off + length


def v2c_get_request(community: str, request_id: int, oid: str = SYS_UPTIME_OID) -> bytes:
    varbind = _tlv(0x30, _ber_oid(oid) + b"\x05\x00")
    pdu = _tlv(0xA0, _ber_int(request_id) + _ber_int(0) + _ber_int(0) + _tlv(0x30, varbind))
    return _tlv(0x30, _ber_int(1) + _tlv(0x04, community.encode()) + pdu)


def _is_response(buf: bytes, request_id: int) -> bool:
    try:
        tag, start, _ = _read_tlv(buf, 0)
        if tag != 0x30:
            return False
        _, _, off = _read_tlv(buf, start)  # version
        _, _, off = _read_tlv(buf, off)  # community
        tag, pstart, _ = _read_tlv(buf, off)
        if tag != 0xA2:
            return False
        tag, s, e = _read_tlv(buf, pstart)
        if tag != 0x02 or int.from_bytes(buf[s:e], "big", signed=True) != request_id:
            return False
        tag, s, e = _read_tlv(buf, e)  # error-status
        return tag == 0x02 and int.from_bytes(buf[s:e], "big", signed=True) == 0
    except ValueError:
        return False


def snmp_v2c_answers(
    host: str, port: int, community: str, *, timeout_s: float = 0.5, netns: str | None = None
) -> bool:
    """True if a v2c GET of sysUpTime.0 to host:port gets a clean response within timeout_s."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with netns_entered(netns):
        sock = socket.socket(family, socket.SOCK_DGRAM)
    with sock:
        request_id = secrets.randbelow(2**31 - 1) + 1
        deadline = time.monotonic() + timeout_s
        sock.sendto(v2c_get_request(community, request_id), (host, port))
        for _ in range(100):  # stray datagrams are ignored, but not forever
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except TimeoutError:
                return False
            except OSError:  # e.g. ECONNREFUSED: nothing bound on the port
                return False
            if _is_response(data, request_id):
                return True
    return False


# -- the agent --------------------------------------------------------------------------------


@dataclass(frozen=True)
class V3User:
    name: str
    auth_protocol: str
    auth_password: str
    priv_protocol: str
    priv_password: str

    def snmpcmd_args(self) -> list[str]:
        """The net-snmp command-line options (snmpget, snmpbulkwalk...) for this user."""
        return [
            "-v3",
            "-l",
            "authPriv",
            "-u",
            self.name,
            "-a",
            self.auth_protocol,
            "-A",
            self.auth_password,
            "-x",
            self.priv_protocol,
            "-X",
            self.priv_password,
        ]


def _normalise(value: str, allowed: Sequence[str], aliases: Mapping[str, str], what: str) -> str:
    v = value.strip().upper()
    v = aliases.get(v, v)
    if v not in allowed:
        raise ValueError(f"unsupported {what} {value!r}; this snmpd supports {', '.join(allowed)}")
    return v


def _check_password(pw: str, what: str) -> str:
    if len(pw) < 8:
        raise ValueError(f"{what} must be at least 8 characters (net-snmp rejects shorter ones)")
    if any(c.isspace() for c in pw) or '"' in pw:
        raise ValueError(f"{what} must not contain spaces or quotes")
    return pw


class SnmpdAgent:
    """A private snmpd on a free loopback UDP port (see the module docstring).

    ``with SnmpdAgent(sys_name="edge-1") as agent: ...`` starts it and waits until it answers;
    ``stop()``/``start()`` restart it on the same port, ``pause()``/``resume()`` freeze and
    thaw it, leaving the context terminates it (SIGTERM, then SIGKILL). ``workdir`` (kept
    afterwards) or a temporary directory (removed on exit) holds snmpd.conf, snmpd.pid,
    the persistent dir and snmpd.log.
    """

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int | None = None,
        community: str | None = None,
        v3_user: str = "netqos",
        auth_protocol: str = "SHA-256",
        auth_password: str | None = None,
        priv_protocol: str = "AES",
        priv_password: str | None = None,
        sys_name: str | None = None,
        sys_location: str | None = None,
        sys_contact: str | None = None,
        extra_config: Sequence[str] = (),
        workdir: Path | str | None = None,
        netns: str | None = None,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        if host not in (LOOPBACK, "::1") and not (netns and host.startswith("127.")):
            raise ValueError("SnmpdAgent listens on 127.0.0.1 or ::1 only")
        self.host = host
        self.netns = netns
        if port is None:
            with netns_entered(netns):
                port = free_udp_port(host)
        self.port: int = port
        self.community: str = community if community is not None else "c-" + secrets.token_hex(6)
        if not self.community or any(c.isspace() for c in self.community):
            raise ValueError("community must be a non-empty string without spaces")
        self.v3 = V3User(
            name=v3_user,
            auth_protocol=_normalise(auth_protocol, AUTH_PROTOCOLS, _AUTH_ALIASES, "auth protocol"),
            auth_password=_check_password(auth_password or "a-" + secrets.token_hex(8), "auth password"),
            priv_protocol=_normalise(priv_protocol, PRIV_PROTOCOLS, _PRIV_ALIASES, "priv protocol"),
            priv_password=_check_password(priv_password or "p-" + secrets.token_hex(8), "priv password"),
        )
        self.sys_name = sys_name
        self.sys_location = sys_location
        self.sys_contact = sys_contact
        self.extra_config = tuple(extra_config)
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._own_dir = workdir is None
        self._dir_arg = Path(workdir) if workdir is not None else None
        self.workdir: Path | None = None
        self._proc: ManagedProcess | None = None
        self._paused = False
        self.starts = 0

    # -- paths and addresses ---------------------------------------------------------------

    def _ensure_dir(self) -> Path:
        if self.workdir is None:
            if self._dir_arg is None:
                self.workdir = Path(tempfile.mkdtemp(prefix="netqos-snmpd-"))
            else:
                self._dir_arg.mkdir(parents=True, exist_ok=True)
                self.workdir = self._dir_arg
        return self.workdir

    @property
    def conf_path(self) -> Path:
        return self._ensure_dir() / "snmpd.conf"

    @property
    def log_path(self) -> Path:
        return self._ensure_dir() / "snmpd.log"

    @property
    def pid_path(self) -> Path:
        return self._ensure_dir() / "snmpd.pid"

    @property
    def persistent_dir(self) -> Path:
        return self._ensure_dir() / "persist"

    @property
    def target(self) -> str:
        """The agent address as net-snmp commands take it, e.g. ``udp:127.0.0.1:16100``."""
        return f"udp6:[{self.host}]:{self.port}" if ":" in self.host else f"udp:{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def paused(self) -> bool:
        return self._paused

    def v2c_args(self) -> list[str]:
        return ["-v2c", "-c", self.community]

    def v3_args(self) -> list[str]:
        return self.v3.snmpcmd_args()

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` run where this agent is reachable (inside its netns, if it has one)."""
        return [IP, "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    # -- config -----------------------------------------------------------------------------

    def config_text(self) -> str:
        v6 = ":" in self.host
        lines = [
            "# written by tests/snmpd.py",
            f"agentAddress {self.target}",
            f"{'rocommunity6' if v6 else 'rocommunity'} {self.community} default",
            (
                f"createUser {self.v3.name} {self.v3.auth_protocol} {self.v3.auth_password} "
                f"{self.v3.priv_protocol} {self.v3.priv_password}"
            ),
            f"rouser {self.v3.name} priv",
            "dontLogTCPWrappersConnects yes",
        ]
        for key, value in (
            ("sysName", self.sys_name),
            ("sysLocation", self.sys_location),
            ("sysContact", self.sys_contact),
        ):
            if value is not None:
                if "\n" in value:
                    raise ValueError(f"{key} must be one line")
                lines.append(f"{key} {value}")
        lines.extend(self.extra_config)
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        """The snmpd command line (inside ``ip netns exec`` when the agent has a netns).

        ``-C`` ignores the system's config files, so the persistent file snmpd wrote at its
        last shutdown is passed explicitly after a restart: the agent then keeps its
        snmpEngineID and increments snmpEngineBoots, like a rebooted device.
        """
        conf = str(self.conf_path)
        persisted = self.persistent_dir / "snmpd.conf"
        if persisted.exists() and "," not in str(persisted):
            conf = f"{conf},{persisted}"
        return self.exec_argv(
            [
                snmpd_binary(),
                "-f",
                "-Lo",
                "-C",
                "-m",
                "",
                "-I",
                "-smux",
                "-c",
                conf,
                "-p",
                str(self.pid_path),
                f"--persistentDir={self.persistent_dir}",
            ]
        )

    # -- lifecycle --------------------------------------------------------------------------

    def answers(self, timeout_s: float = 0.5) -> bool:
        """True if the agent answers a v2c GET within timeout_s (False while paused/stopped)."""
        return snmp_v2c_answers(self.host, self.port, self.community, timeout_s=timeout_s, netns=self.netns)

    def start(self) -> Self:
        """Start (or start again, on the same port) and wait until it answers."""
        if self._proc is not None:
            if self._proc.running:
                raise SnmpdError(f"snmpd already running (pid {self._proc.pid})")
            self._reap()
        self._ensure_dir()
        self.persistent_dir.mkdir(exist_ok=True)
        self.conf_path.write_text(self.config_text())
        self.conf_path.chmod(0o600)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- tests/snmpd.py: start #{self.starts} on {self.target} ---\n".encode())
        proc = self._proc = ManagedProcess(
            "snmpd", self.command(), log=self.log_path, stop_timeout_s=self.stop_timeout_s
        )
        try:
            proc.start()
        except OSError:
            self._reap()
            raise
        try:
            eventually(
                lambda: self.answers(timeout_s=0.2),
                timeout_s=self.start_timeout_s,
                what=f"snmpd answering on {self.target}",
                interval_s=0.02,
                process=proc,
            )
        except ProcessExited as exc:
            self._reap()
            raise SnmpdError(
                f"snmpd exited with status {exc.returncode} at start; log tail:\n{self.log_tail()}"
            ) from None
        except TimeoutError:
            self._terminate()
            raise SnmpdError(
                f"snmpd did not answer on {self.target} within {self.start_timeout_s} s; "
                f"log tail:\n{self.log_tail()}"
            ) from None
        return self

    def _reap(self) -> None:
        self._proc = None
        self._paused = False

    def _terminate(self) -> None:
        """SIGTERM (and SIGCONT: a paused agent handles SIGTERM only when thawed), SIGKILL
        after stop_timeout_s."""
        if self._proc is not None:
            self._proc.stop()
        self._reap()

    def stop(self) -> None:
        """Terminate the agent (SIGTERM, SIGKILL after stop_timeout_s); the port stays ours."""
        self._terminate()

    def pause(self) -> None:
        """SIGSTOP: the agent keeps its socket but stops answering."""
        pid = self.pid
        if pid is None:
            raise SnmpdError("snmpd is not running")
        os.kill(pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        pid = self.pid
        if pid is None:
            raise SnmpdError("snmpd is not running")
        os.kill(pid, signal.SIGCONT)
        self._paused = False

    def wait_answering(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        for _ in range(10_000):
            if self.answers(timeout_s=0.2):
                return
            if time.monotonic() > deadline:
                break
        raise SnmpdError(f"snmpd on {self.target} does not answer; log tail:\n{self.log_tail()}")

    def close(self) -> None:
        """Stop, and remove the working directory if it was a temporary one."""
        try:
            self._terminate()
        finally:
            if self._own_dir and self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SnmpdAgent({self.target}, netns={self.netns!r}, pid={self.pid})"


# -- a namespace with a big interface table ---------------------------------------------------


class NetnsIfTable:
    """A network namespace with `pairs` veth pairs and (by default) an SnmpdAgent inside.

    ``with NetnsIfTable(100) as t:`` gives ``t.agent`` whose ifTable has 201 rows
    (``t.interface_count``). Reach it from inside the namespace only: ``t.exec_argv(argv)``
    for commands, ``with t.entered():`` for sockets made by this thread (module docstring).
    """

    def __init__(
        self,
        pairs: int = 100,
        *,
        start_agent: bool = True,
        agent_kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        if not 0 <= pairs <= _MAX_PAIRS:
            raise ValueError(f"pairs must be within 0..{_MAX_PAIRS}")
        self.pairs = pairs
        with _ns_lock:
            self.name = name or f"{NETNS_PREFIX}{os.getpid()}-{next(_ns_counter)}"
        if len(self.name) > 64 or "/" in self.name:
            raise ValueError("bad namespace name")
        self.timeout_s = timeout_s
        self._start_agent = start_agent
        self._agent_kwargs = dict(agent_kwargs or {})
        self.agents: list[SnmpdAgent] = []
        self.agent: SnmpdAgent | None = None
        self.created = False

    @property
    def interface_count(self) -> int:
        """Rows in the namespace's ifTable: two per veth pair, plus lo."""
        return 2 * self.pairs + 1

    @property
    def exec_prefix(self) -> list[str]:
        return [IP, "netns", "exec", self.name]

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return [*self.exec_prefix, *argv]

    def run(self, argv: Sequence[str], *, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and capture its output (no check)."""
        return subprocess.run(
            self.exec_argv(argv), capture_output=True, text=True, timeout=timeout_s, check=False
        )

    def entered(self) -> contextlib.AbstractContextManager[None]:
        """The calling thread inside the namespace for the duration of the block."""
        return netns_entered(self.name)

    def free_udp_port(self, host: str = LOOPBACK) -> int:
        with self.entered():
            return free_udp_port(host)

    def free_tcp_port(self, host: str = LOOPBACK) -> int:
        with self.entered():
            return free_tcp_port(host)

    def link_names(self) -> list[str]:
        return [n for i in range(self.pairs) for n in (f"v{i}a", f"v{i}b")]

    def create(self) -> None:
        check_netns_support()
        with contextlib.suppress(SnmpdError, subprocess.SubprocessError):
            remove_stale_namespaces()
        add = _run_ip(["netns", "add", self.name], check=False, timeout_s=10)
        if add.returncode != 0:
            raise NetnsUnavailable(f"`ip netns add {self.name}` failed: {add.stderr.strip()}")
        self.created = True
        batch = "".join(f"link add v{i}a type veth peer name v{i}b\n" for i in range(self.pairs))
        if batch:
            _run_ip(["-n", self.name, "-batch", "-"], stdin=batch, timeout_s=self.timeout_s)
        up = "link set lo up\n" + "".join(f"link set {n} up\n" for n in self.link_names())
        _run_ip(["-n", self.name, "-batch", "-"], stdin=up, timeout_s=self.timeout_s)
        links = _run_ip(["-n", self.name, "-o", "link", "show"], timeout_s=self.timeout_s)
        count = len(links.stdout.splitlines())
        if count != self.interface_count:
            raise SnmpdError(f"netns {self.name} has {count} links, expected {self.interface_count}")

    def new_agent(self, **kwargs: Any) -> SnmpdAgent:
        """An SnmpdAgent (not started yet) that will run in this namespace; stopped on exit."""
        if not self.created:
            raise SnmpdError("namespace not created yet")
        agent = SnmpdAgent(netns=self.name, **{**self._agent_kwargs, **kwargs})
        self.agents.append(agent)
        return agent

    def close(self) -> None:
        """Stop the agents, delete the veths and the namespace (errors collected, all tried)."""
        errors: list[str] = []
        for agent in reversed(self.agents):
            try:
                agent.close()
            except Exception as exc:
                errors.append(f"agent {agent!r}: {exc}")
        self.agents.clear()
        self.agent = None
        if self.created:
            pids = _run_ip(["netns", "pids", self.name], check=False, timeout_s=10).stdout.split()
            if self.pairs and pids:
                # Deleting a namespace nobody is in destroys its veths at once (and quickly);
                # a process still inside (not ours to kill) would keep it alive, so then the
                # veths are deleted one by one first (~15 ms each). -force: go on past errors.
                batch = "".join(f"link del v{i}a\n" for i in range(self.pairs))
                _run_ip(
                    ["-force", "-n", self.name, "-batch", "-"],
                    stdin=batch,
                    check=False,
                    timeout_s=self.timeout_s,
                )
                errors.append(f"processes still in netns {self.name}: {' '.join(pids[:20])}")
            proc = _run_ip(["netns", "del", self.name], check=False, timeout_s=10)
            if proc.returncode != 0 and (NETNS_RUN_DIR / self.name).exists():
                errors.append(f"ip netns del {self.name}: {proc.stderr.strip()}")
            else:
                self.created = False
        if errors:
            raise SnmpdError("cleanup failed: " + "; ".join(errors))

    def __enter__(self) -> Self:
        try:
            self.create()
            if self._start_agent:
                self.agent = self.new_agent()
                self.agent.start()
        except BaseException:
            with contextlib.suppress(Exception):
                self.close()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NetnsIfTable({self.name!r}, pairs={self.pairs})"


def netns_exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


__all__ = [
    "AUTH_PROTOCOLS",
    "IF_INDEX_OID",
    "IF_TABLE_OID",
    "IF_XTABLE_OID",
    "LOOPBACK",
    "PRIV_PROTOCOLS",
    "SYS_NAME_OID",
    "SYS_UPTIME_OID",
    "NetnsIfTable",
    "NetnsUnavailable",
    "SnmpdAgent",
    "SnmpdError",
    "V3User",
    "check_netns_support",
    "enter_netns",
    "free_tcp_port",
    "free_udp_port",
    "netns_entered",
    "netns_exists",
    "netns_unavailable_reason",
    "remove_stale_namespaces",
    "snmp_v2c_answers",
    "snmpd_binary",
    "v2c_get_request",
]
