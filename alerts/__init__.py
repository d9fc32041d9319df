"""Alerting room: rules -> alerts -> incidents -> notifications.

* ``rules``: the YAML rules (threshold, absence, state) and their evaluation over the store;
* ``states``: the alert state machine (verdicts; pending -> firing -> resolved);
* ``topology``: who depends on whom, and the root-cause verdict for an entity that failed;
* ``incidents``: an incident's lifecycle (open, symptoms, flapping, acknowledged, resolved)
  and its timeline, as statements on the store;
* ``engine``: one evaluation step at a time, deciding what the modules above record;
* ``silences``: silences and maintenance windows;
* ``notify``: routes, groups, the mute / dedup / outbox stages, the durable outbox and its
  dispatchers, and the receivers (webhook, e-mail, Apprise, Alertmanager);
* ``service``: the engine and one dispatcher per receiver, as the service runs them.

docs/alerting.md describes the behaviour; `netqos rules check` validates a rules file.
"""
