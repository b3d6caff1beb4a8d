"""Issue HS256 bearer tokens for local use and the demo (``radstream token``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

import jwt

from gateway.auth import MIN_HMAC_SECRET_BYTES, Role
from schemas.settings import Settings

MAX_TTL_SECONDS = 24 * 60 * 60


def issue_token(
    settings: Settings,
    subject: str,
    roles: Iterable[str],
    ttl_seconds: int,
    *,
    now: float | None = None,
) -> str:
    """Sign a token the API accepts, with every required claim, valid for ``ttl_seconds``.

    Only HS256 can be issued locally: RS256/ES256 tokens come from the identity provider holding
    the private key.

    Raises:
        ValueError: HS256 is not allowed, the secret is short, a role is unknown or the TTL is
            not within 1 s .. 24 h or longer than the API's maximum token lifetime.
    """
    api = settings.api
    if "HS256" not in api.jwt_algorithms:
        raise ValueError("local tokens are HS256: add it to api.jwt_algorithms")
    secret = api.jwt_secret.get_secret_value().encode()
    if len(secret) < MIN_HMAC_SECRET_BYTES:
        raise ValueError("the HS256 secret must be at least 32 bytes")
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError("ttl_seconds must be between 1 and 86400")
    if ttl_seconds > api.jwt_max_lifetime_seconds:
        raise ValueError("ttl_seconds is longer than api.jwt_max_lifetime_seconds allows")
    role_names = [Role(role).value for role in roles]
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": subject,
        "roles": role_names,
        "aud": api.jwt_audience,
        "iss": api.jwt_issuer,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm="HS256")
