"""JWT bearer authentication (PyJWT) and the roles the API knows.

Trust rules, each one a defence against a known JWT attack:

- the header's ``alg`` must be in the configured allow-list (``alg=none`` never is);
- the *key type* decides the algorithm family: an HMAC secret only verifies HS256, an RSA public
  key only RS256, an EC key only ES256, so a token "signed" with the public key as an HMAC
  secret is never checked against that key (HS/RS confusion);
- ``exp``, ``iat``, ``aud``, ``iss`` and ``sub`` are required, ``nbf`` is honoured, with a small
  leeway; ``iat`` in the future is refused;
- ``exp``, ``iat`` and ``nbf`` must be JSON numbers (PyJWT alone accepts ``"exp": "99999999999"``)
  and ``exp - iat`` may not exceed ``api.jwt_max_lifetime_seconds``, so a token minted with a
  far-future ``exp`` (``10**30``) is not a key for ever;
- HMAC secrets shorter than 32 bytes are refused at start-up;
- keys from a JWKS file are chosen by the token's ``kid`` and keep their own family: a JWKS never
  holds HMAC (``oct``) keys, so a JWKS key can never verify an HS256 token.
"""

from __future__ import annotations

import re
from collections.abc import Set
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from schemas.errors import AuthenticationError, ErrorCode
from schemas.settings import ApiSettings

MIN_HMAC_SECRET_BYTES = 32
MAX_TOKEN_CHARS = 8192
REQUIRED_CLAIMS = ("exp", "iat", "aud", "iss", "sub")
TIME_CLAIMS = ("exp", "iat", "nbf")
_SUBJECT = re.compile(r"^[A-Za-z0-9._@:-]{1,64}$")
_FAMILY = {"HS256": "hmac", "RS256": "rsa", "ES256": "ec"}


class Role(StrEnum):
    """What a caller may do; a token's ``roles`` claim lists them."""

    CLINICIAN = "clinician"  # reads own results, verifies them
    SERVICE = "service"  # submits images
    AUDITOR = "auditor"  # reads lifecycles and the audit trail
    ADMIN = "admin"  # everything except clinical verification


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the token's subject and its known roles."""

    subject: str
    roles: frozenset[Role]

    def has_any(self, *roles: Role) -> bool:
        """Whether the caller holds at least one of ``roles``."""
        return not self.roles.isdisjoint(roles)


def _unauthenticated(reason: str) -> AuthenticationError:
    return AuthenticationError(ErrorCode.AUTHENTICATION_FAILED, reason)


