"""Liveness, readiness and Prometheus metrics (no authentication: probes and scrapers)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api.schemas import Check, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="the process is alive")
async def healthz() -> dict[str, str]:
    # On the event loop itself, not in the worker threads: it answers while they are busy.
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, summary="the broker and the store are reachable")
def readyz(request: Request, response: Response) -> Readiness:
    checks: dict[str, Check] = {}
    for name, probe in request.app.state.readiness_checks.items():
        try:
            ok, detail = probe()
        except Exception as exc:  # a readiness probe must answer, whatever broke
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        checks[name] = Check(ok=ok, detail=detail)
    ready = all(c.ok for c in checks.values())
    if not ready:
        response.status_code = 503
    return Readiness(ready=ready, checks=checks)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
