"""Collapsing a library's repeated warnings and errors: one line per change, then a summary.

While the broker is away, aiokafka logs ``Unable connect to node…`` and ``Unable to update
metadata…`` for every reconnection attempt of every client: 17,000-33,000 ERROR lines per process
in one outage (issue #17 D), which bury the few lines that matter. :class:`RepeatedLineGate`, a
filter on radstream's log handler, lets the first line of each kind (library logger and message
template) through per window, holds back the repetitions and, when the window ends, logs one
``library_lines_collapsed`` line counting what it held back, per kind. A kind seen first (the
state changed: a broker went away, a new error appeared) is always shown at once.

Only warnings and errors of the named libraries are gated; radstream's own lines and every
library's INFO and DEBUG lines pass untouched.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final

import structlog

# aiokafka logs each failed reconnection and metadata refresh; faust's consumer repeats them.
GATED_LOGGERS: Final = ("aiokafka", "faust.transport")
SUMMARY_WINDOW_SECONDS: Final = 60.0

log = structlog.get_logger("radstream.logging")


class RepeatedLineGate(logging.Filter):
    """Per window, the first warning or error of each kind passes; the rest are counted.

    Args:
        loggers: names (and their children) whose warnings and errors are gated.
        window_seconds: how long a kind stays held back after its first line, and how often
            the count of what was held back is logged.
        clock: monotonic seconds (a fake in tests).
    """

    def __init__(
        self,
        loggers: Sequence[str] = GATED_LOGGERS,
        *,
        window_seconds: float = SUMMARY_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._loggers = tuple(loggers)
        self._window = window_seconds
        self._clock = clock
        self._window_started: float | None = None
        self._seen: set[tuple[str, str]] = set()
        self._held: Counter[tuple[str, str]] = Counter()

    def _gated(self, record: logging.LogRecord) -> bool:
        name = record.name
        return record.levelno >= logging.WARNING and any(
            name == prefix or name.startswith(prefix + ".") for prefix in self._loggers
        )

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is shown (``False``: held back and counted)."""
        if not self._gated(record):
            return True
        now = self._clock()
        if self._window_started is None or now - self._window_started >= self._window:
            self.flush()
            self._window_started = now
        kind = (record.name, str(record.msg))
        if kind in self._seen:
            self._held[kind] += 1
            return False
        self._seen.add(kind)
        return True

    def flush(self) -> None:
        """Log how many lines of each kind were held back, and start a new window."""
        held, self._held = self._held, Counter()
        self._seen.clear()
        if held:
            # Message templates, not the formatted lines: the arguments stay out of the summary.
            log.warning(
                "library_lines_collapsed",
                lines=sum(held.values()),
                window_seconds=self._window,
                kinds={f"{name}: {template}": count for (name, template), count in held.items()},
            )
