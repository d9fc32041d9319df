"""The `snmp` section: the poller's inventory, credentials, profiles and timing."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ground.settings import Section


class SnmpSettings(Section):
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
