"""Repositories: the only code in radstream with SQL in it.

Write methods of the results and lifecycle repositories take the caller's
:class:`~sqlalchemy.ext.asyncio.AsyncSession` so several writes share one transaction (the
results sink commits a whole batch at once); read methods, ``mark_verified`` and the append-only
audit log open their own short session from the factory given at construction.
Every write is idempotent (``INSERT ... ON CONFLICT DO NOTHING`` on a natural key), which is
what makes at-least-once delivery from Kafka an exactly-once effect in the database.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    Column,
    ColumnElement,
    RowMapping,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.dml import ReturningInsert

from schemas.api import ResultQuery, VerificationStatus, utc_timestamp
from schemas.audit import AuditCheckpoint, AuditRecord
from schemas.errors import (
    ConflictError,
    ErrorCode,
    InputValidationError,
    ResourceNotFoundError,
)
from schemas.events import InferenceCompleted, join_model_id
from schemas.rollout import ResultRole, VersionComparison
from sinks.database import database_errors
from sinks.records import (
    AuditStoreReport,
    ComparedResult,
    InferenceResultRecord,
    LifecycleEntry,
    Page,
    QuarantinedMessage,
)
from sinks.tables import (
    LifecycleState,
    audit_checkpoints,
    audit_log,
    audit_quarantine,
    image_events,
    inference_results,
)
from streams.audit.verify import ColumnMismatch, UnreadableRecord
from streams.inference.comparison import compare_versions

MAX_PAGE_SIZE = 500
# A comparison reads at most this many results and as many failures (the newest of the window).
MAX_COMPARED_ROWS = 100_000
DEFAULT_QUERY = ResultQuery()  # the newest page of everything the caller may see
_JSON_COLUMNS = frozenset({"verdicts", "thresholds", "scores"})
_R = inference_results.c
_E = image_events.c
_PUBLISHED = _R.role == ResultRole.PUBLISHED.value


def result_row(
    result: InferenceCompleted, role: ResultRole = ResultRole.PUBLISHED
) -> dict[str, Any]:
    """The ``inference_results`` row of a result event (``stored_at`` is set by the server)."""
    return {
        "role": role.value,
        "result_id": result.result_id,
        "event_id": result.event_id,
        "correlation_id": result.effective_correlation_id(),
        "model_name": result.model.name,
        "model_version": result.model.version,
        "weights_sha256": result.model.weights_sha256,
        "runtime": result.model.runtime,
        "provider": result.model.provider,
        "input_sha256": result.input_sha256,
        "verdicts": [verdict.model_dump(mode="json") for verdict in result.verdicts],
        "thresholds": dict(result.thresholds),
        "scores": dict(result.scores),
        "decision": result.decision,
        "inference_seconds": result.inference_seconds,
        "batch_size": result.batch_size,
        "requested_by": result.requested_by,
        "study_instance_uid": result.study_instance_uid,
        "series_instance_uid": result.series_instance_uid,
        "sop_instance_uid": result.sop_instance_uid,
        "modality": result.modality,
        "source": result.source,
        "occurred_at": result.occurred_at,
        "completed_at": result.completed_at,
    }


def _unnest_rows(
    rows: Sequence[Mapping[str, Any]], json_columns: frozenset[str] = frozenset()
) -> tuple[tuple[str, ...], dict[str, list[Any]]]:
    """The columns of ``rows`` and one array parameter per column, for :func:`_unnest_insert`.

    JSON travels as text arrays and is cast back, since JSONB arrays have no asyncpg codec.
    """
    columns = tuple(rows[0].keys())
    parameters = {
        f"rows_{name}": [
            json.dumps(row[name]) if name in json_columns else row[name] for row in rows
        ]
        for name in columns
    }
    return columns, parameters


@functools.cache
def _unnest_insert(
    table: Table,
    columns: tuple[str, ...],
    json_columns: frozenset[str],
    conflict_target: tuple[str, ...] | None,
    returning: tuple[str, ...],
) -> ReturningInsert[Any]:
    """``INSERT ... SELECT ... FROM unnest($1, $2, ...) ON CONFLICT DO NOTHING RETURNING ...``.

    The statement text is the same for every batch size, so PostgreSQL and asyncpg prepare it
    once, and a batch is one round trip however many rows it has (no 32k-parameter limit). It
    is built once per table and column list (values are bound at execution): building and
    compiling it for every batch cost more CPU than the write itself when batches are small.
    Rows are inserted in the arrays' order (``WITH ORDINALITY ... ORDER BY``), so identity ids
    follow the batch: the audit table's chains are read back in id order.
    """
    arrays = [
        bindparam(
            f"rows_{name}", type_=ARRAY(Text() if name in json_columns else table.c[name].type)
        )
        for name in columns
    ]
    source = (
        func.unnest(*arrays).table_valued(*columns, with_ordinality="row_order").render_derived()
    )
    selected = [
        cast(source.c[name], JSONB) if name in json_columns else source.c[name] for name in columns
    ]
    return (
        insert(table)
        .from_select(list(columns), select(*selected).order_by(source.c.row_order))
        .on_conflict_do_nothing(index_elements=list(conflict_target) if conflict_target else None)
        .returning(*(table.c[name] for name in returning))
    )


def encode_cursor(completed_at: datetime, result_id: uuid.UUID) -> str:
    """An opaque keyset cursor for the row after which the next page starts."""
    raw = json.dumps({"c": completed_at.isoformat(), "r": str(result_id)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Parse a cursor from :func:`encode_cursor`; a tampered one is a 400, not a 500."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        completed_at = datetime.fromisoformat(data["c"])
        result_id = uuid.UUID(data["r"])
        if completed_at.tzinfo is None:
            raise ValueError("a cursor's time is timezone-aware")  # noqa: TRY301 - one verdict
        # Out-of-range instants (year 0 or 10000 in UTC) would reach asyncpg as an OverflowError.
        completed_at = utc_timestamp(completed_at)
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InputValidationError(ErrorCode.REQUEST_INVALID, "invalid page cursor") from exc
    return completed_at, result_id


def _record(row: Mapping[Any, Any]) -> InferenceResultRecord:
    return InferenceResultRecord.model_validate(dict(row))


class ResultsRepository:
    """Stored inference results: batch upsert, per-user pages, lookup and verification."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @staticmethod
    async def upsert_results(
        session: AsyncSession,
        results: Sequence[InferenceCompleted],
        role: ResultRole = ResultRole.PUBLISHED,
    ) -> int:
        """Insert results, skipping ones already stored; return how many rows were new.

        The natural key (event, model name, model version) decides "already stored", so a
        redelivered event and a re-run of the same model on the same image both count as
        duplicates (``len(results) - returned``). ``role`` marks shadow results (kept for the
        comparison of versions, never in the default views).
        """
        if not results:
            return 0
        columns, parameters = _unnest_rows([result_row(r, role) for r in results], _JSON_COLUMNS)
        statement = _unnest_insert(
            inference_results,
            columns,
            _JSON_COLUMNS,
            ("event_id", "model_name", "model_version"),
            ("result_id",),
        )
        with database_errors():
            inserted = await session.execute(statement, parameters)
        return len(inserted.all())

    @staticmethod
    def list_statement(query: ResultQuery, *, user_id: str | None) -> Select[Any]:
        """The SELECT behind a page (one row more than ``limit`` to know if a next page exists).

        Public so tests can ``EXPLAIN`` exactly what the API runs.
        """
        if not 1 <= query.limit <= MAX_PAGE_SIZE:
            raise InputValidationError(
                ErrorCode.REQUEST_INVALID, f"limit must be between 1 and {MAX_PAGE_SIZE}"
            )
        conditions: list[ColumnElement[bool]] = [_PUBLISHED]
        if user_id is not None:
            conditions.append(_R.requested_by == user_id)
        if query.cursor is not None:
            after_completed, after_id = decode_cursor(query.cursor)
            conditions.append(tuple_(_R.completed_at, _R.result_id) < (after_completed, after_id))
        if query.since is not None:
            conditions.append(_R.completed_at >= query.since)
        if query.until is not None:
            conditions.append(_R.completed_at < query.until)
        if query.model_name is not None:
            conditions.append(_R.model_name == query.model_name)
        if query.status is VerificationStatus.VERIFIED:
            conditions.append(_R.verified_at.is_not(None))
        elif query.status is VerificationStatus.UNVERIFIED:
            conditions.append(_R.verified_at.is_(None))
        if query.study_uid is not None:
            conditions.append(_R.study_instance_uid == query.study_uid)
        return (
            select(inference_results)
            .where(and_(true(), *conditions))
            .order_by(_R.completed_at.desc(), _R.result_id.desc())
            .limit(query.limit + 1)
        )

    async def list_for_user(self, user_id: str, query: ResultQuery = DEFAULT_QUERY) -> Page:
        """One page of a user's results, newest first, filtered; keyset-paged by the cursor."""
        return await self._page(self.list_statement(query, user_id=user_id), query.limit)

    async def list_all(self, query: ResultQuery = DEFAULT_QUERY) -> Page:
        """Like :meth:`list_for_user` over every user's results (administrators, operators)."""
        return await self._page(self.list_statement(query, user_id=None), query.limit)

    async def _page(self, statement: Select[Any], limit: int) -> Page:
        rows = await self._fetch(statement)
        items = tuple(_record(row) for row in rows[:limit])
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(last.completed_at, last.result_id)
        return Page(items=items, next_cursor=next_cursor)

    async def get(
        self, result_id: uuid.UUID, *, user_id: str | None
    ) -> InferenceResultRecord | None:
        """The result, or ``None`` when it does not exist or belongs to another user.

        ``user_id=None`` means "any user's" (for administrators and internal callers).
        """
        statement = select(inference_results).where(_R.result_id == result_id, _PUBLISHED)
        if user_id is not None:
            statement = statement.where(_R.requested_by == user_id)
        rows = await self._fetch(statement)
        return _record(rows[0]) if rows else None

    @staticmethod
    def event_statement(event_id: uuid.UUID) -> Select[Any]:
        """The SELECT of every model's published result for one arrival event."""
        return (
            select(inference_results)
            .where(_R.event_id == event_id, _PUBLISHED)
            .order_by(_R.model_name, _R.model_version)
        )

    async def list_for_event(self, event_id: uuid.UUID) -> list[InferenceResultRecord]:
        """Every model's result for one arrival event (operators' "what happened to X")."""
        return [_record(row) for row in await self._fetch(self.event_statement(event_id))]

    async def mark_verified(
        self,
        result_id: uuid.UUID,
        *,
        user_id: str,
        note: str | None = None,
        owner_id: str | None = None,
    ) -> InferenceResultRecord:
        """Record that ``user_id`` verified the result, once; return the updated result.

        Raises:
            ResourceNotFoundError: no such result (or, with ``owner_id``, not that user's).
            ConflictError: ``RESULT_ALREADY_VERIFIED`` when it was verified before.
        """
        if note is not None and len(note) > 2000:
            raise InputValidationError(ErrorCode.REQUEST_INVALID, "note longer than 2000")
        visible = and_(_R.result_id == result_id, _PUBLISHED)
        if owner_id is not None:
            visible = and_(visible, _R.requested_by == owner_id)
        # One UPDATE guarded by "not verified yet": two concurrent verifications cannot both win.
        statement = (
            update(inference_results)
            .where(visible, _R.verified_at.is_(None))
            .values(verified_by=user_id, verified_at=func.now(), verification_note=note)
            .returning(*inference_results.c)
        )
        with database_errors():
            async with self._sessions() as session, session.begin():
                updated = (await session.execute(statement)).mappings().all()
                if updated:
                    return _record(updated[0])
                exists = await session.execute(select(literal(1)).where(visible))
                found = exists.first() is not None
        if found:
            raise ConflictError(ErrorCode.RESULT_ALREADY_VERIFIED)
        raise ResourceNotFoundError(ErrorCode.RESOURCE_NOT_FOUND, "no such result")

    async def _fetch(self, statement: Select[Any]) -> list[RowMapping]:
        with database_errors():
            async with self._sessions() as session:
                return list((await session.execute(statement)).mappings().all())


