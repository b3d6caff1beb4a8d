"""``radstream lag`` and the worker health server against the real broker.

A plain aiokafka consumer group commits offset 1 of a 3-message partition and leaves: the group
then has lag 2 and no members (stopped), which the table, the exporter and the health probes
must all report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from cli.lag import run_lag_exporter
from cli.main import main
from observability.health import (
    HealthState,
    WorkerHealth,
    probe_once,
    serve_health,
    stage_lag_probe,
)
from observability.lag import LagReader
from observability.metrics import Metrics
from schemas.settings import Settings, load_settings
from tests.ports import free_port

pytestmark = pytest.mark.requirement("RS-OBS-02", "RS-OBS-03")

# Bounded: a local broker answers in milliseconds; the bound only stops a hung test.
TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class LaggingGroup:
    """A group with lag 2 on partition 0 of ``topic`` and no members."""

    settings: Settings
    group: str
    topic: str


@pytest.fixture
async def lagging(kafka_bootstrap: str, topic_prefix: str) -> LaggingGroup:
    """Create a topic, write 3 messages, commit offset 1 for a fresh group and leave it."""
    group_prefix = f"rstest-lagcli-{uuid.uuid4().hex[:8]}"
    group, topic = f"{group_prefix}-probe", f"{topic_prefix}images.arrived"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(topic, f"m{n}".encode(), partition=0)
    finally:
        await producer.stop()
    # No auto-commit: on stop it would commit the fetch position (the end), erasing the lag.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        # Manual assignment: the group commits without joining, so it has no members after.
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(1, "")})
    finally:
        await consumer.stop()
    settings = load_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        consumer_group_prefix=group_prefix,
        observability={"metrics_host": "127.0.0.1", "metrics_port": 0},
    )
    return LaggingGroup(settings, group, topic)


def get(url: str) -> tuple[int, bytes]:
    """Status and body of a GET (error statuses included)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback test URL
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape_group(url: str, group: str) -> dict[str, float]:
    """The group's lag and its one-hot "stopped" status from a /metrics scrape (when present)."""
    _status, body = get(url)
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.labels.get("group") != group:
                continue
            if sample.name == "radstream_consumer_lag_messages":
                found["lag"] = sample.value
            elif sample.labels.get("status") == "stopped":
                found["stopped"] = sample.value
    return found


