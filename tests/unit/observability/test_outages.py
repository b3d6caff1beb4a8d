"""Outage start and end: one line each, whatever the number of retries between them."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from observability.outages import OutageLog

pytestmark = pytest.mark.requirement("RS-REL-13")


class TestOutageLog:
    def test_one_line_at_the_start_and_one_at_the_end(self) -> None:
        """Many 'down' signals (one per retry) log once; 'up' logs the outage's duration."""
        now = [100.0]
        seen: list[bool] = []
        outage = OutageLog("results-sink", "database", on_change=seen.append, clock=lambda: now[0])
        with capture_logs() as logs:
            for _ in range(5):
                outage(False)
            assert outage.down
            now[0] = 130.5
            outage(True)
            outage(True)
        assert [(line["event"], line["log_level"]) for line in logs] == [
            ("dependency_unavailable", "error"),
            ("dependency_recovered", "warning"),
        ]
        assert logs[1]["outage_seconds"] == 30.5
        assert logs[1]["component"] == "results-sink"
        assert not outage.down
        assert seen == [False] * 5 + [True, True]

    def test_up_without_an_outage_logs_nothing(self) -> None:
        """The first successful flush of a healthy sink is not news."""
        with capture_logs() as logs:
            OutageLog("results-sink", "database")(True)
        assert logs == []
