"""verify_chain: the intact chain verifies and each kind of tampering is named at its sequence."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.audit import AuditCheckpoint, AuditRecord
from schemas.errors import ErrorCode
from streams.audit.chain import ChainState, append, append_all, record_hash
from streams.audit.checkpoints import TrustedKeys, sign_checkpoint
from streams.audit.verify import (
    ForeignRecord,
    TamperKind,
    UnreadableRecord,
    VerificationReport,
    cross_check,
    merge_reports,
    verify_chain,
    verify_chains,
)
from tests.unit.audit.factories import T0, build_chain, drafts

pytestmark = pytest.mark.requirement("RS-AUD-05", "RS-G-05")

Chain = tuple[list[AuditRecord], list[AuditCheckpoint]]
KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key()


@pytest.fixture
def chain() -> Chain:
    """20 records, checkpoints at sequences 4, 9, 14, 19."""
    return build_chain(20, KEY, every=5)


def _problem(report: VerificationReport) -> tuple[int | None, TamperKind | None]:
    return report.first_bad_sequence, report.problem


def _rehash(record: AuditRecord, **update: object) -> AuditRecord:
    changed = record.model_copy(update=update)
    return changed.model_copy(update={"hash": record_hash(changed)})


class TestIntact:
    def test_intact_chain_verifies(self, chain: Chain) -> None:
        """An untouched chain with its checkpoints verifies with counts in the summary."""
        records, cps = chain
        report = verify_chain(records, cps, PUB)
        assert report.ok
        assert (report.records_checked, report.checkpoints_checked, report.last_sequence) == (
            20,
            4,
            19,
        )
        assert report.error_code is None
        assert "intact: 20 records, 4 checkpoints" in report.summary()

    def test_empty_log_without_checkpoints_verifies(self) -> None:
        """No records and no checkpoints is a valid (empty) trail."""
        report = verify_chain([], [], PUB)
        assert report.ok
        assert report.last_sequence == -1

    def test_other_chains_checkpoints_ignored(self, chain: Chain) -> None:
        """Checkpoints of another chain partition do not apply."""
        records, cps = chain
        other = sign_checkpoint(KEY, ChainState(1, 99, "d" * 64), T0)
        assert verify_chain(records, [*cps, other], PUB).ok

    def test_one_pass_iterator_accepted(self, chain: Chain) -> None:
        """Records may come as a generator (streamed from a topic)."""
        records, cps = chain
        assert verify_chain((r for r in records), cps, PUB).records_checked == 20


class TestTampering:
    def test_edited_middle_record(self, chain: Chain) -> None:
        """A changed field without a new hash is 'edited' at that record."""
        records, cps = chain
        records[7] = records[7].model_copy(update={"correlation_id": "forged"})
        report = verify_chain(records, cps, PUB)
        assert _problem(report) == (7, TamperKind.EDITED)
        assert report.error_code is ErrorCode.AUDIT_CHAIN_BROKEN
        assert "first bad sequence 7: edited" in report.summary()

    def test_edited_and_rehashed_record(self, chain: Chain) -> None:
        """A changed record with a recomputed hash breaks its successor's link: edited there."""
        records, cps = chain
        records[7] = _rehash(records[7], correlation_id="forged")
        assert _problem(verify_chain(records, cps, PUB)) == (7, TamperKind.EDITED)

    def test_edited_sequence_number_without_rehash(self, chain: Chain) -> None:
        """A renumbered record whose hash is stale is 'edited' at its position."""
        records, cps = chain
        records[7] = records[7].model_copy(update={"sequence": 70})
        assert _problem(verify_chain(records, cps, PUB)) == (7, TamperKind.EDITED)

    def test_renumbered_and_rehashed(self, chain: Chain) -> None:
        """A renumbered record with a fresh hash still links to its predecessor: edited."""
        records, cps = chain
        records[7] = _rehash(records[7], sequence=70)
        assert _problem(verify_chain(records, cps, PUB)) == (7, TamperKind.EDITED)

    def test_reordered_adjacent(self, chain: Chain) -> None:
        """Two swapped records are 'reordered' at the lower sequence."""
        records, cps = chain
        records[5], records[6] = records[6], records[5]
        assert _problem(verify_chain(records, cps, PUB)) == (5, TamperKind.REORDERED)

    def test_reordered_distant(self, chain: Chain) -> None:
        """A record moved far back is 'reordered' at the sequence missing from its place."""
        records, cps = chain
        moved = records.pop(3)
        records.insert(12, moved)
        assert _problem(verify_chain(records, cps, PUB)) == (3, TamperKind.REORDERED)

    def test_deleted_middle_record(self, chain: Chain) -> None:
        """A missing record is 'deleted' at its sequence."""
        records, cps = chain
        del records[11]
        report = verify_chain(records, cps, PUB)
        assert _problem(report) == (11, TamperKind.DELETED)
        assert report.records_checked == 19

    def test_deleted_first_record(self, chain: Chain) -> None:
        """Losing the genesis record is 'deleted' at 0."""
        records, cps = chain
        assert _problem(verify_chain(records[1:], cps, PUB)) == (0, TamperKind.DELETED)

    def test_duplicated_adjacent(self, chain: Chain) -> None:
        """A record stored twice in a row is 'duplicated' at its sequence."""
        records, cps = chain
        records.insert(9, records[8])
        assert _problem(verify_chain(records, cps, PUB)) == (8, TamperKind.DUPLICATED)

    def test_duplicated_later(self, chain: Chain) -> None:
        """A record replayed later in the log is 'duplicated' at its sequence."""
        records, cps = chain
        records.insert(15, records[2])
        assert _problem(verify_chain(records, cps, PUB)) == (2, TamperKind.DUPLICATED)

    def test_different_record_repeating_a_sequence(self, chain: Chain) -> None:
        """A second, different record claiming a used sequence is 'edited'."""
        records, cps = chain
        records.insert(9, _rehash(records[8], correlation_id="other"))
        assert _problem(verify_chain(records, cps, PUB)) == (8, TamperKind.EDITED)

    def test_truncated_after_checkpoint(self, chain: Chain) -> None:
        """Cutting the tail below the last checkpoint is 'truncated' after the new end."""
        records, cps = chain
        report = verify_chain(records[:17], cps, PUB)
        assert _problem(report) == (17, TamperKind.TRUNCATED)
        assert report.error_code is ErrorCode.AUDIT_CHECKPOINT_INVALID

    def test_all_records_removed(self, chain: Chain) -> None:
        """An emptied log with checkpoints is 'truncated' at 0."""
        _, cps = chain
        assert _problem(verify_chain([], cps, PUB)) == (0, TamperKind.TRUNCATED)

    def test_rewritten_tail_mismatches_checkpoint(self, chain: Chain) -> None:
        """A rebuilt tail differs from the signed head: edited after the last match."""
        records, cps = chain
        state = ChainState.after(records[9])
        rebuilt = list(records[:10])
        for draft in drafts(14)[4:]:  # different offsets → different content from 10 on
            record, state = append(state, draft.model_copy(update={"correlation_id": "x"}))
            rebuilt.append(record)
        assert _problem(verify_chain(rebuilt, cps, PUB)) == (10, TamperKind.EDITED)

    def test_forged_checkpoint(self, chain: Chain) -> None:
        """A checkpoint signed by another key is 'forged_checkpoint' at its sequence."""
        records, cps = chain
        forged = sign_checkpoint(Ed25519PrivateKey.generate(), ChainState.after(records[12]), T0)
        report = verify_chain(records, [*cps, forged], PUB)
        assert _problem(report) == (12, TamperKind.FORGED_CHECKPOINT)

    def test_a_checkpoint_of_an_unpinned_key_names_that_key(self, chain: Chain) -> None:
        """Forged, or signed by a key the verifier was not given: the detail names its key."""
        records, cps = chain
        other = Ed25519PrivateKey.generate()
        forged = sign_checkpoint(other, ChainState.after(records[12]), T0)
        report = verify_chain(records, [*cps, forged], PUB)
        assert report.detail == f"checkpoint names key {forged.key_id}, which is not pinned"

    def test_a_bad_signature_of_a_pinned_key_says_so(self, chain: Chain) -> None:
        records, cps = chain
        forged = sign_checkpoint(KEY, ChainState.after(records[12]), T0).model_copy(
            update={"signature": cps[0].signature}
        )
        report = verify_chain(records, [*cps, forged], PUB)
        assert _problem(report) == (12, TamperKind.FORGED_CHECKPOINT)
        assert report.detail == "checkpoint signature does not verify with the pinned key it names"

    def test_a_wrong_pin_is_suggested_when_no_checkpoint_verifies(self, chain: Chain) -> None:
        """Every checkpoint names a key that is not pinned (the operator pinned the wrong key):
        the first finding is still the uncovered records, but it names the checkpoints' key."""
        records, cps = chain
        wrong_pin = Ed25519PrivateKey.generate().public_key()
        report = verify_chain(records, cps, wrong_pin, max_uncovered=5)
        assert _problem(report) == (0, TamperKind.MISSING_CHECKPOINTS)
        assert f"signed by a key that is not pinned (checkpoints name {cps[0].key_id}" in (
            report.detail
        )
        assert "check the pinned audit keys first" in report.summary()

    def test_forged_checkpoint_does_not_extend_coverage(self, chain: Chain) -> None:
        """A forged checkpoint beyond the log's end is reported as forged, not truncation."""
        records, cps = chain
        forged = sign_checkpoint(Ed25519PrivateKey.generate(), ChainState(0, 50, "e" * 64), T0)
        assert _problem(verify_chain(records, [*cps, forged], PUB)) == (
            50,
            TamperKind.FORGED_CHECKPOINT,
        )

    def test_unreadable_record(self, chain: Chain) -> None:
        """A stored entry that does not parse is 'edited' at its sequence."""
        records, cps = chain
        items: list[AuditRecord | UnreadableRecord] = list(records)
        items[4] = UnreadableRecord(sequence=4)
        assert _problem(verify_chain(items, cps, PUB)) == (4, TamperKind.EDITED)

    def test_unreadable_record_without_sequence(self, chain: Chain) -> None:
        """An unparsable entry without a readable sequence is placed where one was expected."""
        records, cps = chain
        items: list[AuditRecord | UnreadableRecord] = list(records)
        items[4] = UnreadableRecord()
        assert _problem(verify_chain(items, cps, PUB)) == (4, TamperKind.EDITED)

    def test_record_of_another_chain(self, chain: Chain) -> None:
        """A record moved in from another chain partition is 'edited'."""
        records, cps = chain
        records[6] = _rehash(records[6], chain_partition=2)
        assert _problem(verify_chain(records, cps, PUB, chain_partition=0)) == (
            6,
            TamperKind.EDITED,
        )

    def test_lowest_sequence_reported(self, chain: Chain) -> None:
        """With a forged checkpoint at 3 and an edit at 7, the forged checkpoint is first."""
        records, cps = chain
        records[7] = records[7].model_copy(update={"correlation_id": "forged"})
        forged = sign_checkpoint(Ed25519PrivateKey.generate(), ChainState.after(records[3]), T0)
        assert _problem(verify_chain(records, [*cps, forged], PUB)) == (
            3,
            TamperKind.FORGED_CHECKPOINT,
        )


