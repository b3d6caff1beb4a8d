"""ResultsSink: one transaction per flush, idempotent, flushed again while PostgreSQL is down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bench.sink_events import make_arrival, make_rejection, make_result, make_validated
from schemas.errors import ErrorCode, TransientError
from schemas.events import StorableEvent
from schemas.settings import SinkSettings
from sinks.database import Database
from sinks.repositories import LifecycleRepository
from sinks.results_sink import ResultsSink, WriteReport
from sinks.tables import LifecycleState, inference_results
from streams.batching_sink import SinkHooks, flush_until_committed

pytestmark = pytest.mark.requirement("RS-DB-02", "RS-DB-03", "RS-G-04")

# Nothing listens on port 1: connecting there is refused at once, a real "database down".
DOWN_URL = "postgresql://radstream@127.0.0.1:1/radstream"
FAST = SinkSettings(retry_initial_seconds=0.01, retry_max_seconds=0.04, retry_jitter=0)


def added(sink: ResultsSink, *groups: Sequence[StorableEvent]) -> ResultsSink:
    """``sink`` with every event of ``groups`` added (one consumed batch)."""
    for group in groups:
        for event in group:
            sink.add(event)
    return sink


async def _count_user(database: Database, user: str) -> int:
    async with database.sessions() as session:
        statement = select(func.count()).where(inference_results.c.requested_by == user)
        return int((await session.execute(statement)).scalar_one())


@pytest.fixture
async def down_database() -> AsyncIterator[Database]:
    """A Database whose server is unreachable."""
    db = Database(DOWN_URL, pool_size=1, connect_timeout_seconds=1)
    yield db
    await db.dispose()


@pytest.fixture
async def failing_trigger(database: Database) -> None:
    """Make image_events refuse rows whose detail is 'boom' (a failure late in a batch)."""
    async with database.engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE OR REPLACE FUNCTION radstream_test_boom() RETURNS trigger AS $$ "
                "BEGIN IF NEW.detail = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        await connection.execute(text("DROP TRIGGER IF EXISTS boom ON image_events"))
        await connection.execute(
            text(
                "CREATE TRIGGER boom BEFORE INSERT ON image_events "
                "FOR EACH ROW EXECUTE FUNCTION radstream_test_boom()"
            )
        )


class FlakySessions:
    """A session factory that hands out sessions of a dead server ``failures`` times first."""

    def __init__(self, down: Database, up: Database, failures: int) -> None:
        self.down, self.up, self.failures = down, up, failures
        self.calls = 0

    def __call__(self) -> AsyncSession:
        self.calls += 1
        return self.down.sessions() if self.calls <= self.failures else self.up.sessions()


class TestFlush:
    """One batch, one transaction."""

    async def test_writes_results_and_lifecycle(self, database: Database) -> None:
        """Results are stored and validated/rejected/inferred/stored steps recorded."""
        user = f"u-{uuid.uuid4().hex[:10]}"
        result = make_result(user=user)
        validated = make_validated(event_id=result.event_id)
        rejection = make_rejection()
        report = await added(
            ResultsSink(database.sessions, FAST), [result, rejection, validated]
        ).flush()
        assert (report.results_received, report.results_inserted) == (1, 1)
        assert report.lifecycle_inserted == report.lifecycle_received == 4
        history = await LifecycleRepository(database.sessions).lifecycle(result.event_id)
        assert [e.state for e in history] == [
            LifecycleState.VALIDATED,
            LifecycleState.INFERRED,
            LifecycleState.STORED,
        ]
        assert await _count_user(database, user) == 1

    async def test_arrival_is_recorded_once_and_first(self, database: Database) -> None:
        """ "arrived" leads the lifecycle even when the router's clock runs ahead of the
        workers'; a redelivered arrival adds nothing."""
        result = make_result(user=f"u-{uuid.uuid4().hex[:10]}")
        arrival = make_arrival(event_id=result.event_id, user=result.requested_by)
        # A router clock far ahead: after every worker-stamped step, the sink's own included.
        ahead = arrival.model_copy(update={"occurred_at": datetime(2100, 1, 1, tzinfo=UTC)})
        validated = make_validated(event_id=result.event_id)
        sink = ResultsSink(database.sessions, FAST)
        first = await added(sink, [result, validated]).flush()
        second = await added(sink, [ahead]).flush()
        replay = await added(sink, [ahead, arrival]).flush()
        assert (first.lifecycle_inserted, second.lifecycle_inserted) == (3, 1)
        assert (replay.lifecycle_received, replay.lifecycle_inserted) == (2, 0)
        history = await LifecycleRepository(database.sessions).lifecycle(result.event_id)
        assert [e.state for e in history] == [
            LifecycleState.ARRIVED,
            LifecycleState.VALIDATED,
            LifecycleState.INFERRED,
            LifecycleState.STORED,
        ]
        assert (history[0].at, history[0].requested_by) == (ahead.occurred_at, result.requested_by)

    async def test_replayed_batch_reports_duplicates(self, database: Database) -> None:
        """A redelivered batch inserts nothing and reports every result as a duplicate."""
        user = f"u-{uuid.uuid4().hex[:10]}"
        results = [make_result(user=user, index=i) for i in range(20)]
        sink = ResultsSink(database.sessions, FAST)
        await added(sink, results, [make_rejection()]).flush()
        replay = await added(sink, results).flush()
        assert replay.results_inserted == 0
        assert replay.results_duplicates == 20
        assert replay.lifecycle_inserted == 0
        assert await _count_user(database, user) == 20

    @pytest.mark.usefixtures("failing_trigger")
    async def test_failure_mid_batch_leaves_nothing(self, database: Database) -> None:
        """When the last statement of a batch fails, none of the batch's results are kept."""
        user = f"u-{uuid.uuid4().hex[:10]}"
        results = [make_result(user=user, index=i) for i in range(10)]
        sink = ResultsSink(database.sessions, FAST)
        with pytest.raises(sa_exc.DBAPIError):
            await added(sink, results, [make_rejection(reason="boom")]).flush()
        assert await _count_user(database, user) == 0

    async def test_unavailable_database_raises_transient(self, down_database: Database) -> None:
        """A refused connection surfaces as a retryable DATABASE_UNAVAILABLE error."""
        with pytest.raises(TransientError) as caught:
            await added(ResultsSink(down_database.sessions, FAST), [make_result()]).flush()
        assert caught.value.code is ErrorCode.DATABASE_UNAVAILABLE
        assert caught.value.retryable

    async def test_reports_each_batch_through_the_hook(self, database: Database) -> None:
        """The batch_written hook receives the report of each committed batch."""
        reports: list[WriteReport] = []
        sink = ResultsSink(database.sessions, FAST, SinkHooks(batch_written=reports.append))
        await added(sink, [make_result(user="hook-user")]).flush()
        assert [r.results_inserted for r in reports] == [1]


