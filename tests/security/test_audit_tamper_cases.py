"""The 28 tamper cases of issue 16's attack on the audit trail, each detected at its sequence.

The attacker has owner rights on the database (can disable the append-only triggers), can
write the audit topic (no ACLs) and can change files on the verifying host — but cannot sign
with a key that is pinned in the verifier's settings. Every case below is verified through
:class:`~streams.audit.io.AuditTrail` (topic, table, and the cross-check of both) or the
stores' own verification, and no case crashes anything (verdicts, not tracebacks).

The log: 20 agent-written records, checkpoints at 4, 9, 14, 19 (interval 5), on the topic, in
the table (records and ``audit_checkpoints``) and in the checkpoint file.

Here (table, files, keys):

1. checkpoint file deleted — still intact: the topic and table checkpoints still anchor;
2. checkpoint file deleted and the table truncated — cross-check: stores differ at 0;
3. table truncated (records) — truncated at 0 (checkpoints vouch for 19);
4. table tail cut (17-19) with its checkpoint lines and table checkpoints — stores differ at 17;
5. table tail cut with every checkpoint of the file and table — stores differ at 17;
6. ``event_id`` column edited alone (hides a trail from ``audit show``) — edited at 6;
7. ``sequence`` column edited alone — edited at 8;
8. ``hash`` column edited alone — edited at 3;
9. a row deleted, the rest re-chained and every checkpoint re-signed with a new key written
   to ``signing_key.pem`` — the pinned key vouches for nothing in the table: missing
   checkpoints from 0; record by record beside the topic the stores part at 7;
10. garbage line in the checkpoint file — a verdict (missing checkpoints), no traceback;
11. a checkpoint signed with another key appended to the file — forged checkpoint at 12;
12. a forged, correctly chained row appended to the table — stores differ at 20;
13. a record edited in the ``record`` JSON — edited at 7;
14. two rows' records swapped — reordered at 5;
15. a row deleted — deleted at 11;
16. a row duplicated — duplicated at 8;
17. every checkpoint deleted from file and table, records intact on both — table: missing
    checkpoints at 0 when verified alone against the interval (the topic still holds its
    checkpoints, so the topic verifies);
18. the signing-key file replaced with the attacker's key — the agent refuses to start
    (``SETTINGS_INVALID``): the key is not pinned.

Elsewhere:

19-20. a forged, correctly chained record and a garbage message on the topic — quarantined,
   named at 4, the chain goes on (``test_audit_forged_records.py``);
21-28. on the topic: an edited record, a record replaced, records reordered, a record deleted,
   a record duplicated, the tail truncated below a checkpoint, a forged checkpoint, an
   unparseable record (``tests/integration/test_audit_tampering_topic.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from schemas.audit import AuditDraft, AuditRecord
from schemas.errors import ErrorCode, RadstreamError
from schemas.settings import AuditSettings
from sinks.database import Database
from streams.audit.chain import ChainState, append_all
from streams.audit.checkpoints import CheckpointPolicy, sign_checkpoint
from streams.audit.files import append_checkpoint, read_checkpoints
from streams.audit.io import AuditAgent, AuditTrail
from streams.audit.verify import TamperKind, VerificationReport
from tests.integration.audit_support import (
    AuditedLog,
    audited_log_for_module,
)
from tests.integration.database_helpers import migrated_database
from tests.unit.audit.factories import T0

pytestmark = pytest.mark.requirement("RS-SEC-03", "RS-AUD-05")

UNGUARD = (
    "ALTER TABLE audit_log DISABLE TRIGGER USER",
    "ALTER TABLE audit_checkpoints DISABLE TRIGGER USER",
)


@pytest.fixture(scope="module")
def audited(
    kafka_bootstrap: str, run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> AuditedLog:
    """One agent run shared by the module's cases."""
    return audited_log_for_module(kafka_bootstrap, run_id, tmp_path_factory, "tamper")