class TestMerge:
    def test_merge_intact(self) -> None:
        """Merged intact reports are intact with summed counts."""
        a, cps_a = build_chain(3, KEY, every=3, chain_partition=0)
        b, cps_b = build_chain(4, KEY, every=2, chain_partition=1)
        merged = merge_reports([verify_chain(a, cps_a, PUB), verify_chain(b, cps_b, PUB)])
        assert merged.ok
        assert (merged.records_checked, merged.checkpoints_checked, merged.chains) == (7, 3, 2)
        assert merged.summary().startswith("2 audit chains intact")

    def test_merge_reports_first_failure(self) -> None:
        """A failing chain makes the merged report fail with its problem."""
        a, cps_a = build_chain(3, KEY, every=3, chain_partition=0)
        b, cps_b = build_chain(4, KEY, every=2, chain_partition=1)
        merged = merge_reports([verify_chain(a, cps_a, PUB), verify_chain(b[:1], cps_b, PUB)])
        assert not merged.ok
        assert (merged.chain_partition, merged.first_bad_sequence, merged.problem) == (
            1,
            1,
            TamperKind.TRUNCATED,
        )

    def test_merge_nothing(self) -> None:
        """No chains at all is an intact, empty trail."""
        merged = merge_reports([])
        assert merged.ok
        assert merged.chains == 0

    def test_merge_single(self) -> None:
        """One report merges to itself."""
        a, cps_a = build_chain(3, KEY, every=3)
        report = verify_chain(a, cps_a, PUB)
        assert merge_reports([report]) is report


