"""The probes room: software that runs at (or stands in for) the measurement points.

* ``probes.agent`` (later): the field probe agent that measures and publishes batches.
* ``probes.simulate``: a seeded fleet of simulated probes publishing schema-v1 batches
  over real MQTT, for ``netqos demo``, benchmarks and tests.
"""
