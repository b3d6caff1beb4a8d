"""Issue 17 E: two topic prefixes on one database and one configured checkpoint file.

A chain is named by its audit topic and partition: the table's unique key and every read are
keyed by topic (migration 0008), and each topic keeps its own checkpoint file. Before, the
second prefix's chain 0 collided with the first's (its records taken for forks) and its
verification read the other chain's checkpoints ("a checkpoint vouches for 7").
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from schemas.settings import Settings, load_settings
from sinks.database import Database
from sinks.repositories import AuditLogRepository
from streams.audit.checkpoints import TrustedKeys, encode_public_key
from streams.audit.files import checkpoint_file_for, load_or_create_signing_key, read_checkpoints
from streams.audit.io import AuditAgent, AuditTrail
from streams.kafka.loop import run_until_idle
from streams.topics import TopicNames
from tests.integration.audit_support import (
    create_topics,
    make_table_writer,
    pipeline_events,
    publish,
)
from tests.integration.database_helpers import migrated_database

pytestmark = pytest.mark.requirement("RS-AUD-05")


def _settings(bootstrap: str, url: str, prefix: str, directory: Path, pinned: str) -> Settings:
    """One deployment on ``prefix``; the audit files are the same for every prefix."""
    return load_settings(
        kafka_bootstrap=bootstrap,
        database_url=SecretStr(url),
        topic_prefix=prefix,
        consumer_group_prefix=f"rstest-{uuid.uuid4().hex[:8]}",
        audit={
            "signing_key_file": directory / "audit-key.pem",
            "checkpoint_file": directory / "checkpoints.jsonl",
            "checkpoint_every_records": 5,
            "trusted_public_keys": (pinned,),
        },
    )


async def test_two_prefixes_share_a_database_and_a_checkpoint_file(
    kafka_bootstrap: str, admin_database_url: str, run_id: str, tmp_path: Path
) -> None:
    """Both prefixes' chain 0 is stored whole, nothing is quarantined, and both verify."""
    pinned = encode_public_key(load_or_create_signing_key(tmp_path / "audit-key.pem").public_key())
    prefixes = [f"rstest.{run_id}.ident-{name}-{uuid.uuid4().hex[:6]}." for name in "ab"]
    async with migrated_database(admin_database_url) as url:
        deployments = [_settings(kafka_bootstrap, url, p, tmp_path, pinned) for p in prefixes]
        database = Database(url, pool_size=2)
        try:
            for settings in deployments:
                prefix = settings.topic_prefix
                await create_topics(kafka_bootstrap, prefix)
                await publish(kafka_bootstrap, prefix, pipeline_events(5))
                await run_until_idle(AuditAgent.from_settings(settings), idle_seconds=0.5)
                writer = make_table_writer(
                    kafka_bootstrap, prefix, database, TrustedKeys.parse((pinned,))
                )
                await run_until_idle(writer, idle_seconds=0.5)
                # Chain 0 of the second prefix is not a fork of the first's.
                assert (writer.stored, writer.quarantined) == (20, 0)
            repository = AuditLogRepository(database.sessions)
            assert await repository.quarantined() == 0
            for settings in deployments:
                topic = TopicNames(settings.topic_prefix).audit
                assert [len(chain) for chain in (await repository.chains(topic)).values()] == [20]
        finally:
            await database.dispose()

        for settings in deployments:
            topic = TopicNames(settings.topic_prefix).audit
            # Each topic's checkpoints in its own file; the configured file holds neither.
            own = read_checkpoints(checkpoint_file_for(tmp_path / "checkpoints.jsonl", topic))
            assert [cp.sequence for cp in own] == [4, 9, 14, 19]
            reports = await AuditTrail.from_settings(settings, TrustedKeys.parse((pinned,))).verify(
                "both"
            )
            assert [(where.split()[0], report.ok) for where, report in reports] == [
                ("topic", True),
                ("table", True),
                ("cross-check", True),
            ], [report.summary() for _, report in reports]
            assert all(report.records_checked == 20 for _, report in reports[:2])
        assert not (tmp_path / "checkpoints.jsonl").exists()
