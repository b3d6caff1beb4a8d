"""radstream's Kafka layer: the only code that imports aiokafka.

Everything that talks to the broker outside Faust's own consumption goes through here:

* :mod:`~streams.kafka.config` — :class:`KafkaClientConfig`, the one object every client is
  built from (bootstrap, client id, timeouts; the place for TLS/SASL settings);
* :mod:`~streams.kafka.clients` — the builders of producers, consumers and admin clients and
  their thin wrappers;
* :mod:`~streams.kafka.errors` — the one translation of Kafka errors into ``TransientError``;
* :mod:`~streams.kafka.publisher` — :class:`KafkaPublisher`, delivery-confirmed producing;
* :mod:`~streams.kafka.reader` — :class:`TopicReader`, reading a topic (or offset ranges) to
  its end without a consumer group;
* :mod:`~streams.kafka.admin` — :func:`ensure_topics`, the one place topics are created, and
  :func:`create_acls`;
* :mod:`~streams.kafka.loop` — :func:`run_until_stopped` / :func:`run_until_idle`, the one run
  loop of the aiokafka-driven batch loops (the audit agent and the audit-table sink).

``tests/unit/test_layering.py`` fails when a module outside this package imports aiokafka.
"""

from streams.kafka.admin import TopicReport, create_acls, ensure_topics
from streams.kafka.clients import (
    AsyncResource,
    ConsumerRecord,
    GroupMembership,
    KafkaAdmin,
    KafkaConsumer,
    KafkaProducer,
    TopicPartition,
    build_admin,
    build_consumer,
    build_producer,
    start_all,
    stop_all,
)
from streams.kafka.config import KafkaClientConfig
from streams.kafka.messages import Headers, Outgoing, RawMessage
from streams.kafka.publisher import KafkaPublisher
from streams.kafka.reader import TopicContent, TopicReader, read_topic

__all__ = [
    "AsyncResource",
    "ConsumerRecord",
    "GroupMembership",
    "Headers",
    "KafkaAdmin",
    "KafkaClientConfig",
    "KafkaConsumer",
    "KafkaProducer",
    "KafkaPublisher",
    "Outgoing",
    "RawMessage",
    "TopicContent",
    "TopicPartition",
    "TopicReader",
    "TopicReport",
    "build_admin",
    "build_consumer",
    "build_producer",
    "create_acls",
    "ensure_topics",
    "read_topic",
    "start_all",
    "stop_all",
]
