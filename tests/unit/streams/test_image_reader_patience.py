"""Patience for slow writers: the image reader waits for a missing or growing file."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ErrorCode, RadstreamError
from schemas.settings import load_settings
from streams.retry import FailureRecord, RetryPolicy
from streams.stages.common import ImageReader

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
