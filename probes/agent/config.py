"""The probe's configuration: one YAML file (``netqos probe --config probe.yaml``).

Unknown keys are errors, as in the server's configuration: a typo never silently falls
back to a default. A bad file stops the agent with one ``ProbeConfigError`` naming the
file and line, the key and the reason.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Optional, Union
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from probes.agent.payload import DEFAULT_TOPIC_PREFIX, OPERATOR_PATTERN, PROBE_ID_PATTERN

log = logging.getLogger(__name__)

Technology = Literal["2G", "3G", "4G", "5G", "FTTH", "xDSL", "cable"]
TEST_KINDS: Final = ("icmp", "tcp", "dns", "http_download", "http_upload", "service_access")


class ProbeConfigError(Exception):
    """Bad probe configuration: the file (and line), the key and the reason, ready to print.

    Shaped as the server's ConfigError (source, key, reason) but independent of it, so the
    slim agent distribution needs nothing from the server; the command prints it and exits 2.
    """

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        super().__init__(f"{source}: {key}: {reason}")


# Model fields say Optional[X], not `X | None`: pydantic evaluates them at import, and on
# Python 3.9 (probe boxes) `|` between types fails (tests/unit/test_probe_dist.py checks it).
class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_http_url(url: str, *, https_only: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    # A bearer token must never cross a network in clear; plain http only on this machine.
    if https_only and parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError("must be https:// (plain http is allowed on a loopback address only)")
    return url


class BrokerConfig(_Section):
    """The MQTT broker the probe publishes to, with this probe's own credentials."""

    host: str = Field(min_length=1)
    port: Optional[int] = Field(None, ge=1, le=65535, description="default 8883 with tls, else 1883")
    username: Optional[str] = None
    password: Optional[SecretStr] = None
    tls: bool = False
    ca_file: Optional[Path] = Field(None, description="CA bundle for tls; default: the system's")
    keepalive_s: int = Field(60, ge=5, le=3600)
    timeout_s: float = Field(20.0, gt=0, le=300, description="wait for CONNACK / PUBACK")
    reconnect_min_s: float = Field(1.0, gt=0, le=600)
    reconnect_max_s: float = Field(60.0, gt=0, le=3600)

    @property
    def effective_port(self) -> int:
        """The configured port, or the MQTT default for the transport."""
        if self.port is not None:
            return self.port
        return 8883 if self.tls else 1883

    @model_validator(mode="after")
    def _backoff_order(self) -> BrokerConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self


class HttpsFallbackConfig(_Section):
    """POST batches to the server's HTTPS ingest when MQTT has been down for a while."""

    enabled: bool = False
    url: Optional[str] = Field(None, description="server base URL; batches go to <url>/api/v1/ingest")
    token: Optional[SecretStr] = Field(None, description="this probe's bearer token")
    after_s: float = Field(300.0, ge=0, le=86_400, description="MQTT down this long before falling back")
    timeout_s: float = Field(30.0, gt=0, le=600)
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else _check_http_url(v, https_only=True)

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> HttpsFallbackConfig:
        if self.enabled and (self.url is None or self.token is None):
            raise ValueError("url and token are required when enabled")
        return self


class QueueConfig(_Section):
    """The durable on-disk queue of batches waiting to be delivered."""

    path: Path = Path("/var/lib/netqos-probe/queue.db")
    max_batches: int = Field(
        100_000, ge=10, le=10_000_000, description="beyond this the oldest batches are dropped (counted)"
    )


class BatchConfig(_Section):
    """When a batch of measurements is closed and queued."""

    max_measurements: int = Field(500, ge=1, le=5000)
    max_bytes: int = Field(
        200_000, ge=4096, le=250_000, description="JSON size; the server refuses messages over 256 KiB"
    )
    max_wait_s: float = Field(60.0, gt=0, le=3600, description="longest a measurement waits to be queued")


class RadioConfig(_Section):
    """Where radio conditions (technology, RSRP/RSRQ/SINR, operator, cell) come from."""

    source: str = Field(description="mmcli | file:PATH | fixture")
    interval_s: float = Field(60.0, gt=0, le=86_400)
    timeout_s: float = Field(10.0, gt=0, le=120)
    modem: str = Field("any", description="mmcli -m argument: an index, a D-Bus path or 'any'")
    operator_codes: dict[str, str] = Field(
        default_factory=dict, description="extra MCC+MNC (e.g. '45204') -> operator slug"
    )

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if v in ("mmcli", "fixture") or (v.startswith("file:") and len(v) > len("file:")):
            return v
        raise ValueError("must be 'mmcli', 'fixture' or 'file:PATH'")

    @field_validator("operator_codes")
    @classmethod
    def _codes(cls, v: dict[str, str]) -> dict[str, str]:
        for code, slug in v.items():
            if not (code.isdigit() and 5 <= len(code) <= 6):
                raise ValueError(f"{code!r}: an MCC+MNC is 5 or 6 digits")
            if not _slug_ok(slug):
                raise ValueError(f"{slug!r}: an operator slug matches {OPERATOR_PATTERN}")
        return v


