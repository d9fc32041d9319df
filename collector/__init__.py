"""Collection rooms: mqtt/ (probe batches), core/ (numba rollups), store/ (SQLite), pipeline/ (ingest), series.py."""
