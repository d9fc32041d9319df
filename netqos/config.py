"""One settings model for the whole service.

Read from a YAML file (``--config FILE``) and from ``NETQOS_*`` environment variables
(nested keys joined by ``__``, e.g. ``NETQOS_MQTT__PORT=1884``). The environment wins
over the file, the file over the defaults. Every default is the embedded, zero-set-up
one: SQLite under ``./var``, an in-process broker on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

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
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "NETQOS_"


class ConfigError(Exception):
    """Bad configuration: carries the file, the key and the reason, ready to print."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        super().__init__(f"{source}: {key}: {reason}")


class _Section(BaseModel):
    # A typo in a key is an error, never a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class EmbeddedBrokerSettings(_Section):
    host: str = Field("127.0.0.1", description="where the embedded broker listens (anonymous: loopback)")
    port: int = Field(1883, ge=1, le=65535)
    allow_remote_anonymous: bool = Field(
        False,
        description="let the embedded broker, which has no authentication, listen beyond loopback "
        "(anyone who reaches it can publish probe data); prefer mosquitto with passwords (mqtt.host)",
    )

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> EmbeddedBrokerSettings:
        if not self.allow_remote_anonymous and not is_loopback(self.host):
            raise ValueError(
                f"mqtt.embedded.host {self.host!r} is not a loopback address: the embedded broker is"
                " anonymous, so anyone who reaches it could publish probe data. Keep 127.0.0.1, run"
                " mosquitto with a password file (mqtt.host), or set"
                " mqtt.embedded.allow_remote_anonymous: true"
            )
        return self


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or "localhost"; 0.0.0.0, :: and names are not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MqttSettings(_Section):
    host: str | None = Field(
        None, description="broker host; unset means: start the embedded broker (amqtt) in-process"
    )
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "netqos-ingest"
    client: Literal["lean", "aiomqtt"] = Field(
        "lean", description="MQTT client of the ingest consumer: our lean 3.1.1 reader, or aiomqtt/paho"
    )
    qos: Literal[0, 1, 2] = 1
    topic: str = "netqos/v1/probes/+/measurements"
    deadletter_prefix: str = "netqos/v1/deadletter"
    max_payload_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024)
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_max_s: float = Field(30.0, gt=0, le=600)
    embedded: EmbeddedBrokerSettings = EmbeddedBrokerSettings()

    @field_validator("topic")
    @classmethod
    def _topic_has_probe_level(cls, v: str) -> str:
        if "+" not in v.split("/"):
            raise ValueError("must contain a '+' level where the probe id stands")
        return v


class IngestSettings(_Section):
    flush_interval_s: float = Field(
        0.5, gt=0, le=60, description="longest wait before accepted data is stored"
    )
    flush_max_samples: int = Field(600_000, ge=1, le=10_000_000)
    max_future_s: int = Field(300, ge=0, le=86_400, description="reject measurements further in the future")
    max_measurements_per_message: int = Field(5000, ge=1, le=100_000)
    max_lateness_s: int = Field(
        3600, ge=60, le=30 * 86_400, description="older measurements are refused as too_late"
    )
    flush_linger_s: float = Field(
        0.02, ge=0, le=5, description="wait for more messages before a flush that acks are waiting for"
    )
    probe_check_interval_s: float = Field(
        5.0, gt=0, le=3600, description="how often probes are checked for missed intervals (probe_offline)"
    )
    max_new_label_sets_per_probe_hour: int = Field(
        500,
        ge=1,
        le=1_000_000,
        description="new (target, technology, operator) label sets one probe may start per clock hour"
        " (each is up to 11 series, one per metric); a batch that would exceed it is refused as"
        " too_many_series. Counted since the process started",
    )
    max_unacked_messages: int = Field(
        1000, ge=1, le=1_000_000, description="flush once this many received messages wait for their ack"
    )
    metric_interval_s: dict[str, float] = Field(
        default_factory=dict,
        description="expected seconds between samples of a probe metric (completeness); "
        "metrics not listed: the probe's expected_interval_s",
    )

    @field_validator("metric_interval_s")
    @classmethod
    def _positive_intervals(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, x in v.items() if not 0 < x <= 30 * 86_400]
        if bad:
            raise ValueError(f"intervals must be > 0 and at most 30 days: {', '.join(bad)}")
        return v