def _slug_ok(s: str) -> bool:
    return re.fullmatch(OPERATOR_PATTERN, s) is not None


_Target = Annotated[str, Field(min_length=1, max_length=255)]


class _SpecBase(_Section):
    interval_s: float = Field(60.0, gt=0, le=86_400, description="how often the test runs")
    timeout_s: float = Field(5.0, gt=0, le=600)


class IcmpSpec(_SpecBase):
    """ICMP echo: `count` echoes `spacing_s` apart; rtt_ms, loss_ratio, jitter_ms."""

    kind: Literal["icmp"]
    target: _Target
    count: int = Field(10, ge=1, le=1000)
    spacing_s: float = Field(0.5, ge=0.01, le=60)
    method: Literal["auto", "dgram", "raw", "ping"] = "auto"


class TcpSpec(_SpecBase):
    """TCP connect to target:port, `count` tries; rtt_ms, loss_ratio, jitter_ms."""

    kind: Literal["tcp"]
    target: _Target
    port: int = Field(ge=1, le=65535)
    count: int = Field(5, ge=1, le=1000)
    spacing_s: float = Field(0.5, ge=0, le=60)


class DnsSpec(_SpecBase):
    """Resolve the name `target`; dns_ms (median of the answered lookups)."""

    kind: Literal["dns"]
    target: _Target
    resolver: Optional[str] = Field(
        None, description="'host' or 'host:port' to query over UDP; unset: the system resolver"
    )
    count: int = Field(1, ge=1, le=100)
    spacing_s: float = Field(0.2, ge=0, le=60)

    @field_validator("resolver")
    @classmethod
    def _resolver(cls, v: str | None) -> str | None:
        if v is None:
            return v
        host, _, port = v.rpartition(":") if v.count(":") == 1 else (v, "", "")
        if not host or (port and not (port.isdigit() and 1 <= int(port) <= 65535)):
            raise ValueError("must be 'host' or 'host:port' (an IPv6 address without a port)")
        return v


class _HttpSpec(_SpecBase):
    url: str
    target: Optional[_Target] = Field(None, description="default: the url")
    timeout_s: float = Field(30.0, gt=0, le=600)
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_http_url(v, https_only=False)


class HttpDownloadSpec(_HttpSpec):
    """GET `url`; dl_bps. `bytes` caps the transfer (metered SIM cards)."""

    kind: Literal["http_download"]
    bytes: Optional[int] = Field(None, ge=1, le=10**10)


class HttpUploadSpec(_HttpSpec):
    """POST `bytes` random bytes to `url`; ul_bps."""

    kind: Literal["http_upload"]
    bytes: int = Field(ge=1, le=10**10)


class ServiceAccessSpec(_HttpSpec):
    """GET `url` on a fresh connection; access_time_ms to the first byte, access_failed."""

    kind: Literal["service_access"]


# Union[...], not `A | B`: this alias is evaluated at import, and `|` on classes is 3.10+
# (so are the Optional[...] of the models: pydantic evaluates their annotations).
MeasurementSpec = Annotated[
    Union[IcmpSpec, TcpSpec, DnsSpec, HttpDownloadSpec, HttpUploadSpec, ServiceAccessSpec],
    Field(discriminator="kind"),
]


def target_of(spec: MeasurementSpec) -> str:
    """The measurement's `target` field for a test: its target, or its URL (at most 255 chars)."""
    target = getattr(spec, "target", None)
    if target:
        return str(target)
    return str(getattr(spec, "url", "?"))[:255]


class CentralScheduleConfig(_Section):
    """Measurement schedules sent by the server (docs/probe-agent.md, "Central schedules")."""

    enabled: bool = Field(True, description="accept the server's schedule; false: run only `tests`")
    state_dir: Optional[Path] = Field(
        None, description="where the last good schedule and the data use are kept (default: the queue's)"
    )
    https_poll_s: float = Field(
        900.0, ge=1, le=86_400, description="while on the HTTPS fallback, fetch the schedule this often"
    )
    report_interval_s: float = Field(300.0, ge=1, le=86_400, description="agent status report every")


