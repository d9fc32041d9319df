"""The store's sections: `store` (the database), `tsdb` (the time-series sink), `rollups`
(the tiers and retention) and `probes` (the probe registry file)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from ground.settings import Section


class StoreSettings(Section):
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


class TsdbSettings(Section):
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


class RollupSettings(Section):
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
    group_minute_retention_days: float = Field(
        2.0,
        gt=0,
        le=36_500,
        description="the group tiers' 1-minute rows (per commune and province) kept this long; older"
        " minutes are read from the series' 1-minute rows (kept minute_retention_days)",
    )
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


class ProbeRegistrySettings(Section):
    file: Path | None = Field(None, description="YAML or CSV list of probes registered at start")
    schedules_file: Path | None = Field(
        None,
        description="measurement schedules per probe group (YAML; PUT /api/v1/schedules writes it);"
        " unset: probes run their own tests",
    )
    schedules_check_s: float = Field(
        5.0, gt=0, le=3600, description="how often the schedules file is checked for edits"
    )
