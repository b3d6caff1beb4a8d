"""The studies stage: completeness, study results and urgent findings, persisted in PostgreSQL.

Consumes ``images.arrived`` and its stat lane (instances open and fill studies),
``studies.signals`` (the router's "study complete"), ``inference.results`` and
``images.rejected`` (each image's terminal outcome). For every message it locks the study's
state row, runs the pure cores (``streams/studies/``) and, in the same transaction, stores the
new state and puts the events it decided (``SeriesCompleted``, ``StudyCompleted``,
``StudyResult``, ``UrgentFinding``) into an outbox; after the commit the outbox is published
and emptied (:meth:`StudyStore.relay`). The
consumed batch is acknowledged only after that, so a worker killed anywhere resumes with nothing
lost: uncommitted work is redone from the redelivered messages, committed but unpublished events
are still in the outbox. Time-driven transitions (quiet periods, the analysis timeout) are made
by :meth:`StudiesStage.sweep`, which the worker runs every ``studies.sweep_interval_seconds``.

Why PostgreSQL and not a Faust table: the status API reads the same rows (one store, no second
copy to keep in step), row locks serialise the four input topics of one study across workers
(they are not co-partitioned), the outbox makes "state changed" and "event published" one
decision, and the benchmark's plain aiokafka loop runs the same stage (Faust tables exist only
under Faust). docs/studies.md has the trade-offs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta

import structlog

from schemas.correlation import derived_correlation_id, with_correlation_header
from schemas.events import (
    ImageArrived,
    ImageRejected,
    InferenceCompleted,
    Priority,
    Stage,
    utc_now,
)
from schemas.settings import StudiesSettings
from schemas.studies import (
    StudyCompleted,
    StudyResult,
    StudyStatus,
    StudyTransferCompleted,
    UrgentFinding,
)
from sinks.studies import OutboxMessage, StudyStore, StudyTransaction
from streams.kafka import Outgoing
from streams.pipeline import Incoming, apply_isolating_culprits, parse_batch, skip_reporter
from streams.retry import RetryPolicy, run_with_retries
from streams.studies.aggregation import (
    CompletedStudy,
    InstanceOutcome,
    aggregate_study,
    all_rejected,
    models_of,
)
from streams.studies.completeness import (
    CompletionEvent,
    InstanceArrival,
    QuietPeriods,
    StudyState,
    apply_arrival,
    apply_signal,
    apply_tick,
)
from streams.studies.decision_support import ModelRules, image_findings, study_findings
from streams.topics import TopicKey, TopicNames

log = structlog.get_logger("radstream.studies")


_skip_arrival = skip_reporter(log, "studies_arrival_skipped")

StudyInput = ImageArrived | ImageRejected | InferenceCompleted | StudyTransferCompleted
Deliver = Callable[[Sequence[Outgoing]], Awaitable[None]]
# A database outage stalls the stage (backpressure), it loses nothing: retried until done.
DATABASE_RETRY = RetryPolicy.until_done(initial_seconds=0.2, max_seconds=10.0, jitter=0.2)
SWEEP_LIMIT = 200


class StudiesStage:
    """Applies a batch to the studies' states and publishes what that decided."""

    stage = Stage.STUDIES

    def __init__(
        self,
        store: StudyStore,
        topics: TopicNames,
        settings: StudiesSettings,
        rules: Mapping[str, ModelRules],
        deliver: Deliver,
        *,
        clock: Callable[[], datetime] = utc_now,
        retry: RetryPolicy = DATABASE_RETRY,
        on_urgent: Callable[[UrgentFinding], None] | None = None,
        on_study_result: Callable[[StudyResult], None] | None = None,
        on_unacknowledged: Callable[[int, int], None] | None = None,
    ) -> None:
        self._store = store
        self._topics = topics
        self._quiet = QuietPeriods(
            settings.quiet_period_seconds, dict(settings.quiet_period_by_modality)
        )
        self._analysis_timeout = timedelta(seconds=settings.analysis_timeout_seconds)
        self._rules = rules
        self._deliver = deliver
        self._clock = clock
        self._retry = retry
        self._on_urgent = on_urgent
        self._on_study_result = on_study_result
        self._on_unacknowledged = on_unacknowledged
        self._acknowledge_within = timedelta(seconds=settings.urgent_acknowledge_seconds)
        self._models: dict[str, type[StudyInput]] = {
            topics[TopicKey.IMAGES_ARRIVED]: ImageArrived,
            topics[TopicKey.IMAGES_ARRIVED_STAT]: ImageArrived,
            topics[TopicKey.STUDIES_SIGNALS]: StudyTransferCompleted,
            topics[TopicKey.INFERENCE_RESULTS]: InferenceCompleted,
            topics[TopicKey.IMAGES_REJECTED]: ImageRejected,
        }
        self._topic_keys = {topics[key]: key for key in TopicKey}
        self._arrivals = topics.arrival_lanes

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        """Apply the batch in one transaction, publish the outbox; dead-letter only bad input."""
        # A malformed arrival is validation's to dead-letter (once); this stage skips it.
        parsed, out = parse_batch(
            batch,
            self._models,
            self.stage,
            skipped_topics=self._arrivals,
            on_skipped=_skip_arrival,
        )
        out += await apply_isolating_culprits(parsed, self._apply_with_retries, self.stage)
        await self.relay()
        return out

    async def sweep(self) -> int:
        """Complete what has been quiet long enough and make overdue study results; relay."""
        now = self._clock()

        async def run() -> int:
            async with self._store.transaction() as tx:
                due = await tx.due(now, SWEEP_LIMIT)
                for uid in due:
                    state = await tx.lock_state(uid)
                    await self._completed(tx, state, apply_tick(state, now, self._quiet))
                    await self._finish(tx, state, now)
                return len(due)

        swept = await run_with_retries(run, self._retry)
        await self.relay()
        if self._on_unacknowledged is not None:
            waiting = await run_with_retries(
                lambda: self._store.unacknowledged(now - self._acknowledge_within), self._retry
            )
            self._on_unacknowledged(*waiting)
        return swept

    async def run_sweeps(self, stop: asyncio.Event, interval_seconds: float) -> None:
        """Sweep every ``interval_seconds`` until ``stop`` is set (the worker runs this)."""
        while not stop.is_set():
            await self.sweep()
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
            except TimeoutError:
                continue

    async def relay(self) -> None:
        """Publish the outbox until it is empty (waits out a broker outage, loses nothing)."""
        while await run_with_retries(lambda: self._store.relay(self._publish), self._retry):
            pass

    async def _publish(self, messages: Sequence[OutboxMessage]) -> None:
        outgoing = [
            Outgoing(
                self._topic_keys[m.topic],
                m.message_key.encode(),
                m.value.encode(),
                tuple(with_correlation_header((), derived_correlation_id("study-outbox", m.id))),
            )
            for m in messages
        ]
        await run_with_retries(lambda: self._deliver(outgoing), self._retry)

    async def _apply_with_retries(self, events: Sequence[StudyInput]) -> None:
        async def apply() -> None:
            now = self._clock()
            # One lock, one aggregation and one state write per study and batch: a batch of
            # results for one study must not re-read the study once per result.
            touched: dict[str, StudyState] = {}
            # Locks are taken in study order (a stable sort keeps each study's own order), so
            # two workers' batches never wait for each other crosswise (no deadlock).
            ordered = sorted(events, key=lambda event: event.study_instance_uid or "")
            async with self._store.transaction() as tx:
                for event in ordered:
                    await self._apply(tx, event, now, touched)
                for state in touched.values():
                    await self._finish(tx, state, now)

        await run_with_retries(apply, self._retry)

    async def _apply(
        self,
        tx: StudyTransaction,
        event: StudyInput,
        now: datetime,
        touched: dict[str, StudyState],
    ) -> None:
        uid = event.study_instance_uid
        if uid is None:
            return  # an image outside any study: nothing to complete or aggregate
        state = touched.get(uid) or await tx.lock_state(uid)
        touched[uid] = state
        decided: list[CompletionEvent] = []
        if isinstance(event, ImageArrived):
            key = event.sop_instance_uid or str(event.event_id)
            decided = apply_arrival(
                state,
                InstanceArrival(
                    study_instance_uid=uid,
                    series_instance_uid=event.series_instance_uid,
                    instance_key=key,
                    at=now,
                    modality=event.modality,
                    series_expected=event.expected_series_instances,
                    study_expected=event.expected_study_instances,
                    priority=event.priority,
                ),
            )
            await tx.add_instance(
                event.event_id,
                state,
                key=key,
                sop=event.sop_instance_uid,
                series=event.series_instance_uid,
                at=now,
            )
        elif isinstance(event, StudyTransferCompleted):
            decided = apply_signal(state, event.instance_count, now)
        elif isinstance(event, InferenceCompleted):
            await tx.add_outcome(uid, _result_outcome(event))
            for finding in image_findings(self._rules, event, state.priority, now):
                await self._raise(tx, finding)
        else:
            await tx.add_outcome(uid, _rejection_outcome(event))
        await self._completed(tx, state, decided)

    async def _completed(
        self, tx: StudyTransaction, state: StudyState, decided: Sequence[CompletionEvent]
    ) -> None:
        """Enqueue the completions the state machine decided."""
        for completion in decided:
            topic = (
                TopicKey.STUDIES_COMPLETED
                if isinstance(completion, StudyCompleted)
                else TopicKey.SERIES_COMPLETED
            )
            await self._enqueue(tx, topic, state, completion.model_dump_json())
            log.info(
                "study_completed" if topic is TopicKey.STUDIES_COMPLETED else "series_completed",
                rule=completion.rule.value,
                generation=completion.generation,
                instances=completion.instance_count,
            )

    async def _finish(self, tx: StudyTransaction, state: StudyState, now: datetime) -> None:
        """Make the study results that are ready and store the state with its deadlines."""
        status, analysis_deadline = StudyStatus.RECEIVING, None
        if state.complete and state.completed_at is not None:
            status, analysis_deadline = await self._results(tx, state, now)
        await tx.save_state(
            state,
            status=status,
            deadline=state.deadline(self._quiet),
            analysis_deadline=analysis_deadline,
        )

    async def _results(
        self, tx: StudyTransaction, state: StudyState, now: datetime
    ) -> tuple[StudyStatus, datetime | None]:
        if state.completed_at is None:  # only called for complete studies
            raise ValueError("study results of a study that has not completed")
        due = state.completed_at + self._analysis_timeout
        timed_out = now >= due
        study = CompletedStudy(
            study_instance_uid=state.study_instance_uid,
            generation=state.generation,
            priority=state.priority,
            completed_at=state.completed_at,
            instances=tuple(await tx.instances(state.study_instance_uid)),
        )
        outcomes = await tx.outcomes(state.study_instance_uid)
        done = await tx.results_done(state.study_instance_uid, state.generation)
        if all_rejected(study, outcomes):
            return StudyStatus.FAILED, None
        for result in aggregate_study(
            study, outcomes, now=now, timed_out=timed_out, done=frozenset(done)
        ):
            await tx.save_result(result)
            await self._enqueue(tx, TopicKey.STUDIES_RESULTS, state, result.model_dump_json())
            done.add((result.model.name, result.model.version))
            if self._on_study_result is not None:
                self._on_study_result(result)
            for finding in study_findings(self._rules, result, now):
                await self._raise(tx, finding)
        pending = set(models_of(outcomes)) - done or not _every_instance_answered(study, outcomes)
        if pending and not timed_out:
            return (StudyStatus.ANALYSED if done else StudyStatus.COMPLETE), due
        return (StudyStatus.ANALYSED if done else StudyStatus.FAILED), None

    async def _raise(self, tx: StudyTransaction, finding: UrgentFinding) -> None:
        if await tx.raise_finding(finding):
            await tx.enqueue(
                self._topics[TopicKey.ALERTS_URGENT],
                finding.study_instance_uid,
                finding.model_dump_json(),
                Priority.STAT if finding.priority is Priority.STAT else Priority.URGENT,
            )
            log.warning(
                "urgent_finding_raised",
                model=finding.model_name,
                finding=finding.finding,
                rule=finding.rule,
                level=finding.level,
            )
            if self._on_urgent is not None:
                self._on_urgent(finding)

    async def _enqueue(
        self, tx: StudyTransaction, topic: TopicKey, state: StudyState, value: str
    ) -> None:
        await tx.enqueue(self._topics[topic], state.study_instance_uid, value, state.priority)


def _every_instance_answered(study: CompletedStudy, outcomes: Sequence[InstanceOutcome]) -> bool:
    answered = {outcome.event_id for outcome in outcomes}
    return all(
        any(event in answered for event in instance.event_ids) for instance in study.instances
    )


def _result_outcome(result: InferenceCompleted) -> InstanceOutcome:
    return InstanceOutcome(
        event_id=result.event_id,
        model=result.model,
        result_id=result.result_id,
        scores=dict(result.scores),
        decision=result.decision,
    )


def _rejection_outcome(rejection: ImageRejected) -> InstanceOutcome:
    model_name = rejection.model_id.split("@", 1)[0] if rejection.model_id else None
    return InstanceOutcome(
        event_id=rejection.event_id, model_name=model_name, error_code=rejection.error_code.value
    )
