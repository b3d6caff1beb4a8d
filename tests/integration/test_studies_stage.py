"""The studies stage on the real PostgreSQL: completeness, study results, urgent findings, restart.

The stage is driven batch by batch with the messages a consumer loop would hand it and a clock
the test moves (quiet periods without waiting); what it publishes is recorded by a delivery
fake, exactly as the worker's producer would receive it.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from cli.main import main
from schemas.errors import ErrorCode, TransientError
from schemas.events import (
    ImageArrived,
    ImageRejected,
    InferenceCompleted,
    ModelRef,
    Priority,
    Stage,
)
from schemas.settings import StudiesSettings
from schemas.studies import (
    StudyCompleted,
    StudyResult,
    StudyStatus,
    StudyTransferCompleted,
    UrgentFinding,
)
from sinks.database import Database
from sinks.studies import StudyStore
from sinks.tables import study_outbox
from streams.kafka import Outgoing
from streams.pipeline import Incoming
from streams.retry import RetryPolicy
from streams.stages.studies import StudiesStage
from streams.studies.decision_support import DecisionRule, ModelRules
from streams.topics import TopicKey, TopicNames, value_models

pytestmark = pytest.mark.requirement("RS-STU-01", "RS-STU-02", "RS-CDS-01")

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SHA = "a" * 64
MODEL = ModelRef(
    name="lesion-detector", version="1.2.0", weights_sha256=SHA, runtime="onnx", provider="cpu"
)
RULES = {
    "lesion-detector": ModelRules(
        rules=(
            DecisionRule(
                name="lesion-critical-image", finding="lesion", level="image", min_score=0.95
            ),
            DecisionRule(
                name="lesion-study",
                finding="lesion",
                level="study",
                min_score=0.8,
                min_positive_images=2,
            ),
        )
    )
}
TOPICS = TopicNames("t.")
FAST = RetryPolicy(max_attempts=2, initial_seconds=0.01, max_seconds=0.01, jitter=0.0)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """The producer as the stage sees it: records what it was asked to deliver."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.fail = False

    async def __call__(self, messages: Sequence[Outgoing]) -> None:
        if self.fail:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "broker down (test)")
        self.sent.extend(messages)

    def of(self, key: TopicKey) -> list[Any]:
        model = value_models()[key]
        return [model.model_validate_json(m.value_bytes()) for m in self.sent if m.topic is key]


def message(key: TopicKey, value: object, offset: int) -> Incoming:
    return Incoming(TOPICS[key], 0, offset, b"k", value.model_dump_json().encode())  # type: ignore[attr-defined]


def arrival(study: str, sop: str, *, priority: Priority = Priority.ROUTINE) -> ImageArrived:
    return ImageArrived(
        source="router-1",
        image_uri="file:///images/x.dcm",
        study_instance_uid=study,
        series_instance_uid=f"{study}.1",
        sop_instance_uid=sop,
        modality="CT",
        priority=priority,
    )


def result(event: ImageArrived, score: float) -> InferenceCompleted:
    return InferenceCompleted(
        event_id=event.event_id,
        correlation_id="0" * 32,
        occurred_at=event.occurred_at,
        model=MODEL,
        input_sha256=SHA,
        thresholds={"lesion": 0.5},
        scores={"lesion": score},
        decision="lesion" if score >= 0.5 else "no_finding",
        inference_seconds=0.01,
        study_instance_uid=event.study_instance_uid,
        sop_instance_uid=event.sop_instance_uid,
    )


def stage_on(
    database: Database,
    deliver: Recorder,
    clock: Clock,
    waiting: list[tuple[int, int]] | None = None,
) -> StudiesStage:
    return StudiesStage(
        StudyStore(database.sessions),
        TOPICS,
        StudiesSettings(quiet_period_seconds=30.0, quiet_period_by_modality={"CT": 10.0}),
        RULES,
        deliver,
        clock=clock,
        retry=FAST,
        on_unacknowledged=None if waiting is None else lambda *counts: waiting.append(counts),
    )


def new_study_uid() -> str:
    return f"1.2.826.0.1.{uuid.uuid4().int % 10**12}"


