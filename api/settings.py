"""The `api` section: the HTTP listener, API keys and the request limits."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import Field, SecretStr, field_validator, model_validator

from collector.ingest_settings import IngestSettings
from collector.mqtt.settings import MqttSettings
from collector.store.settings import RollupSettings
from compliance.settings import OPERATOR_PATTERN, ComplianceSettings, KpiSettings
from ground.settings import Section

Role = Literal["viewer", "operator", "admin"]
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


class ApiKey(Section):
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


class ApiSettings(Section):
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


class ApiConfig(Protocol):
    """The sections the API reads: the service's composed settings (netqos/config.py) have
    them all, and the API never needs to know that composition."""

    @property
    def api(self) -> ApiSettings: ...
    @property
    def compliance(self) -> ComplianceSettings: ...
    @property
    def kpi(self) -> KpiSettings: ...
    @property
    def mqtt(self) -> MqttSettings: ...
    @property
    def ingest(self) -> IngestSettings: ...
    @property
    def rollups(self) -> RollupSettings: ...
