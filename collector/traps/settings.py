"""The `traps` section: the SNMP trap listener."""

from __future__ import annotations

from pydantic import Field

from ground.settings import Section


class TrapSettings(Section):
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
