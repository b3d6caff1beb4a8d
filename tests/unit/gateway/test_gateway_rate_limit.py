"""Token buckets for subjects and the whole API."""

from __future__ import annotations

import pytest

from gateway.rate_limit import RateLimiter, TokenBucket
from schemas.errors import RateLimitError
from tests.unit.fake_clock import FakeClock

pytestmark = pytest.mark.requirement("RS-API-04")


class TestTokenBucket:
    """One bucket."""

    def test_full_bucket_has_no_wait(self) -> None:
        """A fresh bucket admits at once."""
        assert TokenBucket(60, FakeClock()).wait_seconds() == 0

    def test_empty_bucket_waits_for_one_token(self) -> None:
        """At 60 per minute an empty bucket needs one second."""
        bucket = TokenBucket(60, FakeClock())
        for _ in range(60):
            bucket.take()
        assert bucket.wait_seconds() == pytest.approx(1.0)

    def test_refill_is_capped_at_capacity(self) -> None:
        """A long pause does not bank more than a minute's worth."""
        clock = FakeClock()
        bucket = TokenBucket(2, clock)
        clock.advance(3600)
        bucket.take()
        bucket.take()
        assert bucket.wait_seconds() > 0

    def test_zero_rate_is_refused(self) -> None:
        """A bucket needs at least one token per minute."""
        with pytest.raises(ValueError, match="at least 1"):
            TokenBucket(0, FakeClock())


class TestRateLimiter:
    """Subject and global buckets together."""

    def test_throttled_subject_does_not_drain_global(self) -> None:
        """Refused requests charge neither bucket."""
        limiter = RateLimiter(1, 3, FakeClock())
        limiter.check("a")
        for _ in range(5):
            with pytest.raises(RateLimitError):
                limiter.check("a")
        limiter.check("b")
        limiter.check("c")

    def test_retry_after_is_whole_seconds_at_least_one(self) -> None:
        """The wait is rounded up to whole seconds, never 0."""
        limiter = RateLimiter(600, 6000, FakeClock())
        for _ in range(600):
            limiter.check("a")
        with pytest.raises(RateLimitError) as caught:
            limiter.check("a")
        assert caught.value.retry_after_seconds == 1.0

    def test_tracked_keys_are_bounded(self) -> None:
        """The least recently used subject is forgotten past the bound (and starts full)."""
        limiter = RateLimiter(1, 1000, FakeClock(), max_tracked_keys=2)
        limiter.check("a")
        limiter.check("b")
        limiter.check("c")  # evicts "a"
        limiter.check("a")  # a fresh bucket again
        with pytest.raises(RateLimitError):
            limiter.check("c")

    def test_without_global_bucket_only_the_key_limits(self) -> None:
        """A limiter without a global bucket admits any number of distinct keys."""
        limiter = RateLimiter(1, None, FakeClock())
        for index in range(50):
            limiter.check(f"address:{index}")
        with pytest.raises(RateLimitError):
            limiter.check("address:0")