class LifecycleRepository:
    """The ``image_events`` lifecycle: record steps idempotently, read one event's history."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @staticmethod
    async def record(session: AsyncSession, entries: Sequence[LifecycleEntry]) -> int:
        """Insert lifecycle steps, skipping ones already recorded; return how many were new."""
        if not entries:
            return 0
        rows = [
            entry.model_dump(mode="python") | {"state": entry.state.value, "role": entry.role.value}
            for entry in entries
        ]
        # No conflict target: the only unique index besides the identity key is the
        # (event, state, model) expression index, which is what "already recorded" means.
        columns, parameters = _unnest_rows(rows)
        statement = _unnest_insert(image_events, columns, frozenset(), None, ("id",))
        with database_errors():
            inserted = await session.execute(statement, parameters)
        return len(inserted.all())

    @staticmethod
    def lifecycle_statement(event_id: uuid.UUID) -> Select[Any]:
        """The SELECT of one arrival's published steps, oldest first (shadow failures are left
        out: they belong to the comparison of model versions, not to the image's story).

        ``arrived`` always comes first: it is the first step by definition, but its time is the
        router's clock (``occurred_at``), which may run ahead of the workers' clocks.
        """
        return (
            select(
                _E.event_id,
                _E.state,
                _E.at,
                _E.error_code,
                _E.stage,
                _E.detail,
                _E.model_name,
                _E.model_version,
                _E.requested_by,
            )
            .where(_E.event_id == event_id, _E.role == ResultRole.PUBLISHED.value)
            .order_by(case((_E.state == LifecycleState.ARRIVED.value, 0), else_=1), _E.at, _E.id)
        )

    async def lifecycle(self, event_id: uuid.UUID) -> list[LifecycleEntry]:
        """Every recorded step of one arrival, in the order they happened."""
        with database_errors():
            async with self._sessions() as session:
                result = await session.execute(self.lifecycle_statement(event_id))
                rows = result.mappings().all()
        return [LifecycleEntry.model_validate(dict(row)) for row in rows]

    async def submitted_by(self, event_id: uuid.UUID) -> str | None:
        """The pseudonymous user who submitted the image, from any of its lifecycle rows."""
        statement = (
            select(_E.requested_by)
            .where(_E.event_id == event_id, _E.requested_by.is_not(None))
            .limit(1)
        )
        with database_errors():
            async with self._sessions() as session:
                value = (await session.execute(statement)).scalar_one_or_none()
        return None if value is None else str(value)


def _versions_in_window(
    columns: ReadOnlyColumnCollection[str, Column[Any]],
    at: Column[Any],
    name: str,
    versions: Sequence[str],
    *,
    since: datetime,
    until: datetime,
) -> tuple[ColumnElement[bool], ...]:
    """The rows of ``versions`` of model ``name`` whose ``at`` lies in ``[since, until)``.

    A comparison reads results and failures over this one selection (``columns`` has
    ``model_name`` and ``model_version``), so both sides of it are counted alike.
    """
    return (
        columns.model_name == name,
        columns.model_version.in_(list(versions)),
        at >= since,
        at < until,
    )


class ComparisonRepository:
    """Two versions of one model compared on what both stored over a time window.

    Reads both roles: a shadow version's results sit beside the published ones of the same
    images, which is what makes the comparison paired (see
    :func:`~streams.inference.comparison.compare_versions`).
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, max_rows: int = MAX_COMPARED_ROWS
    ) -> None:
        self._sessions = sessions
        self._max_rows = max_rows

    @staticmethod
    def results_statement(
        name: str, versions: Sequence[str], since: datetime, until: datetime, limit: int
    ) -> Select[Any]:
        """The newest results of ``versions`` of model ``name`` completed in the window."""
        return (
            select(
                _R.event_id,
                _R.model_name,
                _R.model_version,
                _R.decision,
                _R.scores,
                _R.inference_seconds,
            )
            .where(
                *_versions_in_window(_R, _R.completed_at, name, versions, since=since, until=until)
            )
            .order_by(_R.completed_at.desc())
            .limit(limit)
        )

    @staticmethod
    def failures_statement(
        name: str, versions: Sequence[str], since: datetime, until: datetime, limit: int
    ) -> Select[Any]:
        """The newest failures of ``versions`` of model ``name`` recorded in the window."""
        return (
            select(_E.event_id, _E.state, _E.at, _E.error_code, _E.model_name, _E.model_version)
            .where(
                _E.state == LifecycleState.FAILED.value,
                *_versions_in_window(_E, _E.at, name, versions, since=since, until=until),
            )
            .order_by(_E.at.desc())
            .limit(limit)
        )

    async def compare(
        self,
        name: str,
        baseline: str,
        candidate: str,
        *,
        since: datetime,
        until: datetime,
    ) -> VersionComparison:
        """``name@candidate`` against ``name@baseline`` over ``[since, until)``.

        Raises:
            InputValidationError: ``REQUEST_INVALID`` for an empty or reversed window.
            TransientError: ``DATABASE_UNAVAILABLE``.
        """
        if since.tzinfo is None or until.tzinfo is None or since >= until:
            raise InputValidationError(
                ErrorCode.REQUEST_INVALID, "the window needs timezone-aware since < until"
            )
        versions = (baseline, candidate)
        limit = self._max_rows + 1
        with database_errors():
            async with self._sessions() as session:
                result_rows = (
                    (
                        await session.execute(
                            self.results_statement(name, versions, since, until, limit)
                        )
                    )
                    .mappings()
                    .all()
                )
                failure_rows = (
                    (
                        await session.execute(
                            self.failures_statement(name, versions, since, until, limit)
                        )
                    )
                    .mappings()
                    .all()
                )
        truncated = len(result_rows) > self._max_rows or len(failure_rows) > self._max_rows
        # Oldest first, so a redelivered result's newest copy is the one that counts.
        results = [ComparedResult.model_validate(dict(r)) for r in result_rows[: self._max_rows]]
        failures = [LifecycleEntry.model_validate(dict(r)) for r in failure_rows[: self._max_rows]]
        report = compare_versions(
            join_model_id(name, baseline),
            join_model_id(name, candidate),
            reversed(results),
            failures,
        )
        return report.model_copy(update={"since": since, "until": until, "truncated": truncated})


