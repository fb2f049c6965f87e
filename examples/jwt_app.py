"""API keys and HS256 JWTs side by side: a verifier plugged into APIKeyAuth.

A bearer token that matches no API key is handed to the verifiers in order.
This one accepts HS256 JWTs signed with a shared secret, from one issuer and
for one audience, and turns their claims into an :class:`AuthContext`: ``sub``
becomes the ``key_id`` (prefixed ``jwt:``), the space-separated ``scope``
claim the scopes. Path rules and scope checks then apply to both kinds alike.

The ``scope`` claim is read as RFC 6749 §3.3 defines it: scope-tokens
separated by the ASCII space. A claim with anything else (a tab, a no-break
space, a quote) refuses the token: ``str.split()`` would cut
``"read\u00a0admin"`` into ``read`` and ``admin`` and grant ``admin``.

Needs PyJWT (the ``examples`` extra). Run it with uvicorn from the demo extra:

    API_KEY=sk-... JWT_SECRET=... python -m examples.jwt_app
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI

from asgi_apikey import (
    APIKey,
    APIKeyAuth,
    APIKeyMiddleware,
    AuthContext,
    Rejected,
    Verifier,
    verify_api_key,
)

ISSUER = "https://auth.example.test"
AUDIENCE = "llm-api"

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), printable ASCII but
# space, '"' and '\'.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def scopes_of(claim: object) -> frozenset[str] | None:
    r"""The scopes of a ``scope`` claim, or None when it holds anything but scope-tokens.

    >>> sorted(scopes_of("read  write"))
    ['read', 'write']
    >>> scopes_of("read\u00a0admin") is None
    True
    """
    if not isinstance(claim, str):
        return frozenset()  # an array, a number: not RFC 6749's form, so no scopes
    tokens = [token for token in claim.split(" ") if token]
    if not all(_SCOPE_TOKEN.fullmatch(token) for token in tokens):
        return None
    return frozenset(tokens)


def hs256_verifier(secret: str, *, issuer: str = ISSUER, audience: str = AUDIENCE) -> Verifier:
    """A verifier for HS256 JWTs with ``exp``, ``sub``, ``iss`` and ``aud`` claims."""
    if len(secret.encode()) < 32:
        raise ValueError("an HS256 secret needs at least 32 bytes (RFC 7518 §3.2)")

    def verify(token: str) -> AuthContext | Rejected | None:
        if token.count(".") != 2:
            return None  # not a JWT: then it was an unknown API key
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],  # never taken from the token's own header
                issuer=issuer,
                audience=audience,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            return Rejected("The token has expired", reason="expired")
        except jwt.InvalidTokenError:
            return Rejected("The token is not a valid JWT for this API")
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject.isprintable() or not 0 < len(subject) < 100:
            return Rejected("The token has an unusable subject")
        scopes = scopes_of(claims.get("scope", ""))
        if scopes is None:
            return Rejected("The token's scope claim is not space-separated scope-tokens")
        return AuthContext(authenticated=True, key_id=f"jwt:{subject}", scopes=scopes, mode="jwt")

    return verify


def create_app(keys: Sequence[str | APIKey], jwt_secret: str) -> FastAPI:
    auth = APIKeyAuth(keys, verifiers=[hs256_verifier(jwt_secret)])
    app = FastAPI(title="LLM API (API keys and JWTs)")
    app.add_middleware(
        APIKeyMiddleware,
        auth=auth,
        public=["/health"],
        protected={"/v1/admin": {"admin"}},
    )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/whoami")
    async def whoami(auth: Annotated[AuthContext, Depends(verify_api_key)]) -> dict[str, Any]:
        return {"key_id": auth.key_id, "scopes": sorted(auth.scopes), "mode": auth.mode}

    @app.get("/v1/admin/stats")
    async def stats(auth: Annotated[AuthContext, Depends(verify_api_key)]) -> dict[str, Any]:
        return {"requests": 0, "by": auth.key_id}

    return app


if __name__ == "__main__":  # pragma: no cover
    import uvicorn

    key, secret = os.environ.get("API_KEY"), os.environ.get("JWT_SECRET")
    if not key or not secret:
        raise SystemExit("set API_KEY and JWT_SECRET (32 bytes or more)")
    uvicorn.run(create_app([APIKey(key, name="env")], secret), host="127.0.0.1")
