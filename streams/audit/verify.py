"""Verify a stored audit chain against its signed checkpoints and name the first tampering.

:func:`verify_chain` reads records in *stored* order (topic offset order, table insertion
order) and checks each record's hash, the sequence (+1 per record) and the ``prev_hash`` link,
every checkpoint's Ed25519 signature, and that every genuine checkpoint is covered: the log
reaches its sequence with the same head hash.

How the first problem is classified (``first_bad_sequence`` is what an auditor looks at):

======================  =====================================================================
kind                    evidence (first sequence reported)
======================  =====================================================================
``edited``              a record's hash does not match its content (its sequence), or it was
                        replaced by a foreign record claiming its sequence; or a
                        self-consistent record's ``prev_hash`` does not link to its predecessor
                        (the predecessor, whose hash the successor no longer vouches for); or a
                        record renumbered; or a second, *different* record claims a sequence
                        already seen; or a record does not parse; or a genuine checkpoint's head
                        differs from the log at its sequence (the log was rewritten after the
                        last checkpoint that still matches: the sequence after it)
``duplicated``          the same record (sequence and hash) appears a second time (its sequence)
``reordered``           the sequence jumps ahead and the skipped sequence appears later (the
                        skipped sequence)
``deleted``             the sequence jumps ahead and the skipped sequence never appears (the
                        first skipped sequence)
``truncated``           the log ends before a genuine checkpoint's sequence (the first sequence
                        after the log's end)
``forged_checkpoint``   a checkpoint's key id or signature does not verify with the trusted
                        public key (the checkpoint's sequence); it is not used for coverage
``forged_record``       a record on the topic the audit agent did not write (no valid writer
                        signature: :class:`ForeignRecord`): the sequence it claims. It is left
                        out of the chain (the agent's own record at that sequence still links)
``missing_checkpoints`` more records after the newest genuine checkpoint than one checkpoint
                        interval allows (``max_uncovered``): the checkpoints that covered them
                        were deleted (the first uncovered sequence); also a checkpoint file
                        line that is not a checkpoint (no sequence)
``stores_differ``       the table and the topic disagree on a chain (:func:`cross_check`,
                        record by record: the first sequence whose hash differs or that one
                        store lacks)
======================  =====================================================================

When several problems exist, the one with the lowest sequence is reported (chain problems
before checkpoint problems on a tie). Records after a chain's tail that no checkpoint covers
cannot be proven complete: a cut there is undetectable, which is why checkpoints are frequent.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from schemas.audit import GENESIS_HASH, AuditCheckpoint, AuditRecord
from schemas.errors import ErrorCode
from streams.audit.chain import hash_is_valid
from streams.audit.checkpoints import TrustedKeys, checkpoint_signature_valid


class TamperKind(StrEnum):
    """What is wrong with a log that does not verify."""

    EDITED = "edited"
    REORDERED = "reordered"
    DELETED = "deleted"
    DUPLICATED = "duplicated"
    TRUNCATED = "truncated"
    FORGED_CHECKPOINT = "forged_checkpoint"
    FORGED_RECORD = "forged_record"
    MISSING_CHECKPOINTS = "missing_checkpoints"
    STORES_DIFFER = "stores_differ"


@dataclass(frozen=True, slots=True)
class UnreadableRecord:
    """A stored entry that does not parse as an :class:`AuditRecord` (counts as edited)."""

    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class ColumnMismatch:
    """A table row whose indexed copies (``event_id``, ``sequence``, ``hash``…) differ from the
    hashed record it holds: the record is walked as stored, the row is reported as edited."""

    record: AuditRecord


@dataclass(frozen=True, slots=True)
class ForeignRecord:
    """A record the audit agent did not write (no valid writer signature): quarantined.

    Attributes:
        sequence: the sequence it claims, when it reads as a record.
        offset: where it sits on the audit topic.
        reason: why it is foreign, a fixed phrase.
    """

    sequence: int | None
    offset: int
    reason: str


StoredItem = AuditRecord | UnreadableRecord | ForeignRecord | ColumnMismatch


@dataclass(frozen=True, slots=True)
class _Finding:
    sequence: int
    kind: TamperKind
    detail: str
    rank: int = 0  # tie-break: chain findings (0) before checkpoint findings (1)


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The outcome of verifying one chain (or several, merged)."""

    ok: bool
    records_checked: int
    checkpoints_checked: int
    chain_partition: int | None
    last_sequence: int
    head_hash: str
    first_bad_sequence: int | None = None
    problem: TamperKind | None = None
    detail: str = ""
    chains: int = 1
    foreign_records: int = 0
    heads: tuple[tuple[int, int, str], ...] = ()
    """(chain partition, last sequence, head hash) of every chain verified."""
    linked: tuple[tuple[int, tuple[int, ...]], ...] = field(default=(), repr=False, compare=False)
    """(chain partition, a compact hash of each linked record from sequence 0) of every chain:
    what :func:`cross_check` compares record by record."""
    stores_compared: bool = False
    """True for :func:`cross_check`'s report: two stores compared record by record. No
    checkpoint is verified there (``checkpoints_checked`` is 0); each store's own report did."""

    @property
    def error_code(self) -> ErrorCode | None:
        """The error code a failed verification maps to (None when intact)."""
        if self.ok:
            return None
        if self.problem in (
            TamperKind.FORGED_CHECKPOINT,
            TamperKind.TRUNCATED,
            TamperKind.MISSING_CHECKPOINTS,
        ):
            return ErrorCode.AUDIT_CHECKPOINT_INVALID
        if self.problem is TamperKind.FORGED_RECORD:
            return ErrorCode.AUDIT_RECORD_FORGED
        return ErrorCode.AUDIT_CHAIN_BROKEN

    def summary(self) -> str:
        """One line for the CLI: intact with counts, or the first bad sequence and why."""
        where = (
            f"audit chain {self.chain_partition}"
            if self.chains == 1
            else f"{self.chains} audit chains"
        )
        if self.stores_compared:
            return self._comparison_summary(where)
        if self.ok:
            return (
                f"{where} intact: {self.records_checked} records, "
                f"{self.checkpoints_checked} checkpoints verified, "
                f"last sequence {self.last_sequence}, head {self.head_hash[:16]}"
            )
        problem = self.problem.value if self.problem else "unknown"
        return (
            f"{where} NOT intact: first bad sequence {self.first_bad_sequence}: {problem} "
            f"({self.detail}); {self.records_checked} records, "
            f"{self.checkpoints_checked} checkpoints read"
            + (f", {self.foreign_records} foreign records" if self.foreign_records else "")
        )

    def _comparison_summary(self, where: str) -> str:
        """The cross-check's line: whether the stores hold the same records (no checkpoints)."""
        if self.ok:
            return (
                f"{where} identical in both stores, record by record: "
                f"{self.records_checked} records, last sequence {self.last_sequence}, "
                f"head {self.head_hash[:16]}"
            )
        # The stores part on one chain, even when one store holds none (its count is 0).
        problem = self.problem.value if self.problem else "unknown"
        return (
            f"audit chain {self.chain_partition} NOT identical in both stores: first bad sequence "
            f"{self.first_bad_sequence}: {problem} ({self.detail})"
        )


