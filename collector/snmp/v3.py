"""SNMPv3 sessions (USM, authPriv) through gufo-snmp's Rust core.

A walk builds the same `ColumnData` as the v1/v2c session of `collector.snmp.client`, so the
poller never knows which version it walked; gufo-snmp is imported only when a v3 session opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from collector.inventory import Credential
from collector.snmp.client import (
    OID,
    TAG_COUNTER64,
    TAG_INTEGER,
    TAG_OCTET_STRING,
    ColumnData,
    RowIds,
    SnmpError,
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
