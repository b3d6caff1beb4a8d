"""The studies stage's PostgreSQL side: state, arrivals, outcomes, study results, findings, outbox.

One :class:`StudyTransaction` is one database transaction: the stage locks a study's state row
(``SELECT ... FOR UPDATE``, so two workers never apply transitions to one study at once), runs
the pure state machine, and writes the new state together with the events it decided into the
outbox. :meth:`StudyStore.relay` publishes the outbox afterwards and deletes what the broker
confirmed: a crash between the two publishes again (ids are deterministic, consumers and the
tables below absorb the repetition), never loses. Every write is idempotent on a natural key.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.events import ModelRef, Priority
from schemas.studies import (
    SeriesView,
    StudyResult,
    StudyStatus,
    StudyView,
    UrgentFinding,
    UrgentFindingView,
)
from sinks.database import database_errors
from sinks.tables import (
    image_events,
    study_instances,
    study_outbox,
    study_outcomes,
    study_results,
    study_states,
    urgent_findings,
)
from streams.studies.aggregation import InstanceOutcome, StudyInstance
from streams.studies.completeness import StudyState, new_study

_S = study_states.c
_U = urgent_findings.c


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One decided event waiting to be published."""

    id: int
    topic: str
    message_key: str
    value: str
    priority: str


class StudyTransaction:
    """The writes and reads of one studies-stage transaction (see the module docstring)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def lock_state(self, study_instance_uid: str) -> StudyState:
        """The study's state, row-locked until the transaction ends (created empty if new).

        The row is inserted first when missing, so that two workers opening one study (an
        arrival and a signal, on different topics) lock the same row instead of racing.
        """
        empty = new_study(study_instance_uid)
        await self._session.execute(
            insert(study_states)
            .values(
                study_instance_uid=study_instance_uid,
                state=empty.model_dump(mode="json"),
                status=StudyStatus.RECEIVING.value,
                priority=empty.priority.value,
                generation=empty.generation,
            )
            .on_conflict_do_nothing(index_elements=["study_instance_uid"])
        )
        row = (
            await self._session.execute(
                select(_S.state)
                .where(_S.study_instance_uid == study_instance_uid)
                .with_for_update()
            )
        ).one()
        return StudyState.model_validate(row.state)

    async def save_state(
        self,
        state: StudyState,
        *,
        status: StudyStatus,
        deadline: datetime | None,
        analysis_deadline: datetime | None,
    ) -> None:
        """Insert or replace the study's state row."""
        values = {
            "study_instance_uid": state.study_instance_uid,
            "state": state.model_dump(mode="json"),
            "status": status.value,
            "priority": state.priority.value,
            "generation": state.generation,
            "deadline": deadline,
            "analysis_deadline": analysis_deadline,
            "updated_at": func.now(),
        }
        statement = insert(study_states).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[_S.study_instance_uid],
            set_={k: statement.excluded[k] for k in values if k != "study_instance_uid"},
        )
        await self._session.execute(statement)

    async def add_instance(
        self,
        event_id: uuid.UUID,
        state: StudyState,
        *,
        key: str,
        sop: str | None,
        series: str | None,
        at: datetime,
    ) -> None:
        """Record one arrival of the study (a redelivered arrival changes nothing)."""
        await self._session.execute(
            insert(study_instances)
            .values(
                event_id=event_id,
                study_instance_uid=state.study_instance_uid,
                instance_key=key,
                sop_instance_uid=sop,
                series_instance_uid=series,
                arrived_at=at,
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
        )

    async def study_of(self, event_id: uuid.UUID) -> str | None:
        """The study an arrival belongs to (None: not an arrival of a known study)."""
        return (
            await self._session.execute(
                select(study_instances.c.study_instance_uid).where(
                    study_instances.c.event_id == event_id
                )
            )
        ).scalar_one_or_none()

    async def add_outcome(self, study_instance_uid: str, outcome: InstanceOutcome) -> bool:
        """Record a terminal outcome of an arrival; False when it was recorded before."""
        name = outcome.model.name if outcome.model else outcome.model_name or ""
        version = outcome.model.version if outcome.model else ""
        inserted = await self._session.execute(
            insert(study_outcomes)
            .values(
                event_id=outcome.event_id,
                model_name=name,
                model_version=version,
                study_instance_uid=study_instance_uid,
                outcome=_outcome_json(outcome),
            )
            .on_conflict_do_nothing()
            .returning(study_outcomes.c.event_id)
        )
        return inserted.first() is not None

    async def instances(self, study_instance_uid: str) -> list[StudyInstance]:
        """The study's distinct instances with every arrival that carried each."""
        rows = (
            await self._session.execute(
                select(study_instances)
                .where(study_instances.c.study_instance_uid == study_instance_uid)
                .order_by(study_instances.c.arrived_at, study_instances.c.event_id)
            )
        ).mappings()
        grouped: dict[str, StudyInstance] = {}
        for row in rows:
            found = grouped.get(row["instance_key"])
            events = (*found.event_ids, row["event_id"]) if found else (row["event_id"],)
            grouped[row["instance_key"]] = StudyInstance(
                instance_key=row["instance_key"],
                event_ids=events,
                sop_instance_uid=row["sop_instance_uid"],
                series_instance_uid=row["series_instance_uid"],
            )
        return list(grouped.values())

    async def outcomes(self, study_instance_uid: str) -> list[InstanceOutcome]:
        """Every recorded terminal outcome of the study's arrivals."""
        rows = await self._session.execute(
            select(study_outcomes.c.outcome).where(
                study_outcomes.c.study_instance_uid == study_instance_uid
            )
        )
        return [_outcome_from_json(row.outcome) for row in rows]

    async def results_done(self, study_instance_uid: str, generation: int) -> set[tuple[str, str]]:
        """The models whose study result of ``generation`` is stored already."""
        rows = await self._session.execute(
            select(study_results.c.model_name, study_results.c.model_version).where(
                study_results.c.study_instance_uid == study_instance_uid,
                study_results.c.generation == generation,
            )
        )
        return {(row.model_name, row.model_version) for row in rows}

    async def save_result(self, result: StudyResult) -> None:
        """Store a study result (idempotent on study, generation and model)."""
        await self._session.execute(
            insert(study_results)
            .values(
                study_result_id=result.study_result_id,
                study_instance_uid=result.study_instance_uid,
                generation=result.generation,
                model_name=result.model.name,
                model_version=result.model.version,
                weights_sha256=result.model.weights_sha256,
                finding=result.finding,
                max_score=result.max_score,
                instance_count=result.instance_count,
                analysed_count=result.analysed_count,
                positive_count=result.positive_count,
                failed_count=len(result.failures) + result.failures_truncated,
                result=result.model_dump(mode="json"),
                aggregated_at=result.aggregated_at,
            )
            .on_conflict_do_nothing()
        )

    async def raise_finding(self, finding: UrgentFinding) -> bool:
        """Record an urgent finding; False when the study already has one for it (no new alert)."""
        inserted = await self._session.execute(
            insert(urgent_findings)
            .values(
                alert_id=finding.alert_id,
                study_instance_uid=finding.study_instance_uid,
                model_name=finding.model_name,
                model_version=finding.model_version,
                finding=finding.finding,
                score=finding.score,
                rule=finding.rule,
                level=finding.level,
                priority=finding.priority.value,
                raised_at=finding.raised_at,
            )
            .on_conflict_do_nothing()
            .returning(_U.alert_id)
        )
        return inserted.first() is not None

    async def enqueue(self, topic: str, key: str, value: str, priority: Priority) -> None:
        """Put a decided event into the outbox (published after the commit)."""
        await self._session.execute(
            insert(study_outbox).values(
                topic=topic, message_key=key, value=value, priority=priority.value
            )
        )

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Studies whose quiet period or analysis timeout has ended, locked (others skip them)."""
        rows = await self._session.execute(
            select(_S.study_instance_uid)
            .where(or_(_S.deadline <= now, _S.analysis_deadline <= now))
            .order_by(func.least(_S.deadline, _S.analysis_deadline))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [row.study_instance_uid for row in rows]

    async def awaiting_results(self, study_instance_uid: str) -> bool:
        """Whether the study is complete and still waits for study results (has a deadline)."""
        row = (
            await self._session.execute(
                select(_S.analysis_deadline).where(_S.study_instance_uid == study_instance_uid)
            )
        ).first()
        return row is not None and row.analysis_deadline is not None


class StudyStore:
    """Transactions of the studies stage, its outbox relay, and the reads the API needs."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StudyTransaction]:
        """One transaction, committed when the block ends without an error."""
        with database_errors():
            async with self._sessions() as session, session.begin():
                yield StudyTransaction(session)

    async def relay(
        self, publish: Callable[[Sequence[OutboxMessage]], Awaitable[None]], *, limit: int = 500
    ) -> int:
        """Publish the oldest outbox messages (stat first) and delete them once confirmed.

        The rows stay locked while ``publish`` runs (other relays skip them); if it raises,
        nothing is deleted and they are published again later. Returns how many were relayed.
        """
        with database_errors():
            async with self._sessions() as session, session.begin():
                rows = (
                    await session.execute(
                        select(study_outbox)
                        .order_by(
                            (study_outbox.c.priority == Priority.STAT.value).desc(),
                            study_outbox.c.id,
                        )
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                ).mappings()
                messages = [
                    OutboxMessage(
                        row["id"], row["topic"], row["message_key"], row["value"], row["priority"]
                    )
                    for row in rows
                ]
                if not messages:
                    return 0
                await publish(messages)
                await session.execute(
                    delete(study_outbox).where(study_outbox.c.id.in_([m.id for m in messages]))
                )
                return len(messages)

    async def view(self, study_instance_uid: str) -> StudyView | None:
        """The study's status, counts, results and findings (None: never arrived)."""
        with database_errors():
            async with self._sessions() as session:
                row = (
                    (
                        await session.execute(
                            select(study_states).where(_S.study_instance_uid == study_instance_uid)
                        )
                    )
                    .mappings()
                    .first()
                )
                if row is None:
                    return None
                state = StudyState.model_validate(row["state"])
                lifecycle = await session.execute(
                    select(image_events.c.state, func.count(func.distinct(image_events.c.event_id)))
                    .join(study_instances, study_instances.c.event_id == image_events.c.event_id)
                    .where(study_instances.c.study_instance_uid == study_instance_uid)
                    .group_by(image_events.c.state)
                )
                arrivals = await session.scalar(
                    select(func.count()).where(
                        study_instances.c.study_instance_uid == study_instance_uid
                    )
                )
                results = await session.execute(
                    select(study_results.c.result)
                    .where(study_results.c.study_instance_uid == study_instance_uid)
                    .order_by(study_results.c.generation.desc(), study_results.c.model_name)
                )
                findings = await session.execute(
                    select(*(_U[name] for name in UrgentFindingView.model_fields))
                    .where(_U.study_instance_uid == study_instance_uid)
                    .order_by(_U.raised_at)
                )
                return StudyView(
                    study_instance_uid=study_instance_uid,
                    status=StudyStatus(row["status"]),
                    priority=Priority(row["priority"]),
                    generation=row["generation"],
                    completed_by=state.completed_by,
                    completed_at=state.completed_at,
                    instance_count=state.instance_count,
                    arrivals=int(arrivals or 0),
                    series=tuple(
                        SeriesView(
                            series_instance_uid=s.series_instance_uid,
                            modality=s.modality,
                            instance_count=len(s.instances),
                            expected_instances=s.expected,
                            generation=s.generation,
                            completed_by=s.completed_by,
                        )
                        for s in state.series.values()
                    ),
                    lifecycle={str(name): int(count) for name, count in lifecycle.all()},
                    results=tuple(StudyResult.model_validate(r.result) for r in results),
                    urgent_findings=tuple(
                        UrgentFindingView.model_validate(dict(f)) for f in findings.mappings()
                    ),
                )

    async def acknowledge(
        self, study_instance_uid: str, user: str, at: datetime
    ) -> list[uuid.UUID]:
        """Acknowledge the study's unacknowledged urgent findings; return their alert ids."""
        with database_errors():
            async with self._sessions() as session, session.begin():
                rows = await session.execute(
                    update(urgent_findings)
                    .where(
                        _U.study_instance_uid == study_instance_uid, _U.acknowledged_at.is_(None)
                    )
                    .values(acknowledged_by=user, acknowledged_at=at)
                    .returning(_U.alert_id)
                )
                return [row.alert_id for row in rows]

    async def unacknowledged(self, overdue_before: datetime) -> tuple[int, int]:
        """How many urgent findings wait for acknowledgement, and how many since before a time."""
        with database_errors():
            async with self._sessions() as session:
                row = (
                    await session.execute(
                        select(
                            func.count(),
                            func.count().filter(_U.raised_at < overdue_before),
                        ).where(_U.acknowledged_at.is_(None))
                    )
                ).one()
                return int(row[0]), int(row[1])


def _outcome_json(outcome: InstanceOutcome) -> dict[str, Any]:
    return {
        "event_id": str(outcome.event_id),
        "model": outcome.model.model_dump(mode="json") if outcome.model else None,
        "model_name": outcome.model_name,
        "result_id": str(outcome.result_id) if outcome.result_id else None,
        "scores": dict(outcome.scores),
        "decision": outcome.decision,
        "error_code": outcome.error_code,
    }


def _outcome_from_json(data: dict[str, Any]) -> InstanceOutcome:
    return InstanceOutcome(
        event_id=uuid.UUID(data["event_id"]),
        model=ModelRef.model_validate(data["model"]) if data["model"] else None,
        model_name=data["model_name"],
        result_id=uuid.UUID(data["result_id"]) if data["result_id"] else None,
        scores=data["scores"],
        decision=data["decision"],
        error_code=data["error_code"],
    )