def _prefix(digest: str) -> int:
    """A compact stand-in for a hash, enough to tell a duplicate from a different record."""
    return int(digest[:16], 16)


class _Walker:
    """Walks stored records in order, stopping judgement at the first anomaly."""

    def __init__(self, chain_partition: int, watch: set[int]) -> None:
        self.partition = chain_partition
        self.expected = 0
        self.head = GENESIS_HASH
        self.seen: dict[int, int] = {}
        self.watch = watch
        self.hash_at: dict[int, str] = {}
        self.count = 0
        self.foreign: list[_Finding] = []
        self.columns: list[_Finding] = []
        self.finding: _Finding | None = None
        # A gap [gap_start, gap_end) is "deleted" unless one of its sequences shows up later.
        self.gap: tuple[int, int] | None = None

    def feed(self, item: StoredItem) -> None:
        if isinstance(item, ForeignRecord):
            # Not part of the chain: the agent's own record at that sequence must still link.
            claimed = self.expected if item.sequence is None else item.sequence
            detail = f"{item.reason} at offset {item.offset}: not written by the audit agent"
            self.foreign.append(_Finding(claimed, TamperKind.FORGED_RECORD, detail, rank=1))
            return
        if isinstance(item, ColumnMismatch):
            detail = "indexed columns differ from the hashed record (a column was edited)"
            self.columns.append(_Finding(item.record.sequence, TamperKind.EDITED, detail, rank=1))
            item = item.record
        self.count += 1
        if self.gap is not None:
            self._diagnose_gap(item, self.gap)
        elif self.finding is None:
            self._judge(item)

    def _diagnose_gap(self, item: AuditRecord | UnreadableRecord, gap: tuple[int, int]) -> None:
        start, end = gap
        if isinstance(item, AuditRecord) and start <= item.sequence < end:
            self.finding = _Finding(start, TamperKind.REORDERED, "record stored out of order")
            self.gap = None

    def _flag(self, sequence: int, kind: TamperKind, detail: str) -> None:
        self.finding = _Finding(sequence, kind, detail)

    def _judge(self, item: AuditRecord | UnreadableRecord) -> None:
        expected = self.expected
        if isinstance(item, UnreadableRecord):
            seq = expected if item.sequence is None else item.sequence
            self._flag(seq, TamperKind.EDITED, "stored record does not parse")
            return
        record = item
        if record.chain_partition != self.partition:
            self._flag(expected, TamperKind.EDITED, "record names another chain partition")
        elif record.sequence == expected:
            self._judge_expected(record)
        elif record.sequence < expected:
            prior = self.seen.get(record.sequence)
            if hash_is_valid(record) and prior == _prefix(record.hash):
                self._flag(record.sequence, TamperKind.DUPLICATED, "record stored twice")
            else:
                self._flag(
                    record.sequence, TamperKind.EDITED, "a different record repeats a sequence"
                )
        elif not hash_is_valid(record):
            self._flag(expected, TamperKind.EDITED, "hash does not match content")
        elif record.prev_hash == self.head:
            self._flag(expected, TamperKind.EDITED, "record renumbered")
        else:
            self._flag(expected, TamperKind.DELETED, "sequence gap")
            self.gap = (expected, record.sequence)

    def _judge_expected(self, record: AuditRecord) -> None:
        expected = self.expected
        if not hash_is_valid(record):
            self._flag(expected, TamperKind.EDITED, "hash does not match content")
        elif record.prev_hash != self.head:
            # The record itself is consistent but does not link to the predecessor we hold:
            # the predecessor was replaced (or this link rewritten); the earlier one is first.
            self._flag(max(expected - 1, 0), TamperKind.EDITED, "prev_hash link broken")
        else:
            self.seen[expected] = _prefix(record.hash)
            if expected in self.watch:
                self.hash_at[expected] = record.hash
            self.head = record.hash
            self.expected += 1


