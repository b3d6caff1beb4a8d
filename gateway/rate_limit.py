"""In-memory token buckets: one per key and an optional global one, with an injectable clock.

The API keeps two limiters: authenticated requests are charged per subject and to the global
bucket; failed authentications are charged per client address only, in a limiter of their own,
so an unauthenticated flood from many addresses never empties the budget valid users share.

Per process: behind several API replicas the effective limit is the per-replica limit times the
replica count. Buckets for idle subjects are evicted (least recently used first) so a flood of
distinct keys cannot grow memory without bound.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from schemas.errors import ErrorCode, RateLimitError

Clock = Callable[[], float]
MAX_TRACKED_KEYS = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBucket:
    """A bucket of ``per_minute`` tokens refilled continuously at ``per_minute / 60`` per second."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._bucket = _Bucket(self.capacity, clock())

    def wait_seconds(self) -> float:
        """Seconds until one token is available (0 when one is available now)."""
        self._refill()
        return max(0.0, (1.0 - self._bucket.tokens) / self.rate)

    def take(self) -> None:
        """Consume one token (call only after :meth:`wait_seconds` returned 0)."""
        self._refill()
        self._bucket.tokens -= 1.0

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._bucket.updated)
        self._bucket.tokens = min(self.capacity, self._bucket.tokens + elapsed * self.rate)
        self._bucket.updated = now


class RateLimiter:
    """Admits a request only when the key's bucket (and the global one, if any) has a token."""

    def __init__(
        self,
        per_key_per_minute: int,
        global_per_minute: int | None,
        clock: Clock = time.monotonic,
        max_tracked_keys: int = MAX_TRACKED_KEYS,
    ) -> None:
        self._per_subject = per_key_per_minute
        self._clock = clock
        self._global = None if global_per_minute is None else TokenBucket(global_per_minute, clock)
        self._subjects: OrderedDict[str, TokenBucket] = OrderedDict()
        self._max_keys = max_tracked_keys

    def check(self, key: str) -> None:
        """Consume one token for ``key`` or raise ``RATE_LIMITED`` with the wait in seconds."""
        bucket = self._subjects.get(key)
        if bucket is None:
            bucket = TokenBucket(self._per_subject, self._clock)
            self._subjects[key] = bucket
            if len(self._subjects) > self._max_keys:
                self._subjects.popitem(last=False)
        self._subjects.move_to_end(key)
        # Neither bucket is charged unless both admit, so a throttled caller does not drain
        # the global budget of everyone else.
        wait = bucket.wait_seconds()
        if self._global is not None:
            wait = max(wait, self._global.wait_seconds())
        if wait > 0:
            raise RateLimitError(
                ErrorCode.RATE_LIMITED,
                "too many requests; retry after the Retry-After delay",
                retry_after_seconds=float(max(1, math.ceil(wait))),
            )
        bucket.take()
        if self._global is not None:
            self._global.take()