class TestBackoff:
    """Retries while the database is down; backpressure and health reported via hooks."""

    async def test_retries_until_the_database_is_back(
        self, database: Database, down_database: Database
    ) -> None:
        """Three refused attempts, then success: attempts=4, delays double up to the cap."""
        delays: list[float] = []
        states: list[bool] = []
        waited: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            delays.append(seconds)

        sessions = FlakySessions(down_database, database, failures=3)
        sink = ResultsSink(
            sessions,  # type: ignore[arg-type]
            FAST,
            SinkHooks(database_up=states.append, backpressure=waited.append),
            sleep=fake_sleep,
        )
        user = f"u-{uuid.uuid4().hex[:10]}"
        report = await flush_until_committed(added(sink, [make_result(user=user)]))
        assert sessions.calls == 4
        assert report.results_inserted == 1
        assert delays == waited == [0.01, 0.02, 0.04]
        assert states == [False, True]
        assert await _count_user(database, user) == 1

    @pytest.mark.parametrize(("pre_ping", "retries"), [(True, []), (False, [0.01])])
    async def test_a_connection_the_server_dropped_costs_at_most_one_retry(
        self, database_url: str, database: Database, pre_ping: bool, retries: list[float]
    ) -> None:
        """The sink's pooled connection is terminated (what a server restart does to it): with
        the pre-ping the next write checks it out and reconnects at once; without (the sinks'
        setting) the first attempt fails, the pool is invalidated and one retry stores the
        batch. Nothing is lost either way."""
        delays: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            delays.append(seconds)

        sink_database = Database(database_url, pool_size=1, pre_ping=pre_ping)
        try:
            sink = ResultsSink(sink_database.sessions, FAST, sleep=fake_sleep)
            await flush_until_committed(added(sink, [make_result(user="before-drop")]))
            async with sink_database.engine.connect() as pooled:
                backend = (await pooled.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            async with database.engine.connect() as admin:
                dropped = await admin.execute(
                    text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": backend}
                )
                assert dropped.scalar_one() is True
            user = f"u-{uuid.uuid4().hex[:10]}"
            report = await flush_until_committed(added(sink, [make_result(user=user)]))
        finally:
            await sink_database.dispose()
        assert report.results_inserted == 1
        assert delays == retries
        assert await _count_user(database, user) == 1

    async def test_first_try_success_reports_no_state_change(self, database: Database) -> None:
        """A write that succeeds at once does not call the health hook."""
        states: list[bool] = []
        sink = ResultsSink(database.sessions, FAST, SinkHooks(database_up=states.append))
        await flush_until_committed(added(sink, [make_result(user="quiet")]))
        assert states == []

    @pytest.mark.usefixtures("failing_trigger")
    async def test_non_retryable_error_is_not_retried(self, database: Database) -> None:
        """A failure retrying cannot fix propagates after one attempt."""
        slept: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)

        sink = ResultsSink(database.sessions, FAST, sleep=fake_sleep)
        with pytest.raises(sa_exc.DBAPIError):
            await flush_until_committed(added(sink, [make_rejection(reason="boom")]))
        assert slept == []

    async def test_non_retryable_transient_is_not_retried(self, database: Database) -> None:
        """A TransientError whose code is not retryable propagates at once."""

        class ExhaustedSink(ResultsSink):
            async def flush(self) -> WriteReport:
                raise TransientError(ErrorCode.RETRIES_EXHAUSTED)

        with pytest.raises(TransientError):
            await flush_until_committed(ExhaustedSink(database.sessions, FAST))

    async def test_cancellation_stops_the_retry_loop(self, down_database: Database) -> None:
        """Cancelling the task ends the forever-retry while the database is down."""
        sink = ResultsSink(down_database.sessions, FAST)
        task = asyncio.create_task(flush_until_committed(added(sink, [make_result()])))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class TestPing:
    """Health check of the database."""

    async def test_up(self, database: Database) -> None:
        """A reachable database answers the ping."""
        assert await database.ping() is True

    async def test_down(self, down_database: Database) -> None:
        """An unreachable database pings False without raising."""
        assert await down_database.ping() is False
