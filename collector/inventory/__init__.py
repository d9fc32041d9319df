"""Network-element inventory: devices from YAML or CSV, named credentials, sharding.

Devices name their credentials; the credentials themselves live in a separate secrets
file (or the environment) so the inventory can be shared, reviewed and versioned without
leaking a community string. Nothing here ever logs or prints a secret.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
CREDENTIALS_ENV = "NETQOS_SNMP_CREDENTIALS"  # JSON object name -> credential, merged over the file


class InventoryError(Exception):
    """A bad inventory or credentials file: names the source, the entry and the reason."""

    def __init__(self, source: str, where: str, reason: str) -> None:
        self.source, self.where, self.reason = source, where, reason
        super().__init__(f"{source}: {where}: {reason}")


class Device(BaseModel):
    """One network element to poll."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=DEVICE_ID_PATTERN)
    host: str = Field(min_length=1)
    port: int = Field(161, ge=1, le=65535)
    credentials: str = Field(min_length=1, description="name of an entry in the credentials file")
    operator: str = ""
    kind: str = Field("generic", pattern=r"^[a-z0-9_]{1,32}$", description="selects the profile")
    technology: str = ""
    site: str = ""
    commune: str = ""
    village: str = ""
    parent: str | None = Field(None, description="id of the upstream device (topology)")
    poll_interval_s: float | None = Field(None, ge=1, le=86_400)
    profile: str | None = Field(None, description="profile name; default: the one named like `kind`")

    @field_validator("parent", "poll_interval_s", "profile", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v == "" else v

    def labels(self) -> dict[str, str]:
        """The standard labels every series of this device carries."""
        return {
            "operator": self.operator,
            "technology": self.technology,
            "commune": self.commune,
            "village": self.village,
            "site": self.site,
            "kind": self.kind,
        }


AuthProtocol = Literal["MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"]
PrivProtocol = Literal["DES", "AES", "AES-128", "AES-192", "AES-256"]


class Credential(BaseModel):
    """SNMP credentials: a v2c community, or a v3 user (authPriv recommended)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal["1", "2c", "3"] = "2c"
    community: SecretStr | None = None
    user: str | None = None
    auth_protocol: AuthProtocol | None = None
    auth_password: SecretStr | None = None
    priv_protocol: PrivProtocol | None = None
    priv_password: SecretStr | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    def check(self) -> None:
        """Raise ValueError when the fields do not make a usable credential."""
        if self.version in ("1", "2c"):
            if self.community is None:
                raise ValueError(f"version {self.version} needs a community")
            return
        if not self.user:
            raise ValueError("version 3 needs a user")
        if (self.auth_protocol is None) != (self.auth_password is None):
            raise ValueError("auth_protocol and auth_password go together")
        if (self.priv_protocol is None) != (self.priv_password is None):
            raise ValueError("priv_protocol and priv_password go together")
        if self.priv_protocol is not None and self.auth_protocol is None:
            raise ValueError("privacy (priv_*) needs authentication (auth_*) too")
        for name, pw in (("auth_password", self.auth_password), ("priv_password", self.priv_password)):
            if pw is not None and len(pw.get_secret_value()) < 8:
                raise ValueError(f"{name} must be at least 8 characters (RFC 3414)")

    def __repr__(self) -> str:  # never a secret in a log line or traceback
        return f"Credential(version={self.version!r}, user={self.user!r})"


@dataclass(frozen=True)
class Inventory:
    """Devices (in file order) and the credentials they name."""

    devices: tuple[Device, ...]
    credentials: Mapping[str, Credential] = field(default_factory=dict)

    def by_id(self) -> dict[str, Device]:
        return {d.id: d for d in self.devices}


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(str(path), "-", f"cannot read: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        return [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in rows]
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "-"
        raise InventoryError(str(path), where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    found = data.get("devices") if isinstance(data, dict) else data
    if not isinstance(found, list):
        raise InventoryError(str(path), "-", "expected a list of devices (or a mapping with `devices:`)")
    return found


def _first_error(exc: ValidationError) -> str:
    e = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in e["loc"])
    return f"{loc}: {e['msg']}" if loc else str(e["msg"])


def load_devices(path: Path) -> list[Device]:
    """Devices from a YAML list (or `{devices: [...]}`) or a CSV with a header row."""
    devices: list[Device] = []
    seen: set[str] = set()
    for i, row in enumerate(_read_rows(path), start=1):
        where = f"device #{i}" + (f" ({row.get('id')})" if isinstance(row, dict) and row.get("id") else "")
        if not isinstance(row, dict):
            raise InventoryError(str(path), where, "each device must be a mapping")
        try:
            dev = Device.model_validate(row)
        except ValidationError as exc:
            raise InventoryError(str(path), where, _first_error(exc)) from exc
        if dev.id in seen:
            raise InventoryError(str(path), where, f"duplicate device id {dev.id!r}")
        seen.add(dev.id)
        devices.append(dev)
    return devices


def load_credentials(path: Path | None, environ: Mapping[str, str] | None = None) -> dict[str, Credential]:
    """Named credentials from a YAML file `{credentials: {name: {...}}}`, then the JSON object in
    NETQOS_SNMP_CREDENTIALS (which wins)."""
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise InventoryError(str(path), "-", f"cannot read: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            # The YAML error message may quote a line of the file: never echo secrets.
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark is not None else "-"
            raise InventoryError(str(path), where, "not valid YAML") from None
        entries = data.get("credentials", data) if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            raise InventoryError(str(path), "-", "expected a mapping `credentials: {name: {...}}`")
        raw.update(entries)
        sources.update({k: str(path) for k in entries})
    env = os.environ if environ is None else environ
    if env.get(CREDENTIALS_ENV):
        try:
            extra = json.loads(env[CREDENTIALS_ENV])
        except json.JSONDecodeError:
            raise InventoryError(f"environment {CREDENTIALS_ENV}", "-", "not valid JSON") from None
        if not isinstance(extra, dict):
            raise InventoryError(f"environment {CREDENTIALS_ENV}", "-", "expected a JSON object")
        raw.update(extra)
        sources.update({k: f"environment {CREDENTIALS_ENV}" for k in extra})
    out: dict[str, Credential] = {}
    for name, entry in raw.items():
        try:
            cred = Credential.model_validate(entry)
            cred.check()
        except (ValidationError, ValueError) as exc:
            reason = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
            # Pydantic quotes the input in some messages; keep only the reason's first part.
            raise InventoryError(sources[name], f"credential {name!r}", reason.split("[type=")[0]) from None
        out[str(name)] = cred
    return out


def load_inventory(devices_path: Path, credentials_path: Path | None) -> Inventory:
    """Devices plus credentials, checked against each other."""
    devices = load_devices(devices_path)
    creds = load_credentials(credentials_path)
    for d in devices:
        if d.credentials not in creds:
            raise InventoryError(
                str(devices_path), f"device {d.id!r}", f"credentials {d.credentials!r} are not defined"
            )
    ids = {d.id for d in devices}
    for d in devices:
        if d.parent is not None and d.parent not in ids:
            raise InventoryError(
                str(devices_path), f"device {d.id!r}", f"parent {d.parent!r} is not in the inventory"
            )
    return Inventory(tuple(devices), creds)


def parse_shard(spec: str) -> tuple[int, int]:
    """'i/N' -> (i, N) with 0 <= i < N."""
    m = re.fullmatch(r"(\d+)/(\d+)", spec.strip())
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ValueError(f"shard {spec!r}: expected i/N with 0 <= i < N")
    return int(m.group(1)), int(m.group(2))


def shard_of(device_id: str, n_shards: int) -> int:
    """Jump consistent hash (Lamping & Veach) of the id: growing N moves only ~1/N of devices."""
    key = int.from_bytes(hashlib.blake2b(device_id.encode(), digest_size=8).digest(), "big")
    b, j = -1, 0
    while j < n_shards:
        b = j
        key = (key * 2862933555777941757 + 1) % 2**64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def in_shard(devices: Iterable[Device], shard: tuple[int, int]) -> list[Device]:
    i, n = shard
    return [d for d in devices if n == 1 or shard_of(d.id, n) == i]


@dataclass(frozen=True)
class SiteSharing:
    """Sites with network elements of the given kinds, and those shared by more than one operator."""

    sites: int
    shared: dict[str, tuple[str, ...]]  # site -> its operators, for the shared ones

    @property
    def shared_ratio(self) -> float | None:
        return None if self.sites == 0 else len(self.shared) / self.sites


def site_sharing(elements: Iterable[tuple[str, str]]) -> SiteSharing:
    """From (site, operator) of each element: how many sites there are and which are shared.
    Elements without a site are not counted (no site, no sharing to claim)."""
    operators: dict[str, set[str]] = {}
    for site, operator in elements:
        if site:
            operators.setdefault(site, set()).add(operator)
    shared = {s: tuple(sorted(ops)) for s, ops in sorted(operators.items()) if len(ops) > 1}
    return SiteSharing(len(operators), shared)
