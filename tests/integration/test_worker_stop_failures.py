"""A worker stopped by SIGTERM whose stage fails while stopping does not exit as a clean stop.

Runs ``app.run_worker`` on the real broker (topics, producer, health probes as in production)
with a consumer loop that plays the stage: it consumes until the stop, then fails as a batch
whose delivery is refused while draining would. The worker must raise, and the command's exit
status follow the error's code; a loop that stops cleanly leaves the worker with no error.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

import app
from cli.errors import ExitCode, failure_for
from schemas.errors import ErrorCode, error_for
from schemas.settings import SAMPLES_DIR, Settings, load_settings

pytestmark = pytest.mark.requirement("RS-REL-14")

# Bounds against a hang only: the worker builds its clients in about a second.
RUN_TIMEOUT_SECONDS = 60.0
DRAIN_SECONDS = 0.5


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str) -> Settings:
    """Isolated settings: own topics, own consumer group, a short shutdown bound."""
    return load_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        consumer_group_prefix=f"rstest-stopfail-{uuid.uuid4().hex[:8]}",
        storage_roots=(SAMPLES_DIR,),
        watchdog={"shutdown_seconds": 5.0},
    )


def loop_that_ends(error: Exception | None) -> app.ConsumerLoop:
    """A consumer loop that consumes until the stop, then raises ``error`` (or returns)."""

    async def consume(worker: app.Worker, stop: asyncio.Event) -> None:
        worker.mark_started()
        await stop.wait()
        # Draining takes a while: the failure comes once the worker has begun its shutdown
        # (failing at the very moment of the stop is seen as a failure while running).
        await asyncio.sleep(DRAIN_SECONDS)
        if error is not None:
            raise error

    return consume


async def run_and_stop(settings: Settings, loop: app.ConsumerLoop) -> None:
    """Start the worker with ``loop``, stop it once it consumes, and wait for its end."""
    stop, started = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(
        app.run_worker(
            settings, ["validation"], stop, consumer_loop=loop, started=started, serve_http=False
        )
    )
    await asyncio.wait_for(started.wait(), RUN_TIMEOUT_SECONDS)
    stop.set()  # what SIGTERM does (cli.context.run_until_signalled)
    await asyncio.wait_for(worker, RUN_TIMEOUT_SECONDS)


async def test_delivery_refused_while_stopping_fails_the_worker(settings: Settings) -> None:
    """The refusal is the worker's error: exit status 7 (refused), not 0."""
    refused = error_for(ErrorCode.BROKER_REQUEST_REFUSED, "delivering a drained batch: refused")
    with pytest.raises(RuntimeError, match="failed while stopping") as caught:
        await run_and_stop(settings, loop_that_ends(refused))
    failure = failure_for(caught.value, settings)
    assert (failure.code, failure.exit_code) == (ErrorCode.BROKER_REQUEST_REFUSED, ExitCode.REFUSED)


async def test_clean_stop_is_no_failure(settings: Settings) -> None:
    """A stage that finishes after the stop leaves the worker without an error (status 0)."""
    await run_and_stop(settings, loop_that_ends(None))
