"""One request to an InfluxDB v2 write API: the HTTP side of the time-series sink.

`InfluxWriter` POSTs a ready body (line protocol, gzip or not) through influxdb-client's
`WriteService.post_write`, the call under its `WriteApi` (why not the `WriteApi` itself:
collector/store/README.md, "Why text and the write service"), and turns every failure into
a `WriteError` that says whether a retry may succeed and how long the server asked to wait.
The sink (sink.py) decides what to send and when; this module only sends it.
"""

from __future__ import annotations

import email.utils
import time
import zlib
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import urllib3.exceptions
from influxdb_client import InfluxDBClient  # type: ignore[attr-defined]
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService

from collector.store.settings import TsdbSettings

__all__ = [
    "GZIP_LEVEL",
    "RETRY_AFTER_MAX_S",
    "InfluxWriter",
    "WriteError",
    "Writer",
    "gunzip_body",
    "gzip_body",
    "parse_retry_after",
    "redacted_url",
]

# Level 1: on a LAN the CPU spent compressing is the cost, not the bytes; level 1 already
# shrinks line protocol about 8x, higher levels gain little for many times the CPU.
GZIP_LEVEL = 1
RETRY_AFTER_MAX_S = 600.0  # a Retry-After beyond this is a misconfigured server, not a plan


class WriteError(Exception):
    """A write request failed: `status` is the HTTP status (None: no answer at all)."""

    def __init__(self, message: str, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        """Network errors, 5xx and 429 may succeed later; any other 4xx will not."""
        return self.status is None or self.status == 429 or self.status >= 500


class Writer(Protocol):
    """Sends one request body; raises WriteError."""

    def post(self, body: bytes, gzipped: bool) -> None: ...

    def close(self) -> None: ...


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date); None if absent
    or unreadable. Bounded to [0, RETRY_AFTER_MAX_S]."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def redacted_url(url: str) -> str:
    """The URL without user:password, for logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class InfluxWriter:
    """POSTs line protocol to `{url}/api/v2/write` through influxdb-client's WriteService.

    The URL may carry a path prefix: VictoriaMetrics cluster's vminsert takes
    `http://vminsert:8480/insert/0/influx`, a single node `http://host:8428` (or `/influx`).
    """

    def __init__(self, settings: TsdbSettings) -> None:
        if settings.url is None:
            raise ValueError("tsdb.url is not set")
        # An empty token sends no Authorization header (VictoriaMetrics without auth).
        token = settings.token.get_secret_value() if settings.token is not None else ""
        # retries=False: urllib3 must not retry on its own; the sink's back-off decides.
        self._client = InfluxDBClient(
            url=settings.url,
            token=token,
            org=settings.org,
            timeout=int(settings.timeout_s * 1000),
            enable_gzip=False,  # bodies arrive compressed already (or must stay plain)
            retries=False,
        )
        self._service = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]
        self.org = settings.org
        self.bucket = settings.bucket

    def post(self, body: bytes, gzipped: bool) -> None:
        kwargs: dict[str, Any] = {"precision": "ms", "content_type": "text/plain; charset=utf-8"}
        if gzipped:
            kwargs["content_encoding"] = "gzip"
        try:
            self._service.post_write(  # type: ignore[no-untyped-call]
                org=self.org, bucket=self.bucket, body=body, **kwargs
            )
        except ApiException as exc:
            headers: Any = exc.headers or {}
            raw = exc.body
            detail = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
            raise WriteError(
                f"HTTP {exc.status} {exc.reason or ''}: {detail.strip()[:300]}",
                status=int(exc.status) if exc.status is not None else None,
                retry_after_s=parse_retry_after(headers.get("Retry-After")),
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise WriteError(f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def gzip_body(body: bytes) -> bytes:
    z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    return z.compress(body) + z.flush()


def gunzip_body(data: bytes) -> bytes:
    """Decompress a gzip body, checking its CRC and length; raises zlib.error when damaged."""
    z = zlib.decompressobj(31)
    out = z.decompress(data) + z.flush()
    if not z.eof or z.unused_data:
        raise zlib.error("truncated or trailing data")
    return out
