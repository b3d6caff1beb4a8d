"""The audit_log table: append-only, copied from the topic, tampering caught, read back."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.settings import AuditSettings
from sinks.database import Database
from sinks.migrate import upgrade_async
from sinks.repositories import AuditLogRepository
from streams.audit.chain import ChainState
from streams.audit.checkpoints import sign_checkpoint
from streams.audit.files import append_checkpoint
from streams.audit.io import (
    AuditTrail,
    trail_for_event_in_table,
    verify_table,
)
from streams.audit.verify import TamperKind, VerificationReport
from tests.integration.audit_support import (
    AuditedLog,
    audited_log_for_module,
)
from tests.unit.audit.factories import T0

pytestmark = pytest.mark.requirement("RS-AUD-04", "RS-AUD-05", "RS-G-05")

DISABLE = "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"


@pytest.fixture(scope="module")
def audited(
    kafka_bootstrap: str, run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> AuditedLog:
    """One agent run shared by the module's tests."""
    return audited_log_for_module(kafka_bootstrap, run_id, tmp_path_factory, "audit-table")


@pytest.fixture
async def stored(audited: AuditedLog, new_database: Callable[[], str]) -> str:
    """A fresh migrated database holding the agent's 20 records; its URL."""
    url = new_database()
    await upgrade_async(url)
    database = Database(url, pool_size=1)
    try:
        await AuditLogRepository(database.sessions).store(
            audited.topic, [(record, index) for index, record in enumerate(audited.records)]
        )
    finally:
        await database.dispose()
    return url


async def _sql(url: str, *statements: str) -> None:
    """Run statements as the table's owner, as an attacker with owner rights would."""
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _verify(log: AuditedLog, url: str, directory: Path | None = None) -> VerificationReport:
    where = directory or log.directory
    database = Database(url, pool_size=1)
    try:
        repository = AuditLogRepository(database.sessions)
        return await verify_table(repository, log.topic, where / "checkpoints.jsonl", log.trusted)
    finally:
        await database.dispose()


def _bad(report: VerificationReport) -> tuple[int | None, TamperKind | None]:
    return report.first_bad_sequence, report.problem


class TestAppendOnly:
    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE audit_log SET hash = repeat('0', 64) WHERE sequence = 3",
            "DELETE FROM audit_log WHERE sequence = 3",
            "TRUNCATE audit_log",
        ],
    )
    async def test_changes_refused_by_the_database(self, stored: str, statement: str) -> None:
        """UPDATE, DELETE and TRUNCATE are refused by the trigger, even for the owner."""
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await _sql(stored, statement)

    async def test_insert_is_idempotent(self, audited: AuditedLog, stored: str) -> None:
        """Storing the same records again adds no row."""
        database = Database(stored, pool_size=1)
        try:
            again = await AuditLogRepository(database.sessions).store(
                audited.topic, [(record, 0) for record in audited.records]
            )
        finally:
            await database.dispose()
        assert again.stored == 0
        assert again.quarantined == ()
        assert (await _verify(audited, stored)).records_checked == 20

    async def test_fork_quarantined(self, audited: AuditedLog, stored: str) -> None:
        """A different record under a stored sequence is quarantined, never stored or raised."""
        other = audited.records[4].model_copy(update={"hash": "f" * 64})
        database = Database(stored, pool_size=1)
        try:
            repository = AuditLogRepository(database.sessions)
            report = await repository.store(audited.topic, [(other, 99)])
            assert await repository.quarantined() == 1
        finally:
            await database.dispose()
        assert report.stored == 0
        assert [(q.audit_offset, q.claimed_sequence, q.reason) for q in report.quarantined] == [
            (99, 4, "forks the chain")
        ]
        assert (await _verify(audited, stored)).ok


class TestSink:
    async def test_sink_copies_topic_into_table(
        self, audited: AuditedLog, new_database: Callable[[], str]
    ) -> None:
        """The writer stores every record of the topic once; the table verifies and shows trails."""
        url = new_database()
        await upgrade_async(url)
        database = Database(url, pool_size=2)
        try:
            repository = AuditLogRepository(database.sessions)
            writer = await audited.copy_to_table(database, "sink")
            assert writer.stored == 20
            event_id = audited.records[0].object.event_id
            assert event_id is not None
            trail = await trail_for_event_in_table(repository, event_id, audited.topic)
        finally:
            await database.dispose()
        report = await _verify(audited, url)
        assert report.ok, report.summary()
        assert trail
        assert all(r.object.event_id == event_id for r in trail)