class AuditLogRepository:
    """Inserts into and reads the append-only ``audit_log`` table (never updates: it forbids it)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def store(
        self,
        topic: str,
        records: Sequence[tuple[AuditRecord, int]],
        checkpoints: Sequence[tuple[AuditCheckpoint, int]] = (),
        quarantine: Sequence[QuarantinedMessage] = (),
    ) -> AuditStoreReport:
        """Store one batch of the audit topic in one transaction.

        Records (with their audit-topic offsets) are idempotent on ``(topic, chain_partition,
        sequence)`` (a chain is named by its topic and partition): a redelivered record is
        skipped after checking it equals the stored one; a *different* record under a stored
        sequence forks the chain and is quarantined instead (never silently kept, never stopping
        the copy). Checkpoints and quarantined messages are idempotent on their topic position.

        Raises:
            TransientError: DATABASE_UNAVAILABLE.
        """
        with database_errors():
            async with self._sessions() as session, session.begin():
                stored, forks = await self._insert_records(session, topic, records)
                quarantined = [*quarantine, *forks]
                if quarantined:
                    await session.execute(
                        insert(audit_quarantine)
                        .values([q.model_dump() for q in quarantined])
                        .on_conflict_do_nothing(constraint="uq_audit_quarantine_position")
                    )
                new_checkpoints = 0
                if checkpoints:
                    values = [
                        {
                            "audit_topic": topic,
                            "audit_partition": cp.chain_partition,
                            "audit_offset": offset,
                            "chain_partition": cp.chain_partition,
                            "sequence": cp.sequence,
                            "checkpoint": cp.model_dump(mode="json"),
                        }
                        for cp, offset in checkpoints
                    ]
                    result = await session.execute(
                        insert(audit_checkpoints)
                        .values(values)
                        .on_conflict_do_nothing(constraint="uq_audit_checkpoints_position")
                        .returning(audit_checkpoints.c.id)
                    )
                    new_checkpoints = len(result.all())
        return AuditStoreReport(
            stored=stored, checkpoints=new_checkpoints, quarantined=tuple(quarantined)
        )

    async def _insert_records(
        self, session: AsyncSession, topic: str, rows: Sequence[tuple[AuditRecord, int]]
    ) -> tuple[int, list[QuarantinedMessage]]:
        """Insert new records; the number inserted and the forking ones to quarantine."""
        if not rows:
            return 0, []
        # The record travels as its JSON text (cast to JSONB by the statement).
        columns, parameters = _unnest_rows(
            [
                {
                    "audit_topic": topic,
                    "chain_partition": record.chain_partition,
                    "sequence": record.sequence,
                    "hash": record.hash,
                    "event_id": record.object.event_id,
                    "recorded_at": record.recorded_at,
                    "audit_offset": offset,
                    "record": record.model_dump_json(),
                }
                for record, offset in rows
            ]
        )
        statement = _unnest_insert(
            audit_log,
            columns,
            frozenset({"record"}),
            ("audit_topic", "chain_partition", "sequence"),
            ("chain_partition", "sequence"),
        )
        inserted = {tuple(row) for row in await session.execute(statement, parameters)}
        skipped = [
            (record, offset)
            for record, offset in rows
            if (record.chain_partition, record.sequence) not in inserted
        ]
        forks = await self._forks(session, topic, skipped) if skipped else set()
        quarantine = [
            QuarantinedMessage(
                audit_topic=topic,
                audit_partition=record.chain_partition,
                audit_offset=offset,
                reason="forks the chain",
                claimed_sequence=record.sequence,
                payload=record.model_dump_json().encode(),
            )
            for record, offset in skipped
            if (record.chain_partition, record.sequence) in forks
        ]
        return len(inserted), quarantine

    @staticmethod
    async def _forks(
        session: AsyncSession, topic: str, rows: Sequence[tuple[AuditRecord, int]]
    ) -> set[tuple[int, int]]:
        """The (chain, sequence) of redelivered records that differ from the stored one."""
        by_key = {(r.chain_partition, r.sequence): r.hash for r, _ in rows}
        stored = await session.execute(
            select(audit_log.c.chain_partition, audit_log.c.sequence, audit_log.c.hash).where(
                audit_log.c.audit_topic == topic,
                audit_log.c.sequence.in_([r.sequence for r, _ in rows]),
            )
        )
        return {
            (row.chain_partition, row.sequence)
            for row in stored
            if by_key.get((row.chain_partition, row.sequence), row.hash) != row.hash
        }

    async def checkpoints(self, topic: str) -> list[AuditCheckpoint]:
        """Every checkpoint copied from the audit ``topic``, in insertion order."""
        query = (
            select(audit_checkpoints.c.checkpoint)
            .where(audit_checkpoints.c.audit_topic == topic)
            .order_by(audit_checkpoints.c.id)
        )
        found: list[AuditCheckpoint] = []
        with database_errors():
            async with self._sessions() as session:
                for row in (await session.execute(query)).all():
                    with contextlib.suppress(ValidationError):  # a damaged row vouches for nothing
                        found.append(AuditCheckpoint.model_validate(row.checkpoint))
        return found

    async def quarantined(self) -> int:
        """How many foreign audit-topic messages are quarantined."""
        with database_errors():
            async with self._sessions() as session:
                count = await session.scalar(select(func.count()).select_from(audit_quarantine))
        return int(count or 0)

    async def chains(
        self, topic: str
    ) -> dict[int, list[AuditRecord | UnreadableRecord | ColumnMismatch]]:
        """Every record stored from the audit ``topic`` per chain, in insertion order (the order
        verification walks); other topics' chains sharing the database are not read.

        The indexed columns readers rely on (``event_id`` for ``audit show``, ``sequence``,
        ``hash``, ``chain_partition``, ``recorded_at``) are copies of the hashed ``record``;
        a row whose copies disagree with it is returned as a column mismatch, so verification
        names it (an edit of the ``event_id`` column alone hides a trail from ``audit show``).
        """
        result: dict[int, list[AuditRecord | UnreadableRecord | ColumnMismatch]] = {}
        query = (
            select(
                audit_log.c.chain_partition,
                audit_log.c.sequence,
                audit_log.c.hash,
                audit_log.c.event_id,
                audit_log.c.recorded_at,
                audit_log.c.record,
            )
            .where(audit_log.c.audit_topic == topic)
            .order_by(audit_log.c.id)
        )
        with database_errors():
            async with self._sessions() as session:
                stream = await session.stream(query)
                async for row in stream:
                    result.setdefault(row.chain_partition, []).append(_checked_row(row))
        return result

    async def trail(self, event_id: uuid.UUID, topic: str) -> list[AuditRecord]:
        """Every record stored from the audit ``topic`` about one image, in chain order."""
        query = (
            select(audit_log.c.record)
            .where(audit_log.c.event_id == event_id, audit_log.c.audit_topic == topic)
            .order_by(audit_log.c.chain_partition, audit_log.c.sequence)
        )
        with database_errors():
            async with self._sessions() as session:
                rows = (await session.execute(query)).all()
        records = [AuditRecord.model_validate(row.record) for row in rows]
        # A row moved into this trail by an edited column is not shown (verify names it).
        return [record for record in records if record.object.event_id == event_id]


def _checked_row(row: Any) -> AuditRecord | UnreadableRecord | ColumnMismatch:
    """A stored row's record: unreadable when it does not parse, flagged if its columns differ."""
    item = _audit_row(row.record)
    if isinstance(item, UnreadableRecord):
        return item
    columns = (row.chain_partition, row.sequence, row.hash, row.event_id, row.recorded_at)
    hashed = (
        item.chain_partition,
        item.sequence,
        item.hash,
        item.object.event_id,
        item.recorded_at,
    )
    return ColumnMismatch(item) if columns != hashed else item


def _audit_row(data: object) -> AuditRecord | UnreadableRecord:
    """A stored record, or unreadable (tampered) with its sequence when that still reads."""
    try:
        return AuditRecord.model_validate(data)
    except ValidationError:
        sequence = data.get("sequence") if isinstance(data, dict) else None
        return UnreadableRecord(sequence if isinstance(sequence, int) else None)
