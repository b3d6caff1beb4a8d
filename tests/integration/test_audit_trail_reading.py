"""AuditTrail, what `radstream audit verify|show` reads: the topic and the table, side by side."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from schemas.settings import AuditSettings
from sinks.database import Database
from sinks.migrate import upgrade_async
from streams.audit.io import AuditTrail
from streams.kafka.loop import run_until_idle
from tests.integration.audit_support import AuditedLog, make_table_writer, produce_audited_log
from tests.integration.database_helpers import run_in_thread


@pytest.fixture(scope="module")
def audited(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AuditedLog:
    """One agent run (20 records) shared by the module's tests."""
    prefix = f"rstest.audit-trail.{uuid.uuid4().hex[:8]}."
    directory = tmp_path_factory.mktemp("audit-trail")
    return run_in_thread(lambda: produce_audited_log(kafka_bootstrap, prefix, directory))


@pytest.fixture
async def trail(audited: AuditedLog, new_database: Callable[[], str]) -> AuditTrail:
    """The log on its topic, and copied into a fresh table."""
    url = new_database()
    await upgrade_async(url)
    database = Database(url, pool_size=2)
    try:
        # A group of its own: each test copies the whole topic into its own database.
        group = f"{audited.prefix}trail-{uuid.uuid4().hex[:6]}"
        writer = make_table_writer(audited.bootstrap, audited.prefix, database, group_id=group)
        await run_until_idle(writer, idle_seconds=0.5)
    finally:
        await database.dispose()
    files = AuditSettings(
        signing_key_file=audited.key_path, checkpoint_file=audited.checkpoint_file
    )
    return AuditTrail(audited.kafka, audited.topic, url, files)


class TestAuditTrail:
    async def test_both_stores_verify(self, trail: AuditTrail) -> None:
        """verify('both') reports the topic, then the table, each intact with every record."""
        reports = await trail.verify("both")
        assert [where for where, _ in reports] == [f"topic {trail.topic}", "table audit_log"]
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
