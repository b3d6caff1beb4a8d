"""Patience for slow writers: the image reader waits for a missing or growing file."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

import app
from observability.metrics import Metrics
from observability.stage_observer import MetricsObserver
from schemas.errors import ErrorCode, RadstreamError
from schemas.settings import SAMPLES_DIR, load_settings
from streams.pipeline import Incoming
from streams.retry import FailureRecord, RetryPolicy
from streams.router import arrival_for_file
from streams.stages.common import ImageReader
from streams.topics import TopicKey, TopicNames

pytestmark = pytest.mark.requirement("RS-VAL-08")


class TestDefaultPatience:
    def test_default_wait_spans_minutes_not_milliseconds(self) -> None:
        """The shipped policy waits about two minutes, with backoff, before giving up."""
        policy = RetryPolicy.from_settings(load_settings().retry, seed=1)
        delays = list(policy.delays())
        assert delays == sorted(delays[:6]) + delays[6:]  # backs off first
        assert sum(delays) >= 60.0
        assert max(delays) <= 15.0
        assert policy.max_elapsed_seconds == 120.0


class TestImageReader:
    async def test_file_written_late_is_read(self, tmp_path: Path) -> None:
        """A file that appears after a few attempts is read, not dead-lettered."""
        target = tmp_path / "late.dcm"
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 3:  # the router finishes writing during the third wait
                target.write_bytes(b"dicom")

        policy = RetryPolicy(max_attempts=10, initial_seconds=0.5, max_seconds=15.0)
        reader = ImageReader([tmp_path], 100, policy, sleep=sleep)
        assert await reader.read(target.as_uri(), FailureRecord()) == b"dicom"
        assert waits == [0.5, 1.0, 2.0]

    async def test_growing_file_is_waited_for(self, tmp_path: Path) -> None:
        """A file still being written (recent mtime) is read once it has settled."""
        target = tmp_path / "growing.dcm"
        target.write_bytes(b"part")
        now = [target.stat().st_mtime]

        async def sleep(seconds: float) -> None:
            now[0] += seconds

        policy = RetryPolicy(max_attempts=10, initial_seconds=0.5, max_seconds=15.0)
        reader = ImageReader(
            [tmp_path], 100, policy, settle_seconds=2.0, sleep=sleep, wall_clock=lambda: now[0]
        )
        record = FailureRecord()
        assert await reader.read(target.as_uri(), record) == b"part"
        assert now[0] - target.stat().st_mtime >= 2.0

    async def test_gives_up_after_the_policy(self, tmp_path: Path) -> None:
        """A file that never comes ends as RETRIES_EXHAUSTED after every attempt."""

        async def sleep(_seconds: float) -> None:
            return None

        reader = ImageReader([tmp_path], 100, RetryPolicy(max_attempts=3), sleep=sleep)
        with pytest.raises(RadstreamError) as caught:
            await reader.read((tmp_path / "never.dcm").as_uri(), FailureRecord())
        assert caught.value.code is ErrorCode.RETRIES_EXHAUSTED

    async def test_each_retry_is_counted_and_logged_without_the_file_name(
        self, tmp_path: Path
    ) -> None:
        """An operator sees a missing file being waited for (radstream_retries_total and a
        warning per retry) long before it is dead-lettered; the name, which may quote a
        patient, is in neither."""

        async def sleep(_seconds: float) -> None:
            return None

        codes: list[ErrorCode] = []
        reader = ImageReader(
            [tmp_path], 100, RetryPolicy(max_attempts=3), sleep=sleep, on_retry=codes.append
        )
        with capture_logs() as logs, pytest.raises(RadstreamError):
            await reader.read((tmp_path / "Doe^Jane.dcm").as_uri(), FailureRecord())
        assert codes == [ErrorCode.STORAGE_FILE_NOT_FOUND] * 2
        retried = [entry for entry in logs if entry["event"] == "image_read_retried"]
        assert [entry["attempt"] for entry in retried] == [1, 2]
        assert {entry["error_code"] for entry in retried} == {"STORAGE_FILE_NOT_FOUND"}
        assert "Doe" not in repr(logs)


class TestRetriesReachTheMetric:
    async def test_a_validation_worker_counts_its_storage_retries(self, tmp_path: Path) -> None:
        """The worker's wiring gives the validation stage's reader the retry counter: a file
        that never comes is counted once per retry, then dead-lettered."""
        settings = load_settings(
            storage_roots=(tmp_path,),
            retry={"max_attempts": 3, "initial_seconds": 0.001, "max_seconds": 0.001},
        )
        metrics = Metrics(CollectorRegistry(), process_collector=False)
        routine, _stat = app.build_validation_specs(
            settings, TopicNames(settings.topic_prefix), observer=MetricsObserver(metrics)
        )
        sample = SAMPLES_DIR / "raster" / "ct_64.png"
        arrival = arrival_for_file(sample, source="test").model_copy(
            update={"image_uri": (tmp_path / "gone.png").as_uri()}
        )
        message = Incoming(
            "images.arrived", 0, 0, arrival.message_key(), arrival.model_dump_json().encode()
        )
        (outcome,) = await routine.handler.handle([message])
        assert outcome.topic is TopicKey.DEADLETTER
        text = generate_latest(metrics.registry).decode()
        assert (
            'radstream_retries_total{error_code="STORAGE_FILE_NOT_FOUND",stage="validation"} 2.0'
            in text
        )
