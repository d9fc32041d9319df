"""SNMP sessions: v1/v2c through our compact BER codec, v3 through gufo-snmp.

A walk returns columnar data (numpy arrays per column), never a Python object per
varbind on the v2c path: the numba decoder writes each response straight into arrays.

v2c: one connected UDP socket per session, so the kernel only delivers datagrams from
the agent we asked (a spoofed source never reaches the decoder), and sessions need no
shared request-id table. Retries resend the same request id, so a late answer to the
first try still counts.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from collector.inventory import Credential, Device
from collector.snmp.ber import (
    Columns,
    SnmpDecodeError,
    decode_response_columnar,
    encode_get,
    encode_getbulk,
    encode_getnext,
)

OID = tuple[int, ...]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_COUNTER64 = 0x46
TAG_EXCEPTIONS = 0x80  # noSuchObject 0x80, noSuchInstance 0x81, endOfMibView 0x82
PDU_RESPONSE = 0xA2
MAX_WALK_REQUESTS = 100_000  # bounds a walk against an agent that never ends a table


class SnmpError(Exception):
    """A poll failed: `reason` is a short machine word for /metrics (timeout, decode, ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class RowIds:
    """Stable row ids of table rows, from each row's whole index suffix (the OID after the column).

    A row of a table indexed by one sub-identifier (ifIndex) has that sub-identifier as its id
    (0 .. 2**32-1, so ifIndex 4194304256 stays 4194304256). A row indexed by several
    (ifIndex.ontId, timeMark.localPort.remIndex) gets a negative id, interned here and never
    reused, so the columns of a poll join on the same id and the next poll finds the same
    row under the same id, whatever rows appeared, vanished or have holes in between.
    One `RowIds` lives as long as the device's poller state (counters and states are keyed
    by these ids); `prune` drops ids of rows no longer seen so an index that churns
    (LLDP's timeMark) cannot grow it without bound.
    """

    __slots__ = ("_ids", "_names", "_next")

    def __init__(self) -> None:
        self._ids: dict[OID, int] = {}
        self._names: dict[int, str] = {}
        self._next = -1

    def __len__(self) -> int:
        return len(self._ids)

    def id_of(self, suffix: OID) -> int:
        if len(suffix) == 1:
            return suffix[0]
        rid = self._ids.get(suffix)
        if rid is None:
            rid = self._ids[suffix] = self._next
            self._names[rid] = ".".join(map(str, suffix))
            self._next -= 1
        return rid

    def find(self, suffix: OID) -> int | None:
        """The row id of an index suffix already seen (a trap's instance); None if unseen."""
        return suffix[0] if len(suffix) == 1 else self._ids.get(suffix)

    def name(self, rid: int) -> str:
        """The dotted index of a row id ("5", "4194304256.3")."""
        return str(rid) if rid >= 0 else self._names.get(rid, f"?{rid}")

    def suffix(self, rid: int) -> OID:
        return (rid,) if rid >= 0 else tuple(int(x) for x in self._names[rid].split(".") if x)

    def prune(self, keep: set[int]) -> None:
        """Forget composite ids not in `keep` (ids are never handed out again)."""
        for suffix, rid in list(self._ids.items()):
            if rid not in keep:
                del self._ids[suffix]
                del self._names[rid]


@dataclass(slots=True)
class ColumnData:
    """One walked column: a row id per value (see `RowIds`), the values by kind, strings where
    asked for. `ival` holds the signed reading and `uval` the unsigned one; which is the value
    follows each varbind's ASN.1 type (`numbers`)."""

    index: I64
    tag: U8
    ival: I64
    uval: U64
    strings: list[bytes] | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def numbers(self) -> npt.NDArray[np.float64]:
        """The numeric value of every varbind by its own ASN.1 type: INTEGER (signed, e.g. an
        ENTITY-SENSOR reading of -1510) from `ival`, the unsigned types (Counter, Gauge,
        TimeTicks) from `uval`. Decided per varbind, never per column, so a column mixing
        negative and positive readings keeps both."""
        return np.where(self.tag == TAG_INTEGER, self.ival.astype(np.float64), self.uval.astype(np.float64))

    @staticmethod
    def empty() -> ColumnData:
        return ColumnData(
            np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0, np.int64), np.empty(0, np.uint64), []
        )

    def value_of(self, i: int) -> int | bytes | None:
        """Python value of row i (used for scalars and labels, not in the hot path)."""
        tag = int(self.tag[i])
        if tag >= TAG_EXCEPTIONS or tag == 0x05:
            return None
        if tag == TAG_INTEGER:
            return int(self.ival[i])
        if self.strings is not None and tag in (0x04, 0x40, 0x44, 0x06):
            return self.strings[i]
        return int(self.uval[i])


