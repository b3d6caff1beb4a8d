"""Tampered copies of a real agent-written audit topic are caught at the right sequence."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.audit import AuditCheckpoint, AuditRecord
from streams.audit.chain import ChainState
from streams.audit.checkpoints import sign_checkpoint
from streams.audit.files import append_checkpoint
from streams.audit.io import verify_topic
from streams.audit.verify import TamperKind, VerificationReport
from tests.integration.audit_support import (
    AuditedLog,
    audited_log_for_module,
    create_audit_topic,
    publish_log,
)
from tests.unit.audit.factories import T0

pytestmark = pytest.mark.requirement("RS-AUD-05", "RS-G-05")


@pytest.fixture(scope="module")
def audited(
    kafka_bootstrap: str, run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> AuditedLog:
    """One agent run shared by the module's tests."""
    return audited_log_for_module(kafka_bootstrap, run_id, tmp_path_factory, "audit-tamper")


async def _verify_copy(
    log: AuditedLog, items: list[AuditRecord | AuditCheckpoint], directory: Path | None = None
) -> VerificationReport:
    """Publish ``items`` as a new audit topic and verify it with the log's files."""
    topic = f"{log.prefix}audit.copy.{uuid.uuid4().hex[:8]}"
    await create_audit_topic(log.bootstrap, topic)
    await publish_log(log.bootstrap, topic, items, sign_with=log.signing_key)
    where = directory or log.directory
    return await verify_topic(log.kafka, topic, where / "checkpoints.jsonl", log.trusted)


def _bad(report: VerificationReport) -> tuple[int | None, TamperKind | None]:
    return report.first_bad_sequence, report.problem


class TestTopicTampering:
    def test_agent_log_is_complete(self, audited: AuditedLog) -> None:
        """The agent wrote 20 records and checkpoints at 4, 9, 14 and 19."""
        assert [r.sequence for r in audited.records] == list(range(20))
        assert [cp.sequence for cp in audited.checkpoints] == [4, 9, 14, 19]

    async def test_intact_log_verifies(self, audited: AuditedLog) -> None:
        """The agent's own topic verifies."""
        report = await verify_topic(
            audited.kafka, audited.topic, audited.checkpoint_file, audited.trusted
        )
        assert report.ok, report.summary()
        assert report.records_checked == 20

    async def test_intact_copy_verifies(self, audited: AuditedLog) -> None:
        """An untampered copy verifies (the copying itself changes nothing)."""
        assert (await _verify_copy(audited, list(audited.records))).ok

    async def test_edited_middle_record(self, audited: AuditedLog) -> None:
        """An edited record is reported as edited at its sequence."""
        items = list(audited.records)
        items[7] = items[7].model_copy(update={"correlation_id": "forged"})
        assert _bad(await _verify_copy(audited, items)) == (7, TamperKind.EDITED)

    async def test_reordered_records(self, audited: AuditedLog) -> None:
        """Two swapped records are reported as reordered at the lower sequence."""
        items = list(audited.records)
        items[5], items[6] = items[6], items[5]
        assert _bad(await _verify_copy(audited, items)) == (5, TamperKind.REORDERED)

    async def test_deleted_record(self, audited: AuditedLog) -> None:
        """A removed record is reported as deleted at its sequence."""
        items = [r for r in audited.records if r.sequence != 11]
        assert _bad(await _verify_copy(audited, items)) == (11, TamperKind.DELETED)

    async def test_duplicated_record(self, audited: AuditedLog) -> None:
        """A record published twice is reported as duplicated at its sequence."""
        items = list(audited.records)
        items.insert(9, items[8])
        assert _bad(await _verify_copy(audited, items)) == (8, TamperKind.DUPLICATED)

    async def test_tail_cut_after_checkpoint(self, audited: AuditedLog) -> None:
        """A copy missing the tail below the last checkpoint is reported as truncated."""
        items = list(audited.records[:17])
        assert _bad(await _verify_copy(audited, items)) == (17, TamperKind.TRUNCATED)

    async def test_forged_checkpoint(self, audited: AuditedLog, tmp_path: Path) -> None:
        """A checkpoint signed with another key is reported as forged at its sequence."""
        directory = audited.copy_directory(tmp_path / "forged")
        forged = sign_checkpoint(
            Ed25519PrivateKey.generate(), ChainState.after(audited.records[12]), T0
        )
        append_checkpoint(directory / "checkpoints.jsonl", forged)
        report = await _verify_copy(audited, list(audited.records), directory)
        assert _bad(report) == (12, TamperKind.FORGED_CHECKPOINT)

    async def test_forged_checkpoint_on_topic(self, audited: AuditedLog) -> None:
        """A forged checkpoint slipped onto the topic itself is caught too."""
        forged = sign_checkpoint(
            Ed25519PrivateKey.generate(), ChainState.after(audited.records[15]), T0
        )
        items: list[AuditRecord | AuditCheckpoint] = [*audited.records, forged]
        assert _bad(await _verify_copy(audited, items)) == (15, TamperKind.FORGED_CHECKPOINT)