class ProbeConfig(_Section):
    """The configuration of one field probe."""

    probe_id: str = Field(pattern=PROBE_ID_PATTERN)
    operator: str = Field(
        pattern=OPERATOR_PATTERN, description="operator slug used when the radio does not tell"
    )
    technology: Technology = Field(description="technology used when the radio does not tell")
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    broker: BrokerConfig
    https_fallback: HttpsFallbackConfig = HttpsFallbackConfig()
    queue: QueueConfig = QueueConfig()
    batch: BatchConfig = BatchConfig()
    radio: Optional[RadioConfig] = None
    schedule_jitter_ratio: float = Field(
        0.1, ge=0, le=0.5, description="random spread of every test's start, +-ratio of its interval"
    )
    tests: list[MeasurementSpec] = Field(
        default_factory=list, description="run until (and unless) the server sends a schedule"
    )
    schedule: CentralScheduleConfig = CentralScheduleConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or v.startswith("/") or v.endswith("/") or any(c in v for c in "+#\0"):
            raise ValueError("must be a plain topic path without wildcards or leading/trailing '/'")
        return v

    @model_validator(mode="after")
    def _something_to_measure(self) -> ProbeConfig:
        if not self.tests and self.radio is None:
            raise ValueError("nothing to measure: give at least one entry in tests, or a radio source")
        return self

    @property
    def measurements_topic(self) -> str:
        """`<prefix>/<probe_id>/measurements`: where batches go."""
        return f"{self.topic_prefix}/{self.probe_id}/measurements"

    @property
    def schedule_topic(self) -> str:
        """`<prefix>/<probe_id>/schedule`: the server's retained schedule for this probe."""
        return f"{self.topic_prefix}/{self.probe_id}/schedule"

    @property
    def agent_topic(self) -> str:
        """`<prefix>/<probe_id>/agent`: this agent's retained status (versions, budget, refusals)."""
        return f"{self.topic_prefix}/{self.probe_id}/agent"

    @property
    def state_dir(self) -> Path:
        """Where the schedule and budget files live: schedule.state_dir or the queue's directory."""
        return self.schedule.state_dir or self.queue.path.parent

    @property
    def status_topic(self) -> str:
        """`<prefix>/<probe_id>/status`: retained `online` / `offline` (the last will)."""
        return f"{self.topic_prefix}/{self.probe_id}/status"


def _key_of(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The error location as the user wrote it: without pydantic's union tag (tests.0.tcp.port)."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if i >= 2 and loc[i - 2] == "tests" and isinstance(loc[i - 1], int) and part in TEST_KINDS:
            continue
        out.append(part)
    return tuple(out)


def _yaml_line_of(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Best-effort line number of a dotted key in the YAML text, for error messages."""
    try:
        node: yaml.Node | None = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    line = int(k.start_mark.line) + 1
                    node = v
                    break
            else:
                # The key is missing (a required one): point at its parent.
                return line if line is not None else None
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = int(node.start_mark.line) + 1
        else:
            break
    return line


def config_from_dict(data: dict[str, Any], *, source: str = "(dict)", text: str = "") -> ProbeConfig:
    """Validate already-parsed configuration data; raises ProbeConfigError."""
    try:
        return ProbeConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = _key_of(tuple(err["loc"]))
        key = ".".join(str(p) for p in loc) or "-"
        line = _yaml_line_of(text, loc) if text else None
        where = f"{source}:{line}" if line else source
        reason = str(err["msg"])
        if err["type"] == "extra_forbidden":
            reason = "unknown key (check the spelling; see docs/probe-agent.md)"
        elif err["type"] == "union_tag_invalid":
            reason = f"kind must be one of {', '.join(TEST_KINDS)}"
        elif err["type"] == "union_tag_not_found":
            reason = f"kind is required (one of {', '.join(TEST_KINDS)})"
        raise ProbeConfigError(where, key, reason) from exc


def load_config(path: Path) -> ProbeConfig:
    """Read and validate the probe's YAML file.

    Raises ProbeConfigError naming the file (and line when it can be found), the key and
    the reason. Warns when the file holds secrets and others may read it.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProbeConfigError(source, "-", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ProbeConfigError(source, "-", f"not UTF-8 text: {exc.reason}") from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ProbeConfigError(where, "-", f"not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(loaded, dict):
        raise ProbeConfigError(source, "-", "the top level must be a mapping (probe_id, broker, tests, ...)")
    config = config_from_dict(loaded, source=source, text=text)
    has_secret = config.broker.password is not None or config.https_fallback.token is not None
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = 0
    if has_secret and mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("event=probe_config_readable path=%s hint='it holds secrets: chmod 600 it'", source)
    return config


def masked(config: ProbeConfig) -> dict[str, Any]:
    """The configuration as plain data, every secret replaced by '********'."""
    data = config.model_dump(mode="json")
    if data["broker"].get("password") is not None:
        data["broker"]["password"] = "********"
    if data["https_fallback"].get("token") is not None:
        data["https_fallback"]["token"] = "********"
    return data
