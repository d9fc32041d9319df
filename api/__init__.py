"""The HTTP API (FastAPI): QoS series, probes, health and metrics. `api.app.create_app` builds it.

Nothing is imported here, so reading the configuration (api/settings.py) does not load the app.
"""
