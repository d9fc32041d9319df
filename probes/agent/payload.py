"""Payload schema v1 as the agent needs it (docs/payload-v1.md): names, patterns and limits.

Plain constants and one pure-Python check, with no imports beyond the standard library, so
the slim ``netqos-probe`` distribution carries the schema without the server. The server
validates with its own pydantic schema (collector/mqtt/schema.py); a unit test holds the two
equal (tests/unit/test_probe_dist.py), so a limit changed on one side only fails CI.
"""

from __future__ import annotations

import math
import re
from typing import Final

SCHEMA_VERSION: Final = 1
PROBE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
OPERATOR_PATTERN: Final = r"^[a-z0-9_-]{1,32}$"
TECHNOLOGIES: Final = ("2G", "3G", "4G", "5G", "FTTH", "xDSL", "cable")
DEFAULT_TOPIC_PREFIX: Final = "netqos/v1/probes"
TARGET_MAX_CHARS: Final = 255
# The agent's queue instance id (sent as "instance" with every batch): letters, digits,
# '_' and '-', 1 to 64 characters.
INSTANCE_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"

# Every metric the server accepts, with its inclusive range (docs/payload-v1.md).
METRIC_RANGES: Final[dict[str, tuple[float, float]]] = {
    "rtt_ms": (0, 600_000),
    "loss_ratio": (0, 1),
    "jitter_ms": (0, 600_000),
    "dl_bps": (0, 1e12),
    "ul_bps": (0, 1e12),
    "dns_ms": (0, 600_000),
    "access_time_ms": (0, 600_000),
    "access_failed": (0, 1),
    "rsrp_dbm": (-160, -30),
    "rsrq_db": (-40, 10),
    "sinr_db": (-30, 50),
}
METRIC_NAMES: Final = tuple(METRIC_RANGES)

_PROBE_ID_RE: Final = re.compile(PROBE_ID_PATTERN)


def metric_ok(name: str, value: object) -> bool:
    """True when the server's schema accepts `value` for metric `name`.

    Strict as the server is: a known name, a real int or float (not a bool, not a string),
    finite and within the inclusive range.
    """
    bounds = METRIC_RANGES.get(name)
    if bounds is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not math.isfinite(value):
        return False
    return bounds[0] <= value <= bounds[1]


def probe_id_ok(probe_id: str) -> bool:
    """True when `probe_id` is a valid probe id (letters, digits, '_', '.', '-'; at most 64)."""
    return _PROBE_ID_RE.fullmatch(probe_id) is not None