class Session(Protocol):
    """What the poller needs from a session to one agent."""

    varbinds: int

    async def get(self, oids: Sequence[OID]) -> dict[OID, int | bytes | None]: ...

    async def walk(
        self,
        columns: Sequence[OID],
        string_columns: set[int],
        max_repetitions: int,
        rows: RowIds | None = None,
    ) -> list[ColumnData]:
        """Walk the tables under `columns`; returns one ColumnData per column, in order, rows
        identified by `rows` (a fresh RowIds when None)."""
        ...

    async def close(self) -> None: ...


_request_ids = itertools.count(random.randrange(1, 2**30))


def _next_request_id() -> int:
    return next(_request_ids) % (2**31 - 1) + 1


class V2cSession:
    """SNMP v1/v2c over one connected UDP socket to one agent."""

    def __init__(
        self, host: str, port: int, community: bytes, *, version: int = 1, timeout_s: float, retries: int
    ):
        self.host, self.port = host, port
        self.community = community
        self.version = version
        self.timeout_s = timeout_s
        self.retries = retries
        self.varbinds = 0
        self.requests = 0
        self._sock: socket.socket | None = None

    async def _socket(self) -> socket.socket:
        if self._sock is None:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
            family, _, _, _, addr = infos[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(addr)
            self._sock = sock
        return self._sock

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _exchange(self, build: Any, columns: Columns) -> tuple[bytes, Any]:
        """Send a request (retrying) and return (packet, decoded) of the matching response."""
        sock = await self._socket()
        loop = asyncio.get_running_loop()
        rid = _next_request_id()
        packet = build(rid)
        last_error = "no response"
        for _attempt in range(self.retries + 1):
            self.requests += 1
            try:
                await loop.sock_sendall(sock, packet)
            except OSError as exc:  # ICMP port unreachable surfaces here on a connected socket
                last_error = f"send failed: {exc.strerror or exc}"
                await asyncio.sleep(min(self.timeout_s, 0.2))
                continue
            deadline = time.monotonic() + self.timeout_s
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout=left)
                except TimeoutError:
                    break
                except OSError as exc:
                    last_error = f"receive failed: {exc.strerror or exc}"
                    break
                try:
                    dec = decode_response_columnar(data, columns)
                except SnmpDecodeError as exc:
                    # Garbage from the agent's address: counted by the caller, keep waiting.
                    raise SnmpError("decode", str(exc)) from None
                if dec.request_id != rid or dec.pdu_type != PDU_RESPONSE:
                    continue  # a stale answer to an earlier request of this session
                if dec.community != self.community:
                    raise SnmpError("decode", "response community differs from the request's")
                return data, dec
        raise SnmpError("timeout", f"{last_error} after {self.retries + 1} tries of {self.timeout_s:g} s")

    async def get(self, oids: Sequence[OID]) -> dict[OID, int | bytes | None]:
        columns = Columns.of(list(oids))
        data, dec = await self._exchange(
            lambda rid: encode_get(rid, self.community, list(oids), version=self.version), columns
        )
        _check_error(dec)
        out: dict[OID, int | bytes | None] = {}
        n = int(dec.tag.shape[0])
        self.varbinds += n
        for i in range(n):
            cd = ColumnData(
                np.zeros(1, np.int64),
                dec.tag[i : i + 1],
                dec.ival[i : i + 1],
                dec.uval[i : i + 1],
                [dec.string(data, i)],
            )
            out[tuple(dec.oid(i))] = cd.value_of(0)
        return out

    async def walk(
        self,
        columns: Sequence[OID],
        string_columns: set[int],
        max_repetitions: int,
        rows: RowIds | None = None,
    ) -> list[ColumnData]:
        rows = rows if rows is not None else RowIds()
        cols = Columns.of(list(columns))
        chunks: list[list[tuple[Any, ...]]] = [[] for _ in columns]
        current: dict[int, OID] = {c: tuple(oid) for c, oid in enumerate(columns)}
        # Columns asked per request. Agents cap a GETBULK response (net-snmp: 100 varbinds)
        # and cut repetitions to fit, so asking every column at once only multiplies the
        # per-request work; after each answer the window is sized to what the agent gave.
        window = len(current)
        for _ in range(MAX_WALK_REQUESTS):
            if not current:
                break
            req = list(current)[:window]
            oids = [current[c] for c in req]
            if self.version == 0:
                builder = lambda rid, o=oids: encode_getnext(rid, self.community, o, version=0)  # noqa: E731
            else:
                builder = lambda rid, o=oids: encode_getbulk(rid, self.community, o, max_repetitions)  # noqa: E731
            data, dec = await self._exchange(builder, cols)
            if self.version == 0 and dec.error_status == 2:  # v1 noSuchName: the walk ran off the MIB
                for c in req:
                    del current[c]
                continue
            _check_error(dec)
            n = int(dec.tag.shape[0])
            self.varbinds += n
            if n == 0:
                raise SnmpError("protocol", "empty GETBULK response")
            r = len(req)
            if self.version != 0 and n < r * max_repetitions:
                window = max(1, n // max_repetitions)
            elif window < len(current):
                window = min(len(current), window * 2)
            expected = np.asarray(req, dtype=np.int16)[np.arange(n) % r]
            in_tree = (dec.column == expected) & (dec.tag < TAG_EXCEPTIONS)
            for j, c in enumerate(req):
                ok = in_tree[j::r]
                # Varbinds of a column come in lexicographic order: once out, the rest is out.
                stop = ok.shape[0] if ok.all() else int(np.argmin(ok))
                if stop:
                    take = np.arange(j, j + stop * r, r)
                    chunks[c].append(_slice(dec, data, take, c in string_columns, rows))
                    nxt = dec.oid(int(take[-1]))
                    if nxt <= current[c]:
                        raise SnmpError("protocol", f"agent returned a non-increasing OID after {current[c]}")
                    current[c] = nxt
                if stop < ok.shape[0] or stop == 0:
                    del current[c]
        else:
            raise SnmpError("protocol", f"walk did not end after {MAX_WALK_REQUESTS} requests")
        return [_concat(chunks[c], c in string_columns) for c in range(len(columns))]


def _check_error(dec: Any) -> None:
    if dec.error_status != 0:
        raise SnmpError("agent_error", f"error-status {dec.error_status} at varbind {dec.error_index}")


def _slice(
    dec: Any, data: bytes, take: npt.NDArray[np.int64], strings: bool, rows: RowIds
) -> tuple[Any, ...]:
    so = dec.suffix_offsets
    lengths = so[take + 1] - so[take]
    if np.all(lengths == 1):
        index = dec.suffix[so[take]].astype(np.int64)
    else:
        # Several sub-identifiers index the row: the whole suffix is its identity.
        suffix = dec.suffix.tolist()
        starts, ends = so[take].tolist(), so[take + 1].tolist()
        index = np.fromiter(
            (rows.id_of(tuple(suffix[a:b])) for a, b in zip(starts, ends, strict=True)),
            dtype=np.int64,
            count=len(starts),
        )
    svals = [dec.string(data, int(i)) for i in take] if strings else None
    return (index, dec.tag[take], dec.ival[take], dec.uval[take], svals)


def _concat(parts: list[tuple[Any, ...]], strings: bool) -> ColumnData:
    if not parts:
        return ColumnData.empty()
    return ColumnData(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        np.concatenate([p[3] for p in parts]),
        [s for p in parts for s in p[4]] if strings else None,
    )


class V3Session:
    """SNMPv3 (USM, authPriv) through gufo-snmp's Rust core; walks build the same ColumnData."""

    def __init__(self, host: str, port: int, cred: Credential, *, timeout_s: float, retries: int):
        from gufo.snmp import SnmpVersion
        from gufo.snmp.aio import SnmpSession
        from gufo.snmp.user import User

        self.varbinds = 0
        user = User(
            cred.user or "",
            auth_key=_auth_key(cred),
            priv_key=_priv_key(cred),
        )
        self._session = SnmpSession(
            addr=host, port=port, version=SnmpVersion.v3, user=user, timeout=timeout_s, allow_bulk=True
        )
        self._retries = retries
        self._entered = False

    async def _ensure(self) -> None:
        if not self._entered:
            await self._session.__aenter__()
            self._entered = True

    async def close(self) -> None:
        if self._entered:
            await self._session.__aexit__(None, None, None)
            self._entered = False

    async def get(self, oids: Sequence[OID]) -> dict[OID, int | bytes | None]:
        await self._ensure()
        try:
            res = await self._session.get_many([_fmt(o) for o in oids])
        except Exception as exc:  # gufo raises its own types per failure
            raise _v3_error(exc) from None
        self.varbinds += len(res)
        return {tuple(int(x) for x in k.split(".")): _py_value(v) for k, v in res.items()}

    async def walk(
        self,
        columns: Sequence[OID],
        string_columns: set[int],
        max_repetitions: int,
        rows: RowIds | None = None,
    ) -> list[ColumnData]:
        await self._ensure()
        rows = rows if rows is not None else RowIds()
        out = []
        for c, col in enumerate(columns):
            prefix = _fmt(col) + "."
            idx: list[int] = []
            ivals: list[int] = []
            uvals: list[int] = []
            tags: list[int] = []
            strs: list[bytes] = []
            try:
                async for oid, value in self._session.getbulk(_fmt(col), max_repetitions=max_repetitions):
                    if not oid.startswith(prefix):
                        break
                    suffix = oid[len(prefix) :]
                    idx.append(
                        int(suffix)
                        if "." not in suffix
                        else rows.id_of(tuple(int(x) for x in suffix.split(".")))
                    )
                    tag, i, u, s = _tagged(value)
                    tags.append(tag)
                    ivals.append(i)
                    uvals.append(u)
                    strs.append(s)
            except Exception as exc:
                raise _v3_error(exc) from None
            self.varbinds += len(idx)
            out.append(
                ColumnData(
                    np.asarray(idx, np.int64),
                    np.asarray(tags, np.uint8),
                    np.asarray(ivals, np.int64),
                    np.asarray(uvals, np.uint64),
                    strs if c in string_columns else None,
                )
            )
        return out


def _fmt(oid: OID) -> str:
    return ".".join(str(x) for x in oid)


def _tagged(value: Any) -> tuple[int, int, int, bytes]:
    """(tag, ival, uval, bytes) of a gufo value.

    gufo decodes every value by its ASN.1 type (INTEGER signed; Counter, Gauge, TimeTicks
    unsigned) but hands the number over without that type, so the number itself is exact.
    It is kept exactly: a negative number can only be an INTEGER (tag INTEGER, read from
    `ival`); a non-negative one is the same in both readings below 2**63, and above only a
    Counter64 can hold it (tag Counter64, read from `uval`). Both readings are filled for
    every value, so nothing downstream depends on a column being all of one sign."""
    if isinstance(value, bool):
        return TAG_INTEGER, int(value), int(value), b""
    if isinstance(value, int):
        if value < 0:
            return TAG_INTEGER, max(value, -(2**63)), value & (2**64 - 1), b""
        if value < 2**63:
            return TAG_INTEGER, value, value, b""
        return TAG_COUNTER64, 2**63 - 1, min(value, 2**64 - 1), b""
    if isinstance(value, bytes | bytearray):
        return TAG_OCTET_STRING, 0, 0, bytes(value)
    if isinstance(value, str):
        return TAG_OCTET_STRING, 0, 0, value.encode()
    if value is None:
        return 0x05, 0, 0, b""
    return TAG_OCTET_STRING, 0, 0, str(value).encode()


def _py_value(value: Any) -> int | bytes | None:
    if value is None or isinstance(value, int | bytes):
        return value
    return str(value).encode()


def _v3_error(exc: Exception) -> SnmpError:
    name = type(exc).__name__
    if "Timeout" in name:
        return SnmpError("timeout", f"SNMPv3: {name}")
    if "Auth" in name or "Wrong" in name or "Digest" in name:
        return SnmpError("auth", f"SNMPv3 authentication failed ({name})")
    return SnmpError("v3", f"{name}: {exc}"[:200])


def _auth_key(cred: Credential) -> Any:
    from gufo.snmp.user import Md5Key, Sha1Key, Sha224Key, Sha256Key, Sha384Key, Sha512Key

    if cred.auth_protocol is None or cred.auth_password is None:
        return None
    cls = {
        "MD5": Md5Key,
        "SHA": Sha1Key,
        "SHA-224": Sha224Key,
        "SHA-256": Sha256Key,
        "SHA-384": Sha384Key,
        "SHA-512": Sha512Key,
    }[cred.auth_protocol]
    return cls(cred.auth_password.get_secret_value().encode())


def _priv_key(cred: Credential) -> Any:
    from gufo.snmp.user import Aes128Key, Aes192Key, Aes256Key, DesKey

    if cred.priv_protocol is None or cred.priv_password is None:
        return None
    cls = {"DES": DesKey, "AES": Aes128Key, "AES-128": Aes128Key, "AES-192": Aes192Key, "AES-256": Aes256Key}[
        cred.priv_protocol
    ]
    return cls(cred.priv_password.get_secret_value().encode())


def open_session(device: Device, cred: Credential, *, timeout_s: float, retries: int) -> Session:
    """A session of the right protocol version for the device."""
    if cred.version == "3":
        return V3Session(device.host, device.port, cred, timeout_s=timeout_s, retries=retries)
    assert cred.community is not None  # Credential.check() guarantees it
    return V2cSession(
        device.host,
        device.port,
        cred.community.get_secret_value().encode(),
        version=0 if cred.version == "1" else 1,
        timeout_s=timeout_s,
        retries=retries,
    )
