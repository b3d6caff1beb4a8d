"""Shared helpers of the audit integration and reliability tests (real broker only)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from schemas.audit import AuditCheckpoint, AuditRecord
from schemas.correlation import CORRELATION_ID_HEADER
from schemas.settings import SinkSettings
from sinks.database import Database
from sinks.repositories import AuditLogRepository
from streams.audit.checkpoints import CheckpointPolicy, TrustedKeys, sign_record
from streams.audit.files import load_or_create_signing_key, load_public_key
from streams.audit.io import (
    CHECKPOINT,
    RECORD,
    RECORD_SIGNATURE_HEADER,
    RECORD_TYPE_HEADER,
    AuditAgent,
    AuditTableSink,
    AuditTableWriter,
    chain_key,
    read_audit_topic,
    verify_topic,
)
from streams.audit.verify import VerificationReport
from streams.batching_sink import Backpressure
from streams.kafka import KafkaClientConfig
from streams.topics import TOPIC_SPECS, TopicKey, TopicNames
from tests.integration.database_helpers import run_in_thread
from tests.unit.audit.factories import api_action, arrived, completed, rejected, validated

# Source topics get 2 partitions (not production's 6) to keep topic creation quick.
SOURCE_PARTITIONS = 2


async def create_audit_topic(bootstrap: str, name: str) -> None:
    """Create one topic configured like the audit log (for tampered copies)."""
    await create_topics(bootstrap, None, extra=(name,))


async def create_topics(bootstrap: str, prefix: str | None, *, extra: tuple[str, ...] = ()) -> None:
    """Create every radstream topic under ``prefix`` (if given) plus ``extra`` audit-like ones."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = []
        for key, spec in TOPIC_SPECS.items() if prefix is not None else ():
            names = TopicNames(prefix)
            partitions = 1 if key is TopicKey.AUDIT_LOG else min(spec.partitions, SOURCE_PARTITIONS)
            topics.append(NewTopic(names[key], partitions, 1, topic_configs=spec.configs()))
        audit_configs = TOPIC_SPECS[TopicKey.AUDIT_LOG].configs()
        topics += [NewTopic(name, 1, 1, topic_configs=audit_configs) for name in extra]
        await admin.create_topics(topics)
    finally:
        await admin.close()


def trusted_in(directory: Path) -> TrustedKeys:
    """The public key of the agent whose key file is in ``directory``, as a verifier pins it."""
    return TrustedKeys.of(load_public_key(directory / "audit-key.pem"))


async def verify_agent_topic(
    kafka: KafkaClientConfig, topic: str, directory: Path
) -> VerificationReport:
    """Verify ``topic`` against the checkpoint file and key an agent keeps in ``directory``."""
    return await verify_topic(kafka, topic, directory / "checkpoints.jsonl", trusted_in(directory))


async def assert_whole_chain(
    kafka: KafkaClientConfig, topic: str, directory: Path, length: int
) -> list[AuditRecord]:
    """Assert ``topic`` holds only the agent's records, sequences 0 to ``length`` - 1, and
    verifies whole against the checkpoints and key in ``directory``; return the records."""
    content = await read_audit_topic(kafka, topic, trusted_in(directory))
    records = content[0].records
    assert all(isinstance(r, AuditRecord) for r in records)
    chain = [r for r in records if isinstance(r, AuditRecord)]
    assert [r.sequence for r in chain] == list(range(length))
    report = await verify_agent_topic(kafka, topic, directory)
    assert report.ok, report.summary()
    assert report.records_checked == length
    return chain


def make_agent(bootstrap: str, prefix: str, tmp_path: Path, *, every: int = 5) -> AuditAgent:
    """An agent on ``prefix`` with its key and checkpoint file under ``tmp_path``."""
    return AuditAgent(
        kafka=KafkaClientConfig(bootstrap, client_id="radstream-test"),
        prefix=prefix,
        group_id=f"{prefix}audit",
        signing_key_path=tmp_path / "audit-key.pem",
        checkpoint_file=tmp_path / "checkpoints.jsonl",
        policy=CheckpointPolicy(every_records=every, every_seconds=3600),
    )


def make_table_writer(
    bootstrap: str,
    prefix: str,
    database: Database,
    trusted: TrustedKeys,
    *,
    group_id: str | None = None,
) -> AuditTableWriter:
    """A writer copying ``prefix``'s audit topic into ``database``'s ``audit_log``."""
    repository = AuditLogRepository(database.sessions)
    return AuditTableWriter(
        kafka=KafkaClientConfig(bootstrap, client_id="radstream-test"),
        prefix=prefix,
        group_id=group_id or f"{prefix}sink",
        sink=AuditTableSink(repository, Backpressure.from_settings(SinkSettings())),
        trusted=trusted,
    )


def pipeline_events(images: int) -> list[tuple[TopicKey, BaseModel]]:
    """The events ``images`` images produce through the pipeline, plus API actions."""
    events: list[tuple[TopicKey, BaseModel]] = []
    for i in range(images):
        event = arrived()
        events.append((TopicKey.IMAGES_ARRIVED, event))
        events.append((TopicKey.IMAGES_VALIDATED, validated(event.event_id)))
        if i % 3 == 2:
            events.append((TopicKey.IMAGES_REJECTED, rejected(event.event_id)))
        else:
            events.append((TopicKey.INFERENCE_RESULTS, completed(event.event_id)))
        events.append((TopicKey.API_ACTIONS, api_action(event_id=event.event_id)))
    return events


