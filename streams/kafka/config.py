"""How every Kafka client of radstream connects: one frozen object, built from the settings.

:class:`KafkaClientConfig` is the single place where connection parameters are decided. Every
builder of the layer (:mod:`streams.kafka.clients`) and Faust (:attr:`faust_broker_url`,
:meth:`faust_credentials`) read them from here: the brokers, the time bounds, and how the client
authenticates and encrypts (``SASL_SSL`` with SCRAM and a verified broker certificate in the
secure profile, ``docs/security.md``). The SASL password stays a :class:`~pydantic.SecretStr`
until the moment a client is built, so the object prints and logs masked.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faust.auth import Credentials, SASLCredentials, SSLCredentials
from pydantic import SecretStr

from schemas.settings import KafkaSecuritySettings, Settings

# aiokafka's own default; named here so every client uses the same bound.
DEFAULT_REQUEST_TIMEOUT_MS = 40_000


@dataclass(frozen=True, slots=True)
class KafkaClientConfig:
    """Connection parameters and time bounds shared by producers, consumers and admin clients.

    Attributes:
        bootstrap: comma-separated ``host:port`` list of brokers.
        client_id: how the broker names this client in its logs and quotas.
        request_timeout_ms: bound of one request to the broker (aiokafka's ``request_timeout_ms``).
        send_timeout_seconds: bound of one delivery: every message of a batch acknowledged.
        read_stall_seconds: a topic read that makes no progress this long fails (``TIMEOUT``).
        admin_timeout_seconds: bound of one admin round (offsets, groups, metadata).
        close_timeout_seconds: bound of closing a client; one that will not close in time is
            abandoned (its background tasks cancelled), so stopping never hangs.
        security: how the client authenticates and encrypts (``RADSTREAM_KAFKA__*``).
        producer_linger_ms: how long a producer holds a batch open for more messages. 0: a
            stage delivers a whole batch's outcomes before awaiting any, so they share requests
            anyway, and a lone message (the normal-load case) goes at once instead of adding the
            linger to every hop (issue 18).
        producer_max_batch_bytes: most bytes per partition in one produce request: a full
            inference batch's outcomes (~2 KiB each) go in one request.
    """

    bootstrap: str
    client_id: str = "radstream"
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    send_timeout_seconds: float = 30.0
    read_stall_seconds: float = 30.0
    admin_timeout_seconds: float = 10.0
    close_timeout_seconds: float = 10.0
    security: KafkaSecuritySettings = field(default_factory=KafkaSecuritySettings)
    producer_linger_ms: int = 0
    producer_max_batch_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        if not self.bootstrap.strip():
            raise ValueError("bootstrap must name at least one broker")
        bounds = (
            self.send_timeout_seconds,
            self.read_stall_seconds,
            self.admin_timeout_seconds,
            self.close_timeout_seconds,
        )
        if self.request_timeout_ms <= 0 or min(bounds) <= 0:
            raise ValueError("timeouts must be positive")
        if self.producer_linger_ms < 0 or self.producer_max_batch_bytes <= 0:
            raise ValueError("producer_linger_ms must not be negative, batch bytes positive")

    @classmethod
    def from_settings(
        cls, settings: Settings, *, client_id: str = "radstream"
    ) -> KafkaClientConfig:
        """The deployment's connection parameters, for a client named ``client_id``."""
        return cls(bootstrap=settings.kafka_bootstrap, client_id=client_id, security=settings.kafka)

    def connection(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client (producer, consumer, admin) takes alike."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
            "security_protocol": self.security.security_protocol,
        }
        if self.security.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.security.uses_sasl:
            options["sasl_mechanism"] = self.security.sasl_mechanism
            options["sasl_plain_username"] = self.security.sasl_username
            options["sasl_plain_password"] = _secret(self.security.sasl_password)
        return options

    def producer_batching(self) -> dict[str, Any]:
        """How every producer batches (aiokafka's ``linger_ms`` and ``max_batch_size``)."""
        return {
            "linger_ms": self.producer_linger_ms,
            "max_batch_size": self.producer_max_batch_bytes,
        }

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context that verifies the broker (against ``ssl_cafile``, else the system CAs).

        Raises:
            OSError: a certificate or key file cannot be read.
            ssl.SSLError: a file is not a certificate or key.
        """
        security = self.security
        context = ssl.create_default_context(
            cafile=str(security.ssl_cafile) if security.ssl_cafile else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = security.ssl_check_hostname
        if security.ssl_certfile is not None:
            context.load_cert_chain(str(security.ssl_certfile), _path(security.ssl_keyfile))
        return context

    @property
    def faust_broker_url(self) -> str:
        """The same brokers as Faust's ``broker`` URL (Faust consumes the stage topics)."""
        return f"kafka://{self.bootstrap}"

    def faust_credentials(self) -> Credentials | None:
        """The same authentication and encryption as Faust's ``broker_credentials``."""
        if self.security.uses_sasl:
            return SASLCredentials(
                username=self.security.sasl_username,
                password=_secret(self.security.sasl_password),
                ssl_context=self.ssl_context() if self.security.uses_tls else None,
                mechanism=self.security.sasl_mechanism,
            )
        if self.security.uses_tls:
            return SSLCredentials(self.ssl_context())
        return None


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _path(value: Path | None) -> str | None:
    return str(value) if value is not None else None