def _infer_partition(first: StoredItem | None, checkpoints: Sequence[AuditCheckpoint]) -> int:
    if isinstance(first, ColumnMismatch):
        return first.record.chain_partition
    if isinstance(first, AuditRecord):
        return first.chain_partition
    # A chain is verified by partition: only foreign or unreadable items cannot name it.
    if checkpoints:
        return checkpoints[0].chain_partition
    return 0


def verify_chain(
    records: Iterable[StoredItem],
    checkpoints: Sequence[AuditCheckpoint],
    trusted: Ed25519PublicKey | TrustedKeys,
    *,
    chain_partition: int | None = None,
    max_uncovered: int | None = None,
) -> VerificationReport:
    """Verify one chain's records (in stored order) against its checkpoints.

    Args:
        records: the chain's records as stored; may be a one-pass iterator.
        checkpoints: checkpoints from outside the store (other chains' are ignored).
        trusted: the pinned Ed25519 public key(s) checkpoints must be signed with.
        chain_partition: the chain to verify; by default the first record's.
        max_uncovered: the most records a chain may hold after its newest genuine checkpoint
            (the checkpoint interval); more means checkpoints were deleted. None: no limit.
    """
    iterator = iter(records)
    first = next(iterator, None)
    partition = (
        chain_partition if chain_partition is not None else _infer_partition(first, checkpoints)
    )
    ours = [cp for cp in checkpoints if cp.chain_partition == partition]
    walker = _Walker(partition, {cp.sequence for cp in ours})
    if first is not None:
        for item in itertools.chain((first,), iterator):
            walker.feed(item)

    findings: list[_Finding] = [_replaced(walker.finding, walker.foreign)] if walker.finding else []
    findings.extend(walker.foreign)
    findings.extend(walker.columns)
    last_sequence = walker.expected - 1
    keys = trusted if isinstance(trusted, TrustedKeys) else TrustedKeys.of(trusted)
    genuine: list[AuditCheckpoint] = []
    # A checkpoint naming a key that is not pinned is forged or was signed with a key the
    # verifier was not given (a wrong or missing pin): the reports say which key it names.
    unpinned: set[str] = set()
    for cp in ours:
        if checkpoint_signature_valid(cp, keys):
            genuine.append(cp)
            continue
        if cp.key_id in keys.key_ids:
            detail = "checkpoint signature does not verify with the pinned key it names"
        else:
            unpinned.add(cp.key_id)
            detail = f"checkpoint names key {cp.key_id}, which is not pinned"
        findings.append(_Finding(cp.sequence, TamperKind.FORGED_CHECKPOINT, detail, rank=1))
    findings.extend(_coverage_findings(genuine, walker, last_sequence))
    if max_uncovered is not None:
        newest = max((cp.sequence for cp in genuine), default=-1)
        if last_sequence - newest > max_uncovered:
            detail = (
                f"{last_sequence - newest} records after the newest genuine checkpoint "
                f"(at most {max_uncovered} allowed): checkpoints are missing"
            )
            if unpinned:
                detail += (
                    f", or signed by a key that is not pinned (checkpoints name "
                    f"{', '.join(sorted(unpinned))}: check the pinned audit keys first)"
                )
            findings.append(_Finding(newest + 1, TamperKind.MISSING_CHECKPOINTS, detail, rank=1))

    base = VerificationReport(
        ok=not findings,
        records_checked=walker.count,
        checkpoints_checked=len(ours),
        chain_partition=partition,
        last_sequence=last_sequence,
        head_hash=walker.head,
        foreign_records=len(walker.foreign),
        heads=((partition, last_sequence, walker.head),),
        linked=((partition, tuple(walker.seen[s] for s in range(walker.expected))),),
    )
    if not findings:
        return base
    worst = min(findings, key=lambda f: (f.sequence, f.rank))
    return replace(base, first_bad_sequence=worst.sequence, problem=worst.kind, detail=worst.detail)


