"""The field probe agent: measures, queues durably, publishes schema-v1 batches.

Runs on a small Linux box at a measurement point (``netqos probe --config probe.yaml``):

* ``config``: the probe's YAML configuration (``ProbeConfig``).
* ``measure`` / ``icmp``: the tests (ICMP echo, TCP connect, DNS, HTTP throughput,
  service access) and the loss / jitter / throughput definitions.
* ``radio``: radio conditions from ModemManager (``mmcli``), a JSON file or a fixture.
* ``queue``: the durable on-disk queue of batches (SQLite), which assigns ``seq``.
* ``clock``: how well the probe's clock is synchronised (chrony, timedatectl).
* ``publisher``: MQTT (QoS 1, persistent session, last will) with an HTTPS fallback.
* ``schedule``: central measurement schedules from the server, and the monthly data budget.
* ``agent``: the scheduler tying it all together, and the command-line entry point.
* ``payload``: payload schema v1 as the agent needs it (no server import).
* ``compat``: the few Python 3.11 asyncio parts the agent uses, for Python 3.9 and 3.10.
* ``logs``: log setup.

Packaged alone as ``netqos-probe`` (pyproject.toml in this directory; docs/probe-agent.md,
"Packaging"): it imports nothing from the server.

See docs/probe-agent.md.
"""

# Keep equal to the repository's pyproject.toml (tests/unit/test_probe_schedule.py checks it).
__version__ = "0.1.0"
