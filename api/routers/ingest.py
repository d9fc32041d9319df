"""HTTPS fallback for probes whose MQTT is blocked: POST /api/v1/ingest.

The body is the MQTT payload (schema v1, docs/payload-v1.md), authenticated with the
probe's own token (not an API token): a probe can only send as itself. The answer comes
after the batch is stored, so a 200 means what a PUBACK means on the MQTT path; a
retry of the same (probe_id, seq) answers 409 and is not counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from api.errors import ERR
from collector import metrics as m
from collector.mqtt.schema import Rejection
from collector.pipeline import Duplicate, IngestPipeline

router = APIRouter(prefix="/api/v1", tags=["ingest"])
_bearer = HTTPBearer(auto_error=False, description="the probe's own token (netqos probe-token PROBE_ID)")
STORE_TIMEOUT_S = 30.0


class IngestResult(BaseModel):
    status: str
    probe_id: str
    seq: int
    measurements: int


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _probe_of(request: Request, creds: HTTPAuthorizationCredentials | None) -> str:
    if creds is None:
        raise HTTPException(
            401, "missing 'Authorization: Bearer <probe token>'", headers={"WWW-Authenticate": "Bearer"}
        )
    probe = request.app.state.store.probe_by_token_sha256(token_sha256(creds.credentials))
    if probe is None:
        # Guessing tokens costs a client its rate too (keyed by address: there is no probe yet).
        request.app.state.ingest_limiter.check("client " + (request.client.host if request.client else "?"))
        raise HTTPException(401, "unknown probe token", headers={"WWW-Authenticate": "Bearer"})
    request.app.state.ingest_limiter.check(str(probe))
    return str(probe)


@router.post(
    "/ingest",
    response_model=IngestResult,
    responses={
        401: {**ERR, "description": "no or unknown probe token"},
        403: {**ERR, "description": "the batch's probe_id is not the token's probe"},
        409: {**ERR, "description": "this (probe_id, seq) is stored already"},
        413: {**ERR, "description": "larger than mqtt.max_payload_bytes"},
        422: {
            **ERR,
            "description": "refused: the body says why (same reasons as the dead-letter topics,"
            " store_rejected included)",
        },
        429: {**ERR, "description": "the probe sends faster than api.ingest_rate_per_s; see Retry-After"},
        503: {**ERR, "description": "not stored in time; retry with the same seq"},
    },
    summary="a probe's batch over HTTPS (MQTT fallback), answered once stored",
)
async def ingest(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> IngestResult:
    probe_id = _probe_of(request, creds)
    pipeline: IngestPipeline = request.app.state.pipeline
    settings = request.app.state.settings
    body = await request.body()
    stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def done() -> None:
        if not stored.done():  # the client may have gone (timeout) before the commit
            stored.set_result(None)

    def refused(why: Rejection, _batch: bytes, _ack: Callable[[], None]) -> None:
        # Counted and logged by the pipeline; the answer says why (a retry would fail alike).
        if not stored.done():
            stored.set_exception(HTTPException(422, f"{why.reason}: {why.detail}"))

    got = pipeline.offer(
        probe_id,
        body,
        max_payload_bytes=settings.mqtt.max_payload_bytes,
        on_stored=done,
        on_rejected=refused,
    )
    if isinstance(got, Rejection):
        m.MESSAGES_REJECTED.labels(reason=got.reason).inc()
        status = {"too_large": 413, "topic_mismatch": 403}.get(got.reason, 422)
        raise HTTPException(status, f"{got.reason}: {got.detail}")
    if isinstance(got, Duplicate):
        raise HTTPException(409, f"batch {got.seq} of probe {probe_id} is stored already")
    # Store now rather than wait for the flusher: the probe is waiting for the answer.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(pipeline.flush()), timeout=STORE_TIMEOUT_S)
    if not stored.done():
        raise HTTPException(503, "accepted but not stored yet; retry with the same seq")
    stored.result()  # raises the 422 of a batch the store refused
    return IngestResult(status="stored", probe_id=probe_id, seq=got.seq, measurements=got.measurements)