class Deployment:
    """The audited log copied into a fresh table, with its own copy of the files."""

    def __init__(self, log: AuditedLog, url: str, directory: Path) -> None:
        self.log = log
        self.url = url
        self.directory = directory
        self.checkpoint_file = directory / "checkpoints.jsonl"

    @property
    def trail(self) -> AuditTrail:
        """The verifier: pinned key, checkpoint interval 5."""
        files = AuditSettings(
            signing_key_file=self.directory / "audit-key.pem",
            checkpoint_file=self.checkpoint_file,
            checkpoint_every_records=5,
        )
        return AuditTrail(self.log.kafka, self.log.topic, self.url, files, self.log.trusted)

    async def sql(self, *statements: str) -> None:
        """Run statements as the table's owner, as an attacker with owner rights would."""
        connection = await asyncpg.connect(self.url)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    async def verify(self) -> dict[str, VerificationReport]:
        """Topic, table and cross-check reports, by store."""
        return {where.split()[0]: report for where, report in await self.trail.verify("both")}


@pytest.fixture
async def deployment(
    audited: AuditedLog, admin_database_url: str, tmp_path: Path
) -> AsyncIterator[Deployment]:
    """A fresh database holding the topic's copy (records and checkpoints), files copied."""
    async with migrated_database(admin_database_url) as url:
        database = Database(url, pool_size=2)
        try:
            writer = await audited.copy_to_table(database, "tamper")
            assert writer.stored == 20
        finally:
            await database.dispose()
        yield Deployment(audited, url, audited.copy_directory(tmp_path / "files"))


def _bad(report: VerificationReport) -> tuple[int | None, TamperKind | None]:
    return report.first_bad_sequence, report.problem


def _drop_file_checkpoints_from(path: Path, sequence: int) -> None:
    kept = [cp for cp in read_checkpoints(path) if cp.sequence < sequence]
    path.unlink()
    for cp in kept:
        append_checkpoint(path, cp)


