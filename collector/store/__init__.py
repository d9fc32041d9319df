"""Storage rooms: the store (SQLite by default, PostgreSQL for several processes)."""

from collector.store.store import ProbeInfo, SeriesKey, Store, StoreError, open_store

__all__ = ["ProbeInfo", "SeriesKey", "Store", "StoreError", "open_store"]
