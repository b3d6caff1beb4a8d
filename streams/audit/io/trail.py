"""Reading the audit trail back for operators: verify the stores, show one image's trail."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from schemas.audit import AuditRecord
from schemas.settings import AuditSettings, Settings
from sinks.database import Database, tls_context
from sinks.repositories import AuditLogRepository
from streams.audit.checkpoints import TrustedKeys
from streams.audit.files import checkpoint_file_for
from streams.audit.io.table import trail_for_event_in_table, verify_table
from streams.audit.io.topic import trail_for_event, verify_topic
from streams.audit.verify import VerificationReport, cross_check
from streams.kafka import KafkaClientConfig
from streams.topics import TopicNames

SOURCES = ("topic", "table", "both")
CATCH_UP_ATTEMPTS = 5
CATCH_UP_SECONDS = 1.0


def _behind(table: VerificationReport, topic: VerificationReport) -> bool:
    """Whether the table is an intact copy that has not yet reached the topic's heads."""
    ends = {partition: last for partition, last, _ in topic.heads}
    return (table.ok and any(last < ends.get(p, -1) for p, last, _ in table.heads)) or (
        table.ok and len(table.heads) < len(topic.heads)
    )


@dataclass(frozen=True, slots=True)
class AuditTrail:
    """The audit topic and table of one deployment, and the files that vouch for them.

    ``audit.checkpoint_file`` is this chain's own file (see :meth:`from_settings`).
    """

    kafka: KafkaClientConfig
    topic: str
    database_url: str
    audit: AuditSettings
    trusted: TrustedKeys
    tls: ssl.SSLContext | str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, trusted: TrustedKeys) -> AuditTrail:
        """The deployment's audit trail, judged by the pinned ``trusted`` keys.

        The chain is named by its audit topic: its rows in the table and its checkpoint file
        (:func:`~streams.audit.files.checkpoint_file_for`) are that topic's only.
        """
        topic = TopicNames(settings.topic_prefix).audit
        file = checkpoint_file_for(settings.audit.checkpoint_file, topic)
        return cls(
            kafka=KafkaClientConfig.from_settings(settings, client_id="radstream-audit-cli"),
            topic=topic,
            database_url=settings.readonly_database_url,
            audit=settings.audit.model_copy(update={"checkpoint_file": file}),
            tls=tls_context(settings.database),
            trusted=trusted,
        )

    @asynccontextmanager
    async def _repository(self) -> AsyncIterator[AuditLogRepository]:
        database = Database(self.database_url, pool_size=1, tls=self.tls)
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
        interval = self.audit.checkpoint_every_records
        reports: list[tuple[str, VerificationReport]] = []
        on_topic: VerificationReport | None = None
        if source in ("topic", "both"):
            on_topic = await verify_topic(
                self.kafka, self.topic, checkpoints, trusted, max_uncovered=interval
            )
            reports.append((f"topic {self.topic}", on_topic))
        if source in ("table", "both"):
            async with self._repository() as repository:
                in_table = await verify_table(
                    repository, self.topic, checkpoints, trusted, max_uncovered=interval
                )
                # The table copy trails the topic by a moment: give it a bounded while.
                for _ in range(CATCH_UP_ATTEMPTS):
                    if on_topic is None or not _behind(in_table, on_topic):
                        break
                    await asyncio.sleep(CATCH_UP_SECONDS)
                    in_table = await verify_table(
                        repository, self.topic, checkpoints, trusted, max_uncovered=interval
                    )
            reports.append(("table audit_log", in_table))
            if on_topic is not None:
                reports.append(("cross-check topic/table", cross_check(on_topic, in_table)))
        return reports

    async def trail(self, event_id: uuid.UUID, source: str = "topic") -> list[AuditRecord]:
        """Every record about one image, from the topic (also for ``both``) or the table."""
        _check(source)
        if source == "table":
            async with self._repository() as repository:
                return await trail_for_event_in_table(repository, event_id, self.topic)
        return await trail_for_event(self.kafka, self.topic, event_id, self.trusted)


def _check(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}")
