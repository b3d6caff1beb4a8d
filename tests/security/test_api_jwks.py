"""JWKS-file keys: chosen by kid, never usable for HMAC, misconfiguration refused at start-up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.auth import TokenVerifier
from schemas.errors import AuthenticationError
from tests.unit.gateway.fakes import settings_for

pytestmark = pytest.mark.requirement("RS-API-02", "ASVS-9.1.3")


def jwks_file(tmp_path: Path, *keys: tuple[str, Any, str]) -> Path:
    """Write a JWKS of (kid, public key, algorithm family) entries."""
    entries = []
    for kid, public_key, family in keys:
        algorithm = jwt.algorithms.RSAAlgorithm if family == "RS256" else jwt.algorithms.ECAlgorithm
        entry = json.loads(algorithm.to_jwk(public_key))
        entries.append({**entry, "kid": kid, "use": "sig"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": entries}))
    return path


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "dr-jwks",
        "roles": ["clinician"],
        "aud": "radstream",
        "iss": "radstream-local",
        "iat": now,
        "exp": now + 300,
    }
    return {**base, **overrides}


@pytest.fixture
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def verifier(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> TokenVerifier:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    path = jwks_file(
        tmp_path, ("rsa-1", rsa_key.public_key(), "RS256"), ("ec-1", ec_key.public_key(), "ES256")
    )
    settings = settings_for(tmp_path, jwt_algorithms=("RS256", "ES256"), jwt_jwks_file=path)
    return TokenVerifier(settings.api)


class TestJwks:
    def test_token_with_known_kid_is_accepted(
        self, verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        """An RS256 token whose kid names a JWKS key verifies."""
        token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
        assert verifier.verify(token).subject == "dr-jwks"

    def test_unknown_kid_is_refused(
        self, verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        """A kid the JWKS does not hold is not trusted."""
        token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "other"})
        with pytest.raises(AuthenticationError):
            verifier.verify(token)

    def test_hs256_token_with_rsa_kid_is_refused(
        self, verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        """Algorithm confusion: an HS256 token 'signed' with the public key never verifies."""
        public_pem = rsa_key.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        )
        forged = _hmac_token(public_pem, {"kid": "rsa-1"})
        with pytest.raises(AuthenticationError, match="does not match"):
            verifier.verify(forged)

    def test_token_signed_by_other_key_is_refused(self, verifier: TokenVerifier) -> None:
        """A valid-looking token signed by a key not in the JWKS fails the signature check."""
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(claims(), stranger, algorithm="RS256", headers={"kid": "rsa-1"})
        with pytest.raises(AuthenticationError, match="not trusted"):
            verifier.verify(token)


class TestJwksStartup:
    def test_hmac_key_in_jwks_is_refused(self, tmp_path: Path) -> None:
        """A JWKS with an oct (HMAC) key is a configuration error, found at start-up."""
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0c2VjcmV0"}]}))
        settings = settings_for(tmp_path, jwt_algorithms=("RS256",), jwt_jwks_file=path)
        with pytest.raises(ValueError, match="only RSA/EC"):
            TokenVerifier(settings.api)

    def test_key_family_not_allowed_is_refused(
        self, tmp_path: Path, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        """An RSA key in the JWKS when only ES256 is allowed is refused at start-up."""
        path = jwks_file(tmp_path, ("rsa-1", rsa_key.public_key(), "RS256"))
        settings = settings_for(tmp_path, jwt_algorithms=("ES256",), jwt_jwks_file=path)
        with pytest.raises(ValueError, match="is for RS256"):
            TokenVerifier(settings.api)

    def test_garbage_jwks_is_refused(self, tmp_path: Path) -> None:
        """A file that is not a JWKS is refused at start-up, not on the first request."""
        path = tmp_path / "jwks.json"
        path.write_text("not json")
        settings = settings_for(tmp_path, jwt_algorithms=("RS256",), jwt_jwks_file=path)
        with pytest.raises(ValueError, match="not a usable JWKS"):
            TokenVerifier(settings.api)


def _hmac_token(secret: bytes, headers: dict[str, str]) -> str:
    """An HS256 token keyed with ``secret``, built by hand (PyJWT refuses PEM HMAC keys)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", **headers}).encode())
    payload = b64(json.dumps(claims()).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"
