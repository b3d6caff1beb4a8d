"""One log line when a dependency goes away and one when it is back: an outage an operator sees.

A sink waiting out a database outage retries quietly (backpressure), and its metrics say
``radstream_database_up 0``; but an operator reading the worker's log saw nothing at all
(issue #17 D). :class:`OutageLog` is the ``database_up`` hook of a sink (or any up/down signal):
it logs ``dependency_unavailable`` once when the outage starts and ``dependency_recovered``
with its duration once when it ends, and passes every signal on (to the metrics).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("radstream.outage")


class OutageLog:
    """Logs the start and the end of one dependency's outage as seen by one component.

    Args:
        component: who waits (``results-sink``, ``audit-sink``).
        dependency: what went away (``database``, ``broker``).
        on_change: also called with every signal (the metrics gauge).
        clock: monotonic seconds (a fake in tests).
    """

    def __init__(
        self,
        component: str,
        dependency: str,
        *,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.component = component
        self.dependency = dependency
        self._on_change = on_change
        self._clock = clock
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        """Whether an outage is under way."""
        return self._down_since is not None

    def __call__(self, up: bool) -> None:
        """Record that the dependency is ``up`` (or not); logs only when that changes."""
        if not up and self._down_since is None:
            self._down_since = self._clock()
            log.error(
                "dependency_unavailable", component=self.component, dependency=self.dependency
            )
        elif up and self._down_since is not None:
            seconds = self._clock() - self._down_since
            self._down_since = None
            log.warning(
                "dependency_recovered",
                component=self.component,
                dependency=self.dependency,
                outage_seconds=round(seconds, 3),
            )
        if self._on_change is not None:
            self._on_change(up)
