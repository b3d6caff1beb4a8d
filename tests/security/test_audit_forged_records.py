"""A record on ``audit.log`` the audit agent did not write is quarantined, never a crash.

Issue 16 item 1: any client that can write the audit topic could append a correctly chained
record; the table writer then raised ``AUDIT_CHAIN_BROKEN`` when the agent wrote its own record
at that sequence, the worker exited and every restart crashed the same way. Now every record
carries the agent's Ed25519 signature of its hash and topic: a forged or unreadable message is
kept in ``audit_quarantine``, logged by position, counted (the alert's metric), left out of the
chain and reported by ``audit verify`` at the sequence it claims — and the agent never continues
the chain from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from structlog.testing import capture_logs

from schemas.audit import AuditRecord
from sinks.database import Database
from sinks.repositories import AuditLogRepository
from streams.audit.chain import ChainState, append
from streams.audit.io import (
    RECORD,
    RECORD_TYPE_HEADER,
    chain_key,
    read_audit_topic,
    verify_table,
)
from streams.audit.verify import TamperKind
from streams.kafka import KafkaClientConfig
from streams.kafka.loop import run_until_idle
from streams.topics import TopicNames
from tests.integration.audit_support import (
    create_topics,
    make_agent,
    make_table_writer,
    pipeline_events,
    publish,
    publish_log,
    trusted_in,
    verify_agent_topic,
)
from tests.integration.database_helpers import migrated_database
from tests.unit.audit.factories import drafts

pytestmark = pytest.mark.requirement("RS-AUD-06", "RS-SEC-03")


@pytest.fixture
async def database_url(admin_database_url: str) -> AsyncIterator[str]:
    """A fresh migrated database for this test, dropped afterwards."""
    async with migrated_database(admin_database_url) as url:
        yield url


async def _records(kafka: KafkaClientConfig, topic: str, directory: Path) -> list[AuditRecord]:
    content = await read_audit_topic(kafka, topic, trusted_in(directory))
    return [r for r in content[0].records if isinstance(r, AuditRecord)]


async def test_forged_records_are_quarantined_and_the_chain_goes_on(
    kafka_bootstrap: str,
    kafka: KafkaClientConfig,
    topic_prefix: str,
    tmp_path: Path,
    database_url: str,
) -> None:
    """A forged, correctly chained record and a garbage message: quarantined, chain intact."""
    await create_topics(kafka_bootstrap, topic_prefix)
    topic = TopicNames(topic_prefix).audit
    await publish(kafka_bootstrap, topic_prefix, pipeline_events(1))
    assert await run_until_idle(make_agent(kafka_bootstrap, topic_prefix, tmp_path)) == 4
    head = (await _records(kafka, topic, tmp_path))[-1]

    # The forger: a record at sequence 4 linking to the real head (as issue 16 describes),
    # then bytes that are no record at all.
    forged, _ = append(ChainState.after(head), drafts(1)[0])
    await publish_log(kafka_bootstrap, topic, [forged])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            b"\xff garbage",
            key=chain_key(0),
            partition=0,
            headers=[(RECORD_TYPE_HEADER, RECORD)],
        )
    finally:
        await producer.stop()

    # The agent restarts after the forgery: it continues from its own head (3), not from 4.
    await publish(kafka_bootstrap, topic_prefix, pipeline_events(1))
    assert await run_until_idle(make_agent(kafka_bootstrap, topic_prefix, tmp_path)) == 4
    genuine = await _records(kafka, topic, tmp_path)
    assert [r.sequence for r in genuine] == list(range(8))
    assert genuine[4].prev_hash == head.hash
    assert genuine[4].hash != forged.hash

    counted: list[int] = []
    database = Database(database_url, pool_size=2)
    try:
        writer = make_table_writer(kafka_bootstrap, topic_prefix, database, trusted_in(tmp_path))
        writer._quarantined = counted.append
        with capture_logs() as logs:
            await run_until_idle(writer, idle_seconds=0.5)  # no AUDIT_CHAIN_BROKEN, no crash
        repository = AuditLogRepository(database.sessions)
        assert writer.stored == 8
        assert sum(counted) == 2
        assert await repository.quarantined() == 2
        table = await verify_table(
            repository, topic, tmp_path / "checkpoints.jsonl", trusted_in(tmp_path)
        )
    finally:
        await database.dispose()
    quarantined = [e for e in logs if e["event"] == "audit_record_quarantined"]
    assert [(e["claimed_sequence"], e["reason"]) for e in quarantined] == [
        (4, "unsigned record"),
        (None, "unreadable message"),
    ]
    assert all(e["error_code"] == "AUDIT_RECORD_FORGED" for e in quarantined)
    # The table holds the agent's chain only: intact.
    assert table.ok, table.summary()
    assert table.last_sequence == 7

    # The topic still holds the forgery: verify names it at the sequence it claimed.
    report = await verify_agent_topic(kafka, topic, tmp_path)
    assert (report.first_bad_sequence, report.problem) == (4, TamperKind.FORGED_RECORD)
    assert (report.last_sequence, report.foreign_records) == (7, 2)
