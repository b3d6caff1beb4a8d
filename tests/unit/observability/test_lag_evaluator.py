"""Burrow-style judgement of consumer groups over synthetic windows of snapshots."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from observability.lag import GroupSnapshot, LagSample, evaluate_group, judge_group
from observability.metrics import LagStatus

pytestmark = pytest.mark.requirement("RS-OBS-02")

GROUP = "radstream-validation"
TOPIC = "radstream.images.arrived"


def snap(
    at: float,
    offsets: Sequence[tuple[int, int]],
    *,
    members: int | None = 1,
    group: str = GROUP,
) -> GroupSnapshot:
    """A snapshot at ``at`` with (committed, end) for partitions 0, 1, ..."""
    samples = tuple(
        LagSample(group, TOPIC, partition, committed, end, at)
        for partition, (committed, end) in enumerate(offsets)
    )
    return GroupSnapshot(group, at, samples, members, "Stable" if members else "Empty")


def window(*steps: Sequence[tuple[int, int]], members: int | None = 1) -> list[GroupSnapshot]:
    """Snapshots 30 s apart, one per step."""
    return [snap(30.0 * i, offsets, members=members) for i, offsets in enumerate(steps)]


class TestOk:
    def test_zero_lag_is_ok(self) -> None:
        """A group with no lag and no commits (idle) is OK."""
        assert evaluate_group(window([(10, 10)], [(10, 10)], [(10, 10)])) is LagStatus.OK

    def test_single_snapshot_without_lag_is_ok(self) -> None:
        """One snapshot suffices when the group is caught up."""
        assert evaluate_group(window([(5, 5)])) is LagStatus.OK

    def test_advancing_commits_with_steady_lag_are_ok(self) -> None:
        """A busy group that commits and does not fall behind is OK despite lag > 0."""
        assert evaluate_group(window([(0, 50)], [(40, 90)], [(80, 130)])) is LagStatus.OK

    def test_draining_lag_is_ok(self) -> None:
        """Lag shrinking while commits advance is OK."""
        assert evaluate_group(window([(0, 100)], [(50, 120)], [(110, 130)])) is LagStatus.OK

    def test_lag_zero_within_window_is_ok(self) -> None:
        """A group that caught up at some point in the window is OK even if lag grew since."""
        assert evaluate_group(window([(10, 10)], [(12, 15)], [(14, 20)])) is LagStatus.OK

    def test_empty_group_without_lag_is_ok(self) -> None:
        """No members is fine when there is no work."""
        assert evaluate_group(window([(7, 7)], [(7, 7)], members=0)) is LagStatus.OK

    def test_members_without_a_partition_to_judge_is_ok(self) -> None:
        """Members whose assignments could not be read (a rebalance): not the group's fault.
        (Assigned partitions never committed are judged from the log start: test_lag_reader.)"""
        verdict = judge_group([GroupSnapshot(GROUP, 0.0, (), 1), GroupSnapshot(GROUP, 30.0, (), 2)])
        assert verdict.status is LagStatus.OK
        assert verdict.reason == "members joined, no partition assigned yet"


class TestWarning:
    def test_lag_growing_every_step_while_committing_is_warning(self) -> None:
        """Commits advance but lag grows across the whole window: the group falls behind."""
        verdict = judge_group(window([(0, 10)], [(5, 20)], [(10, 30)]))
        assert verdict.status is LagStatus.WARNING

    def test_lag_that_dipped_once_is_not_warning(self) -> None:
        """Growth must hold in every step, as Burrow requires, or it is noise."""
        assert evaluate_group(window([(0, 10)], [(9, 15)], [(12, 30)])) is LagStatus.OK


class TestStalled:
    def test_commits_not_moving_with_lag_is_stalled(self) -> None:
        """Members exist, lag > 0, committed offset frozen over the window: stalled."""
        assert evaluate_group(window([(5, 8)], [(5, 12)], [(5, 20)])) is LagStatus.STALLED

    def test_one_stalled_partition_makes_the_group_stalled(self) -> None:
        """The worst partition decides the group's status."""
        steps = ([(0, 0), (3, 9)], [(0, 0), (3, 9)])
        assert evaluate_group(window(*steps)) is LagStatus.STALLED


