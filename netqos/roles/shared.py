"""What every process builds whatever its roles: the store, the ingest pipeline, the TSDB sink.

The pipeline is shared because three roles feed it (MQTT ingest, the SNMP poller, HTTPS
ingest in the API); its flusher runs in every process, and at shutdown whatever it accepted
is stored before the store closes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from collector.pipeline import IngestPipeline
from collector.store import audit
from collector.store.feed import TsdbFeed
from collector.store.sink import TsdbSink
from collector.store.spool import SpoolError
from collector.store.store import Store, open_store
from compliance.profiles import Standards, share_counters
from ground.errors import ConfigError
from netqos.config import Settings
from netqos.roles import Role
from netqos.service import import_unit_files, load_probe_file

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Shared:
    """The parts the roles build on."""

    settings: Settings
    store: Store
    pipeline: IngestPipeline
    tsdb: TsdbSink | None
    feed: TsdbFeed | None

    def role(self) -> Role:
        """The flusher and the sink feed (every process), and the probes' reload."""
        settings, store, pipeline = self.settings, self.store, self.pipeline

        async def reload_probes() -> str:
            path = settings.probes.file
            if path is not None:
                # A bad file raises here (ConfigError): logged by reload(), the registry stays as it was.
                await asyncio.to_thread(lambda: store.register_probes(load_probe_file(path)))
            return f"probes count={pipeline.reload_probes()}"

        role = Role(tasks=[("flusher", pipeline.run)], reloaders=[reload_probes])
        if self.feed is not None:
            role.tasks.append(("tsdb-feed", self.feed.run))
        return role

    async def close(self) -> None:
        """Intake has stopped: store what was accepted, then flush the sink, then close the store."""
        await self.pipeline.drain()
        if self.feed is not None and self.tsdb is not None:
            # What the sink cannot send in tsdb.close_timeout_s waits in its spool.
            self.feed.close()
            await asyncio.to_thread(self.tsdb.close)
        self.store.close()


def open_shared(settings: Settings) -> Shared:
    """Open the store (migrating it), import the configured units and probes, build the
    pipeline and start the TSDB sink. A bad file or spool is a ConfigError, the store closed."""
    # Ingest counts the profiles' share thresholds exactly (a bad profile fails here, at start).
    counters = share_counters(
        Standards.load(settings.compliance.profiles_dir, settings.compliance.declared_speeds_file)
    )
    store = open_store(settings.store)
    try:
        log.info(
            "event=store_opened backend=%s where=%s schema_version=%d",
            store.backend.name,
            store.backend.describe(),
            store.schema_version(),
        )
        if settings.units.communes_file or settings.units.villages_file:
            units = settings.units
            actor = audit.Actor("config", "admin")
            n_c, n_v = import_unit_files(store, units.communes_file, units.villages_file, actor)
            log.info("event=units_imported communes=%d villages=%d", n_c, n_v)
        if settings.probes.file is not None:
            n = store.register_probes(load_probe_file(settings.probes.file))
            log.info("event=probes_registered count=%d file=%s", n, settings.probes.file)
        pipeline = IngestPipeline(store, settings.ingest, share_counters=counters)
        tsdb: TsdbSink | None = None
        feed: TsdbFeed | None = None
        if settings.tsdb.url is not None:
            try:
                tsdb = TsdbSink(settings.tsdb)
            except SpoolError as spool_exc:
                raise ConfigError("tsdb.spool_dir", str(settings.tsdb.spool_dir), str(spool_exc)) from None
            feed = TsdbFeed(tsdb, settings.tsdb)
            pipeline.outputs.append(feed)
            tsdb.start()
    except BaseException:
        store.close()
        raise
    return Shared(settings, store, pipeline, tsdb, feed)
