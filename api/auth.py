"""Bearer-token authentication for /api/v1.

Tokens come from `api.tokens` in the configuration. With none configured nobody gets in:
an API that is open by accident is worse than one that says why it is closed.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False, description="a token listed in the configuration's api.tokens")


def require_token(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Let the request through only with a configured bearer token."""
    tokens: list[bytes] = request.app.state.api_tokens
    if not tokens:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "no API tokens are configured; set api.tokens (or NETQOS_API__TOKENS) and send "
            "'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if creds is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing 'Authorization: Bearer <token>' header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    given = creds.credentials.encode()
    # Compare against every token in constant time, so timing tells nothing about which.
    ok = False
    for t in tokens:
        ok |= hmac.compare_digest(given, t)
    if not ok:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
