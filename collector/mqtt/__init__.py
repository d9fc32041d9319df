"""MQTT ingestion of probe measurement batches (payload schema v1)."""
