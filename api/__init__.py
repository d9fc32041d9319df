"""The HTTP API (FastAPI): QoS series, probes, health and metrics. `create_app` builds it."""

from api.app import create_app

__all__ = ["create_app"]
