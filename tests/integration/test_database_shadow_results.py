"""Shadow outcomes in PostgreSQL: stored beside the published ones, out of the default views,
and read back, both roles, to compare two versions of a model."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bench.sink_events import BASE_TIME, make_rejection, make_result
from schemas.api import ResultQuery
from schemas.errors import ErrorCode, InputValidationError, ResourceNotFoundError
from schemas.events import (
    ImageRejected,
    InferenceCompleted,
    ShadowOutcome,
    Stage,
    StorableEvent,
)
from schemas.rollout import ResultRole
from schemas.settings import SinkSettings
from sinks.database import Database
from sinks.repositories import ComparisonRepository, LifecycleRepository, ResultsRepository
from sinks.results_sink import ResultsSink
from sinks.tables import LifecycleState, image_events, inference_results

pytestmark = pytest.mark.requirement("RS-MOD-03", "RS-MOD-04")

# The test database is shared: every test uses a model name of its own.
MODEL = f"nodule-{uuid.uuid4().hex[:8]}"
WINDOW = (BASE_TIME - timedelta(hours=1), BASE_TIME + timedelta(hours=1))


def _result(
    event_id: uuid.UUID, version: str, index: int, user: str = "u-1", model: str = MODEL
) -> InferenceCompleted:
    return make_result(user=user, model=model, version=version, event_id=event_id, index=index)


def _failure(event_id: uuid.UUID, version: str, model: str = MODEL) -> ImageRejected:
    return make_rejection(
        event_id=event_id,
        stage=Stage.INFERENCE,
        code=ErrorCode.MODEL_INPUT_OUT_OF_DISTRIBUTION,
        model_id=f"{model}@{version}",
        reason="mean 0.9 outside [0.1, 0.3]",
    )


async def _store(database: Database, *events: StorableEvent) -> None:
    sink = ResultsSink(database.sessions, SinkSettings())
    for event in events:
        sink.add(event)
    await sink.flush()


class TestShadowRows:
    async def test_shadow_outcomes_are_stored_with_their_role(self, database: Database) -> None:
        """Both the shadow's result and its failure are rows, marked ``shadow``."""
        scored, refused = uuid.uuid4(), uuid.uuid4()
        await _store(
            database,
            ShadowOutcome(result=_result(scored, "2.0.0", 1)),
            ShadowOutcome(rejection=_failure(refused, "2.0.0")),
        )
        async with database.sessions() as session:
            results = (
                await session.execute(
                    select(inference_results.c.event_id, inference_results.c.role).where(
                        inference_results.c.event_id.in_([scored, refused])
                    )
                )
            ).all()
            events = (
                await session.execute(
                    select(
                        image_events.c.event_id, image_events.c.state, image_events.c.role
                    ).where(image_events.c.event_id.in_([scored, refused]))
                )
            ).all()
        assert [(r.event_id, r.role) for r in results] == [(scored, "shadow")]
        assert [(e.event_id, e.state, e.role) for e in events] == [
            (refused, LifecycleState.FAILED.value, "shadow")
        ]

    async def test_default_views_show_only_published_rows(self, database: Database) -> None:
        """Lists, lookups, per-event views, verification and the lifecycle skip shadow rows."""
        event, user = uuid.uuid4(), f"u-{uuid.uuid4().hex[:10]}"
        published = _result(event, "1.0.0", 1, user=user)
        shadow = _result(event, "2.0.0", 2, user=user)
        await _store(
            database,
            published,
            ShadowOutcome(result=shadow),
            ShadowOutcome(rejection=_failure(event, "3.0.0")),
        )
        results = ResultsRepository(database.sessions)
        page = await results.list_for_user(user, ResultQuery())
        assert [r.result_id for r in page.items] == [published.result_id]
        assert [r.role for r in page.items] == [ResultRole.PUBLISHED]
        everyone = await results.list_all(ResultQuery(model_name=MODEL, limit=500))
        assert shadow.result_id not in {r.result_id for r in everyone.items}
        assert published.result_id in {r.result_id for r in everyone.items}
        assert await results.get(shadow.result_id, user_id=None) is None
        assert [r.model_version for r in await results.list_for_event(event)] == ["1.0.0"]
        with pytest.raises(ResourceNotFoundError):
            await results.mark_verified(shadow.result_id, user_id=user)
        history = await LifecycleRepository(database.sessions).lifecycle(event)
        assert [(e.state, e.model_version) for e in history] == [
            (LifecycleState.INFERRED, "1.0.0"),
            (LifecycleState.STORED, "1.0.0"),
        ]


