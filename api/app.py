"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from api.routers import devices, health, probes, qos
from collector.store.sqlite import SQLiteStore
from netqos.config import Settings

ReadinessCheck = Callable[[], tuple[bool, str]]


def create_app(
    settings: Settings,
    store: SQLiteStore,
    readiness_checks: dict[str, ReadinessCheck] | None = None,
) -> FastAPI:
    """Build the API over an open store. `readiness_checks` name -> () -> (ok, detail)."""
    app = FastAPI(
        title="netqos",
        version="0.1.0",
        summary="Network telemetry and QoS monitoring: probe and network-element data, QCVN compliance.",
        description=(
            "Every /api/v1 endpoint needs `Authorization: Bearer <token>` with a token from the "
            "configuration's `api.tokens`. /healthz, /readyz and /metrics are open for probes and scrapers."
        ),
    )
    app.state.store = store
    app.state.api_tokens = [t.get_secret_value().encode() for t in settings.api.tokens]
    app.state.max_points = settings.api.max_points

    def store_check() -> tuple[bool, str]:
        store.ping()
        return True, f"schema version {store.schema_version()}"

    app.state.readiness_checks = {"store": store_check, **(readiness_checks or {})}
    app.include_router(health.router)
    app.include_router(qos.router)
    app.include_router(probes.router)
    app.include_router(devices.router)
    return app