@pytest.mark.requirement("RS-AUD-06")
class TestForeignRecords:
    """A record the agent did not write is reported at its sequence and kept out of the chain."""

    def test_forged_record_named_at_its_claimed_sequence(self, chain: Chain) -> None:
        """A forged, correctly chained record at 20 is reported; the genuine chain still walks."""
        records, cps = chain
        forged = ForeignRecord(sequence=20, offset=44, reason="unsigned record")
        report = verify_chain([*records, forged], cps, PUB)
        assert _problem(report) == (20, TamperKind.FORGED_RECORD)
        assert report.error_code is ErrorCode.AUDIT_RECORD_FORGED
        assert (report.records_checked, report.last_sequence, report.foreign_records) == (20, 19, 1)
        assert "1 foreign records" in report.summary()

    def test_forgery_in_the_middle_does_not_break_the_chain(self, chain: Chain) -> None:
        """The agent's own record at the forged sequence still links: only the forgery is named."""
        records, cps = chain
        forged = ForeignRecord(sequence=7, offset=9, reason="record signature does not verify")
        report = verify_chain([*records[:7], forged, *records[7:]], cps, PUB)
        assert _problem(report) == (7, TamperKind.FORGED_RECORD)
        assert report.last_sequence == 19

    def test_unreadable_foreign_message_takes_the_expected_sequence(self, chain: Chain) -> None:
        """A foreign message without a sequence is reported where it sits in the chain."""
        records, cps = chain
        forged = ForeignRecord(sequence=None, offset=3, reason="unsigned record")
        report = verify_chain([*records[:3], forged, *records[3:]], cps, PUB)
        assert _problem(report) == (3, TamperKind.FORGED_RECORD)

    def test_merged_reports_sum_foreign_records(self, chain: Chain) -> None:
        """Counts of foreign records add up across chains."""
        records, cps = chain
        forged = ForeignRecord(sequence=20, offset=44, reason="unsigned record")
        one = verify_chain([*records, forged], cps, PUB)
        assert merge_reports([one, one]).foreign_records == 2

    def test_record_replaced_by_a_foreign_one_is_edited(self, chain: Chain) -> None:
        """The genuine 7 missing and a foreign record claiming 7 in its place: edited at 7."""
        records, cps = chain
        forged = ForeignRecord(sequence=7, offset=7, reason="record signature does not verify")
        report = verify_chain([*records[:7], forged, *records[8:]], cps, PUB)
        assert _problem(report) == (7, TamperKind.EDITED)
        assert "replaced" in report.detail