def _replaced(finding: _Finding, foreign: Sequence[_Finding]) -> _Finding:
    """A gap where a foreign record claims the missing sequence: the record was replaced."""
    if finding.kind is TamperKind.DELETED and any(f.sequence == finding.sequence for f in foreign):
        detail = "record replaced by one the audit agent did not write"
        return replace(finding, kind=TamperKind.EDITED, detail=detail)
    return finding


def _coverage_findings(
    genuine: list[AuditCheckpoint], walker: _Walker, last_sequence: int
) -> list[_Finding]:
    """Check the log reaches every genuine checkpoint with the signed head hash."""
    limit = walker.finding.sequence if walker.finding else None
    matched = -1
    for cp in sorted(genuine, key=lambda c: c.sequence):
        if limit is not None and cp.sequence >= limit:
            break  # beyond the first chain problem nothing is trusted; it is reported already
        if cp.sequence > last_sequence:
            detail = f"log ends at sequence {last_sequence}; a checkpoint vouches for {cp.sequence}"
            return [_Finding(last_sequence + 1, TamperKind.TRUNCATED, detail, rank=1)]
        if walker.hash_at.get(cp.sequence) != cp.head_hash:
            detail = f"head hash at checkpoint sequence {cp.sequence} differs from the signed one"
            return [_Finding(matched + 1, TamperKind.EDITED, detail, rank=1)]
        matched = cp.sequence
    return []


