"""A results worker whose database is unreachable still leaves on SIGTERM, within its bound.

Issue #17 F: such a worker ignored SIGINT and SIGTERM for ten minutes (faust's
``wait_empty``), logging nothing about the database. Here PostgreSQL (a private cluster, never
the shared one) is stopped under a running ``radstream worker --stages results`` with work
waiting; SIGTERM must end the process within the shutdown backstop, and the log must say the
database went away. (Faust's own ``wait_empty`` still waits for the blocked event: today the
process ends through the shutdown backstop, ``process_exit_forced``, exit status 70.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from bench.sink_events import make_result
from streams.kafka import KafkaClientConfig, KafkaPublisher, ensure_topics
from streams.topics import TopicKey, TopicNames
from tests.reliability.private_postgres import PrivateCluster
from tests.reliability.worker_process import start_worker

pytestmark = pytest.mark.requirement("RS-REL-14")

SHUTDOWN_SECONDS = 5
# The backstop: 2 x shutdown + 10 s; the margin covers interpreter start-up on a busy machine.
EXIT_BOUND_SECONDS = 2 * SHUTDOWN_SECONDS + 10 + 20
START_SECONDS = 120.0


async def test_sigterm_with_the_database_down_ends_the_worker(
    cluster: PrivateCluster,
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    """Database stopped, results waiting: SIGTERM ends the worker within the bound."""
    kafka = KafkaClientConfig(kafka_bootstrap)
    await ensure_topics(kafka, topic_prefix)
    log_path = tmp_path / "worker.log"
    env = os.environ | {
        "RADSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RADSTREAM_DATABASE_URL": database_url,
        "RADSTREAM_TOPIC_PREFIX": topic_prefix,
        "RADSTREAM_CONSUMER_GROUP_PREFIX": f"rstest-sigterm-{uuid.uuid4().hex[:8]}",
        "RADSTREAM_OBSERVABILITY__METRICS_PORT": "0",
        "RADSTREAM_LOGGING__FORMAT": "json",
        "RADSTREAM_WORKER_DATA_DIR": str(tmp_path / "faust"),
        "RADSTREAM_WATCHDOG__SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS),
        "RADSTREAM_SINK__RETRY_MAX_SECONDS": "1",
    }
    worker = start_worker("results", env, log_path)
    try:
        deadline = time.monotonic() + START_SECONDS
        while "worker_started" not in log_path.read_text(errors="replace"):
            assert worker.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "the worker did not start"
            await asyncio.sleep(0.5)
        await asyncio.to_thread(cluster.stop)
        async with KafkaPublisher(kafka, TopicNames(topic_prefix)) as publisher:
            for index in range(20):
                result = make_result(user="sigterm", index=index)
                await publisher.publish(TopicKey.INFERENCE_RESULTS, None, result)
        deadline = time.monotonic() + START_SECONDS
        while "dependency_unavailable" not in log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the outage was never logged"
            await asyncio.sleep(0.5)

        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        status = await asyncio.to_thread(worker.wait, EXIT_BOUND_SECONDS)
        seconds = time.monotonic() - started
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
    assert seconds < EXIT_BOUND_SECONDS
    assert status != -signal.SIGKILL
    events = [
        json.loads(line).get("event")
        for line in log_path.read_text(errors="replace").splitlines()
        if line.startswith("{")
    ]
    assert "dependency_unavailable" in events