class TestStudiesStage:
    async def test_fifty_instances_out_of_order_with_duplicate_and_late(
        self, database: Database
    ) -> None:
        """Out of order + duplicate: one completion and result per generation; late reopens."""
        study, clock, sent = new_study_uid(), Clock(), Recorder()
        stage = stage_on(database, sent, clock)
        arrivals = [arrival(study, f"{study}.1.{i}") for i in range(50)]
        late = arrivals.pop()
        shuffled = random.Random(7).sample(arrivals, len(arrivals))
        duplicate = arrival(study, arrivals[3].sop_instance_uid or "")
        batch = [
            message(TopicKey.IMAGES_ARRIVED, a, i) for i, a in enumerate([*shuffled, duplicate])
        ]
        assert await stage.handle(batch[:20]) == []
        assert await stage.handle(batch[20:]) == []
        results = [
            message(TopicKey.INFERENCE_RESULTS, result(a, 0.1), i) for i, a in enumerate(shuffled)
        ]
        await stage.handle(results)
        assert sent.of(TopicKey.STUDIES_COMPLETED) == []
        clock.now += timedelta(seconds=11)
        await stage.sweep()
        completed = sent.of(TopicKey.STUDIES_COMPLETED)
        assert [(c.generation, c.instance_count, c.rule.value) for c in completed] == [
            (1, 49, "quiet_period")
        ]
        study_results: list[StudyResult] = sent.of(TopicKey.STUDIES_RESULTS)
        assert [
            (r.generation, r.analysed_count, r.positive_count, r.finding) for r in study_results
        ] == [(1, 49, 0, "lesion")]
        # The late instance reopens the study as generation 2; it completes and is analysed again.
        await stage.handle([message(TopicKey.IMAGES_ARRIVED, late, 100)])
        await stage.handle([message(TopicKey.INFERENCE_RESULTS, result(late, 0.2), 101)])
        clock.now += timedelta(seconds=11)
        await stage.sweep()
        await stage.sweep()
        assert [(c.generation, c.instance_count) for c in sent.of(TopicKey.STUDIES_COMPLETED)] == [
            (1, 49),
            (2, 50),
        ]
        assert [(r.generation, r.analysed_count) for r in sent.of(TopicKey.STUDIES_RESULTS)] == [
            (1, 49),
            (2, 50),
        ]
        view = await StudyStore(database.sessions).view(study)
        assert view is not None
        assert (view.status, view.instance_count, view.arrivals) == (StudyStatus.ANALYSED, 50, 51)

    async def test_router_signal_and_expected_count(self, database: Database) -> None:
        """The router's signal completes at once; its count waits for the missing instance."""
        study, clock, sent = new_study_uid(), Clock(), Recorder()
        stage = stage_on(database, sent, clock)
        first = arrival(study, f"{study}.1.1")
        signal = StudyTransferCompleted(
            source="router-1", study_instance_uid=study, instance_count=2
        )
        await stage.handle(
            [
                message(TopicKey.IMAGES_ARRIVED, first, 0),
                message(TopicKey.STUDIES_SIGNALS, signal, 1),
            ]
        )
        assert sent.of(TopicKey.STUDIES_COMPLETED) == []
        await stage.handle([message(TopicKey.IMAGES_ARRIVED, arrival(study, f"{study}.1.2"), 2)])
        assert [c.rule.value for c in sent.of(TopicKey.STUDIES_COMPLETED)] == ["router_signal"]

    async def test_urgent_finding_appears_once(self, database: Database) -> None:
        """Two sure images and a redelivery raise one urgent alert for the study and finding."""
        study, clock, sent, waiting = new_study_uid(), Clock(), Recorder(), []
        stage = stage_on(database, sent, clock, waiting)
        images = [arrival(study, f"{study}.1.{i}", priority=Priority.STAT) for i in range(3)]
        await stage.handle([message(TopicKey.IMAGES_ARRIVED, a, i) for i, a in enumerate(images)])
        sure = [
            message(TopicKey.INFERENCE_RESULTS, result(a, 0.99), 10 + i)
            for i, a in enumerate(images[:2])
        ]
        await stage.handle(sure)
        await stage.handle(sure)  # redelivered
        await stage.handle([message(TopicKey.INFERENCE_RESULTS, result(images[2], 0.97), 20)])
        clock.now += timedelta(seconds=11)
        await stage.sweep()
        alerts: list[UrgentFinding] = sent.of(TopicKey.ALERTS_URGENT)
        assert [(a.study_instance_uid, a.finding, a.rule, a.priority) for a in alerts] == [
            (study, "lesion", "lesion-critical-image", Priority.STAT)
        ]
        assert sent.of(TopicKey.STUDIES_RESULTS)[0].positive_count == 3
        clock.now += timedelta(seconds=900)  # studies.urgent_acknowledge_seconds (default)
        await stage.sweep()
        (count, _), (later_count, overdue) = waiting[-2:]
        assert count >= 1
        assert overdue >= 1  # the finding raised 900 s ago counts as overdue now
        store = StudyStore(database.sessions)
        assert len(await store.acknowledge(study, "clinician-1", clock.now)) == 1
        assert await store.acknowledge(study, "clinician-1", clock.now) == []
        await stage.sweep()
        assert waiting[-1] == (later_count - 1, overdue - 1)

    async def test_rejected_study_fails_with_reasons(self, database: Database) -> None:
        """Every image rejected by validation: the study is failed, no study result."""
        study, clock, sent = new_study_uid(), Clock(), Recorder()
        stage = stage_on(database, sent, clock)
        image = arrival(study, f"{study}.1.1")
        rejected = ImageRejected(
            event_id=image.event_id,
            occurred_at=image.occurred_at,
            stage=Stage.VALIDATION,
            error_code=ErrorCode.IMAGE_FORMAT_UNSUPPORTED,
            reason="test",
            study_instance_uid=study,
        )
        await stage.handle(
            [
                message(TopicKey.IMAGES_ARRIVED, image, 0),
                message(TopicKey.IMAGES_REJECTED, rejected, 1),
            ]
        )
        clock.now += timedelta(seconds=11)
        await stage.sweep()
        view = await StudyStore(database.sessions).view(study)
        assert view is not None
        assert view.status is StudyStatus.FAILED
        assert sent.of(TopicKey.STUDIES_RESULTS) == []

    async def test_restart_with_unpublished_outbox_loses_nothing(self, database: Database) -> None:
        """A worker dying with decided but unpublished events: the next one publishes them once."""
        study, clock, sent = new_study_uid(), Clock(), Recorder()
        dying = stage_on(database, sent, clock)
        images = [arrival(study, f"{study}.1.{i}") for i in range(4)]
        images[0] = images[0].model_copy(update={"expected_study_instances": 4})
        await dying.handle(
            [message(TopicKey.IMAGES_ARRIVED, a, i) for i, a in enumerate(images[:2])]
        )
        sent.fail = True  # the broker goes away: the completion stays in the outbox
        with pytest.raises(Exception):  # noqa: B017, PT011 - the retries give up (test policy)
            await dying.handle(
                [message(TopicKey.IMAGES_ARRIVED, a, 2 + i) for i, a in enumerate(images[2:])]
            )
        async with database.sessions() as session:
            pending = await session.scalar(
                select(func.count())
                .select_from(study_outbox)
                .where(study_outbox.c.message_key == study)
            )
        assert pending == 2  # the series' and the study's completion
        sent.fail = False
        restarted = stage_on(database, sent, clock)
        # The consumer redelivers the uncommitted batch: duplicates, recognised.
        await restarted.handle(
            [message(TopicKey.IMAGES_ARRIVED, a, 2 + i) for i, a in enumerate(images[2:])]
        )
        completions: list[StudyCompleted] = [
            c for c in sent.of(TopicKey.STUDIES_COMPLETED) if c.study_instance_uid == study
        ]
        assert [(c.generation, c.instance_count, c.rule.value) for c in completions] == [
            (1, 4, "expected_count")
        ]
        assert len(sent.of(TopicKey.SERIES_COMPLETED)) == 1


