"""The lag monitor's windows, its gauges, its reports and the CLI table (fake snapshots)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from observability.lag import (
    GroupSnapshot,
    LagMonitor,
    LagSample,
    LagWindows,
    format_reports,
    group_matches,
    report_group,
)
from observability.metrics import LagStatus, Metrics

pytestmark = pytest.mark.requirement("RS-OBS-02")

TOPIC = "radstream.images.arrived"


def snap(group: str, at: float, committed: int, end: int, members: int = 1) -> GroupSnapshot:
    """A one-partition snapshot."""
    return GroupSnapshot(group, at, (LagSample(group, TOPIC, 0, committed, end, at),), members)


class FakeSource:
    """Hands out prepared snapshot rounds, one per call, and records the groups asked for."""

    def __init__(self, rounds: list[list[GroupSnapshot]]) -> None:
        self.rounds = rounds
        self.asked: list[Sequence[str] | None] = []

    async def snapshots(self, groups: Sequence[str] | None) -> list[GroupSnapshot]:
        """The next prepared round."""
        self.asked.append(groups)
        return self.rounds.pop(0)


class TestWindows:
    def test_old_snapshots_fall_out_of_the_window(self) -> None:
        """Snapshots older than the window before the newest are dropped."""
        windows = LagWindows(60.0)
        for at in (0.0, 30.0, 60.0, 90.0, 120.0):
            kept = windows.add(snap("g", at, 0, 0))
        assert [s.taken_at for s in kept] == [60.0, 90.0, 120.0]

    def test_two_snapshots_kept_when_interval_exceeds_window(self) -> None:
        """A poll interval longer than the window still leaves a trend of two points."""
        windows = LagWindows(10.0)
        for at in (0.0, 100.0, 200.0):
            kept = windows.add(snap("g", at, 0, 0))
        assert [s.taken_at for s in kept] == [100.0, 200.0]

    def test_forget_drops_vanished_groups(self) -> None:
        """Groups that no longer exist lose their window."""
        windows = LagWindows(60.0)
        windows.add(snap("a", 0.0, 0, 0))
        windows.add(snap("b", 0.0, 0, 0))
        windows.forget_except(["a"])
        assert (len(windows.window("a")), windows.window("b")) == (1, [])

    def test_window_must_be_positive(self) -> None:
        """A zero window is refused."""
        with pytest.raises(ValueError, match="positive"):
            LagWindows(0)


class TestMonitor:
    async def test_poll_exports_lag_and_status_gauges(self) -> None:
        """After two polls the gauges hold the lag, the estimate and a one-hot status."""
        registry = CollectorRegistry()
        source = FakeSource([[snap("rs-v", 0.0, 5, 8)], [snap("rs-v", 30.0, 5, 12)]])
        monitor = LagMonitor(source, 300.0, metrics=Metrics(registry, process_collector=False))
        await monitor.poll()
        reports = await monitor.poll()
        labels = {"group": "rs-v", "topic": TOPIC, "partition": "0"}
        assert registry.get_sample_value("radstream_consumer_lag_messages", labels) == 7
        assert math.isinf(registry.get_sample_value("radstream_consumer_lag_seconds", labels) or 0)
        stalled = {"group": "rs-v", "status": "stalled"}
        ok = {"group": "rs-v", "status": "ok"}
        assert registry.get_sample_value("radstream_consumer_group_status", stalled) == 1
        assert registry.get_sample_value("radstream_consumer_group_status", ok) == 0
        assert reports[0].verdict.status is LagStatus.STALLED

    async def test_poll_asks_for_the_configured_groups(self) -> None:
        """The monitor passes its group selection to the source."""
        source = FakeSource([[]])
        await LagMonitor(source, 60.0, groups=["a", "b"]).poll()
        assert source.asked == [["a", "b"]]

    def test_observe_without_metrics_only_reports(self) -> None:
        """The one-off CLI monitor has no registry and still judges the group."""
        monitor = LagMonitor(FakeSource([]), 60.0)
        reports = monitor.observe([snap("g", 0.0, 3, 3)])
        assert (reports[0].group, reports[0].verdict.status, reports[0].lag) == (
            "g",
            LagStatus.OK,
            0,
        )

    def test_all_groups_mode_forgets_groups_that_vanished(self) -> None:
        """With no group selection, a group missing from a poll loses its window."""
        monitor = LagMonitor(FakeSource([]), 60.0)
        monitor.observe([snap("a", 0.0, 0, 0), snap("b", 0.0, 0, 0)])
        monitor.observe([snap("a", 30.0, 0, 0)])
        assert monitor.windows.window("b") == []


class TestReports:
    def test_partitions_sorted_with_estimates(self) -> None:
        """A report lists partitions by topic and partition, with their time estimate."""
        samples = (
            LagSample("g", "t.b", 0, 0, 4, 10.0, 4.0),
            LagSample("g", "t.a", 1, 0, 0, 10.0),
        )
        report = report_group([GroupSnapshot("g", 10.0, samples, 1)])
        rows = [(p.sample.topic, p.sample.partition, p.estimate.seconds) for p in report.partitions]
        assert rows == [("t.a", 1, 0.0), ("t.b", 0, 6.0)]

    def test_table_shows_offsets_lag_estimate_and_status(self) -> None:
        """The CLI table carries committed, end, lag, seconds and the group status line."""
        reports = [report_group([snap("g", 0.0, 5, 9, members=0)])]
        table = format_reports(reports)
        row = next(line for line in table.splitlines() if TOPIC in line).split()
        assert row == [TOPIC, "0", "5", "9", "4", "inf"]
        assert "g  status=stopped (no members while lag > 0) members=0 lag=4" in table

    def test_table_marks_drain_estimates(self) -> None:
        """Drain-time estimates are marked with ~ to tell them from measured ages."""
        window = [snap("g", 0.0, 0, 20), snap("g", 10.0, 10, 30)]
        table = format_reports([report_group(window)])
        assert "~20.0" in table

    def test_empty_table_says_no_groups(self) -> None:
        """No groups is said, not left blank."""
        assert "(no consumer groups)" in format_reports([])

    def test_unknown_membership_is_a_question_mark(self) -> None:
        """Membership that could not be read prints as ?."""
        snapshot = GroupSnapshot("g", 0.0, (LagSample("g", TOPIC, 0, 1, 1, 0.0),), None)
        assert "members=?" in format_reports([report_group([snapshot])])


class TestGroupMatches:
    @pytest.mark.parametrize(
        ("group", "expected"),
        [
            ("radstream", True),
            ("radstream-validation", True),
            ("radstream-audit+inference", True),
            ("radstreamer-x", False),
            ("other-radstream-x", False),
        ],
    )
    def test_only_prefix_or_prefix_dash(self, group: str, expected: bool) -> None:
        """A group is radstream's when named <prefix> or <prefix>-..."""
        assert group_matches(group, "radstream") is expected
