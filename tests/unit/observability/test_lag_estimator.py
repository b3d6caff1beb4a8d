"""Estimated time lag of a partition: age of the committed message, else drain time."""

from __future__ import annotations

import math

import pytest

from observability.lag import EstimateMethod, LagSample, estimate_lag_seconds

pytestmark = pytest.mark.requirement("RS-OBS-02")


def sample(at: float, committed: int, end: int, ts: float | None = None) -> LagSample:
    """A sample of partition 0 at time ``at``."""
    return LagSample("g", "t", 0, committed, end, at, ts)


class TestEstimate:
    def test_no_lag_is_zero_seconds(self) -> None:
        """A caught-up partition has no time lag."""
        estimate = estimate_lag_seconds([sample(0, 5, 5), sample(10, 9, 9)])
        assert (estimate.seconds, estimate.method) == (0.0, EstimateMethod.NONE)

    def test_empty_series_is_zero_seconds(self) -> None:
        """No samples means nothing to estimate."""
        assert estimate_lag_seconds([]).seconds == 0.0

    def test_age_of_committed_message_wins(self) -> None:
        """With the committed message's timestamp, the estimate is its age."""
        estimate = estimate_lag_seconds([sample(100.0, 0, 10), sample(130.0, 5, 20, ts=112.5)])
        assert (estimate.seconds, estimate.method) == (17.5, EstimateMethod.AGE)

    def test_age_never_negative_under_clock_skew(self) -> None:
        """A producer clock ahead of the monitor's yields 0, not a negative age."""
        assert estimate_lag_seconds([sample(100.0, 0, 3, ts=105.0)]).seconds == 0.0

    def test_drain_time_from_consumption_rate(self) -> None:
        """Without a timestamp: lag / (committed advance / elapsed)."""
        # 60 messages in 30 s = 2 msg/s; 40 left -> 20 s.
        estimate = estimate_lag_seconds([sample(0.0, 0, 70), sample(30.0, 60, 100)])
        assert estimate.seconds == pytest.approx(20.0)
        assert estimate.method is EstimateMethod.DRAIN

    def test_no_consumption_is_infinite(self) -> None:
        """A partition that does not consume will never drain."""
        estimate = estimate_lag_seconds([sample(0.0, 5, 9), sample(30.0, 5, 12)])
        assert math.isinf(estimate.seconds)

    def test_single_sample_without_timestamp_is_infinite(self) -> None:
        """One point gives no rate: the drain time is unknown (infinite)."""
        assert math.isinf(estimate_lag_seconds([sample(0.0, 5, 9)]).seconds)

    def test_lag_property_never_negative(self) -> None:
        """A committed offset beyond the end reports lag 0 (the evaluator flags it)."""
        assert sample(0.0, 12, 10).lag == 0
