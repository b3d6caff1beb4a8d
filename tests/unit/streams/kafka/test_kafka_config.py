"""KafkaClientConfig: the one object every Kafka client is built from, TLS and SASL included."""

from __future__ import annotations

import dataclasses
import ssl
import subprocess
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from pydantic import SecretStr, ValidationError

from schemas.settings import KafkaSecuritySettings, load_settings
from streams.kafka import KafkaClientConfig

pytestmark = pytest.mark.requirement("RS-SEC-01")

SECRET = "s3cret-scram-password"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key (openssl, as the secure profile makes them)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=radstream-test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def sasl_ssl(cafile: Path | None = None, **extra: object) -> KafkaSecuritySettings:
    return KafkaSecuritySettings(
        security_protocol="SASL_SSL",
        sasl_username="worker-validation",
        sasl_password=SecretStr(SECRET),
        ssl_cafile=cafile,
        **extra,  # type: ignore[arg-type]
    )


class TestSecureConnection:
    def test_sasl_ssl_reaches_every_aiokafka_client(self, certificate: tuple[Path, Path]) -> None:
        """SCRAM-SHA-512 over TLS, the broker checked against the configured CA."""
        cert, _key = certificate
        config = KafkaClientConfig("k:9093", security=sasl_ssl(cert))
        options = config.connection()
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert options["sasl_plain_username"] == "worker-validation"
        assert options["sasl_plain_password"] == SECRET
        context = options["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2
        assert len(context.get_ca_certs()) == 1

    def test_mutual_tls_loads_the_client_certificate(self, certificate: tuple[Path, Path]) -> None:
        """A client certificate and key are loaded when given (a wrong pair fails loudly)."""
        cert, key = certificate
        security = KafkaSecuritySettings(
            security_protocol="SSL", ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key
        )
        context = KafkaClientConfig("k:9093", security=security).ssl_context()
        assert isinstance(context, ssl.SSLContext)
        broken = KafkaSecuritySettings(
            security_protocol="SSL", ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=cert
        )
        with pytest.raises(ssl.SSLError):
            KafkaClientConfig("k:9093", security=broken).ssl_context()

    def test_faust_gets_the_same_credentials(self, certificate: tuple[Path, Path]) -> None:
        """Faust's consumer authenticates as the same principal, over the same TLS."""
        cert, _key = certificate
        credentials = KafkaClientConfig("k:9093", security=sasl_ssl(cert)).faust_credentials()
        assert isinstance(credentials, SASLCredentials)
        assert (credentials.username, credentials.password) == ("worker-validation", SECRET)
        assert credentials.mechanism.value == "SCRAM-SHA-512"
        assert credentials.protocol.value == "SASL_SSL"
        assert credentials.ssl_context is not None
        tls_only = KafkaSecuritySettings(security_protocol="SSL", ssl_cafile=cert)
        assert isinstance(
            KafkaClientConfig("k:9093", security=tls_only).faust_credentials(), SSLCredentials
        )
        assert KafkaClientConfig("k:9092").faust_credentials() is None

    def test_sasl_without_tls_has_no_tls_context(self) -> None:
        """SASL_PLAINTEXT (development only) sends no TLS context to either client."""
        security = KafkaSecuritySettings(
            security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password=SecretStr("p")
        )
        config = KafkaClientConfig("k:9092", security=security)
        assert "ssl_context" not in config.connection()
        credentials = config.faust_credentials()
        assert isinstance(credentials, SASLCredentials)
        assert credentials.ssl_context is None

    def test_the_password_never_prints(self) -> None:
        """repr (what a log line or a traceback shows) masks the password."""
        config = KafkaClientConfig("k:9093", security=sasl_ssl())
        assert SECRET not in repr(config)
        assert SECRET not in str(load_settings(kafka=sasl_ssl()).masked())

    def test_settings_reach_the_config(self) -> None:
        """RADSTREAM_KAFKA__* settings are what from_settings hands every client."""
        settings = load_settings(kafka=sasl_ssl())
        assert KafkaClientConfig.from_settings(settings).security == settings.kafka


class TestSecuritySettingsValidation:
    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"security_protocol": "SASL_SSL"}, "SASL needs"),
            (
                {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": ""},
                "SASL needs",
            ),
            ({"security_protocol": "SSL", "ssl_certfile": "/c.pem"}, "go together"),
            ({"security_protocol": "PLAINTEXT", "ssl_cafile": "/ca.pem"}, "does not use TLS"),
        ],
    )
    def test_incomplete_security_is_refused(self, values: dict[str, str], message: str) -> None:
        """Half a configuration is refused at start-up, naming what is missing."""
        with pytest.raises(ValidationError, match=message):
            KafkaSecuritySettings(**values)  # type: ignore[arg-type]

    def test_sasl_without_tls_is_refused_in_production(self) -> None:
        """Credentials in clear text: development may, production may not."""
        plain = {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": "p"}
        load_settings(environment="development", kafka=plain)
        with pytest.raises(ValidationError, match="SASL_PLAINTEXT is refused"):
            load_settings(environment="production", api={"jwt_secret": "x" * 40}, kafka=plain)

    def test_unchecked_host_names_are_refused_in_production(self) -> None:
        """A certificate for any host is no authentication of the broker."""
        tls = {"security_protocol": "SSL", "ssl_check_hostname": False}
        load_settings(environment="test", kafka=tls)
        with pytest.raises(ValidationError, match="ssl_check_hostname"):
            load_settings(environment="production", api={"jwt_secret": "x" * 40}, kafka=tls)

    def test_the_environment_configures_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The documented variables, nested with ``__``."""
        monkeypatch.setenv("RADSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
        monkeypatch.setenv("RADSTREAM_KAFKA__SASL_USERNAME", "router")
        monkeypatch.setenv("RADSTREAM_KAFKA__SASL_PASSWORD", SECRET)
        monkeypatch.setenv("RADSTREAM_KAFKA__MANAGE_TOPICS", "false")
        kafka = load_settings().kafka
        assert (kafka.security_protocol, kafka.sasl_username) == ("SASL_SSL", "router")
        assert kafka.sasl_password is not None
        assert kafka.sasl_password.get_secret_value() == SECRET
        assert not kafka.manage_topics


class TestKafkaClientConfig:
    def test_from_settings_takes_the_bootstrap_and_names_the_client(self) -> None:
        """Connection parameters come from the settings; the client id from the caller."""
        settings = load_settings(kafka_bootstrap="a:9092,b:9092")
        config = KafkaClientConfig.from_settings(settings, client_id="radstream-dlq")
        assert (config.bootstrap, config.client_id) == ("a:9092,b:9092", "radstream-dlq")

    def test_connection_is_what_every_client_takes(self) -> None:
        """Producers, consumers and admin clients get the same connection arguments."""
        config = KafkaClientConfig("k:9092", client_id="c", request_timeout_ms=5000)
        assert config.connection() == {
            "bootstrap_servers": "k:9092",
            "client_id": "c",
            "request_timeout_ms": 5000,
            "security_protocol": "PLAINTEXT",
        }

    def test_faust_uses_the_same_brokers(self) -> None:
        """Faust's broker URL is derived, not configured a second time."""
        assert KafkaClientConfig("k:9092").faust_broker_url == "kafka://k:9092"

    def test_frozen(self) -> None:
        """Built once and passed down: nobody changes it on the way."""
        config = KafkaClientConfig("k:9092")
        with pytest.raises(dataclasses.FrozenInstanceError):
            config.bootstrap = "other:9092"  # type: ignore[misc]

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"bootstrap": " "},
            {"bootstrap": "k:1", "request_timeout_ms": 0},
            {"bootstrap": "k:1", "send_timeout_seconds": 0},
            {"bootstrap": "k:1", "read_stall_seconds": -1},
            {"bootstrap": "k:1", "producer_linger_ms": -1},
            {"bootstrap": "k:1", "producer_max_batch_bytes": 0},
        ],
    )
    def test_nonsense_is_refused(self, kwargs: dict[str, object]) -> None:
        """No brokers or a non-positive bound is refused when built."""
        with pytest.raises(ValueError, match="must"):
            KafkaClientConfig(**kwargs)  # type: ignore[arg-type]
