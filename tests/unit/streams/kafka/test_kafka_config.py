"""KafkaClientConfig: the one object every Kafka client is built from."""

from __future__ import annotations

import dataclasses

import pytest

from schemas.settings import load_settings
from streams.kafka import KafkaClientConfig


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
        ],
    )
    def test_nonsense_is_refused(self, kwargs: dict[str, object]) -> None:
        """No brokers or a non-positive bound is refused when built."""
        with pytest.raises(ValueError, match="must"):
            KafkaClientConfig(**kwargs)  # type: ignore[arg-type]
