"""A fleet of simulated field probes publishing schema-v1 batches over real MQTT.

Typical use::

    fleet = build_fleet(200, seed=0)
    stats = await run_fleet(fleet, "127.0.0.1", 1883, stop=stop_event, backfill_minutes=60)

See README.md in this folder for the model and the options.
"""

from probes.simulate.fleet import (
    OPERATORS,
    TECHNOLOGIES,
    Commune,
    SimProbe,
    build_fleet,
    load_communes,
)
from probes.simulate.model import (
    Episode,
    ProbeProfile,
    encode,
    episodes,
    is_offline,
    load_factor,
    make_payload,
    probe_profile,
)
from probes.simulate.run import FleetStats, run_fleet, topic_for

__all__ = [
    "OPERATORS",
    "TECHNOLOGIES",
    "Commune",
    "Episode",
    "FleetStats",
    "ProbeProfile",
    "SimProbe",
    "build_fleet",
    "encode",
    "episodes",
    "is_offline",
    "load_communes",
    "load_factor",
    "make_payload",
    "probe_profile",
    "run_fleet",
    "topic_for",
]
