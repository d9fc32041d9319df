"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from api.routers import availability, devices, health, ingest, probes, qos
from collector.pipeline import IngestPipeline
from collector.store.sqlite import SQLiteStore
from netqos.config import Settings

ReadinessCheck = Callable[[], tuple[bool, str]]


def create_app(
    settings: Settings,
    store: SQLiteStore,
    readiness_checks: dict[str, ReadinessCheck] | None = None,
    pipeline: IngestPipeline | None = None,
    *,
    health_only: bool = False,
) -> FastAPI:
    """Build the API over an open store. `readiness_checks` name -> () -> (ok, detail);
    `pipeline` (the running ingest pipeline) enables POST /api/v1/ingest. `health_only`:
    /healthz, /readyz and /metrics alone (a worker's probe endpoints, no data served)."""
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
    app.state.settings = settings
    app.state.pipeline = pipeline
    app.state.api_tokens = [t.get_secret_value().encode() for t in settings.api.tokens]
    app.state.max_points = settings.api.max_points

    def store_check() -> tuple[bool, str]:
        store.ping()
        return True, f"schema version {store.schema_version()}"

    app.state.readiness_checks = {"store": store_check, **(readiness_checks or {})}
    app.include_router(health.router)
    if health_only:
        return app
    app.include_router(qos.router)
    app.include_router(probes.router)
    app.include_router(devices.router)
    app.include_router(availability.router)
    if pipeline is not None:
        app.include_router(ingest.router)
    return app
