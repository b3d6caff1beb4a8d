"""PostgreSQL stops and restarts in the middle of a stream of results: each is stored once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from bench.sink_events import make_result
from schemas.events import InferenceCompleted
from schemas.settings import SinkSettings
from sinks.database import Database
from sinks.results_sink import ResultsSink, WriteReport
from sinks.tables import inference_results
from streams.batching_sink import SinkHooks, flush_until_committed
from tests.reliability.private_postgres import PrivateCluster

pytestmark = pytest.mark.requirement("RS-DB-03", "RS-G-03", "RS-G-04")

BATCHES = 60
BATCH_SIZE = 20
OUTAGE_AFTER_BATCH = 15
OUTAGE_SECONDS = 1.5
REPLAYED_BATCHES = (
    3  # what Kafka redelivers after a crash: batches whose offsets were not committed
)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """The radstream database on the private cluster, migrated."""
    db = Database(database_url, pool_size=2, connect_timeout_seconds=2)
    yield db
    await db.dispose()


async def test_every_result_stored_exactly_once_across_a_restart(
    cluster: PrivateCluster, database: Database
) -> None:
    """Stop PostgreSQL mid-stream, restart it, replay: all results present, none twice."""
    batches = [
        [make_result(user="outage", index=b * BATCH_SIZE + i) for i in range(BATCH_SIZE)]
        for b in range(BATCHES)
    ]
    states: list[bool] = []
    waits: list[float] = []
    reports: list[WriteReport] = []
    sink = ResultsSink(
        database.sessions,
        SinkSettings(retry_initial_seconds=0.05, retry_max_seconds=0.5),
        SinkHooks(database_up=states.append, backpressure=waits.append),
    )

    async def write(batch: list[InferenceCompleted]) -> WriteReport:
        """What the results stage does with a consumed batch: add, flush until committed."""
        for result in batch:
            sink.add(result)
        return await flush_until_committed(sink)

    outage_started = asyncio.Event()

    async def stream() -> None:
        for number, batch in enumerate(batches):
            if number == OUTAGE_AFTER_BATCH:
                outage_started.set()
                await asyncio.sleep(0.1)  # let the stop begin while batches keep coming
            reports.append(await write(batch))
            await asyncio.sleep(0.01)
        # The consumer restarts and redelivers what it had not committed: replays are harmless.
        replayed: list[InferenceCompleted] = []
        for batch in batches[OUTAGE_AFTER_BATCH - REPLAYED_BATCHES : OUTAGE_AFTER_BATCH]:
            replayed += batch
        reports.append(await write(replayed))

    async def outage() -> None:
        await outage_started.wait()
        await asyncio.to_thread(cluster.stop)
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(cluster.start)

    async with asyncio.timeout(60):
        await asyncio.gather(stream(), outage())

    async with database.sessions() as session:
        total = (await session.execute(select(func.count()).select_from(inference_results))).one()
        stored_ids = set((await session.execute(select(inference_results.c.result_id))).scalars())
    expected = {result.result_id for batch in batches for result in batch}
    assert total[0] == BATCHES * BATCH_SIZE
    assert stored_ids == expected
    assert states[:2] == [False, True]
    assert waits  # at least one batch waited the outage out
    assert reports[-1].results_inserted == 0
