"""Percentiles and latency summaries of the benchmark."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest

from bench.probe import (
    latency_by_hop,
    latency_summary,
    outgoing_arrival,
    percentile,
    publish_all,
    publish_paced,
)
from bench.workload import ArrivalFactory, build_workload
from schemas.correlation import CORRELATION_ID_HEADER, accept_correlation_id
from schemas.events import ImageArrived
from streams.topics import TopicKey

pytestmark = pytest.mark.requirement("RS-BEN-01")


class TestPercentile:
    @pytest.mark.parametrize(("share", "expected"), [(0.5, 50), (0.95, 95), (0.99, 99), (1.0, 100)])
    def test_nearest_rank(self, share: float, expected: int) -> None:
        """Nearest-rank percentiles of 1..100 are the values themselves."""
        assert percentile(list(range(100, 0, -1)), share) == expected

    def test_small_samples_take_an_observed_value(self) -> None:
        """With three values p99 is the largest, p50 the middle one (never interpolated)."""
        assert percentile([3.0, 1.0, 2.0], 0.99) == 3.0
        assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0

    def test_empty_is_nan(self) -> None:
        """No samples: not a number, rather than a misleading zero."""
        assert math.isnan(percentile([], 0.5))


class TestLatencySummary:
    def test_milliseconds_and_count(self) -> None:
        """Seconds in, rounded milliseconds out, with the sample count."""
        summary = latency_summary([0.1, 0.2, 0.3, 0.4])
        assert summary == {
            "count": 4,
            "p50_ms": 200.0,
            "p95_ms": 400.0,
            "p99_ms": 400.0,
            "max_ms": 400.0,
        }

    def test_empty_summary_has_no_numbers(self) -> None:
        """No stored results: count 0 and NaN percentiles."""
        summary = latency_summary([])
        assert summary["count"] == 0
        assert math.isnan(summary["max_ms"])


class TestLatencyByHop:
    def test_each_hop_from_its_own_pair_of_times(self) -> None:
        """Arrival, validation, inference and storage times split into three hops."""
        t0 = datetime(2026, 11, 30, tzinfo=UTC)
        row = {
            "occurred_at": t0,
            "validated_at": t0 + timedelta(milliseconds=10),
            "completed_at": t0 + timedelta(milliseconds=40),
            "stored_at": t0 + timedelta(milliseconds=100),
        }
        hops = latency_by_hop([row])
        assert {name: hop["p50_ms"] for name, hop in hops.items()} == {
            "arrival_to_validated": 10.0,
            "validated_to_inferred": 30.0,
            "inferred_to_stored": 60.0,
        }

    def test_a_row_without_its_validation_step_counts_only_where_it_can(self) -> None:
        """A result whose validation step is missing is left out of the two hops that need it."""
        t0 = datetime(2026, 11, 30, tzinfo=UTC)
        row = {
            "occurred_at": t0,
            "validated_at": None,
            "completed_at": t0 + timedelta(milliseconds=40),
            "stored_at": t0 + timedelta(milliseconds=100),
        }
        hops = latency_by_hop([row])
        assert hops["arrival_to_validated"]["count"] == 0
        assert hops["validated_to_inferred"]["count"] == 0
        assert hops["inferred_to_stored"]["count"] == 1


class TestOutgoingArrival:
    def test_published_like_a_router(self) -> None:
        """Arrivals go to images.arrived, keyed like the router, with the correlation id."""
        event = ImageArrived(source="bench", image_uri="file:///x/y.png")
        message = outgoing_arrival(event)
        assert message.topic is TopicKey.IMAGES_ARRIVED
        assert message.key == event.message_key()
        ((name, value),) = message.headers
        assert name == CORRELATION_ID_HEADER
        assert accept_correlation_id(value) == value.decode()


class FakePublisher:
    """Records each delivery and when it happened."""

    def __init__(self, clock: FakeClock | None = None, *, cost: float = 0.0) -> None:
        self.deliveries: list[tuple[float, int]] = []
        self._clock = clock
        self._cost = cost

    async def deliver(self, messages: list[object]) -> None:
        now = self._clock.now() if self._clock else asyncio.get_running_loop().time()
        self.deliveries.append((now, len(messages)))
        if self._clock is not None:
            self._clock.advance(self._cost)


class FakeClock:
    """A monotonic clock that moves only when slept on or advanced."""

    def __init__(self) -> None:
        self.time = 0.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.time += seconds


class TestPublishing:
    async def test_saturation_sends_everything_in_one_delivery(self) -> None:
        """All arrivals of a saturation phase go in one delivery, with their ids returned."""
        publisher = FakePublisher()
        items = build_workload(6)
        published = await publish_all(publisher, ArrivalFactory(), items)  # type: ignore[arg-type]
        assert [n for _, n in publisher.deliveries] == [6]
        assert len(set(published.event_ids)) == 6
        assert published.finished_at >= published.started_at

    async def test_paced_publishing_keeps_the_rate(self) -> None:
        """At 100/s, 5 arrivals are sent one by one, each 10 ms after the previous one."""
        clock = FakeClock()
        publisher = FakePublisher(clock)
        items = build_workload(5)
        published = await publish_paced(
            publisher,  # type: ignore[arg-type]
            ArrivalFactory(),
            items,
            100.0,
            clock=clock.now,
            sleep=clock.sleep,
        )
        times = [t for t, _ in publisher.deliveries]
        assert [n for _, n in publisher.deliveries] == [1] * 5
        assert times == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04])
        assert len(published.event_ids) == 5

    async def test_paced_publishing_does_not_wait_when_behind(self) -> None:
        """A publisher slower than the rate is never made to wait on top of its own delay."""
        clock = FakeClock()
        publisher = FakePublisher(clock, cost=0.05)
        await publish_paced(
            publisher,  # type: ignore[arg-type]
            ArrivalFactory(),
            build_workload(3),
            100.0,
            clock=clock.now,
            sleep=clock.sleep,
        )
        assert clock.slept == []
