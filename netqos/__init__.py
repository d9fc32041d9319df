"""netqos: network telemetry and QoS monitoring. This package holds the command line,
the settings model and the service wiring; the rooms are collector/, api/, probes/, alerts/."""

__version__ = "0.1.0"