class StoreSettings(_Section):
    sqlite_path: Path = Path("var/netqos.db")
    url: str | None = Field(
        None,
        description="postgresql://USER@HOST:PORT/DB[?sslmode=...]: use PostgreSQL; unset means SQLite",
    )
    password: SecretStr | None = Field(None, description="PostgreSQL password (secret; never in store.url)")
    connect_timeout_s: float = Field(10.0, gt=0, le=600, description="wait for a PostgreSQL connection")
    pg_bin_dir: Path | None = Field(
        None, description="where pg_dump, pg_restore and psql are (default: the newest installed)"
    )

    @field_validator("url")
    @classmethod
    def _postgres_url_without_password(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(
                "must be a postgresql://... URL (SQLite, the default, is configured with store.sqlite_path)"
            )
        if parts.password is not None or "password" in parse_qs(parts.query):
            # A URL is printed (check-config, logs, errors); a password in it would leak.
            raise ValueError(
                "holds a password: give it as store.password (NETQOS_STORE__PASSWORD), which is masked"
                " and never logged"
            )
        return v


class TsdbSettings(_Section):
    """The time-series sink (InfluxDB v2 write API): off while `url` is unset."""

    url: str | None = Field(
        None,
        description="base URL of the InfluxDB v2 write API (InfluxDB 2/3, VictoriaMetrics); unset: no sink",
    )
    org: str = Field("netqos", min_length=1, description="InfluxDB organisation (ignored by VictoriaMetrics)")
    bucket: str = Field("netqos", min_length=1, description="InfluxDB bucket (database on InfluxDB 3)")
    token: SecretStr | None = Field(None, description="API token sent as `Authorization: Token ...`; secret")
    timeout_s: float = Field(10.0, gt=0, le=300, description="one write request's time limit")
    batch_size: int = Field(5000, ge=1, le=100_000, description="most lines (points) in one write request")
    flush_interval_s: float = Field(
        1.0, gt=0, le=60, description="longest wait before a batch smaller than batch_size is sent"
    )
    gzip: bool = Field(True, description="send request bodies gzip-compressed (Content-Encoding: gzip)")
    retry_initial_s: float = Field(0.5, gt=0, le=60, description="first back-off after a failed write")
    retry_max_s: float = Field(30.0, gt=0, le=600, description="cap of the exponential back-off")
    buffer_max_points: int = Field(
        200_000, ge=1, le=50_000_000, description="points held in memory; beyond, the oldest go to the spool"
    )
    spool_dir: Path | None = Field(
        Path("var/tsdb-spool"), description="disk spool for points the TSDB could not take yet; unset: none"
    )
    spool_max_bytes: int = Field(
        1 << 30, ge=1 << 16, le=1 << 40, description="spool size limit; beyond, the oldest files are dropped"
    )
    measurement: str = Field(
        "netqos", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="measurement name prefix of every point"
    )
    raw: bool = Field(True, description="write every raw sample")
    rollups: bool = Field(True, description="write the 1-minute rollups")
    rollup_settle_s: float = Field(
        15.0, ge=0, le=3600, description="a rollup is written once no sample changed it for this long"
    )
    close_timeout_s: float = Field(
        10.0, ge=0, le=600, description="at shutdown, time given to send what is pending before it is spooled"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/") if v else v


class RollupSettings(_Section):
    """Tiers 1 min -> 1 h -> 1 day: how long each is kept and how the background job runs."""

    minute_retention_days: float = Field(14.0, gt=0, le=36_500, description="1-minute rollups kept this long")
    hour_retention_days: float = Field(730.0, gt=0, le=36_500, description="1-hour rollups kept this long")
    day_retention_days: float | None = Field(
        None, gt=0, le=36_500, description="1-day rollups kept this long; unset: forever"
    )
    roll_interval_s: float = Field(
        60.0, gt=0, le=3600, description="how often closed hours and days are computed from finer rows"
    )
    settle_s: float = Field(
        120.0, ge=0, le=86_400, description="a closed window is computed once it has been closed this long"
    )
    retention_interval_s: float = Field(3600.0, gt=0, le=86_400, description="how often retention runs")
    batch_log_retention_days: float = Field(
        35.0,
        ge=1,
        le=36_500,
        description="stored batches' (probe, seq) kept this long, for de-duplication and probe completeness;"
        " a replay of an older batch would be counted again",
    )
    max_pending_per_round: int = Field(
        100_000, ge=1, le=10_000_000, description="(series, window) computations at most per tier and round"
    )

    @model_validator(mode="after")
    def _coarser_kept_longer(self) -> RollupSettings:
        # A coarse tier is computed from the finer one: keeping it shorter would lose data for good.
        day = self.day_retention_days if self.day_retention_days is not None else float("inf")
        if not self.minute_retention_days <= self.hour_retention_days <= day:
            raise ValueError("retention must not shrink from finer to coarser tiers (minute <= hour <= day)")
        return self


Role = Literal["viewer", "operator", "admin"]
OPERATOR_PATTERN = r"^[a-z0-9_-]{1,32}$"
# A bearer token is the whole credential: short or repetitive ones are guessed (issue: 1-character
# tokens were accepted). 16 characters of varied text; `netqos demo` makes 24 random ones.
MIN_TOKEN_CHARS = 16
MIN_TOKEN_DISTINCT_CHARS = 6


def token_weakness(token: str) -> str | None:
    """Why `token` is too weak to be an API key, or None when it is strong enough."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"token must be at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 16`)"
    if len(set(token)) < MIN_TOKEN_DISTINCT_CHARS:
        return f"token must have at least {MIN_TOKEN_DISTINCT_CHARS} different characters"
    return None


class ApiKey(_Section):
    """One API key (bearer token) with its role. The token itself, or only its SHA-256."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$", description="who: shown in the audit log"
    )
    role: Role = "viewer"
    operator: str | None = Field(
        None, pattern=OPERATOR_PATTERN, description="the operator an `operator` key reads and reports for"
    )
    token: SecretStr | None = None
    token_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the token, so the file holds no secret"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ApiKey:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of token and token_sha256")
        if self.token is not None:
            weak = token_weakness(self.token.get_secret_value())
            if weak:
                raise ValueError(weak)
        if self.role == "operator" and self.operator is None:
            raise ValueError("an operator key needs `operator` (the operator whose data it may see)")
        if self.role != "operator" and self.operator is not None:
            raise ValueError("only a key with role `operator` belongs to an operator")
        return self


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    health_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="processes without the api role serve /healthz, /readyz and /metrics here; unset: none",
    )
    tokens: list[SecretStr] = Field(
        default_factory=list, description="bearer tokens with the viewer role (read everything)"
    )
    keys: list[ApiKey] = Field(default_factory=list, description="named bearer tokens with roles")
    max_points: int = Field(20_000, ge=10, le=1_000_000)
    ingest_rate_per_s: float = Field(
        20.0, gt=0, le=100_000, description="HTTPS ingest batches per second one probe may send (sustained)"
    )
    ingest_burst: int = Field(200, ge=1, le=1_000_000, description="HTTPS ingest batches one probe may burst")
    upload_rate_per_min: float = Field(
        6.0, gt=0, le=10_000, description="report and unit uploads per minute one key may send (sustained)"
    )
    upload_burst: int = Field(10, ge=1, le=10_000, description="uploads one key may burst")
    write_rate_per_min: float = Field(
        60.0,
        gt=0,
        le=100_000,
        description="other writes (silences, maintenance, incident actions, withdrawals) per minute one key"
        " may send (sustained)",
    )
    write_burst: int = Field(30, ge=1, le=100_000, description="other writes one key may burst")
    max_upload_bytes: int = Field(5 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    # Limits and hardening (docs/operations.md, "Limits and hardening").
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="largest request body outside uploads and ingest; refused (413) before authentication",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="a request body not whole this long after its headers: 408, the connection closed",
    )
    max_upload_rows: int = Field(100_000, ge=1, le=1_000_000, description="rows in one report or unit upload")
    max_qos_points: int = Field(
        100_000, ge=10, le=10_000_000, description="groups x steps in one /api/v1/qos answer"
    )
    max_rows_read: int = Field(
        2_000_000,
        ge=1000,
        le=100_000_000,
        description="rollup rows one /api/v1/qos may read (series x windows of the range)",
    )
    max_list_rows: int = Field(
        100_000, ge=100, le=10_000_000, description="rows in one answer of a list endpoint"
    )
    max_queries: int = Field(
        4, ge=1, le=1000, description="heavy queries (qos, compliance, availability, KPIs) running at once"
    )
    max_queries_per_key: int = Field(2, ge=1, le=1000, description="heavy queries one key may run at once")
    query_wait_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="seconds a heavy query waits for a free slot before its 429 (a page's loads queue)",
    )
    auth_failures_per_min: float = Field(
        10.0, gt=0, le=100_000, description="wrong tokens one client address may send per minute (sustained)"
    )
    auth_failure_burst: int = Field(20, ge=1, le=100_000, description="wrong tokens one client may burst")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="proxies whose X-Forwarded-For/-Proto are believed (the audit's client); none: no proxy",
    )
    max_connections: int = Field(
        10_000,
        ge=16,
        le=1_000_000,
        description="open HTTP connections; beyond it the oldest idle one is closed to make room",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=600, description="a connection that has not sent a request's headers by then is closed"
    )
    keep_alive_s: int = Field(
        5, ge=1, le=600, description="an idle keep-alive connection is closed after this"
    )

    @field_validator("tokens")
    @classmethod
    def _strong_tokens(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        for i, t in enumerate(tokens):
            weak = token_weakness(t.get_secret_value())
            if weak:
                raise ValueError(f"token #{i + 1}: {weak}")
        return tokens


class ComplianceSettings(_Section):
    profiles_dir: Path | None = Field(
        None, description="regulation profiles (YAML) beside the built-in ones; same id+version replaces"
    )
    declared_speeds_file: Path | None = Field(
        None, description="operator-declared (and contracted) speeds per operator and zone; default: built-in"
    )


class KpiSettings(_Section):
    plan_file: Path | None = Field(
        None, description="the plan's indicators and report kinds; default: built-in"
    )
    # The operator registry: reports are accepted only for these slugs, and a KPI summing
    # operator reports is complete only when every one of them has filed (0 where none).
    operators: list[Annotated[str, Field(pattern=OPERATOR_PATTERN)]] = Field(
        default_factory=lambda: ["viettel", "vnpt", "mobifone"],
        min_length=1,
        description="operators that file the plan's reports (slugs); others are refused",
    )


class UnitsSettings(_Section):
    communes_file: Path | None = Field(None, description="communes CSV imported at start")
    villages_file: Path | None = Field(None, description="villages CSV imported at start (after communes)")


class ProbeRegistrySettings(_Section):
    file: Path | None = Field(None, description="YAML or CSV list of probes registered at start")


class SnmpSettings(_Section):
    inventory_file: Path | None = Field(None, description="YAML or CSV list of network elements to poll")
    credentials_file: Path | None = Field(
        None, description="YAML file of named SNMP credentials (communities, v3 users); secrets"
    )
    profiles_dir: Path | None = Field(
        None, description="extra device-kind profiles (YAML) beside the built-in ones"
    )
    reload_interval_s: float = Field(
        10.0, gt=0, le=3600, description="how often the inventory file is re-read"
    )
    concurrency: int = Field(
        256, ge=1, le=100_000, description="polls in flight at once, all devices together"
    )
    timeout_s: float = Field(2.0, gt=0, le=60, description="wait for one response before retrying")
    retries: int = Field(1, ge=0, le=10)
    deadline_s: float = Field(30.0, gt=0, le=3600, description="hard limit on one device's whole poll")
    default_interval_s: float = Field(60.0, ge=1, le=86_400)
    jitter_ratio: float = Field(0.1, ge=0, le=0.5, description="random spread of each interval, +-ratio")
    max_repetitions: int = Field(25, ge=1, le=200, description="GETBULK max-repetitions")
    down_after_misses: int = Field(3, ge=1, le=100, description="consecutive failed polls before `down`")
    shard: str = Field(
        "0/1", pattern=r"^\d+/\d+$", description="i/N: poll only the devices hashing to shard i"
    )

    @field_validator("shard")
    @classmethod
    def _shard_in_range(cls, v: str) -> str:
        i, n = (int(x) for x in v.split("/"))
        if n < 1 or not 0 <= i < n:
            raise ValueError("must be i/N with 0 <= i < N")
        return v


class TrapSettings(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(
        1162, ge=1, le=65535, description="UDP port; 162 is the standard one (needs privileges)"
    )
    accept_v2c: bool = Field(
        True,
        description="accept SNMPv2c traps (community in clear, can be sniffed and replayed); "
        "false: only SNMPv3 traps authenticated with the device's v3 credential",
    )


def _check_matchers(v: list[str]) -> list[str]:
    from collector.matchers import MatcherError, parse_matchers

    try:
        parse_matchers(v)
    except MatcherError as exc:
        raise ValueError(str(exc)) from None
    return v


class RouteSettings(_Section):
    """Where notifications of matching incidents go and how they are grouped (Alertmanager's route)."""

    matchers: list[str] = Field(
        default_factory=list,
        description='label matchers like `severity="critical"`, `commune=~"16.*"`; all must match',
    )
    receivers: list[str] = Field(default_factory=list, description="names of `alerts.receivers` entries")
    group_by: list[str] = Field(
        default_factory=lambda: ["incident"],
        description="labels that make a group; `incident`: one per incident",
    )
    group_wait_s: float = Field(
        2.0, ge=0, le=3600, description="wait before a new group's first notification"
    )
    group_interval_s: float = Field(
        10.0, ge=0.1, le=86_400, description="wait before notifying a changed group again"
    )
    repeat_interval_s: float = Field(
        4 * 3600.0, ge=1, le=30 * 86_400, description="re-send a still-firing group after this long"
    )
    continue_matching: bool = Field(False, description="also try the routes after this one")

    _matchers_ok = field_validator("matchers")(_check_matchers)


class InhibitRuleSettings(_Section):
    """Mute target incidents while a source incident with the same `equal` labels fires."""

    source_matchers: list[str] = Field(min_length=1)
    target_matchers: list[str] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)

    _matchers_ok = field_validator("source_matchers", "target_matchers")(_check_matchers)


class _Receiver(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    send_resolved: bool = True


class WebhookReceiverSettings(_Receiver):
    type: Literal["webhook"]
    url: SecretStr = Field(
        description="receives the Alertmanager webhook JSON body; a secret (tokens often sit in the path)"
    )
    bearer_token: SecretStr | None = None
    timeout_s: float = Field(10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v


class EmailReceiverSettings(_Receiver):
    type: Literal["email"]
    smarthost: str = Field(min_length=1, description="SMTP server host")
    port: int = Field(25, ge=1, le=65535)
    from_addr: str = Field(min_length=3)
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = Field(False, description="upgrade the connection with STARTTLS")
    tls: bool = Field(False, description="implicit TLS (SMTPS, port 465)")
    timeout_s: float = Field(30.0, gt=0, le=300)


class AlertmanagerReceiverSettings(_Receiver):
    type: Literal["alertmanager"]
    url: str = Field(pattern=r"^https?://", description="base URL of a Prometheus Alertmanager")
    bearer_token: SecretStr | None = None
    resend_interval_s: float = Field(
        60.0, gt=0, le=3600, description="re-post firing alerts this often (Alertmanager forgets them)"
    )
    timeout_s: float = Field(10.0, gt=0, le=300)


class AppriseReceiverSettings(_Receiver):
    type: Literal["apprise"]
    urls: list[SecretStr] = Field(min_length=1, description="apprise URLs (tgram://, slack://, ...); secrets")
    timeout_s: float = Field(30.0, gt=0, le=300)


ReceiverSettings = Annotated[
    WebhookReceiverSettings | EmailReceiverSettings | AlertmanagerReceiverSettings | AppriseReceiverSettings,
    Field(discriminator="type"),
]


class AlertSettings(_Section):
    enabled: bool = Field(True, description="run the alert engine in `serve` and `demo`")
    rules_file: Path | None = Field(None, description="YAML rules; unset: the built-in default rules")
    eval_interval_s: float = Field(1.0, gt=0, le=60, description="how often state changes are read")
    receivers: list[ReceiverSettings] = Field(default_factory=list)
    route: RouteSettings = RouteSettings()
    routes: list[RouteSettings] = Field(default_factory=list, description="tried in order before `route`")
    inhibit_rules: list[InhibitRuleSettings] = Field(default_factory=list)
    retry_initial_s: float = Field(1.0, gt=0, le=600, description="first retry delay of a failed delivery")
    retry_max_s: float = Field(60.0, gt=0, le=3600, description="longest retry delay (exponential backoff)")
    give_up_after_s: float = Field(
        86_400.0, gt=0, le=30 * 86_400, description="a notification still undelivered after this is dropped"
    )
    topology_settle_max_s: float = Field(
        120.0, ge=0, le=3600, description="longest wait for a parent's or children's verdict"
    )
    flap_window_s: float = Field(600.0, gt=0, le=86_400)
    flap_threshold: int = Field(3, ge=2, le=100, description="firings within flap_window_s that make a flap")
    external_url: str = Field("", description="base URL of this service, for links in notifications")

    @field_validator("receivers")
    @classmethod
    def _unique_names(cls, v: list[Any]) -> list[Any]:
        names = [r.name for r in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"receiver names must be unique: {dup}")
        return v

    @model_validator(mode="after")
    def _routes_name_receivers(self) -> AlertSettings:
        known = {r.name for r in self.receivers}
        for where, route in [("route", self.route), *((f"routes.{i}", r) for i, r in enumerate(self.routes))]:
            unknown = [n for n in route.receivers if n not in known]
            if unknown:
                raise ValueError(f"{where}.receivers: {unknown} are not in alerts.receivers")
        return self


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "text"


class Settings(BaseSettings):
    """The effective configuration of a netqos process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    mqtt: MqttSettings = MqttSettings()
    ingest: IngestSettings = IngestSettings()
    store: StoreSettings = StoreSettings()
    tsdb: TsdbSettings = TsdbSettings()
    rollups: RollupSettings = RollupSettings()
    api: ApiSettings = ApiSettings()
    compliance: ComplianceSettings = ComplianceSettings()
    kpi: KpiSettings = KpiSettings()
    units: UnitsSettings = UnitsSettings()
    probes: ProbeRegistrySettings = ProbeRegistrySettings()
    snmp: SnmpSettings = SnmpSettings()
    traps: TrapSettings = TrapSettings()
    alerts: AlertSettings = AlertSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment must win over it.
        return (env_settings, init_settings)


def _yaml_line_of(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Best-effort line number of a dotted key in the YAML text, for error messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    if part == loc[-1]:
                        return int(k.start_mark.line) + 1
                    node = v
                    break
            else:
                return None
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return None
    return int(node.start_mark.line) + 1 if node is not None else None


def _env_names(loc: tuple[str | int, ...]) -> str:
    return ENV_PREFIX + "__".join(str(p).upper() for p in loc)


def load_settings(path: Path | None = None) -> Settings:
    """Build the effective settings from an optional YAML file and the environment.

    Raises ConfigError naming the file (or environment variable), the key and the reason.
    """
    data: dict[str, Any] = {}
    text = ""
    source = str(path) if path else "(defaults)"
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(str(path), "-", f"cannot read: {exc.strerror or exc}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark is not None else "-"
            raise ConfigError(str(path), where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(str(path), "-", "the top level must be a mapping of sections")
        data = loaded
    try:
        return Settings(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "-"
        env_name = _env_names(loc)
        # Say where the bad value came from: the environment variable, or the file's line.
        if any(k.upper().startswith(env_name) for k in os.environ):
            src = f"environment {env_name}"
        else:
            line = _yaml_line_of(text, loc) if text else None
            src = f"{source}:{line}" if line else source
        reason = err["msg"]
        if err["type"] == "extra_forbidden":
            reason = "unknown key (check the spelling; see `netqos check-config --help`)"
        raise ConfigError(src, key, reason) from exc


SECRET_MASK = "********"
_SECRET_QUERY_KEY = re.compile(r"pass|secret|token|key|auth|sig|cred", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL made safe to print: a password in its user info (`user:pass@`), a lone user
    info over HTTP(S) (a token: `https://TOKEN@host`), and the values of query parameters named like a
    secret (password, token, api_key, signature, ...) become '********'. Anything that is
    not a URL with a host comes back unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        if colon:
            netloc = f"{user}:{SECRET_MASK}@{host}"
        elif parts.scheme in ("http", "https"):
            netloc = f"{SECRET_MASK}@{host}"  # over HTTP a lone user info is a credential
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_QUERY_KEY.search(k) for k, _ in pairs):
            query = urlencode(
                [(k, SECRET_MASK if _SECRET_QUERY_KEY.search(k) else v) for k, v in pairs], safe="*"
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def masked_dict(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret replaced by '********', including the
    passwords and tokens inside URLs (see mask_url)."""

    # mode="json" renders SecretStr as '**********' already; keep a fixed mask so the
    # length of a secret never leaks either.
    def mask(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: mask(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [mask(v) for v in obj]
        if isinstance(obj, str) and obj and set(obj) == {"*"}:
            return SECRET_MASK
        if isinstance(obj, str) and "://" in obj:
            return mask_url(obj)  # tsdb.url, alertmanager URLs, external_url: user:pass@ inside
        return obj

    return mask(settings.model_dump(mode="json"))  # type: ignore[no-any-return]
