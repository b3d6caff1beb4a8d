"""How every Kafka client of radstream connects: one frozen object, built from the settings.

:class:`KafkaClientConfig` is the single place where connection parameters are decided. Every
builder of the layer (:mod:`streams.kafka.clients`) and Faust's broker URL read them from here,
so adding a parameter (TLS, SASL/SCRAM credentials for issue #16) means changing this class and
:meth:`KafkaClientConfig.from_settings`, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.settings import Settings

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
    """

    bootstrap: str
    client_id: str = "radstream"
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    send_timeout_seconds: float = 30.0
    read_stall_seconds: float = 30.0
    admin_timeout_seconds: float = 10.0
    close_timeout_seconds: float = 10.0

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

    @classmethod
    def from_settings(
        cls, settings: Settings, *, client_id: str = "radstream"
    ) -> KafkaClientConfig:
        """The deployment's connection parameters, for a client named ``client_id``."""
        return cls(bootstrap=settings.kafka_bootstrap, client_id=client_id)

    def connection(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client (producer, consumer, admin) takes alike."""
        return {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
        }

    @property
    def faust_broker_url(self) -> str:
        """The same brokers as Faust's ``broker`` URL (Faust consumes the stage topics)."""
        return f"kafka://{self.bootstrap}"
