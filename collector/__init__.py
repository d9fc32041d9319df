"""Collection rooms: mqtt/ (probe batches), core/ (numba rollups), store/, pipeline/ (ingest), series.py."""
