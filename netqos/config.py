"""One settings model for the whole service, composed of the rooms' own sections.

Each room defines its section next to its code (collector/mqtt/settings.py, api/settings.py,
alerts/settings.py, a receiver's file in alerts/notify/, ...); this module only puts them
together, reads them from a YAML file (``--config FILE``) and from ``NETQOS_*`` environment
variables (nested keys joined by ``__``, e.g. ``NETQOS_MQTT__PORT=1884``), and masks the
secrets for printing. The environment wins over the file, the file over the defaults. Every
default is the embedded, zero-set-up one: SQLite under ``./var``, an in-process broker on
127.0.0.1.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from alerts.settings import AlertSettings
from api.settings import ApiSettings
from collector.ingest_settings import IngestSettings
from collector.inventory.settings import UnitsSettings
from collector.mqtt.settings import MqttSettings
from collector.snmp.settings import SnmpSettings
from collector.store.settings import ProbeRegistrySettings, RollupSettings, StoreSettings, TsdbSettings
from collector.traps.settings import TrapSettings
from compliance.settings import ComplianceSettings, KpiSettings
from ground.errors import ConfigError
from ground.logs import LogSettings

ENV_PREFIX = "NETQOS_"


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