async def publish(bootstrap: str, prefix: str, events: list[tuple[TopicKey, BaseModel]]) -> None:
    """Publish events to their topics, each with a correlation id header."""
    names = TopicNames(prefix)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(
                names[key],
                value=event.model_dump_json().encode(),
                key=str(getattr(event, "event_id", None) or uuid.uuid4()).encode(),
                headers=[(CORRELATION_ID_HEADER, f"corr-{i}".encode())],
            )
            for i, (key, event) in enumerate(events)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def publish_log(
    bootstrap: str,
    topic: str,
    items: list[AuditRecord | AuditCheckpoint],
    sign_with: Ed25519PrivateKey | None = None,
) -> None:
    """Write a (possibly tampered) copy of an audit log to ``topic`` in the given order.

    Records are signed with ``sign_with`` for ``topic`` (an attacker holding the signing key,
    so that what is tested is the chain and the checkpoints); unsigned without it (a forger).
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for item in items:
            kind = CHECKPOINT if isinstance(item, AuditCheckpoint) else RECORD
            headers = [(RECORD_TYPE_HEADER, kind)]
            if isinstance(item, AuditRecord) and sign_with is not None:
                signature = sign_record(sign_with, topic, item)
                headers.append((RECORD_SIGNATURE_HEADER, signature.encode()))
            await producer.send_and_wait(
                topic,
                value=item.model_dump_json().encode(),
                key=chain_key(0),
                partition=0,
                headers=headers,
            )
    finally:
        await producer.stop()


class AuditedLog:
    """An agent-written audit log: its records, checkpoints and the files that verify it."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        directory: Path,
        records: list[AuditRecord],
        checkpoints: list[AuditCheckpoint],
    ) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.directory = directory
        self.records = records
        self.checkpoints = checkpoints
        self.key_path = directory / "audit-key.pem"
        self.checkpoint_file = directory / "checkpoints.jsonl"

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        """The agent's signing key (tests forge with it, as an attacker holding it would)."""
        return load_or_create_signing_key(self.key_path)

    @property
    def trusted(self) -> TrustedKeys:
        """The agent's public key, as a verifier pins it."""
        return TrustedKeys.of(load_public_key(self.key_path))

    @property
    def kafka(self) -> KafkaClientConfig:
        """The Kafka layer's connection to the broker the log is on."""
        return KafkaClientConfig(self.bootstrap, client_id="radstream-test")

    @property
    def topic(self) -> str:
        """The agent's audit topic."""
        return TopicNames(self.prefix).audit

    async def copy_to_table(self, database: Database, group_name: str) -> AuditTableWriter:
        """Copy the whole topic into ``database``'s ``audit_log``; the writer that did it.

        The writer's consumer group is new (``group_name`` and a random suffix), so every copy
        reads the topic from its start.
        """
        from streams.kafka.loop import run_until_idle  # noqa: PLC0415 - keep helpers light

        group = f"{self.prefix}{group_name}-{uuid.uuid4().hex[:6]}"
        writer = make_table_writer(
            self.bootstrap, self.prefix, database, self.trusted, group_id=group
        )
        # Idle after 0.5 s: the topic was complete before the writer started.
        await run_until_idle(writer, idle_seconds=0.5)
        return writer

    def copy_directory(self, target: Path) -> Path:
        """A copy of the key and checkpoint file in ``target`` (tests may append to it)."""
        target.mkdir(parents=True, exist_ok=True)
        for name in ("audit-key.pem", "checkpoints.jsonl"):
            source = self.directory / name
            (target / name).write_bytes(source.read_bytes())
            (target / name).chmod(0o600)
        return target


async def produce_audited_log(
    bootstrap: str, prefix: str, directory: Path, *, images: int = 5, every: int = 5
) -> AuditedLog:
    """Run the real agent over ``images`` images' events and read back what it wrote."""
    from streams.audit.files import read_checkpoints  # noqa: PLC0415 - keep helpers light
    from streams.audit.io import read_audit_topic  # noqa: PLC0415
    from streams.kafka.loop import run_until_idle  # noqa: PLC0415

    await create_topics(bootstrap, prefix)
    await publish(bootstrap, prefix, pipeline_events(images))
    agent = make_agent(bootstrap, prefix, directory, every=every)
    # Idle after 0.5 s: all events were published before the agent started.
    await run_until_idle(agent, idle_seconds=0.5)
    content = (await read_audit_topic(agent.kafka, TopicNames(prefix).audit, agent.trusted))[0]
    records = [r for r in content.records if isinstance(r, AuditRecord)]
    return AuditedLog(
        bootstrap, prefix, directory, records, read_checkpoints(directory / "checkpoints.jsonl")
    )


def audited_log_for_module(
    kafka_bootstrap: str, run_id: str, tmp_path_factory: pytest.TempPathFactory, name: str
) -> AuditedLog:
    """One agent run (20 records, checkpoints at 4, 9, 14, 19) for a module's tests to share.

    Its topics are under a prefix and its key and checkpoint file in a directory, both named
    ``name`` and unique to the run.
    """
    prefix = f"rstest.{run_id}.{name}.{uuid.uuid4().hex[:8]}."
    directory = tmp_path_factory.mktemp(name)
    return run_in_thread(lambda: produce_audited_log(kafka_bootstrap, prefix, directory))