@pytest.fixture
def model() -> str:
    """A model name no other test stores rows for."""
    return f"m-{uuid.uuid4().hex[:10]}"


class TestComparison:
    async def test_pairs_both_roles_and_counts_failures(
        self, database: Database, model: str
    ) -> None:
        """Published 1.0.0 against shadow 2.0.0 on the same images, failures by code."""
        events = [uuid.uuid4() for _ in range(4)]
        stored: list[StorableEvent] = []
        for i, event in enumerate(events[:3]):
            stored.append(_result(event, "1.0.0", 2 * i, model=model))
            stored.append(ShadowOutcome(result=_result(event, "2.0.0", 2 * i + 1, model=model)))
        stored.append(_result(events[3], "1.0.0", 10, model=model))
        stored.append(ShadowOutcome(rejection=_failure(events[3], "2.0.0", model=model)))
        stored.append(_result(uuid.uuid4(), "0.9.0", 11, model=model))  # another version
        await _store(database, *stored)
        report = await ComparisonRepository(database.sessions).compare(
            model, "1.0.0", "2.0.0", since=WINDOW[0], until=WINDOW[1]
        )
        assert report.paired_images == 3
        assert (report.baseline.results, report.baseline.failures) == (4, 0)
        assert (report.candidate.results, report.candidate.failures) == (3, 1)
        assert report.candidate.failures_by_code == {"MODEL_INPUT_OUT_OF_DISTRIBUTION": 1}
        assert report.candidate.failure_rate == pytest.approx(0.25)
        # make_result decides by index parity: baseline even (negative), candidate odd.
        assert report.agreement == 0.0
        assert [(d.baseline, d.candidate, d.images) for d in report.decisions] == [
            ("negative", "positive", 3)
        ]
        assert report.score_deltas[0].mean_delta == pytest.approx(0.01)
        assert (report.since, report.until, report.truncated) == (*WINDOW, False)

    async def test_the_window_bounds_what_is_compared(self, database: Database, model: str) -> None:
        """Rows completed outside [since, until) are not read."""
        event = uuid.uuid4()
        await _store(
            database,
            _result(event, "1.0.0", 0, model=model),
            ShadowOutcome(result=_result(event, "2.0.0", 1, model=model)),
        )
        later = BASE_TIME + timedelta(hours=2)
        report = await ComparisonRepository(database.sessions).compare(
            model, "1.0.0", "2.0.0", since=later, until=later + timedelta(hours=1)
        )
        assert (report.paired_images, report.baseline.results, report.agreement) == (0, 0, None)

    async def test_a_full_window_says_it_was_truncated(
        self, database: Database, model: str
    ) -> None:
        """More rows than one report reads: the newest are compared, and the report says so."""
        await _store(database, *[_result(uuid.uuid4(), "1.0.0", i, model=model) for i in range(3)])
        report = await ComparisonRepository(database.sessions, max_rows=2).compare(
            model, "1.0.0", "2.0.0", since=WINDOW[0], until=WINDOW[1]
        )
        assert report.truncated
        assert report.baseline.results == 2

    async def test_an_empty_or_naive_window_is_refused(self, database: Database) -> None:
        """since >= until, or a naive time, is REQUEST_INVALID before any query."""
        comparisons = ComparisonRepository(database.sessions)
        now = datetime.now(UTC)
        for since, until in ((now, now), (now.replace(tzinfo=None), now + timedelta(hours=1))):
            with pytest.raises(InputValidationError) as caught:
                await comparisons.compare(MODEL, "1.0.0", "2.0.0", since=since, until=until)
            assert caught.value.code is ErrorCode.REQUEST_INVALID
