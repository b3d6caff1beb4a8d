"""A monotonic clock for unit tests: time moves only when the test moves it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    now: float = 1000.0

    def __call__(self) -> float:
        """The current fake time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        self.now += seconds
