"""Reading the audit trail back for operators: verify the stores, show one image's trail."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from schemas.audit import AuditRecord
from schemas.settings import AuditSettings, Settings
from sinks.database import Database
from sinks.repositories import AuditLogRepository
from streams.audit.checkpoints import TrustedKeys
from streams.audit.io.table import trail_for_event_in_table, verify_table
from streams.audit.io.topic import trail_for_event, verify_topic
from streams.audit.verify import VerificationReport
from streams.kafka import KafkaClientConfig
from streams.topics import TopicNames

SOURCES = ("topic", "table", "both")


@dataclass(frozen=True, slots=True)
class AuditTrail:
    """The audit topic and table of one deployment, and the files that vouch for them."""

    kafka: KafkaClientConfig
    topic: str
    database_url: str
    audit: AuditSettings
    trusted: TrustedKeys

    @classmethod
    def from_settings(cls, settings: Settings, trusted: TrustedKeys) -> AuditTrail:
        """The deployment's audit trail, judged by the pinned ``trusted`` keys."""
        return cls(
            kafka=KafkaClientConfig.from_settings(settings, client_id="radstream-audit-cli"),
            topic=TopicNames(settings.topic_prefix).audit,
            database_url=settings.database_url.get_secret_value(),
            audit=settings.audit,
            trusted=trusted,
        )

    @asynccontextmanager
    async def _repository(self) -> AsyncIterator[AuditLogRepository]:
        database = Database(self.database_url, pool_size=1)
        try:
            yield AuditLogRepository(database.sessions)
        finally:
            await database.dispose()

    async def verify(self, source: str = "both") -> list[tuple[str, VerificationReport]]:
        """Verify the chains on the topic and/or in the table; one (where, report) each.

        Raises:
            ValueError: ``source`` is not one of ``topic``, ``table``, ``both``.
        """
        _check(source)
        checkpoints, trusted = self.audit.checkpoint_file, self.trusted
        reports: list[tuple[str, VerificationReport]] = []
        if source in ("topic", "both"):
            report = await verify_topic(self.kafka, self.topic, checkpoints, trusted)
            reports.append((f"topic {self.topic}", report))
        if source in ("table", "both"):
            async with self._repository() as repository:
                report = await verify_table(repository, checkpoints, trusted)
            reports.append(("table audit_log", report))
        return reports

    async def trail(self, event_id: uuid.UUID, source: str = "topic") -> list[AuditRecord]:
        """Every record about one image, from the topic (also for ``both``) or the table."""
        _check(source)
        if source == "table":
            async with self._repository() as repository:
                return await trail_for_event_in_table(repository, event_id)
        return await trail_for_event(self.kafka, self.topic, event_id, self.trusted)


def _check(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}")