class TestStopped:
    def test_no_members_with_lag_is_stopped(self) -> None:
        """Nobody consumes while work waits: stopped."""
        assert evaluate_group(window([(5, 5)], [(5, 9)], members=0)) is LagStatus.STOPPED

    def test_no_members_with_lag_is_stopped_from_one_snapshot(self) -> None:
        """An empty group with lag needs no trend to be judged stopped."""
        assert evaluate_group(window([(5, 9)], members=0)) is LagStatus.STOPPED

    def test_stopped_outranks_stalled(self) -> None:
        """Severity order puts stopped above stalled."""
        assert evaluate_group(window([(5, 9)], [(5, 9)], members=0)) is LagStatus.STOPPED


class TestError:
    def test_empty_window_is_error(self) -> None:
        """No data is an error, not OK."""
        assert evaluate_group([]) is LagStatus.ERROR

    @pytest.mark.parametrize("members", [0, None])
    def test_group_without_committed_offsets_or_members_is_error(self, members: int | None) -> None:
        """No committed partition and no (known) member: nothing to judge."""
        assert evaluate_group([GroupSnapshot(GROUP, 0.0, (), members)]) is LagStatus.ERROR

    def test_committed_offset_going_backwards_is_error(self) -> None:
        """An offset reset (committed moved back) is an error."""
        assert evaluate_group(window([(9, 10)], [(4, 10)])) is LagStatus.ERROR

    def test_end_offset_going_backwards_is_error(self) -> None:
        """A recreated topic (end moved back) is an error."""
        assert evaluate_group(window([(3, 10)], [(3, 6)])) is LagStatus.ERROR

    def test_committed_beyond_end_is_error(self) -> None:
        """A committed offset past the end means truncated or recreated data."""
        assert evaluate_group(window([(12, 10)])) is LagStatus.ERROR

    def test_snapshots_out_of_order_is_error(self) -> None:
        """A window whose times go backwards is corrupt."""
        later, earlier = snap(60.0, [(1, 1)]), snap(0.0, [(1, 1)])
        assert evaluate_group([later, earlier]) is LagStatus.ERROR

    def test_lag_seen_once_is_error_not_enough_data(self) -> None:
        """A single snapshot with lag and members cannot tell progress from a stall."""
        verdict = judge_group(window([(3, 9)]))
        assert (verdict.status, verdict.reason) == (
            LagStatus.ERROR,
            "not enough data: lag > 0 seen only once",
        )

    def test_unknown_membership_does_not_claim_stopped(self) -> None:
        """Without membership data the trend decides (here: stalled, not stopped)."""
        assert evaluate_group(window([(5, 9)], [(5, 9)], members=None)) is LagStatus.STALLED


class TestPartitions:
    def test_new_partition_seen_once_is_not_judged(self) -> None:
        """A partition that first appears in the last snapshot does not turn the group to error."""
        first = snap(0.0, [(0, 10)])
        second = GroupSnapshot(
            GROUP,
            30.0,
            (
                LagSample(GROUP, TOPIC, 0, 20, 25, 30.0),
                LagSample(GROUP, TOPIC, 1, 0, 4, 30.0),
            ),
            1,
        )
        assert evaluate_group([first, second]) is LagStatus.OK

    def test_partition_gone_from_latest_snapshot_is_ignored(self) -> None:
        """Only partitions the group still commits are judged."""
        first = snap(0.0, [(0, 0), (3, 9)])
        second = snap(30.0, [(0, 0)])
        assert evaluate_group([first, second]) is LagStatus.OK
