"""Collection rooms: everything between a measurement point and the store.

* ``mqtt/``: probe batches over MQTT (the lean reader, the schema-v1 contract, the numba
  scanner, the consumer that acknowledges only what is stored);
* ``snmp/``: the SNMP poller (BER codec, v2c and v3 clients, YAML profiles, counters and
  row states); ``traps/``: the trap receiver (v2c, SNMPv3 USM);
* ``inventory/``: devices, named credentials and sharding; administrative units;
* ``core/``: the numba kernels (sketches, rollups, signals, availability, share counters);
* ``pipeline/``: the ingest front door (``offer``), its buffer, batch de-duplication and flushes
  into the store; ``series.py``: the series registry shared by the pipeline, poller and sink feed;
* ``store/``: the store on SQLite or PostgreSQL (migrations, series, rollups and their
  tiers, devices, probes, reports, audit, backups) and the time-series sink;
* ``events.py``: StateChange, the contract for up/down transitions between rooms;
  ``probe_health.py``: probes offline and online again; ``metrics.py``: /metrics figures.
"""
