"""Prometheus metrics of the SNMP poller and the trap receiver."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DEVICES = Gauge("netqos_snmp_devices", "devices this poller polls (its shard of the inventory)")
POLLS = Counter("netqos_snmp_polls_total", "polls by result", ["result"])
POLL_SECONDS = Gauge("netqos_snmp_poll_duration_seconds", "duration of the device's last poll", ["device"])
POLL_DURATION = Histogram(
    "netqos_snmp_poll_seconds",
    "duration of polls, all devices",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
POLL_ERRORS = Counter(
    "netqos_snmp_poll_errors_total", "failed polls by device and reason", ["device", "reason"]
)
VARBINDS = Counter("netqos_snmp_varbinds_total", "varbinds received, by device", ["device"])
SCHEDULE_LAG = Histogram(
    "netqos_snmp_schedule_lag_seconds",
    "how late a poll started against its due time (waiting for a concurrency slot)",
    buckets=(0.001, 0.01, 0.1, 0.5, 1, 5, 15, 60),
)
COUNTER_RESETS = Counter(
    "netqos_snmp_agent_restarts_total", "sysUpTime went backwards: baselines reset, no rate"
)
COUNTER_DISCONTINUITIES = Counter(
    "netqos_snmp_counter_discontinuities_total", "counter steps too large to be traffic (dropped, not stored)"
)
VALUES_DROPPED = Counter(
    "netqos_snmp_values_dropped_total",
    "readings that became no value: a profile's sentinel ('no reading'), or no row scale/precision",
    ["device", "reason"],
)
INVENTORY_ERRORS = Counter(
    "netqos_snmp_inventory_errors_total", "inventory reloads refused (the old one stays)"
)
TRAPS = Counter("netqos_traps_received_total", "traps by outcome", ["outcome"])