@pytest.mark.requirement("RS-SEC-03")
class TestRotation:
    def test_checkpoints_of_a_rotated_out_key_verify_while_it_is_pinned(self, chain: Chain) -> None:
        """Old checkpoints name the old key: both pinned, both verify; unpinned, they are forged."""
        records, cps = chain
        new_key = Ed25519PrivateKey.generate()
        newer = sign_checkpoint(new_key, ChainState(0, 19, records[19].hash), T0)
        both = TrustedKeys.of(PUB, new_key.public_key())
        assert verify_chain(records, [*cps, newer], both).ok
        report = verify_chain(records, [*cps, newer], TrustedKeys.of(new_key.public_key()))
        assert _problem(report) == (4, TamperKind.FORGED_CHECKPOINT)


@pytest.mark.requirement("RS-SEC-03")
class TestTrustAnchors:
    """Missing checkpoints, a damaged checkpoint file and stores that disagree are verdicts."""

    def test_checkpoints_deleted_past_one_interval(self, chain: Chain) -> None:
        """20 records and only the checkpoint at 4 left: past the interval of 5 it fails at 5."""
        records, cps = chain
        report = verify_chain(records, cps[:1], PUB, max_uncovered=5)
        assert _problem(report) == (5, TamperKind.MISSING_CHECKPOINTS)
        assert report.error_code is ErrorCode.AUDIT_CHECKPOINT_INVALID

    def test_every_checkpoint_deleted(self, chain: Chain) -> None:
        """No checkpoint at all beside 20 records: missing from sequence 0."""
        records, _ = chain
        assert _problem(verify_chain(records, [], PUB, max_uncovered=5)) == (
            0,
            TamperKind.MISSING_CHECKPOINTS,
        )

    def test_tail_within_one_interval_is_fine(self, chain: Chain) -> None:
        """Records after the newest checkpoint, fewer than one interval: intact."""
        records, cps = chain
        assert verify_chain(records[:18], cps[:3], PUB, max_uncovered=5).ok

    def test_malformed_checkpoint_line_is_a_verdict(self, chain: Chain) -> None:
        """A line of the checkpoint file that is not a checkpoint fails verification."""
        records, cps = chain
        report = verify_chains({0: records}, cps, PUB, malformed_checkpoint_lines=[3])
        assert (report.ok, report.problem) == (False, TamperKind.MISSING_CHECKPOINTS)
        assert "line 3" in report.detail

    def test_cross_check_finds_a_truncated_table(self, chain: Chain) -> None:
        """The table verifies alone (cut to nothing, no checkpoints) but not beside the topic."""
        records, cps = chain
        topic = verify_chains({0: records}, cps, PUB)
        table = verify_chains({}, [], PUB)
        assert table.ok
        report = cross_check(topic, table)
        assert _problem(report) == (0, TamperKind.STORES_DIFFER)
        assert report.error_code is ErrorCode.AUDIT_CHAIN_BROKEN

    def test_cross_check_finds_another_chain(self, chain: Chain) -> None:
        """Same length, other records from the start: the stores part at sequence 0."""
        records, cps = chain
        topic = verify_chain(records, cps, PUB)
        rebuilt = verify_chain(build_chain(20, KEY, every=5)[0], [], PUB)
        report = cross_check(topic, rebuilt)
        assert _problem(report) == (0, TamperKind.STORES_DIFFER)
        assert "part at sequence 0" in report.detail

    def test_cross_check_names_a_deleted_and_rechained_record(self, chain: Chain) -> None:
        """Record 7 deleted and the rest re-chained: the table still links, and is as long
        as the topic minus one; record by record the stores part at 7, not at the end."""
        records, cps = chain
        head = ChainState.after(records[6])
        rebuilt, _ = append_all(head, drafts(12))
        topic = verify_chains({0: records}, cps, PUB)
        table = verify_chains({0: [*records[:7], *rebuilt]}, [], PUB)
        assert table.ok
        report = cross_check(topic, table)
        assert _problem(report) == (7, TamperKind.STORES_DIFFER)
        assert "the topic ends at 19, the table at 18" in report.detail

    def test_cross_check_finds_a_chain_only_one_store_holds(self, chain: Chain) -> None:
        """A chain the table lacks entirely parts at 0; equal chains beside it do not hide it."""
        records, cps = chain
        other, other_cps = build_chain(3, KEY, every=5, chain_partition=1)
        topic = verify_chains({0: records, 1: other}, [*cps, *other_cps], PUB)
        table = verify_chains({0: records}, cps, PUB)
        report = cross_check(topic, table)
        assert (report.chain_partition, *_problem(report)) == (1, 0, TamperKind.STORES_DIFFER)

    def test_cross_check_of_equal_stores(self, chain: Chain) -> None:
        """The same chain in both stores: the cross-check passes."""
        records, cps = chain
        report = verify_chain(records, cps, PUB)
        assert cross_check(report, report).ok

    def test_cross_check_summary_claims_no_checkpoints(self, chain: Chain) -> None:
        """It compares records, verifying no checkpoint: its line says so, not "0 verified"."""
        records, cps = chain
        report = verify_chain(records, cps, PUB)
        compared = cross_check(report, report)
        assert compared.stores_compared
        assert not report.stores_compared
        assert compared.summary() == (
            "audit chain 0 identical in both stores, record by record: 20 records, "
            f"last sequence 19, head {report.head_hash[:16]}"
        )

    def test_cross_check_failure_summary_claims_no_checkpoints(self, chain: Chain) -> None:
        """Stores that differ: where they part, with no checkpoint count."""
        records, cps = chain
        topic = verify_chains({0: records}, cps, PUB)
        summary = cross_check(topic, verify_chains({}, [], PUB)).summary()
        assert summary.startswith(
            "audit chain 0 NOT identical in both stores: first bad sequence 0: stores_differ ("
        )
        assert "checkpoint" not in summary
