"""The probes room: software that runs at (or stands in for) the measurement points.

* ``probes.agent``: the field probe agent that measures (ICMP, TCP, DNS, HTTP, radio),
  queues durably and publishes schema-v1 batches over MQTT with an HTTPS fallback. It is
  also its own slim distribution (``netqos-probe``, Python 3.9+) and imports nothing of the
  server; ``netqos probe`` runs it from a server install (docs/probe-agent.md).
* ``probes.simulate``: a seeded fleet of simulated probes publishing schema-v1 batches
  over real MQTT, and simulated SNMP devices, for ``netqos demo``, benchmarks and tests.
"""