class TestStudiesShowCommand:
    async def test_show_prints_status_results_and_findings(
        self,
        database: Database,
        database_url: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`studies show UID` prints the study, its result and its unacknowledged alert."""
        study, clock, sent = new_study_uid(), Clock(), Recorder()
        stage = stage_on(database, sent, clock)
        image = arrival(study, f"{study}.1.1").model_copy(update={"expected_study_instances": 1})
        await stage.handle([message(TopicKey.IMAGES_ARRIVED, image, 0)])
        await stage.handle([message(TopicKey.INFERENCE_RESULTS, result(image, 0.99), 1)])
        monkeypatch.setenv("RADSTREAM_DATABASE_URL", database_url)
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["studies", "show", study]) == 0
        out = capsys.readouterr().out
        assert "analysed" in out
        assert "lesion-detector@1.2.0" in out
        assert "NOT ACKNOWLEDGED" in out
        assert await asyncio.to_thread(main, ["studies", "show", study, "--json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert (document["status"], document["results"][0]["positive_count"]) == ("analysed", 1)

    def test_unknown_study_is_one_line_and_exit_4(
        self,
        database_url: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """An unknown study: nothing on stdout, one STUDY_NOT_FOUND line, exit 4."""
        monkeypatch.setenv("RADSTREAM_DATABASE_URL", database_url)
        assert main(["studies", "show", "1.2.3.4.5.6"]) == 4
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert "STUDY_NOT_FOUND" in captured.err
