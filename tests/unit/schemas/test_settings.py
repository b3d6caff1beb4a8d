"""Settings: one frozen object from RADSTREAM_* variables, secrets masked, bad values refused."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from schemas.settings import (
    DEFAULT_JWT_SECRET,
    AuditSettings,
    Settings,
    describe_settings_error,
    env_name,
    load_settings,
    mask_url,
)

pytestmark = pytest.mark.requirement("RS-CFG-01", "RS-DEP-02")


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

    @pytest.mark.parametrize(
        "url",
        [
            # docker-compose.kafka.yml's former default password, and the Kubernetes example's
            "postgresql://radstream:radstream-change-me@postgres:5432/radstream",
            "postgresql://radstream:CHANGE_ME@postgres:5432/radstream",
        ],
    )
    def test_placeholder_database_password_refused_in_production(self, url: str) -> None:
        """A shipped placeholder password is refused in production, and the error hides it."""
        with pytest.raises(ValidationError, match="RADSTREAM_DATABASE_URL holds a shipped") as err:
            Settings(environment="production", api={"jwt_secret": "x" * 40}, database_url=url)
        assert url.split(":")[2].split("@", maxsplit=1)[0] not in err.value.errors()[0]["msg"]

    def test_placeholder_in_a_nested_secret_refused_in_production(self) -> None:
        """Every secret of the settings tree is checked, not only the two known ones."""
        with pytest.raises(ValidationError, match="RADSTREAM_API__JWT_SECRET holds a shipped"):
            Settings(environment="production", api={"jwt_secret": "please-change-me-" + "x" * 32})

    def test_placeholder_allowed_in_development(self) -> None:
        """Development keeps working with the shipped placeholders."""
        url = "postgresql://radstream:radstream-change-me@127.0.0.1:5432/radstream"
        assert Settings(database_url=url).environment == "development"

    def test_short_hmac_secret_refused(self) -> None:
        """An HS256 secret shorter than 32 bytes is refused at start-up."""
        with pytest.raises(ValidationError, match="at least 32 bytes"):
            Settings(api={"jwt_secret": "short"})


class TestMaskUrl:
    @pytest.mark.parametrize(
        ("url", "masked"),
        [
            ("postgresql://u:pw@db/x", "postgresql://u:**********@db/x"),
            # unescaped "@", "/" and "?" in a password: everything up to the last "@" is hidden
            ("postgresql://u:p@ss/w?rd@db:5432/x", "postgresql://u:**********@db:5432/x"),
            (
                "postgresql://db/x?user=u&password=hunter2",
                "postgresql://db/x?user=u&password=**********",
            ),
            ("host=db password=hunter2 dbname=x", "host=db password=********** dbname=x"),
            ("postgresql://u@db/x?sslpassword=k3y", "postgresql://u@db/x?sslpassword=**********"),
        ],
    )
    def test_no_password_survives(self, url: str, masked: str) -> None:
        """Every form libpq accepts a password in is masked, whole."""
        assert mask_url(url) == masked


class TestDescribeSettingsError:
    def _error(self, **values: object) -> ValidationError:
        with pytest.raises(ValidationError) as refused:
            Settings(**values)  # type: ignore[arg-type]
        return refused.value

    def test_names_the_variable_and_never_the_value(self) -> None:
        """A refused secret is named by its variable; its value is not repeated."""
        text = describe_settings_error(self._error(api={"jwt_secret": "tooshort-Zq81"}))
        assert "RADSTREAM_API__JWT_SECRET" in text
        assert "tooshort-Zq81" not in text

    def test_every_problem_on_one_line(self) -> None:
        """Several bad values are listed, separated, on one line."""
        text = describe_settings_error(self._error(sink={"pool_size": 0}, environment="prod-Zq81"))
        assert "\n" not in text
        assert "RADSTREAM_SINK__POOL_SIZE: " in text
        assert "RADSTREAM_ENVIRONMENT: " in text
        assert "prod-Zq81" not in text

    def test_env_names(self) -> None:
        """Nested settings are RADSTREAM_GROUP__NAME."""
        assert env_name(("observability", "metrics_port")) == (
            "RADSTREAM_OBSERVABILITY__METRICS_PORT"
        )


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


class TestKafkaBootstrap:
    @pytest.mark.parametrize(
        "value", ["127.0.0.1:9092", "kafka-0:9092,kafka-1:9092", "broker", "[::1]:9092"]
    )
    def test_server_lists_the_client_parses_accepted(self, value: str) -> None:
        """host[:port] lists (IPv6 in brackets) are taken as given."""
        assert Settings(kafka_bootstrap=value).kafka_bootstrap == value

    @pytest.mark.parametrize(
        "value", ["", "notahost:abc", "127.0.0.1:99999", "127.0.0.1:0", "a:9092,,b:9092", "h:1 x"]
    )
    def test_unparseable_server_lists_refused(self, value: str) -> None:
        """A list the Kafka client would crash on is a settings error, not a bug at run time."""
        with pytest.raises(ValidationError, match="kafka_bootstrap"):
            Settings(kafka_bootstrap=value)


class TestDicomSettings:
    def test_store_defaults_inside_the_first_root(self, tmp_path: Path) -> None:
        """Received instances go to <first storage root>/received-dicom by default."""
        settings = Settings(storage_roots=(tmp_path,))
        assert settings.dicom_storage_dir == tmp_path.resolve() / "received-dicom"

    def test_store_outside_every_root_refused(self, tmp_path: Path) -> None:
        """The stages could not read a store outside the roots: a configuration error."""
        with pytest.raises(ValidationError, match="inside one of the storage roots"):
            Settings(storage_roots=(tmp_path / "a",), dicom={"storage_dir": tmp_path / "b"})

    def test_destinations_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Export destinations and the allow-list are JSON in the environment."""
        monkeypatch.setenv(
            "RADSTREAM_DICOM__EXPORT_DESTINATIONS",
            '[{"ae_title": "PACS", "host": "pacs.local", "port": 104}]',
        )
        monkeypatch.setenv("RADSTREAM_DICOM__ALLOWED_CALLING_AE_TITLES", '["ORTHANC", "CT01"]')
        dicom = load_settings().dicom
        assert [(d.ae_title, d.host, d.port) for d in dicom.export_destinations] == [
            ("PACS", "pacs.local", 104)
        ]
        assert dicom.allowed_calling_ae_titles == ("ORTHANC", "CT01")

    @pytest.mark.parametrize("title", ["", "WAY-TOO-LONG-AE-TITLE", "DOE^JANE", "A B"])
    def test_ae_titles_are_short_plain_tokens(self, title: str) -> None:
        """AE titles are 1-16 letters, digits or ._- (safe to log and to use as a source)."""
        with pytest.raises(ValidationError):
            Settings(dicom={"ae_title": title})


@pytest.mark.requirement("RS-SEC-03")
class TestPinnedAuditKeys:
    def test_raw_public_keys_accepted(self) -> None:
        """A pinned key is the base64 of 32 raw bytes."""
        key = base64.b64encode(bytes(range(32))).decode()
        assert AuditSettings(trusted_public_keys=(key,)).trusted_public_keys == (key,)

    @pytest.mark.parametrize("value", ["not base64!", "AAAA"])
    def test_anything_else_refused(self, value: str) -> None:
        """Not base64, or not 32 bytes: the settings are refused at start-up."""
        with pytest.raises(ValidationError, match="pinned audit key"):
            AuditSettings(trusted_public_keys=(value,))
