"""JWT attacks against the API: each forged, stale or incomplete token is refused with 401."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr, ValidationError

from gateway.auth import REQUIRED_CLAIMS, TokenVerifier
from schemas.settings import ApiSettings, Settings
from tests.unit.gateway.fakes import Harness, build_harness, make_token, settings_for

pytestmark = pytest.mark.requirement(
    "RS-API-02", "ASVS-9.1.1", "ASVS-9.1.2", "ASVS-9.2.1", "ASVS-9.2.3"
)

PROTECTED = "/models"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rsa_pair(tmp_path: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "jwt_public.pem"
    path.write_bytes(public_pem)
    return private, path


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    """The API with HS256 trust and fakes."""
    return build_harness(tmp_path)


async def _status(harness: Harness, token: str) -> int:
    response = await harness.client.get(PROTECTED, headers={"Authorization": f"Bearer {token}"})
    return response.status_code


class TestMissingAndMalformed:
    """Tokens that are absent or not even JWTs."""

    async def test_missing_header_is_401(self, harness: Harness) -> None:
        """A request without Authorization is refused."""
        response = await harness.client.get(PROTECTED)
        assert response.status_code == 401
        assert response.json()["code"] == "AUTHENTICATION_FAILED"

    async def test_401_carries_www_authenticate(self, harness: Harness) -> None:
        """The 401 tells the client which scheme to use."""
        response = await harness.client.get(PROTECTED)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    async def test_basic_scheme_is_refused(self, harness: Harness) -> None:
        """Only the Bearer scheme is accepted."""
        response = await harness.client.get(
            PROTECTED, headers={"Authorization": "Basic ZHI6aG91c2U="}
        )
        assert response.status_code == 401

    async def test_garbage_token_is_refused(self, harness: Harness) -> None:
        """A string that is not a JWT is refused."""
        assert await _status(harness, "not.a.jwt") == 401

    async def test_oversized_token_is_refused(self, harness: Harness) -> None:
        """A token longer than any legitimate one is refused before parsing."""
        assert await _status(harness, "a" * 9000) == 401

    async def test_auth_failure_is_audited(self, harness: Harness) -> None:
        """Every refused token leaves an auth_failure ApiAction without an actor."""
        await harness.client.get(PROTECTED, headers={"Authorization": "Bearer x.y.z"})
        action = harness.audit.actions[-1]
        assert (action.action, action.actor_id, action.http_status) == ("auth_failure", None, 401)


class TestForgedTokens:
    """Tokens an attacker signed or altered."""

    async def test_alg_none_is_refused(self, harness: Harness) -> None:
        """An unsigned token (alg=none) is never accepted."""
        claims = jwt.decode(harness.token(roles=["admin"]), options={"verify_signature": False})
        header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        token = f"{header}.{_b64(json.dumps(claims).encode())}."
        assert await _status(harness, token) == 401

    async def test_tampered_payload_is_refused(self, harness: Harness) -> None:
        """Changing the roles in a signed token breaks its signature."""
        header, _payload, signature = harness.token(roles=["clinician"]).split(".")
        claims = jwt.decode(harness.token(), options={"verify_signature": False})
        claims["roles"] = ["admin"]
        forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
        assert await _status(harness, forged) == 401

    async def test_tampered_signature_is_refused(self, harness: Harness) -> None:
        """A token with a altered signature is refused."""
        header, payload, signature = harness.token().split(".")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        assert await _status(harness, f"{header}.{payload}.{flipped}") == 401

    async def test_other_secret_is_refused(self, harness: Harness) -> None:
        """A token signed with another HMAC secret is refused."""
        token = make_token(harness.settings, key="another-secret-that-is-32-bytes-long!!")
        assert await _status(harness, token) == 401

    async def test_hs512_outside_allow_list_is_refused(self, harness: Harness) -> None:
        """A correctly signed token with an algorithm outside the allow-list is refused."""
        # A 64-byte key, so PyJWT signs without a weak-key warning; the algorithm is the point.
        token = make_token(harness.settings, key="k" * 64, algorithm="HS512")
        assert await _status(harness, token) == 401


class TestHsRsConfusion:
    """An RS256 API must never verify an HS256 token with its public key as the secret."""

    async def test_hs256_signed_with_public_key_is_refused(self, tmp_path: Path) -> None:
        """The classic confusion attack: HS256 over the PEM public key is 401."""
        _private, public_path = _rsa_pair(tmp_path)
        harness = build_harness(
            tmp_path, jwt_algorithms=("RS256",), jwt_public_key_file=public_path
        )
        # PyJWT itself refuses PEM keys as HMAC secrets, so forge the HS256 token by hand.
        import hashlib  # noqa: PLC0415 - only this test needs raw HMAC
        import hmac  # noqa: PLC0415

        claims = jwt.decode(harness.token(roles=["admin"]), options={"verify_signature": False})
        signing_input = (
            _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
            + "."
            + _b64(json.dumps(claims).encode())
        )
        mac = hmac.new(public_path.read_bytes(), signing_input.encode(), hashlib.sha256).digest()
        assert await _status(harness, f"{signing_input}.{_b64(mac)}") == 401

    async def test_rs256_token_from_the_private_key_is_accepted(self, tmp_path: Path) -> None:
        """The same API accepts a genuine RS256 token (so the refusal above is meaningful)."""
        private, public_path = _rsa_pair(tmp_path)
        harness = build_harness(
            tmp_path, jwt_algorithms=("RS256",), jwt_public_key_file=public_path
        )
        token = make_token(harness.settings, key=private, algorithm="RS256")
        assert await _status(harness, token) == 200

    async def test_hs_token_never_checked_with_rsa_key_when_both_allowed(
        self, tmp_path: Path
    ) -> None:
        """With HS256 and RS256 allowed, an HS256 token is checked against the secret only."""
        _private, public_path = _rsa_pair(tmp_path)
        harness = build_harness(
            tmp_path, jwt_algorithms=("HS256", "RS256"), jwt_public_key_file=public_path
        )
        import hashlib  # noqa: PLC0415
        import hmac  # noqa: PLC0415

        claims = jwt.decode(harness.token(), options={"verify_signature": False})
        signing_input = (
            _b64(json.dumps({"alg": "HS256"}).encode()) + "." + _b64(json.dumps(claims).encode())
        )
        mac = hmac.new(public_path.read_bytes(), signing_input.encode(), hashlib.sha256).digest()
        assert await _status(harness, f"{signing_input}.{_b64(mac)}") == 401

    async def test_es256_token_accepted_with_ec_key(self, tmp_path: Path) -> None:
        """An EC public key verifies ES256 tokens."""
        private = ec.generate_private_key(ec.SECP256R1())
        path = tmp_path / "ec.pem"
        path.write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        harness = build_harness(tmp_path, jwt_algorithms=("ES256",), jwt_public_key_file=path)
        token = make_token(harness.settings, key=private, algorithm="ES256")
        assert await _status(harness, token) == 200


class TestClaims:
    """Time and identity claims."""

    async def test_expired_token_is_refused(self, harness: Harness) -> None:
        """A token past exp (beyond the leeway) is refused."""
        now = int(time.time())
        token = harness.token(iat=now - 600, exp=now - 60)
        assert await _status(harness, token) == 401

    async def test_expiry_within_leeway_is_accepted(self, harness: Harness) -> None:
        """A token expired by less than the leeway still passes (clock skew)."""
        now = int(time.time())
        token = harness.token(iat=now - 600, exp=now - 2)
        assert await _status(harness, token) == 200

    async def test_nbf_in_future_is_refused(self, harness: Harness) -> None:
        """A token not valid before a future time is refused."""
        token = harness.token(nbf=int(time.time()) + 600)
        assert await _status(harness, token) == 401

    async def test_iat_in_future_is_refused(self, harness: Harness) -> None:
        """A token issued in the future is refused."""
        now = int(time.time())
        token = harness.token(iat=now + 600, exp=now + 900)
        assert await _status(harness, token) == 401

    async def test_wrong_audience_is_refused(self, harness: Harness) -> None:
        """A token for another audience is refused."""
        assert await _status(harness, harness.token(aud="other-service")) == 401

    async def test_wrong_issuer_is_refused(self, harness: Harness) -> None:
        """A token from another issuer is refused."""
        assert await _status(harness, harness.token(iss="https://evil.example")) == 401

    @pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
    async def test_missing_required_claim_is_refused(self, harness: Harness, claim: str) -> None:
        """A token lacking any one required claim is refused."""
        assert await _status(harness, make_token(harness.settings, **{claim: None})) == 401

    async def test_subject_with_free_text_is_refused(self, harness: Harness) -> None:
        """A subject that is not a pseudonymous id (spaces, names) is refused."""
        assert await _status(harness, harness.token(subject="John Smith")) == 401

    async def test_roles_claim_must_be_a_list(self, harness: Harness) -> None:
        """A roles claim given as a string is refused rather than split."""
        assert await _status(harness, harness.token(roles="admin")) == 401  # type: ignore[arg-type]

    async def test_valid_token_is_accepted(self, harness: Harness) -> None:
        """The control: a valid token passes."""
        assert await _status(harness, harness.token()) == 200


class TestKeyConfiguration:
    """Weak key configuration is refused at start-up, not at the first request."""

    def test_settings_refuse_short_hmac_secret(self, tmp_path: Path) -> None:
        """Settings refuse an HS256 secret under 32 bytes."""
        with pytest.raises(ValidationError, match="32 bytes"):
            Settings(environment="test", api={"jwt_secret": "short-secret"})

    def test_verifier_refuses_short_secret_even_if_settings_bypassed(self) -> None:
        """The verifier checks the length itself (defence in depth)."""
        weak = ApiSettings.model_construct(
            **{**ApiSettings().model_dump(), "jwt_secret": SecretStr("x" * 31)}
        )
        with pytest.raises(ValueError, match="32 bytes"):
            TokenVerifier(weak)

    def test_create_app_refuses_short_secret(self, tmp_path: Path) -> None:
        """Building the app with a short secret fails."""
        settings = settings_for(tmp_path)
        weak = settings.model_copy(
            update={"api": settings.api.model_copy(update={"jwt_secret": SecretStr("x" * 16)})}
        )
        with pytest.raises(ValueError, match="32 bytes"):
            build_harness(tmp_path, settings=weak)
