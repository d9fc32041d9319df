"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api import errors, web
from api.auth import KeyRing
from api.limits import BodyLimit, QueryGate, body_limit_for
from api.ratelimit import RateLimiter
from api.routers import (
    audit,
    availability,
    compliance,
    devices,
    health,
    incidents,
    ingest,
    kpi,
    probes,
    qos,
    reports,
    schedules,
    silences,
    topology,
    units,
)
from api.settings import ApiConfig
from collector.pipeline import IngestPipeline
from collector.store.store import Store
from compliance.plan import Plan
from compliance.profiles import Standards

ReadinessCheck = Callable[[], tuple[bool, str]]


def create_app(
    settings: ApiConfig,
    store: Store,
    readiness_checks: dict[str, ReadinessCheck] | None = None,
    pipeline: IngestPipeline | None = None,
    *,
    health_only: bool = False,
) -> FastAPI:
    """Build the API over an open store. `readiness_checks` name -> () -> (ok, detail);
    `pipeline` (the running ingest pipeline) enables POST /api/v1/ingest. `health_only`:
    /healthz, /readyz and /metrics alone (a worker's probe endpoints, no data served)."""
    # /docs and /redoc from files shipped in the package (fastapi-offline), never from a CDN:
    # the documentation works on a network without internet, and loads no third-party script.
    app = FastAPIOffline(
        # No call to the public validator service from the reader's browser either.
        swagger_ui_parameters={"validatorUrl": None},
        title="netqos",
        version=version("netqos"),  # pyproject.toml, the one source
        summary="Network telemetry and QoS monitoring: probe and network-element data, QCVN compliance.",
        description=(
            "Every /api/v1 endpoint needs `Authorization: Bearer <token>` with a key from the "
            "configuration (`api.keys`, roles viewer/operator/admin; `api.tokens` are viewers). An "
            "operator key sees only its own operator's data. POST /api/v1/ingest takes a probe's own "
            "token instead. /, /healthz, /readyz and /metrics are open. Every list answers CSV with "
            "`format=csv`."
        ),
    )
    errors.install(app)
    # Outermost of our own layers: a body over its limit is refused before routing,
    # authentication or parsing read any of it.
    app.add_middleware(BodyLimit, limit_of=body_limit_for(settings), timeout_s=settings.api.body_timeout_s)
    app.state.store = store
    app.state.settings = settings
    app.state.pipeline = pipeline
    app.state.schedules = None  # the ScheduleService, set by the service when probes.schedules_file is
    app.state.key_ring = KeyRing.from_settings(settings)
    app.state.max_points = settings.api.max_points
    app.state.standards = Standards.load(
        settings.compliance.profiles_dir, settings.compliance.declared_speeds_file
    )
    app.state.plan = Plan.load(settings.kpi.plan_file)
    app.state.ingest_limiter = RateLimiter(
        settings.api.ingest_rate_per_s, settings.api.ingest_burst, "batches"
    )
    app.state.upload_limiter = RateLimiter(
        settings.api.upload_rate_per_min / 60.0, settings.api.upload_burst, "uploads"
    )
    app.state.write_limiter = RateLimiter(
        settings.api.write_rate_per_min / 60.0, settings.api.write_burst, "writes"
    )
    app.state.auth_failure_limiter = RateLimiter(
        settings.api.auth_failures_per_min / 60.0, settings.api.auth_failure_burst, "wrong tokens"
    )
    app.state.query_gate = QueryGate(
        settings.api.max_queries, settings.api.max_queries_per_key, settings.api.query_wait_s
    )

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
    app.include_router(topology.router)
    app.include_router(availability.router)
    app.include_router(incidents.router)
    app.include_router(silences.router)
    app.include_router(compliance.router)
    app.include_router(kpi.router)
    app.include_router(reports.router)
    app.include_router(units.router)
    app.include_router(schedules.router)
    app.include_router(audit.router)
    app.include_router(web.router)
    if pipeline is not None:
        app.include_router(ingest.router)
    return app
