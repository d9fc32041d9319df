"""Storage rooms: the embedded SQLite store (default)."""

from collector.store.sqlite import ProbeInfo, SeriesKey, SQLiteStore, StoreError

__all__ = ["ProbeInfo", "SQLiteStore", "SeriesKey", "StoreError"]