class TestLagCommand:
    async def test_table_lists_partition_lag_and_exits_1_for_a_stopped_group(
        self, lagging: LaggingGroup, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The one-off table shows committed 1, end 3, lag 2 and status stopped; exit code 1."""
        code = await asyncio.to_thread(
            main, ["lag", "--interval", "0.2"], settings=lagging.settings
        )
        captured = capsys.readouterr()
        row = next(line for line in captured.out.splitlines() if lagging.topic in line).split()
        assert (code, row[:5]) == (1, [lagging.topic, "0", "1", "3", "2"])
        assert f"{lagging.group}  status=stopped" in captured.out
        assert captured.err.count("\n") == 1
        assert f"CHECK_FAILED: consumer group(s) stalled, stopped or in error: {lagging.group}" in (
            captured.err
        )

    async def test_json_reports_the_group(
        self, lagging: LaggingGroup, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json prints the same facts as one document."""
        code = await asyncio.to_thread(
            main, ["lag", "--interval", "0.2", "--json"], settings=lagging.settings
        )
        report = next(r for r in json.loads(capsys.readouterr().out) if r["group"] == lagging.group)
        assert (code, report["status"], report["lag"]) == (1, "stopped", 2)
        assert report["partitions"][0]["committed"] == 1

    async def test_serve_exports_gauges_on_metrics(self, lagging: LaggingGroup) -> None:
        """--serve exports the group's lag and stopped status on /metrics until stopped."""
        stop, ports = asyncio.Event(), asyncio.Queue[int]()
        task = asyncio.create_task(
            run_lag_exporter(
                lagging.settings,
                None,
                0.2,
                stop,
                registry=CollectorRegistry(),
                on_listening=ports.put_nowait,
            )
        )
        port = await asyncio.wait_for(ports.get(), TIMEOUT_SECONDS)
        url = f"http://127.0.0.1:{port}/metrics"
        values: dict[str, float] = {}
        for _ in range(int(TIMEOUT_SECONDS / 0.2)):  # bounded: the first poll takes ~100 ms
            values = await asyncio.to_thread(scrape_group, url, lagging.group)
            if len(values) == 2:
                break
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(task, TIMEOUT_SECONDS)
        assert values == {"lag": 2.0, "stopped": 1.0}

    def test_serve_command_serves_until_sigterm(self, lagging: LaggingGroup) -> None:
        """`radstream lag --serve` serves the gauges on /metrics and returns 0 on SIGTERM."""
        port = free_port()
        settings = lagging.settings.model_copy(
            update={
                "observability": lagging.settings.observability.model_copy(
                    update={"metrics_port": port}
                )
            }
        )
        seen: dict[str, float] = {}

        def scrape_then_terminate() -> None:
            # The signal handlers are installed before the server listens, so once /metrics
            # answers with the group's lag, SIGTERM reaches the command's handler.
            url = f"http://127.0.0.1:{port}/metrics"
            for _ in range(int(TIMEOUT_SECONDS / 0.2)):  # bounded: start-up takes ~1 s
                with contextlib.suppress(OSError):  # not listening yet
                    seen.update(scrape_group(url, lagging.group))
                if seen.get("lag") == 2.0:
                    break
                time.sleep(0.2)
            time.sleep(0.3)  # let a few 0.1 s poll intervals pass first
            os.kill(os.getpid(), signal.SIGTERM)

        killer = threading.Thread(target=scrape_then_terminate, daemon=True)
        killer.start()
        code = main(["lag", "--serve", "--interval", "0.1"], settings=settings)
        killer.join(TIMEOUT_SECONDS)
        assert (seen.get("lag"), code) == (2.0, 0)


class TestHealthServer:
    @pytest.fixture
    def server(self) -> Iterator[tuple[HealthState, str]]:
        """A health server on a free port for a validation worker, stopped after the test."""
        state = HealthState(["validation"], requires_database=False, progress_timeout=60.0)
        registry = CollectorRegistry()
        Metrics(registry, process_collector=False).set_database_up(True)
        http, _thread = serve_health(state, registry, "127.0.0.1", 0)
        yield state, f"http://127.0.0.1:{http.server_port}"
        http.shutdown()
        http.server_close()

    async def test_readyz_200_after_real_broker_probe(
        self, server: tuple[HealthState, str], lagging: LaggingGroup
    ) -> None:
        """A started worker whose broker probe succeeded is ready; the stage's lag is reported."""
        state, base = server
        state.mark_started()
        async with LagReader.from_settings(lagging.settings) as reader:
            probe = stage_lag_probe(reader, {"validation": (lagging.group, (lagging.topic,))})
            await asyncio.wait_for(probe_once(state, probe, None), TIMEOUT_SECONDS)
        status, body = await asyncio.to_thread(get, f"{base}/readyz")
        checks = json.loads(body)["checks"]
        # The detail goes on with "progress N s ago"; N depends on the machine's speed.
        stage_detail = checks["stage:validation"]["detail"].split(",")[0]
        assert (status, checks["broker"]["ok"], stage_detail) == (200, True, "lag 2")

    async def test_readyz_503_before_start(self, server: tuple[HealthState, str]) -> None:
        """A worker whose consumers have not started is not ready (503, failing checks)."""
        _state, base = server
        status, body = await asyncio.to_thread(get, f"{base}/readyz")
        payload = json.loads(body)
        assert (status, payload["status"], payload["checks"]["started"]["ok"]) == (
            503,
            "failing",
            False,
        )

    async def test_livez_200_with_fresh_heartbeat(self, server: tuple[HealthState, str]) -> None:
        """A process whose loop beat recently is live."""
        state, base = server
        state.beat()
        status, body = await asyncio.to_thread(get, f"{base}/livez")
        assert (status, json.loads(body)["status"]) == (200, "ok")

    async def test_livez_503_when_heartbeat_is_stale(self) -> None:
        """A blocked loop (stale heartbeat) gets 503 from the server thread, not a timeout."""
        clock = [0.0]
        state = HealthState(
            ["validation"], requires_database=False, heartbeat_timeout=5.0, clock=lambda: clock[0]
        )
        http, _thread = serve_health(state, None, "127.0.0.1", 0)
        try:
            clock[0] = 6.0
            status, body = await asyncio.to_thread(
                get, f"http://127.0.0.1:{http.server_port}/livez"
            )
        finally:
            http.shutdown()
            http.server_close()
        assert (status, json.loads(body)["checks"]["event_loop"]["ok"]) == (503, False)

    async def test_metrics_on_the_same_port(self, server: tuple[HealthState, str]) -> None:
        """/metrics is served next to the probes (one port per worker)."""
        _state, base = server
        status, body = await asyncio.to_thread(get, f"{base}/metrics")
        assert (status, b"radstream_database_up 1.0" in body) == (200, True)

    async def test_unknown_path_is_404(self, server: tuple[HealthState, str]) -> None:
        """Anything else is 404."""
        _state, base = server
        status, _body = await asyncio.to_thread(get, f"{base}/admin")
        assert status == 404


class TestWorkerHealth:
    async def test_serves_probes_fed_by_the_real_broker(self, lagging: LaggingGroup) -> None:
        """WorkerHealth starts a real LagReader, probes the broker, serves /readyz on its port."""
        state = HealthState(["validation"], requires_database=False)
        state.mark_started()
        reader = LagReader.from_settings(lagging.settings)
        health = WorkerHealth(
            state,
            reader,
            {"validation": (lagging.group, None)},
            registry=CollectorRegistry(),
            address=("127.0.0.1", 0),
            interval_seconds=0.1,
        )
        await health.start()
        try:
            assert health.server is not None
            url = f"http://127.0.0.1:{health.server.server_port}/readyz"
            payload: dict[str, dict[str, dict[str, object]]] = {}
            for _ in range(int(TIMEOUT_SECONDS / 0.1)):  # bounded: the first probe takes ~50 ms
                status, body = await asyncio.to_thread(get, url)
                payload = json.loads(body)
                if status == 200:
                    break
                await asyncio.sleep(0.1)
        finally:
            await asyncio.wait_for(health.close(), TIMEOUT_SECONDS)
        stage = payload["checks"]["stage:validation"]
        assert (stage["ok"], str(stage["detail"]).split(",")[0]) == (True, "lag 2")


class TestDeletedTopics:
    async def test_offsets_of_a_deleted_topic_are_skipped_and_not_recreated(
        self, lagging: LaggingGroup, kafka_bootstrap: str
    ) -> None:
        """A group's lingering offsets on a deleted topic neither block nor resurrect it."""
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([lagging.topic])
            for _ in range(50):  # deletion is asynchronous in KRaft; bounded wait
                if lagging.topic not in await admin.list_topics():
                    break
                await asyncio.sleep(0.1)
            reader = LagReader.from_settings(lagging.settings)
            await reader.start()
            try:
                async with asyncio.timeout(TIMEOUT_SECONDS):
                    (snapshot,) = await reader.snapshots([lagging.group])
            finally:
                await reader.stop()
            await asyncio.sleep(0.5)
            still_deleted = lagging.topic not in await admin.list_topics()
        finally:
            await admin.close()
        assert snapshot.samples == ()
        assert still_deleted
