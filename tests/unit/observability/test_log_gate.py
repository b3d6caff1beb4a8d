"""Repeated library warnings and errors collapsed into one line per kind and a summary."""

from __future__ import annotations

import logging

import pytest
from structlog.testing import capture_logs

from observability.log_gate import RepeatedLineGate
from tests.unit.fake_clock import FakeClock

pytestmark = pytest.mark.requirement("RS-REL-13")


def record(name: str, msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    """A stdlib record as a library logs it (template and arguments)."""
    return logging.LogRecord(name, level, __file__, 1, msg, ("node-1",), None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now=0.0)


@pytest.fixture
def gate(clock: FakeClock) -> RepeatedLineGate:
    return RepeatedLineGate(("aiokafka",), window_seconds=60.0, clock=clock)


class TestRepeatedLineGate:
    def test_first_line_of_a_kind_passes_and_repetitions_are_held(
        self, gate: RepeatedLineGate
    ) -> None:
        """An outage's thousands of reconnection errors become one line."""
        shown = [gate.filter(record("aiokafka.conn", "Unable connect to %s")) for _ in range(500)]
        assert shown.count(True) == 1
        assert shown[0]

    def test_a_new_kind_passes_at_once(self, gate: RepeatedLineGate) -> None:
        """A different message (a state change) is never held back by an earlier one."""
        assert gate.filter(record("aiokafka.conn", "Unable connect to %s"))
        assert gate.filter(record("aiokafka.client", "Unable connect to %s"))
        assert gate.filter(record("aiokafka.conn", "Unable to update metadata from %s"))

    def test_window_end_logs_one_summary_and_shows_the_kind_again(
        self, gate: RepeatedLineGate, clock: FakeClock
    ) -> None:
        """After the window: one summary counting the held lines, then one line per kind."""
        for _ in range(3):
            gate.filter(record("aiokafka.conn", "Unable connect to %s"))
        clock.now = 60.0
        with capture_logs() as logs:
            assert gate.filter(record("aiokafka.conn", "Unable connect to %s"))
        (summary,) = logs
        assert summary["event"] == "library_lines_collapsed"
        assert summary["lines"] == 2
        assert summary["kinds"] == {"aiokafka.conn: Unable connect to %s": 2}
        assert "node-1" not in str(summary)  # templates only, never the arguments

    def test_nothing_held_means_no_summary(self, gate: RepeatedLineGate, clock: FakeClock) -> None:
        """A window without repetitions ends silently."""
        gate.filter(record("aiokafka.conn", "Unable connect to %s"))
        clock.now = 61.0
        with capture_logs() as logs:
            gate.filter(record("aiokafka.conn", "Unable connect to %s"))
        assert logs == []

    @pytest.mark.parametrize(
        ("name", "level"),
        [
            ("aiokafka.conn", logging.INFO),
            ("radstream.stage", logging.ERROR),
            ("aiokafkaesque", logging.ERROR),
        ],
    )
    def test_other_lines_pass_untouched(
        self, gate: RepeatedLineGate, name: str, level: int
    ) -> None:
        """INFO lines, radstream's own lines and look-alike names are never gated."""
        assert all(gate.filter(record(name, "same %s", level)) for _ in range(3))

    def test_the_root_logger_name_itself_is_gated(self, gate: RepeatedLineGate) -> None:
        """A line of the named logger itself (not only its children) is gated."""
        assert gate.filter(record("aiokafka", "x %s"))
        assert not gate.filter(record("aiokafka", "x %s"))
