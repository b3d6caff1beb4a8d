"""Settings: one frozen object from RADSTREAM_* variables, secrets masked, bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from schemas.settings import DEFAULT_JWT_SECRET, Settings, load_settings

pytestmark = pytest.mark.requirement("RS-CFG-01")


class TestSettingsFromEnvironment:
    def test_defaults_point_at_local_services(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without overrides, Kafka and PostgreSQL are the locally started services."""
        for name in (
            "RADSTREAM_KAFKA_BOOTSTRAP",
            "RADSTREAM_DATABASE_URL",
            "RADSTREAM_TOPIC_PREFIX",
        ):
            monkeypatch.delenv(name, raising=False)
        settings = load_settings()
        assert settings.kafka_bootstrap == "127.0.0.1:9092"
        assert settings.database_url.get_secret_value() == (
            "postgresql://radstream@127.0.0.1:5432/radstream"
        )
        assert settings.topic_prefix == "radstream."

    def test_environment_overrides(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """RADSTREAM_* variables, nested groups with __ and comma-separated roots are read."""
        other = tmp_path / "other"
        monkeypatch.setenv("RADSTREAM_KAFKA_BOOTSTRAP", "broker:29092")
        monkeypatch.setenv("RADSTREAM_STORAGE_ROOTS", f"{tmp_path}, {other}")
        monkeypatch.setenv("RADSTREAM_VALIDATION__MAX_FILE_BYTES", "1234")
        settings = load_settings()
        assert settings.kafka_bootstrap == "broker:29092"
        assert settings.storage_roots == (tmp_path.resolve(), other.resolve())
        assert settings.validation.max_file_bytes == 1234

    def test_settings_are_frozen(self) -> None:
        """Settings are built once and cannot be changed afterwards."""
        settings = load_settings()
        with pytest.raises(ValidationError):
            settings.topic_prefix = "x."  # type: ignore[misc]

    def test_async_url_selects_asyncpg(self) -> None:
        """A plain postgresql:// URL is turned into SQLAlchemy's asyncpg form."""
        settings = load_settings(database_url=SecretStr("postgresql://u:p@h:5/d"))
        assert settings.async_database_url == "postgresql+asyncpg://u:p@h:5/d"
        explicit = load_settings(database_url=SecretStr("postgresql+asyncpg://u@h/d"))
        assert explicit.async_database_url == "postgresql+asyncpg://u@h/d"


class TestSecrets:
    def test_masked_hides_password_and_jwt_secret(self) -> None:
        """Printing the settings never shows the database password or the JWT secret."""
        settings = load_settings(database_url=SecretStr("postgresql://user:hunter2@db:5432/x"))
        masked = settings.masked()
        assert masked["database_url"] == "postgresql://user:**********@db:5432/x"
        assert masked["api"]["jwt_secret"] == "**********"
        assert "hunter2" not in repr(settings)

    def test_masked_url_without_password_is_unchanged(self) -> None:
        """A URL without a password prints as it is."""
        url = "postgresql://radstream@127.0.0.1:5432/radstream"
        assert load_settings(database_url=SecretStr(url)).masked()["database_url"] == url

    def test_development_secret_refused_in_production(self) -> None:
        """The placeholder JWT secret is refused outside development."""
        with pytest.raises(ValidationError, match="development secret"):
            Settings(environment="production")
        ok = Settings(environment="production", api={"jwt_secret": "x" * 40})
        assert ok.api.jwt_secret.get_secret_value() != DEFAULT_JWT_SECRET

    def test_short_hmac_secret_refused(self) -> None:
        """An HS256 secret shorter than 32 bytes is refused at start-up."""
        with pytest.raises(ValidationError, match="at least 32 bytes"):
            Settings(api={"jwt_secret": "short"})


class TestValidationOfValues:
    def test_min_dimension_above_max_refused(self) -> None:
        """A dimension range that accepts nothing is a configuration error."""
        with pytest.raises(ValidationError, match="min_dimension"):
            Settings(validation={"min_dimension": 500, "max_dimension": 100})

    def test_empty_storage_roots_refused(self) -> None:
        """At least one storage root must be configured."""
        with pytest.raises(ValidationError, match="storage root"):
            Settings(storage_roots=" , ")

    def test_topic_prefix_must_be_a_legal_topic_name(self) -> None:
        """Characters Kafka does not allow in topic names are refused."""
        with pytest.raises(ValidationError):
            Settings(topic_prefix="bad prefix/")
