"""Storage rooms: the store (SQLite by default, PostgreSQL for several processes)."""

from collector.store.store import Store, StoreError, open_store

__all__ = ["Store", "StoreError", "open_store"]