class TestTableTampering:
    async def test_intact_table_verifies(self, audited: AuditedLog, stored: str) -> None:
        """The stored copy of the agent's log verifies."""
        report = await _verify(audited, stored)
        assert report.ok, report.summary()

    @pytest.mark.parametrize(
        ("statements", "reported"),
        [
            pytest.param(
                (
                    DISABLE,
                    "UPDATE audit_log SET record = jsonb_set(record, '{correlation_id}', "
                    "'\"forged\"') WHERE sequence = 7",
                ),
                (7, TamperKind.EDITED),
                id="a record edited around the trigger is edited at its sequence",
            ),
            pytest.param(
                (
                    DISABLE,
                    "UPDATE audit_log AS a SET record = b.record FROM audit_log AS b "
                    "WHERE (a.sequence, b.sequence) IN ((5, 6), (6, 5))",
                ),
                (5, TamperKind.REORDERED),
                id="two rows whose records were swapped are reordered",
            ),
            pytest.param(
                (DISABLE, "DELETE FROM audit_log WHERE sequence = 11"),
                (11, TamperKind.DELETED),
                id="a row deleted around the trigger is deleted at its sequence",
            ),
            pytest.param(
                (
                    "ALTER TABLE audit_log DROP CONSTRAINT uq_audit_log_chain_sequence",
                    "INSERT INTO audit_log (audit_topic, chain_partition, sequence, hash, "
                    "event_id, recorded_at, audit_offset, record) SELECT audit_topic, "
                    "chain_partition, sequence, hash, event_id, recorded_at, audit_offset, "
                    "record FROM audit_log WHERE sequence = 8",
                ),
                (8, TamperKind.DUPLICATED),
                id="a row copied after dropping the unique constraint is duplicated",
            ),
            pytest.param(
                (DISABLE, "DELETE FROM audit_log WHERE sequence >= 17"),
                (17, TamperKind.TRUNCATED),
                id="rows cut from the tail below the last checkpoint are truncated",
            ),
        ],
    )
    async def test_tampered_rows_are_reported(
        self,
        audited: AuditedLog,
        stored: str,
        statements: tuple[str, ...],
        reported: tuple[int, TamperKind],
    ) -> None:
        """SQL run around the trigger is reported with its kind at the first sequence it hit."""
        await _sql(stored, *statements)
        assert _bad(await _verify(audited, stored)) == reported

    async def test_forged_checkpoint(
        self, audited: AuditedLog, stored: str, tmp_path: Path
    ) -> None:
        """A checkpoint signed with another key is reported as forged at its sequence."""
        directory = audited.copy_directory(tmp_path / "forged")
        forged = sign_checkpoint(
            Ed25519PrivateKey.generate(), ChainState.after(audited.records[12]), T0
        )
        append_checkpoint(directory / "checkpoints.jsonl", forged)
        report = await _verify(audited, stored, directory)
        assert _bad(report) == (12, TamperKind.FORGED_CHECKPOINT)


@pytest.fixture
async def trail(audited: AuditedLog, new_database: Callable[[], str]) -> AuditTrail:
    """The log on its topic, and copied into a fresh table."""
    url = new_database()
    await upgrade_async(url)
    database = Database(url, pool_size=2)
    try:
        # A group of its own: each test copies the whole topic into its own database.
        await audited.copy_to_table(database, "trail")
    finally:
        await database.dispose()
    files = AuditSettings(
        signing_key_file=audited.key_path, checkpoint_file=audited.checkpoint_file
    )
    return AuditTrail(audited.kafka, audited.topic, url, files, audited.trusted)


class TestAuditTrail:
    async def test_both_stores_verify(self, trail: AuditTrail) -> None:
        """verify('both') reports the topic, then the table, each intact with every record."""
        reports = await trail.verify("both")
        assert [where for where, _ in reports] == [
            f"topic {trail.topic}",
            "table audit_log",
            "cross-check topic/table",
        ]
        assert all(report.ok and report.records_checked == 20 for _, report in reports)

    async def test_one_image_from_either_store(
        self, audited: AuditedLog, trail: AuditTrail
    ) -> None:
        """show finds the same trail of one image on the topic and in the table."""
        event_id = audited.records[0].object.event_id
        assert event_id is not None
        on_topic = await trail.trail(event_id, "topic")
        in_table = await trail.trail(event_id, "table")
        assert on_topic == in_table
        assert on_topic
        assert all(r.object.event_id == event_id for r in on_topic)

    async def test_unknown_source_is_refused(self, trail: AuditTrail) -> None:
        """A source that is neither topic, table nor both is a usage error, before any I/O."""
        with pytest.raises(ValueError, match="source must be one of"):
            await trail.verify("file")
        with pytest.raises(ValueError, match="source must be one of"):
            await trail.trail(uuid.uuid4(), "file")
