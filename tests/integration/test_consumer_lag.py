"""Consumer lag on the real broker: stop the validation stage, publish N, see lag N, drain to 0.

Runs the real worker (``app.run_worker`` with only the validation stage) so the group, its
commits and its membership are exactly what production has. Every arrival reuses one sample file,
so all of them share one key and land on the partition the group has already committed; a
partition the group never committed has no lag to report (as with ``kafka-consumer-groups``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

import app
from observability.lag import LagReader, LagSample, collect, evaluate_group
from observability.metrics import LagStatus
from schemas.correlation import CORRELATION_ID_HEADER
from schemas.settings import SAMPLES_DIR, Settings, load_settings
from streams.kafka import KafkaClientConfig, KafkaPublisher
from streams.router import arrival_for_file
from streams.topics import TopicKey, TopicNames

pytestmark = pytest.mark.requirement("RS-OBS-02")

SAMPLE = SAMPLES_DIR / "dicom" / "ct_small.dcm"
BACKLOG = 5
# Bounded waits: faust joins the group in a few seconds and commits every ~2.8 s; the bounds
# only stop a hung run, they are not expected durations.
START_TIMEOUT_SECONDS = 60.0
CONVERGE_TIMEOUT_SECONDS = 20.0


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str) -> Settings:
    """Isolated settings: own topics, own consumer group."""
    return load_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        consumer_group_prefix=f"rstest-lag-{uuid.uuid4().hex[:8]}",
        storage_roots=(SAMPLES_DIR,),
    )


@pytest_asyncio.fixture
async def worker(
    settings: Settings,
) -> AsyncIterator[Callable[[], Awaitable[Callable[[], Awaitable[None]]]]]:
    """Start the validation stage on demand; every started worker is stopped at the end."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start() -> Callable[[], Awaitable[None]]:
        stop, started = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            app.run_worker(settings, ["validation"], stop, started=started, serve_http=False)
        )
        running.append((stop, task))
        await asyncio.wait_for(started.wait(), START_TIMEOUT_SECONDS)

        async def halt() -> None:
            stop.set()
            await asyncio.wait_for(task, START_TIMEOUT_SECONDS)

        return halt

    yield start
    for stop, task in running:
        stop.set()
        await asyncio.wait_for(task, START_TIMEOUT_SECONDS)


async def publish_arrivals(settings: Settings, count: int) -> None:
    """Publish ``count`` arrivals of the same file (one key, so one partition)."""
    async with KafkaPublisher.from_settings(settings) as pub:
        for _ in range(count):
            event = arrival_for_file(SAMPLE, source="rstest-lag")
            headers = ((CORRELATION_ID_HEADER, event.event_id.hex.encode()),)
            await pub.publish(TopicKey.IMAGES_ARRIVED, event.message_key(), event, headers)


async def arrived_samples(settings: Settings, group: str) -> list[LagSample]:
    """The group's samples on images.arrived."""
    arrived = TopicNames(settings.topic_prefix).arrived
    samples = await collect(
        KafkaClientConfig.from_settings(settings), [group], settings.topic_prefix
    )
    return [s for s in samples if s.topic == arrived]


async def wait_for_lag(settings: Settings, group: str, want: int) -> list[LagSample]:
    """Poll until the group has committed offsets on images.arrived with total lag ``want``."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_SECONDS
    samples: list[LagSample] = []
    while time.monotonic() < deadline:
        samples = await arrived_samples(settings, group)
        if samples and sum(s.lag for s in samples) == want:
            return samples
        await asyncio.sleep(0.5)
    pytest.fail(f"lag of {group} did not reach {want}: {samples}")


async def test_stopped_stage_shows_backlog_then_drains(
    settings: Settings, worker: Callable[[], Awaitable[Callable[[], Awaitable[None]]]]
) -> None:
    """Lag is N while validation is stopped (status stopped) and drains to 0 after restart."""
    group = app.consumer_group(settings, ["validation"])
    halt = await worker()
    await publish_arrivals(settings, 1)
    baseline = await wait_for_lag(settings, group, 0)  # committed: the baseline offset exists
    await halt()

    await publish_arrivals(settings, BACKLOG)
    backlog = await arrived_samples(settings, group)
    assert sum(s.lag for s in backlog) == BACKLOG
    assert sum(s.committed for s in backlog) == sum(s.committed for s in baseline)
    async with LagReader(
        KafkaClientConfig.from_settings(settings), settings.topic_prefix
    ) as reader:
        window = await reader.snapshots([group])
    assert (window[0].members, evaluate_group(window)) == (0, LagStatus.STOPPED)
    # The age of the oldest unconsumed message was read from its record timestamp.
    lagging = next(s for s in backlog if s.lag)
    assert lagging.committed_timestamp is not None
    assert 0 <= lagging.timestamp - lagging.committed_timestamp < CONVERGE_TIMEOUT_SECONDS

    await worker()
    drained = await wait_for_lag(settings, group, 0)
    assert sum(s.committed for s in drained) == sum(s.committed for s in baseline) + BACKLOG
