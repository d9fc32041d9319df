"""Authentication and roles for /api/v1.

Keys come from the configuration: `api.keys` (named, with a role, the token or only its
SHA-256) and `api.tokens` (plain tokens with the viewer role). With none configured
nobody gets in: an API that is open by accident is worse than one that says why it is
closed. Probes do not use these keys; they send their own per-probe token to
POST /api/v1/ingest (api/routers/ingest.py).

Roles:
- `viewer`: reads everything, changes nothing;
- `operator`: reads its own operator's data only, uploads its own operator's reports, acts
  only on its own operator's incidents, silences and maintenance windows (403 otherwise);
- `admin`: everything, including department reports, unit imports and the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.ratelimit import RateLimiter
from api.settings import ApiConfig
from collector.store.audit import Actor

_bearer = HTTPBearer(auto_error=False, description="an API key's token (api.keys or api.tokens)")
ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's name (never its token), role and operator."""

    name: str
    role: str
    operator: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    def operator_scope(self, requested: str | None) -> str | None:
        """The operator filter a read must apply: an operator key sees only its own data.

        Raises 403 when an operator key asks for another operator's data.
        """
        if not self.is_operator:
            return requested
        if requested is not None and requested != self.operator:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"key {self.name!r} (role operator) may read only operator {self.operator!r}'s data, "
                f"not {requested!r}",
            )
        return self.operator

    def may_see(self, operator: str) -> bool:
        return not self.is_operator or operator == self.operator

    def actor(self, request: Request) -> Actor:
        client = request.client.host if request.client else ""
        return Actor(self.name, self.role, self.operator or "", client)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """SHA-256 digests of the configured tokens and whose they are."""

    keys: tuple[tuple[bytes, Principal], ...]

    @staticmethod
    def from_settings(settings: ApiConfig) -> KeyRing:
        keys: list[tuple[bytes, Principal]] = []
        for i, t in enumerate(settings.api.tokens, start=1):
            keys.append((_sha256(t.get_secret_value()), Principal(f"token-{i}", "viewer")))
        for k in settings.api.keys:
            digest = (
                _sha256(k.token.get_secret_value())
                if k.token is not None
                else bytes.fromhex(k.token_sha256 or "")
            )
            keys.append((digest, Principal(k.name, k.role, k.operator)))
        return KeyRing(tuple(keys))

    def find(self, token: str) -> Principal | None:
        given = _sha256(token)
        found = None
        # Compare against every key in constant time, so timing tells nothing about which.
        for digest, principal in self.keys:
            if hmac.compare_digest(given, digest):
                found = principal
        return found


def _sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _find_unless_guessing(request: Request, ring: KeyRing, token: str) -> Principal | None:
    """The token's key; wrong tokens cost the client address (api.auth_failures_per_min): once
    over, it gets 429 and its tokens are not even compared, so a lucky guess tells nothing."""
    limiter: RateLimiter = request.app.state.auth_failure_limiter
    client = "client " + (request.client.host if request.client else "?")
    wait = limiter.blocked_s(client)
    if wait > 0:
        raise limiter.refuse(client, wait)
    principal = ring.find(token)
    if principal is None:
        limiter.wait_s(client)  # counts this wrong token
    return principal


def require_token(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from a configured bearer token; 401 with the reason otherwise."""
    ring: KeyRing = request.app.state.key_ring
    if not ring.keys:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "no API tokens are configured; set api.keys or api.tokens (or NETQOS_API__TOKENS) and send "
            "'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if creds is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing 'Authorization: Bearer <token>' header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = _find_unless_guessing(request, ring, creds.credentials)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(require_token)]


def require_role(*roles: str) -> Any:
    """A dependency letting through only keys with one of `roles` (403 names what is needed)."""

    def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"key {principal.name!r} has role {principal.role!r}; this needs {' or '.join(roles)}",
            )
        return principal

    return Depends(check)
