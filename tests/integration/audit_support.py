"""Shared helpers of the audit integration and reliability tests (real broker only)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import BaseModel

from schemas.audit import AuditCheckpoint, AuditRecord
from schemas.events import CORRELATION_ID_HEADER
from streams.audit.checkpoints import CheckpointPolicy
from streams.audit_agent import AuditAgent
from streams.audit_topic import CHECKPOINT, RECORD, RECORD_TYPE_HEADER, chain_key
from streams.topics import TOPIC_SPECS, TopicKey, TopicNames
from tests.unit.audit.factories import api_action, arrived, completed, rejected, validated

# Source topics get 2 partitions (not production's 6) to keep topic creation quick.
SOURCE_PARTITIONS = 2


async def create_topics(bootstrap: str, prefix: str, *, extra: tuple[str, ...] = ()) -> None:
    """Create every radstream topic under ``prefix`` (plus ``extra`` audit-like topics)."""
    names = TopicNames(prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = []
        for key, spec in TOPIC_SPECS.items():
            partitions = 1 if key is TopicKey.AUDIT_LOG else min(spec.partitions, SOURCE_PARTITIONS)
            topics.append(NewTopic(names[key], partitions, 1, topic_configs=spec.configs()))
        audit_configs = TOPIC_SPECS[TopicKey.AUDIT_LOG].configs()
        topics += [NewTopic(name, 1, 1, topic_configs=audit_configs) for name in extra]
        await admin.create_topics(topics)
    finally:
        await admin.close()


def make_agent(bootstrap: str, prefix: str, tmp_path: Path, *, every: int = 5) -> AuditAgent:
    """An agent on ``prefix`` with its key and checkpoint file under ``tmp_path``."""
    return AuditAgent(
        bootstrap=bootstrap,
        prefix=prefix,
        group_id=f"{prefix}audit",
        signing_key_path=tmp_path / "audit-key.pem",
        checkpoint_file=tmp_path / "checkpoints.jsonl",
        policy=CheckpointPolicy(every_records=every, every_seconds=3600),
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
    bootstrap: str, topic: str, items: list[AuditRecord | AuditCheckpoint]
) -> None:
    """Write a (possibly tampered) copy of an audit log to ``topic`` in the given order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for item in items:
            kind = CHECKPOINT if isinstance(item, AuditCheckpoint) else RECORD
            await producer.send_and_wait(
                topic,
                value=item.model_dump_json().encode(),
                key=chain_key(0),
                partition=0,
                headers=[(RECORD_TYPE_HEADER, kind)],
            )
    finally:
        await producer.stop()
