"""TokenVerifier, bearer parsing and issue_token in isolation."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.auth import Principal, Role, TokenVerifier, bearer_token
from gateway.tokens import issue_token
from schemas.errors import AuthenticationError
from tests.unit.gateway.fakes import settings_for

pytestmark = pytest.mark.requirement("RS-API-02")


def _public_pem(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class TestIssueToken:
    """issue_token signs tokens the verifier accepts."""

    def test_round_trip_gives_subject_and_roles(self, tmp_path: Path) -> None:
        """An issued token verifies to its subject and roles."""
        settings = settings_for(tmp_path)
        token = issue_token(settings, "dr-house", ["clinician", "auditor"], 60)
        principal = TokenVerifier(settings.api).verify(token)
        assert principal == Principal("dr-house", frozenset({Role.CLINICIAN, Role.AUDITOR}))

    def test_token_has_every_required_claim(self, tmp_path: Path) -> None:
        """exp, iat, aud, iss and sub are present, exp = iat + ttl."""
        settings = settings_for(tmp_path)
        claims = jwt.decode(
            issue_token(settings, "svc-1", ["service"], 120, now=1_000_000),
            options={"verify_signature": False},
        )
        assert (claims["exp"] - claims["iat"], claims["aud"], claims["iss"], claims["sub"]) == (
            120,
            "radstream",
            "radstream-local",
            "svc-1",
        )

    def test_unknown_role_is_refused(self, tmp_path: Path) -> None:
        """Only the API's roles can be issued."""
        with pytest.raises(ValueError, match="superuser"):
            issue_token(settings_for(tmp_path), "x", ["superuser"], 60)

    @pytest.mark.parametrize("ttl", [0, 86401])
    def test_ttl_out_of_range_is_refused(self, tmp_path: Path, ttl: int) -> None:
        """TTLs must be between one second and one day."""
        with pytest.raises(ValueError, match="ttl"):
            issue_token(settings_for(tmp_path), "x", ["service"], ttl)

    def test_refused_when_hs256_not_allowed(self, tmp_path: Path) -> None:
        """Without HS256 in the allow-list no local token can be issued."""
        key = ec.generate_private_key(ec.SECP256R1())
        (tmp_path / "ec.pem").write_bytes(_public_pem(key))
        settings = settings_for(
            tmp_path, jwt_algorithms=("ES256",), jwt_public_key_file=tmp_path / "ec.pem"
        )
        with pytest.raises(ValueError, match="HS256"):
            issue_token(settings, "x", ["service"], 60)

    def test_refused_with_short_secret(self, tmp_path: Path) -> None:
        """A short secret smuggled past Settings is still refused."""
        settings = settings_for(tmp_path)
        from pydantic import SecretStr  # noqa: PLC0415

        weak = settings.model_copy(
            update={"api": settings.api.model_copy(update={"jwt_secret": SecretStr("s")})}
        )
        with pytest.raises(ValueError, match="32 bytes"):
            issue_token(weak, "x", ["service"], 60)


class TestVerifierConfiguration:
    """Key loading decides the algorithm family at start-up."""

    def test_asymmetric_algorithm_without_key_file_is_refused(self, tmp_path: Path) -> None:
        """RS256 allowed but no public key configured is an error."""
        settings = settings_for(tmp_path, jwt_algorithms=("RS256",))
        with pytest.raises(ValueError, match="jwt_public_key_file"):
            TokenVerifier(settings.api)

    def test_key_of_other_family_is_refused(self, tmp_path: Path) -> None:
        """An EC key cannot serve an RS256-only allow-list."""
        (tmp_path / "ec.pem").write_bytes(_public_pem(ec.generate_private_key(ec.SECP256R1())))
        settings = settings_for(
            tmp_path, jwt_algorithms=("RS256",), jwt_public_key_file=tmp_path / "ec.pem"
        )
        with pytest.raises(ValueError, match="ES256"):
            TokenVerifier(settings.api)

    def test_unsupported_key_type_is_refused(self, tmp_path: Path) -> None:
        """An Ed25519 key is neither RSA nor EC."""
        (tmp_path / "ed.pem").write_bytes(_public_pem(ed25519.Ed25519PrivateKey.generate()))
        settings = settings_for(
            tmp_path, jwt_algorithms=("ES256",), jwt_public_key_file=tmp_path / "ed.pem"
        )
        with pytest.raises(TypeError, match="RSA or EC"):
            TokenVerifier(settings.api)

    def test_algorithms_are_those_with_a_key(self, tmp_path: Path) -> None:
        """The effective allow-list lists exactly the loaded key families."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (tmp_path / "rsa.pem").write_bytes(_public_pem(key))
        settings = settings_for(
            tmp_path, jwt_algorithms=("HS256", "RS256"), jwt_public_key_file=tmp_path / "rsa.pem"
        )
        assert TokenVerifier(settings.api).algorithms == ("HS256", "RS256")

    def test_unknown_roles_are_ignored(self, tmp_path: Path) -> None:
        """Roles the API does not know grant nothing but do not invalidate the token."""
        settings = settings_for(tmp_path)
        now = int(time.time())
        token = jwt.encode(
            {
                "sub": "u1",
                "roles": ["clinician", "superuser"],
                "aud": "radstream",
                "iss": "radstream-local",
                "iat": now,
                "exp": now + 60,
            },
            settings.api.jwt_secret.get_secret_value(),
        )
        assert TokenVerifier(settings.api).verify(token).roles == frozenset({Role.CLINICIAN})


class TestBearerToken:
    """Parsing the Authorization header."""

    def test_extracts_token(self) -> None:
        """'Bearer abc' gives 'abc' (scheme case-insensitive)."""
        assert bearer_token("bearer abc") == "abc"

    @pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Token abc"])
    def test_refuses_missing_or_other_scheme(self, header: str | None) -> None:
        """Anything but 'Bearer <token>' is an authentication failure."""
        with pytest.raises(AuthenticationError):
            bearer_token(header)
