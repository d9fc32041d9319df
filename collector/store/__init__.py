"""Storage rooms: the store (SQLite by default, PostgreSQL for several processes).

Nothing is imported here, so reading the configuration (settings.py) does not load the store;
import what you need from its module (collector.store.store, collector.store.db, ...).
"""