class TestTamperCases:
    async def test_intact(self, deployment: Deployment) -> None:
        """The untouched deployment verifies everywhere, the cross-check included."""
        reports = await deployment.verify()
        assert all(r.ok for r in reports.values()), {k: r.summary() for k, r in reports.items()}
        assert set(reports) == {"topic", "table", "cross-check"}

    async def test_01_checkpoint_file_deleted(self, deployment: Deployment) -> None:
        """Deleting the file alone removes nothing: the topic and table still hold checkpoints."""
        deployment.checkpoint_file.unlink()
        reports = await deployment.verify()
        assert all(r.ok for r in reports.values())
        assert reports["table"].checkpoints_checked == 4

    async def test_02_file_deleted_and_table_truncated(self, deployment: Deployment) -> None:
        """Issue 16's '0 records beside 7,799': the cross-check with the topic catches it."""
        deployment.checkpoint_file.unlink()
        await deployment.sql(*UNGUARD, "TRUNCATE audit_log", "TRUNCATE audit_checkpoints")
        reports = await deployment.verify()
        assert reports["table"].ok  # alone, an empty table with no anchors looks empty
        assert _bad(reports["cross-check"]) == (0, TamperKind.STORES_DIFFER)
        assert reports["cross-check"].error_code is ErrorCode.AUDIT_CHAIN_BROKEN

    async def test_03_table_truncated(self, deployment: Deployment) -> None:
        """Rows gone, checkpoints kept: truncated from 0."""
        await deployment.sql(*UNGUARD, "TRUNCATE audit_log")
        assert _bad((await deployment.verify())["table"]) == (0, TamperKind.TRUNCATED)

    async def test_04_tail_cut_with_its_checkpoints(self, deployment: Deployment) -> None:
        """Rows 17-19 cut with checkpoint 19 from the file and the table: stores differ at 17."""
        _drop_file_checkpoints_from(deployment.checkpoint_file, 15)
        await deployment.sql(
            *UNGUARD,
            "DELETE FROM audit_log WHERE sequence >= 17",
            "DELETE FROM audit_checkpoints WHERE sequence >= 15",
        )
        reports = await deployment.verify()
        assert reports["table"].ok  # 2 records after checkpoint 14: within the interval
        assert _bad(reports["cross-check"]) == (17, TamperKind.STORES_DIFFER)

    async def test_05_tail_cut_with_every_checkpoint(self, deployment: Deployment) -> None:
        """Every checkpoint removed too: the table alone misses them, the cross-check differs."""
        deployment.checkpoint_file.unlink()
        await deployment.sql(
            *UNGUARD, "DELETE FROM audit_log WHERE sequence >= 17", "TRUNCATE audit_checkpoints"
        )
        reports = await deployment.verify()
        assert _bad(reports["table"]) == (0, TamperKind.MISSING_CHECKPOINTS)
        assert _bad(reports["cross-check"]) == (17, TamperKind.STORES_DIFFER)

    @pytest.mark.parametrize(
        ("column", "value", "sequence"),
        [
            ("event_id", "gen_random_uuid()", 6),
            ("sequence", "sequence + 100", 8),
            ("hash", "repeat('0', 64)", 3),
        ],
    )
    async def test_06_to_08_indexed_column_edited(
        self, deployment: Deployment, column: str, value: str, sequence: int
    ) -> None:
        """A copy column edited alone (the hashed record intact) is edited at its row."""
        await deployment.sql(
            *UNGUARD,
            f"UPDATE audit_log SET {column} = {value} WHERE sequence = {sequence}",  # noqa: S608 - the test's own constants
        )
        assert _bad((await deployment.verify())["table"]) == (sequence, TamperKind.EDITED)

    async def test_09_deleted_rechained_resigned_with_a_new_key(
        self, deployment: Deployment
    ) -> None:
        """Delete 7, re-chain 8-19 as 7-18, re-sign every checkpoint with a new key file."""
        records = deployment.log.records
        head = ChainState.after(records[6])
        rebuilt, state = append_all(head, [_draft(r) for r in records[8:]])
        attacker = Ed25519PrivateKey.generate()
        # The attacker's key replaces the signing-key file; the verifier's pinned key stays.
        key_file = deployment.directory / "audit-key.pem"
        key_file.write_bytes(
            attacker.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        )
        deployment.checkpoint_file.unlink()
        chain = [*records[:7], *rebuilt]
        for sequence in (4, 9, 14, 18):
            append_checkpoint(
                deployment.checkpoint_file,
                sign_checkpoint(attacker, ChainState.after(chain[sequence]), T0),
            )
        await deployment.sql(
            *UNGUARD,
            "DELETE FROM audit_log WHERE sequence >= 7",
            "TRUNCATE audit_checkpoints",
            _insert(rebuilt, deployment.log.topic),
        )
        reports = await deployment.verify()
        # Nothing the pinned key signed vouches for the table any more, and the new-key
        # checkpoints are not trusted: missing from 0; beside the topic, record by record,
        # the deleted row's sequence is where the stores part.
        assert _bad(reports["table"]) == (0, TamperKind.MISSING_CHECKPOINTS)
        assert reports["table"].checkpoints_checked == 4
        assert _bad(reports["cross-check"]) == (7, TamperKind.STORES_DIFFER)
        assert state.sequence == 18

    async def test_10_garbage_line_in_checkpoint_file(self, deployment: Deployment) -> None:
        """A line that is not a checkpoint: a verdict naming the line, not a traceback."""
        with deployment.checkpoint_file.open("a") as handle:
            handle.write("this is not json\n")
        reports = await deployment.verify()
        for store in ("topic", "table"):
            assert reports[store].problem is TamperKind.MISSING_CHECKPOINTS
            assert "line 5" in reports[store].detail

    async def test_11_checkpoint_signed_with_another_key(self, deployment: Deployment) -> None:
        """A checkpoint signed with a key that is not pinned is forged at its sequence."""
        forged = sign_checkpoint(
            Ed25519PrivateKey.generate(), ChainState.after(deployment.log.records[12]), T0
        )
        append_checkpoint(deployment.checkpoint_file, forged)
        reports = await deployment.verify()
        assert _bad(reports["table"]) == (12, TamperKind.FORGED_CHECKPOINT)
        assert _bad(reports["topic"]) == (12, TamperKind.FORGED_CHECKPOINT)

    async def test_12_forged_row_appended(self, deployment: Deployment) -> None:
        """A correctly chained row appended to the table: beyond the topic, stores differ."""
        (forged,), _ = append_all(
            ChainState.after(deployment.log.records[-1]), [_draft(deployment.log.records[0])]
        )
        await deployment.sql(_insert([forged], deployment.log.topic))
        reports = await deployment.verify()
        assert reports["table"].ok  # one record past the checkpoint: within the interval
        assert _bad(reports["cross-check"]) == (20, TamperKind.STORES_DIFFER)

    async def test_13_record_json_edited(self, deployment: Deployment) -> None:
        """The hashed record edited: edited at its sequence."""
        await deployment.sql(
            *UNGUARD,
            "UPDATE audit_log SET record = jsonb_set(record, '{outcome}', '12') WHERE sequence = 7",
        )
        assert _bad((await deployment.verify())["table"]) == (7, TamperKind.EDITED)

    async def test_14_rows_swapped(self, deployment: Deployment) -> None:
        """Two rows' records swapped: reordered at the first."""
        await deployment.sql(
            *UNGUARD,
            "UPDATE audit_log AS a SET record = b.record FROM audit_log AS b "
            "WHERE (a.sequence, b.sequence) IN ((5, 6), (6, 5))",
        )
        assert _bad((await deployment.verify())["table"]) == (5, TamperKind.REORDERED)

    async def test_15_row_deleted(self, deployment: Deployment) -> None:
        """A row deleted around the trigger: deleted at its sequence."""
        await deployment.sql(*UNGUARD, "DELETE FROM audit_log WHERE sequence = 11")
        assert _bad((await deployment.verify())["table"]) == (11, TamperKind.DELETED)

    async def test_16_row_duplicated(self, deployment: Deployment) -> None:
        """A row copied after dropping the unique constraint: duplicated."""
        await deployment.sql(
            "ALTER TABLE audit_log DROP CONSTRAINT uq_audit_log_chain_sequence",
            "INSERT INTO audit_log (audit_topic, chain_partition, sequence, hash, event_id, "
            "recorded_at, audit_offset, record) SELECT audit_topic, chain_partition, sequence, "
            "hash, event_id, recorded_at, audit_offset, record FROM audit_log WHERE sequence = 8",
        )
        assert _bad((await deployment.verify())["table"]) == (8, TamperKind.DUPLICATED)

    async def test_17_every_table_anchor_deleted(self, deployment: Deployment) -> None:
        """File gone, table checkpoints gone, records intact: the table misses its anchors."""
        deployment.checkpoint_file.unlink()
        await deployment.sql(*UNGUARD, "TRUNCATE audit_checkpoints")
        reports = await deployment.verify()
        assert _bad(reports["table"]) == (0, TamperKind.MISSING_CHECKPOINTS)
        assert reports["topic"].ok  # the topic still carries its own checkpoints

    def test_18_replaced_signing_key_refused(self, audited: AuditedLog, tmp_path: Path) -> None:
        """An agent whose key file was replaced refuses to start: its key is not pinned."""
        with pytest.raises(RadstreamError) as refused:
            AuditAgent(
                kafka=audited.kafka,
                prefix=audited.prefix,
                group_id=f"{audited.prefix}audit",
                signing_key_path=tmp_path / "attacker-key.pem",  # a new key, created here
                checkpoint_file=tmp_path / "checkpoints.jsonl",
                policy=CheckpointPolicy(),
                trusted=audited.trusted,
            )
        assert refused.value.code is ErrorCode.SETTINGS_INVALID


def _draft(record: AuditRecord) -> AuditDraft:
    """The draft a record was made from (what an attacker re-chains)."""
    return AuditDraft.model_validate(
        record.model_dump(
            exclude={"schema_version", "chain_partition", "sequence", "prev_hash", "hash"}
        )
    )


def _insert(records: list[AuditRecord], topic: str) -> str:
    """An INSERT of ``records`` into ``topic``'s chain 0 as the attacker writes it (the test's
    own values only)."""
    rows = ", ".join(
        "('{topic}', 0, {seq}, '{hash}', {event}, '{at}', {seq}, '{json}'::jsonb)".format(
            topic=topic,
            seq=r.sequence,
            hash=r.hash,
            event="NULL" if r.object.event_id is None else f"'{r.object.event_id}'",
            at=r.recorded_at.isoformat(),
            json=r.model_dump_json(),
        )
        for r in records
    )
    columns = (
        "audit_topic, chain_partition, sequence, hash, event_id, recorded_at, audit_offset, record"
    )
    return f"INSERT INTO audit_log ({columns}) VALUES {rows}"  # noqa: S608 - test values