class TokenVerifier:
    """Verifies bearer tokens against the keys and rules in :class:`ApiSettings`.

    Built once at start-up: it reads the public key file and refuses weak configuration then,
    not on the first request.
    """

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._keys: dict[str, Any] = {}
        allowed = set(settings.jwt_algorithms)
        if not allowed:
            raise ValueError("api.jwt_algorithms must allow at least one algorithm")
        if "HS256" in allowed:
            secret = settings.jwt_secret.get_secret_value().encode()
            if len(secret) < MIN_HMAC_SECRET_BYTES:
                raise ValueError("the HS256 secret must be at least 32 bytes")
            self._keys["HS256"] = secret
        asymmetric = allowed - {"HS256"}
        self._jwks: dict[str, tuple[str, Any]] = {}
        if settings.jwt_jwks_file is not None:
            self._jwks = _load_jwks(settings.jwt_jwks_file, asymmetric)
        if asymmetric and (settings.jwt_public_key_file is not None or not self._jwks):
            self._load_public_key(settings.jwt_public_key_file, asymmetric)

    def _load_public_key(self, path: Path | None, algorithms: Set[str]) -> None:
        if path is None:
            raise ValueError(f"{sorted(algorithms)} need api.jwt_public_key_file")
        key = load_pem_public_key(path.read_bytes())
        if isinstance(key, rsa.RSAPublicKey):
            family = "RS256"
        elif isinstance(key, ec.EllipticCurvePublicKey):
            family = "ES256"
        else:
            raise TypeError("api.jwt_public_key_file must hold an RSA or EC public key")
        if family not in algorithms:
            raise ValueError(f"the public key is for {family}, not {sorted(algorithms)}")
        self._keys[family] = key

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms a token may be signed with, given the keys actually loaded."""
        return tuple(sorted(set(self._keys) | {alg for alg, _ in self._jwks.values()}))

    def _key_for(self, header: dict[str, Any]) -> tuple[str, Any]:
        """(algorithm, key) to verify a token with this header, or raise."""
        algorithm = header.get("alg")
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self._jwks:
            family, key = self._jwks[kid]
            if algorithm != family:
                raise _unauthenticated("the token's algorithm does not match its key")
            return family, key
        # The key is chosen by the algorithm family, and only families with a loaded key exist.
        if not isinstance(algorithm, str) or algorithm not in self._keys:
            raise _unauthenticated("the token's algorithm is not allowed")
        return algorithm, self._keys[algorithm]

    def verify(self, token: str) -> Principal:
        """Return the caller of a valid ``token``; raise AuthenticationError otherwise."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise _unauthenticated("the bearer token is missing or too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _unauthenticated("the bearer token is malformed") from exc
        algorithm, key = self._key_for(header)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                leeway=self._settings.jwt_leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS), "verify_signature": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise _unauthenticated("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise _unauthenticated("the token is not valid yet") from exc
        except jwt.PyJWTError as exc:
            raise _unauthenticated("the token is not trusted") from exc
        _check_lifetime(claims, self._settings.jwt_max_lifetime_seconds)
        return _principal(claims)


def _check_lifetime(claims: dict[str, Any], max_lifetime_seconds: int) -> None:
    """Refuse time claims that are not numbers and lifetimes longer than the maximum."""
    for name in TIME_CLAIMS:
        value = claims.get(name)
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _unauthenticated(f"the token's {name} claim must be a number")
    if claims["exp"] - claims["iat"] > max_lifetime_seconds:
        raise _unauthenticated("the token's lifetime is longer than allowed")


_JWK_FAMILY = {"RSA": "RS256", "EC": "ES256"}


def _load_jwks(path: Path, algorithms: Set[str]) -> dict[str, tuple[str, Any]]:
    """Public keys of a JWKS file by ``kid``; refuses HMAC keys and families not allowed."""
    try:
        jwks = jwt.PyJWKSet.from_json(path.read_text())
    except (jwt.PyJWKSetError, ValueError) as exc:
        raise ValueError(f"api.jwt_jwks_file is not a usable JWKS: {exc}") from exc
    keys: dict[str, tuple[str, Any]] = {}
    for jwk in jwks.keys:
        family = _JWK_FAMILY.get(jwk.key_type or "")
        if family is None:
            raise ValueError(f"api.jwt_jwks_file holds a {jwk.key_type} key; only RSA/EC allowed")
        if family not in algorithms:
            raise ValueError(
                f"the JWKS key {jwk.key_id!r} is for {family}, not {sorted(algorithms)}"
            )
        if not jwk.key_id:
            raise ValueError("every JWKS key needs a kid")
        keys[jwk.key_id] = (family, jwk.key)
    return keys


def _principal(claims: dict[str, Any]) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
        raise _unauthenticated("the token's subject is not a valid pseudonymous id")
    raw_roles = claims.get("roles", [])
    if not isinstance(raw_roles, list) or not all(isinstance(role, str) for role in raw_roles):
        raise _unauthenticated("the token's roles claim must be a list of strings")
    known = {role.value for role in Role}
    # Unknown roles are ignored rather than refused, so issuers can add roles for other systems.
    return Principal(subject, frozenset(Role(role) for role in raw_roles if role in known))


def bearer_token(authorization: str | None) -> str:
    """Extract the token from an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        raise _unauthenticated("a bearer token is required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()