def merge_reports(reports: Sequence[VerificationReport]) -> VerificationReport:
    """One report for several chains: the first failing chain's, with counts summed."""
    if not reports:
        return VerificationReport(
            ok=True,
            records_checked=0,
            checkpoints_checked=0,
            chain_partition=None,
            last_sequence=-1,
            head_hash=GENESIS_HASH,
            chains=0,
        )
    if len(reports) == 1:
        return reports[0]
    failing = [report for report in reports if not report.ok]
    chosen = failing[0] if failing else reports[-1]
    return replace(
        chosen,
        records_checked=sum(r.records_checked for r in reports),
        checkpoints_checked=sum(r.checkpoints_checked for r in reports),
        foreign_records=sum(r.foreign_records for r in reports),
        heads=tuple(head for r in reports for head in r.heads),
        linked=tuple(chain for r in reports for chain in r.linked),
        chains=len(reports),
    )


def verify_chains(
    chains: Mapping[int, Sequence[StoredItem]],
    checkpoints: Iterable[AuditCheckpoint],
    trusted: Ed25519PublicKey | TrustedKeys,
    *,
    max_uncovered: int | None = None,
    malformed_checkpoint_lines: Sequence[int] = (),
) -> VerificationReport:
    """Verify every stored chain (and every chain a checkpoint names) as one report.

    A chain a checkpoint vouches for but the store lacks entirely is verified as empty, so a
    store cut to nothing is reported as truncated. Checkpoints found twice (in the checkpoint
    file and on the topic) count once. A checkpoint-file line that is not a checkpoint makes the
    verdict ``missing_checkpoints`` (the file was tampered with) when nothing else is wrong.
    """
    unique = list({cp.model_dump_json(): cp for cp in checkpoints}.values())
    partitions = sorted(set(chains) | {cp.chain_partition for cp in unique})
    report = merge_reports(
        [
            verify_chain(
                chains.get(p, ()), unique, trusted, chain_partition=p, max_uncovered=max_uncovered
            )
            for p in partitions
        ]
    )
    if malformed_checkpoint_lines and report.ok:
        lines = ", ".join(str(n) for n in malformed_checkpoint_lines[:5])
        return replace(
            report,
            ok=False,
            problem=TamperKind.MISSING_CHECKPOINTS,
            detail=f"checkpoint file line {lines} is not a checkpoint",
        )
    return report


def _first_difference(on_topic: Sequence[int], in_table: Sequence[int]) -> int | None:
    """The first sequence whose record differs between the stores or is missing from one."""
    for sequence, (a, b) in enumerate(zip(on_topic, in_table, strict=False)):
        if a != b:
            return sequence
    return None if len(on_topic) == len(in_table) else min(len(on_topic), len(in_table))


def cross_check(topic: VerificationReport, table: VerificationReport) -> VerificationReport:
    """Compare the table with the topic it is copied from, record by record per chain.

    Each store's chain is compared from sequence 0 as far as it links: the first sequence whose
    hash differs, or that one store lacks, is where they part. With the checkpoint file deleted
    and the table truncated, the table alone verifies as a short (or empty) chain; beside the
    topic it does not. A row deleted from the table and the rest re-chained (and re-signed with
    another key) is named at the deleted row's sequence, not at the end of the chain.
    """
    base = replace(
        table,
        ok=True,
        first_bad_sequence=None,
        problem=None,
        detail="",
        checkpoints_checked=0,
        foreign_records=0,
        stores_compared=True,
    )
    topic_chains = dict(topic.linked)
    table_chains = dict(table.linked)
    topic_heads = {partition: last for partition, last, _ in topic.heads}
    table_heads = {partition: last for partition, last, _ in table.heads}
    for partition in sorted(set(topic_chains) | set(table_chains)):
        sequence = _first_difference(
            topic_chains.get(partition, ()), table_chains.get(partition, ())
        )
        if sequence is not None:
            detail = (
                f"chain {partition}: the topic and the table part at sequence {sequence} (the "
                f"topic ends at {topic_heads.get(partition, -1)}, the table at "
                f"{table_heads.get(partition, -1)})"
            )
            return replace(
                base,
                ok=False,
                chain_partition=partition,
                first_bad_sequence=sequence,
                problem=TamperKind.STORES_DIFFER,
                detail=detail,
            )
    return base
