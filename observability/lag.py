"""Consumer lag per group, topic and partition, judged like Burrow over a sliding window.

A fixed lag threshold says little: a busy stage always has some lag, an idle one none, and a dead
one may have very little. Like LinkedIn's Burrow, a group is judged by whether it *commits* and
whether its lag *grows* over a window of snapshots (``ObservabilitySettings.lag_window_seconds``).

Pure part (no I/O): :class:`LagSample`, :class:`GroupSnapshot`, :func:`judge_group` /
:func:`evaluate_group`, :func:`estimate_lag_seconds`, :class:`LagWindows`.

I/O part: :class:`LagReader` (one admin client and one group-less consumer of the Kafka layer,
reused between polls), :func:`collect` (one-off), and :class:`LagMonitor`, which keeps the
windows and exports ``radstream_consumer_lag_*`` and ``radstream_consumer_group_status``.

Lag in seconds is the *age of the oldest unconsumed message*: the record timestamp of the message
at the committed offset, read with one fetch per lagging partition. When that record cannot be
read (fetch timed out, reading disabled), it falls back to the *drain time*: lag divided by the
consumption rate over the window; ``inf`` when the group does not consume at all.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol

from observability.metrics import LagStatus, Metrics
from schemas.settings import Settings
from streams.audit.io.lease import is_lease_group
from streams.kafka import (
    AsyncResource,
    GroupMembership,
    KafkaAdmin,
    KafkaClientConfig,
    KafkaConsumer,
    TopicPartition,
    build_admin,
    build_consumer,
    start_all,
    stop_all,
)

# One fetch round while looking for the first record at a committed offset: short, so a
# partition holding only transaction markers is recognised by its position soon.
_HEAD_FETCH_SECONDS: Final = 0.2

# Worst last: a group's status is its worst partition's.
_SEVERITY: Final = {
    LagStatus.OK: 0,
    LagStatus.WARNING: 1,
    LagStatus.STALLED: 2,
    LagStatus.STOPPED: 3,
    LagStatus.ERROR: 4,
}


# ------------------------------------------------------------------------------------ pure part
@dataclass(frozen=True, slots=True)
class LagSample:
    """One partition's offsets for one consumer group, read at ``timestamp`` (unix seconds).

    ``committed_timestamp`` is the record timestamp (unix seconds) of the message at the
    committed offset, when it was read; it gives the age of the oldest unconsumed message.
    ``readable_from`` is the offset of the first record a ``read_committed`` reader finds at or
    after the committed offset (``end`` when there is none), when it was read: offsets between
    hold only transaction markers or aborted records, which no consumer will ever see, so they
    are not lag (a drained transactional topic ends with a commit marker past the last record).
    """

    group: str
    topic: str
    partition: int
    committed: int
    end: int
    timestamp: float
    committed_timestamp: float | None = None
    readable_from: int | None = None

    @property
    def lag(self) -> int:
        """Offsets from the first readable record to the last stable offset (never < 0)."""
        start = self.committed if self.readable_from is None else self.readable_from
        return max(self.end - max(start, self.committed), 0)


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """Every committed partition of one group at one moment, and the group's membership.

    ``members`` is ``None`` when membership could not be read (it is then not judged).
    """

    group: str
    taken_at: float
    samples: tuple[LagSample, ...]
    members: int | None = None
    state: str = ""


@dataclass(frozen=True, slots=True)
class GroupVerdict:
    """A group's status and the one-line reason for it (for the CLI and logs)."""

    status: LagStatus
    reason: str


class EstimateMethod(StrEnum):
    """How a lag in seconds was estimated."""

    NONE = "none"  # no lag
    AGE = "age"  # age of the message at the committed offset
    DRAIN = "drain"  # lag / consumption rate over the window


@dataclass(frozen=True, slots=True)
class LagEstimate:
    """Estimated time lag of one partition and how it was obtained."""

    seconds: float
    method: EstimateMethod


def partition_series(window: Sequence[GroupSnapshot]) -> dict[tuple[str, int], list[LagSample]]:
    """Each partition's samples across the window, oldest first."""
    series: dict[tuple[str, int], list[LagSample]] = {}
    for snapshot in window:
        for sample in snapshot.samples:
            series.setdefault((sample.topic, sample.partition), []).append(sample)
    return series


def _data_error(series: Sequence[LagSample]) -> GroupVerdict | None:
    """An ERROR verdict when a partition's offsets are impossible for a healthy group."""
    for before, after in itertools.pairwise(series):
        if after.committed < before.committed or after.end < before.end:
            return GroupVerdict(LagStatus.ERROR, "offsets went backwards")
    if any(sample.committed > sample.end for sample in series):
        return GroupVerdict(LagStatus.ERROR, "committed offset beyond the end of the partition")
    return None


def _judge_trend(series: Sequence[LagSample]) -> GroupVerdict:
    """OK, WARNING or STALLED for a lagging partition with at least two samples."""
    if series[-1].committed == series[0].committed:
        return GroupVerdict(LagStatus.STALLED, "commits did not move while lag > 0")
    lags = [sample.lag for sample in series]
    if 0 in lags:
        return GroupVerdict(LagStatus.OK, "caught up within the window")
    never_shrank = all(after >= before for before, after in itertools.pairwise(lags))
    if never_shrank and lags[-1] > lags[0]:
        return GroupVerdict(LagStatus.WARNING, "lag grew across the window while committing")
    return GroupVerdict(LagStatus.OK, "committing")


def _judge_partition(series: Sequence[LagSample], members: int | None) -> GroupVerdict | None:
    """One partition's status over the window, or None when it cannot be judged yet."""
    error = _data_error(series)
    if error is not None:
        return error
    if series[-1].lag == 0:
        return GroupVerdict(LagStatus.OK, "caught up")
    if members == 0:
        return GroupVerdict(LagStatus.STOPPED, "no members while lag > 0")
    if len(series) < 2:  # a trend needs two points
        return None
    return _judge_trend(series)


def judge_group(window: Sequence[GroupSnapshot]) -> GroupVerdict:
    """Judge a group over ``window`` (oldest first), Burrow-style; worst partition wins.

    - OK: lag is zero, or committed offsets advance without lag growing throughout.
    - WARNING: commits advance but lag grew in every step of the window.
    - STALLED: members exist, lag > 0, and the committed offset did not move over the window.
    - STOPPED: the group has no members while lag > 0.
    - ERROR: offsets went backwards, or there is no data to judge (no snapshot, no committed
      partition and no member, a snapshot out of order, or lag > 0 with only one point in time).

    A partition assigned to a member that never committed it is judged from where the member
    starts (the log's start, :meth:`LagReader.snapshots`): idle when the topic is empty, stalled
    when records wait and nothing is committed over the window. A group with members but no
    partition to judge (assignments not readable, a rebalance in progress) is OK.
    """
    if not window:
        return GroupVerdict(LagStatus.ERROR, "no data")
    if any(after.taken_at < before.taken_at for before, after in itertools.pairwise(window)):
        return GroupVerdict(LagStatus.ERROR, "snapshots out of order")
    latest = window[-1]
    if not latest.samples:
        if latest.members:
            # Members, but no partition whose offsets could be read: a rebalance in progress,
            # or assignments that do not decode. Not a fault of the group's own.
            return GroupVerdict(LagStatus.OK, "members joined, no partition assigned yet")
        return GroupVerdict(LagStatus.ERROR, "no committed offsets")
    current = {(s.topic, s.partition) for s in latest.samples}
    verdicts = [
        verdict
        for key, series in partition_series(window).items()
        if key in current and (verdict := _judge_partition(series, latest.members)) is not None
    ]
    if not verdicts:
        # Every lagging partition has a single point: progress cannot be told from a stall.
        return GroupVerdict(LagStatus.ERROR, "not enough data: lag > 0 seen only once")
    return max(verdicts, key=lambda verdict: _SEVERITY[verdict.status])


def evaluate_group(window: Sequence[GroupSnapshot]) -> LagStatus:
    """The group's :class:`LagStatus` over ``window`` (see :func:`judge_group`)."""
    return judge_group(window).status


def estimate_lag_seconds(series: Sequence[LagSample]) -> LagEstimate:
    """Estimated time lag of one partition from its samples over the window (oldest first).

    The age of the message at the committed offset when it was read; otherwise the drain time
    at the consumption rate observed over the window; ``inf`` when nothing was consumed.
    """
    if not series or series[-1].lag == 0:
        return LagEstimate(0.0, EstimateMethod.NONE)
    first, last = series[0], series[-1]
    if last.committed_timestamp is not None:
        # Clock skew between producer and monitor must not make an age negative.
        return LagEstimate(max(last.timestamp - last.committed_timestamp, 0.0), EstimateMethod.AGE)
    elapsed = last.timestamp - first.timestamp
    consumed = last.committed - first.committed
    if elapsed <= 0 or consumed <= 0:
        return LagEstimate(math.inf, EstimateMethod.DRAIN)
    return LagEstimate(last.lag / (consumed / elapsed), EstimateMethod.DRAIN)


class LagWindows:
    """The sliding window of snapshots per group (pure bookkeeping, no I/O).

    Snapshots older than ``window_seconds`` before the newest are dropped, but two are always
    kept, so a poll interval longer than the window still shows a trend.
    """

    def __init__(self, window_seconds: float) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.window_seconds = window_seconds
        self._windows: dict[str, list[GroupSnapshot]] = {}

    def add(self, snapshot: GroupSnapshot) -> list[GroupSnapshot]:
        """Add ``snapshot`` to its group's window and return the window (oldest first)."""
        window = self._windows.setdefault(snapshot.group, [])
        window.append(snapshot)
        cutoff = snapshot.taken_at - self.window_seconds
        while len(window) > 2 and window[1].taken_at <= cutoff:
            window.pop(0)
        return list(window)

    def window(self, group: str) -> list[GroupSnapshot]:
        """The current window of ``group`` (empty when unknown)."""
        return list(self._windows.get(group, ()))

    def forget_except(self, groups: Iterable[str]) -> None:
        """Drop the windows of groups that no longer exist."""
        keep = set(groups)
        for group in list(self._windows):
            if group not in keep:
                del self._windows[group]


@dataclass(frozen=True)
class PartitionReport:
    """One partition's latest sample and its estimated time lag."""

    sample: LagSample
    estimate: LagEstimate


@dataclass(frozen=True)
class GroupReport:
    """A group's verdict over its window and its partitions' latest lag."""

    group: str
    verdict: GroupVerdict
    partitions: tuple[PartitionReport, ...] = field(default_factory=tuple)
    members: int | None = None

    @property
    def lag(self) -> int:
        """The group's total lag in messages."""
        return sum(p.sample.lag for p in self.partitions)


def report_group(window: Sequence[GroupSnapshot]) -> GroupReport:
    """The verdict and per-partition estimates of a non-empty window."""
    latest = window[-1]
    series = partition_series(window)
    partitions = tuple(
        PartitionReport(sample, estimate_lag_seconds(series[(sample.topic, sample.partition)]))
        for sample in sorted(latest.samples, key=lambda s: (s.topic, s.partition))
    )
    return GroupReport(latest.group, judge_group(window), partitions, latest.members)


def group_matches(group: str, prefix: str) -> bool:
    """A consumer group belongs to radstream: ``<prefix>`` itself or ``<prefix>-<stages>``."""
    return group == prefix or group.startswith(prefix + "-")


def format_reports(reports: Sequence[GroupReport]) -> str:
    """A plain-text table: group/topic/partition, committed, end, lag, est. seconds, status."""
    header = (
        f"{'group / topic':<60} {'part':>4} {'committed':>10} {'end':>10} {'lag':>8} {'est. s':>9}"
    )
    lines = [header]
    for report in reports:
        members = "?" if report.members is None else str(report.members)
        lines.append(
            f"{report.group}  status={report.verdict.status.value} ({report.verdict.reason}) "
            f"members={members} lag={report.lag}"
        )
        for part in report.partitions:
            s = part.sample
            lines.append(
                f"  {s.topic:<58} {s.partition:>4} {s.committed:>10} {s.end:>10} {s.lag:>8} "
                f"{_format_seconds(part.estimate):>9}"
            )
    if not reports:
        lines.append("(no consumer groups)")
    return "\n".join(lines)


def _format_seconds(estimate: LagEstimate) -> str:
    if math.isinf(estimate.seconds):
        return "inf"
    marker = {EstimateMethod.NONE: "", EstimateMethod.AGE: "", EstimateMethod.DRAIN: "~"}
    return f"{marker[estimate.method]}{estimate.seconds:.1f}"


# ------------------------------------------------------------------------------------ I/O part
class SnapshotSource(Protocol):
    """Where the monitor gets group snapshots from (a :class:`LagReader`, or a fake in tests)."""

    async def snapshots(self, groups: Sequence[str] | None) -> list[GroupSnapshot]:
        """One snapshot per selected group."""
        ...


class LagReader(AsyncResource):
    """Reads committed offsets, end offsets and membership from the broker.

    One admin client and one group-less ``read_committed`` consumer (both from the Kafka layer,
    :mod:`streams.kafka`) are started once and reused between polls. End offsets are read
    *after* committed offsets, so a healthy group never shows a committed offset beyond the end.
    Every broker round is bounded by the configuration's ``admin_timeout_seconds`` (a broker
    that hangs must not hang the monitor) and fails as a ``TransientError``.

    Args:
        kafka: the Kafka connection.
        topic_prefix: only partitions of topics with this prefix are reported.
        group_prefix: with ``groups=None``, the groups named ``<group_prefix>[-...]``.
        read_timestamps: fetch the message at each lagging committed offset for its age.
    """

    def __init__(
        self,
        kafka: KafkaClientConfig,
        topic_prefix: str,
        *,
        group_prefix: str = "radstream",
        read_timestamps: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kafka = kafka
        self.topic_prefix = topic_prefix
        self.group_prefix = group_prefix
        self.read_timestamps = read_timestamps
        self._clock = clock
        self._admin: KafkaAdmin | None = None
        self._consumer: KafkaConsumer | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, read_timestamps: bool = True) -> LagReader:
        """The deployment's reader: its topic prefix and consumer groups."""
        return cls(
            KafkaClientConfig.from_settings(settings, client_id="radstream-lag"),
            settings.topic_prefix,
            group_prefix=settings.consumer_group_prefix,
            read_timestamps=read_timestamps,
        )

    async def start(self) -> None:
        """Connect the admin client and the offset reader; nothing stays open on failure."""
        admin = build_admin(self.kafka)
        # Small fetches: only the first record at a committed offset is wanted, for its age.
        consumer = build_consumer(self.kafka, max_partition_fetch_bytes=64 * 1024)
        await start_all(admin, consumer)
        self._admin, self._consumer = admin, consumer

    async def stop(self) -> None:
        """Close the consumer and the admin client; a no-op when not started (or stopped)."""
        consumer, admin = self._consumer, self._admin
        self._consumer = self._admin = None
        await stop_all(consumer, admin)

    def _require(self) -> tuple[KafkaAdmin, KafkaConsumer]:
        if self._admin is None or self._consumer is None:
            raise RuntimeError("LagReader.start() was not called")
        return self._admin, self._consumer

    async def list_groups(self) -> list[str]:
        """The radstream consumer groups on the cluster (named ``<group_prefix>[-...]``).

        The audit chains' lease groups are left out: they only coordinate which agent writes a
        chain, never commit an offset, and would be judged "no committed offsets" (an error)
        on a healthy system. ``--group`` can still name one.
        """
        admin, _ = self._require()
        return [
            g
            for g in await admin.list_groups()
            if group_matches(g, self.group_prefix) and not is_lease_group(g)
        ]

    async def unknown_groups(self, groups: Sequence[str]) -> list[str]:
        """Those of ``groups`` the broker does not know, in the order given.

        A group exists while it has members or committed offsets; one that never did (a typo)
        or whose offsets expired is not listed. The broker describes such a group as an empty
        ``Dead`` one rather than refusing, so its lag would be judged "no committed offsets".
        """
        admin, _ = self._require()
        known = set(await admin.list_groups())
        return [group for group in dict.fromkeys(groups) if group not in known]

    async def snapshots(self, groups: Sequence[str] | None) -> list[GroupSnapshot]:
        """One :class:`GroupSnapshot` per group (``None``: every radstream group)."""
        admin, consumer = self._require()
        names = list(groups) if groups is not None else await self.list_groups()
        if not names:
            return []
        membership: dict[str, GroupMembership] = {}
        for group in names:
            described = await admin.group_membership(group)
            if described is not None:
                membership[group] = described
        raw: dict[str, dict[TopicPartition, int]] = {}
        for group in names:
            # -1 means "no offset".
            raw[group] = {
                tp: offset
                for tp, offset in (await admin.group_offsets(group)).items()
                if tp.topic.startswith(self.topic_prefix) and offset >= 0
            }
        # A member starts a partition it never committed from the log's start (every radstream
        # consumer resets to "earliest"): that is its position until its first commit, so a
        # consumer stuck before its first commit shows lag, and an idle one none.
        unstarted = {
            group: {
                tp
                for tp in membership[group].assigned
                if tp.topic.startswith(self.topic_prefix) and tp not in raw[group]
            }
            for group in names
            if group in membership
        }
        # Offsets of deleted topics linger in the group, and end offsets of a missing topic would
        # block: keep only topics that exist, asking about these few topics only (listing every
        # topic of a busy cluster every probe cost ~50 ms of CPU, bench/README.md).
        wanted = {tp.topic for o in raw.values() for tp in o}
        wanted |= {tp.topic for tps in unstarted.values() for tp in tps}
        topics = set(await admin.topic_partitions(wanted))
        starts = await consumer.beginning_offsets(
            sorted({tp for tps in unstarted.values() for tp in tps if tp.topic in topics})
        )
        for group, tps in unstarted.items():
            raw[group].update({tp: starts[tp] for tp in tps if tp in starts})
        committed = {
            group: {tp: offset for tp, offset in offsets.items() if tp.topic in topics}
            for group, offsets in raw.items()
        }
        partitions = sorted({tp for offsets in committed.values() for tp in offsets})
        ends = await consumer.end_offsets(partitions)
        now = self._clock()
        heads = await self._committed_heads(committed, ends)
        result = []
        for group in names:
            described = membership.get(group)
            members, state = (described.members, described.state) if described else (None, "")
            samples = tuple(
                LagSample(
                    group=group,
                    topic=tp.topic,
                    partition=tp.partition,
                    committed=offset,
                    end=ends[tp],
                    timestamp=now,
                    committed_timestamp=heads[tp, offset].timestamp
                    if (tp, offset) in heads
                    else None,
                    readable_from=heads[tp, offset].offset if (tp, offset) in heads else None,
                )
                for tp, offset in sorted(committed[group].items())
                if tp in ends
            )
            result.append(GroupSnapshot(group, now, samples, members, state))
        return result

    async def _committed_heads(
        self,
        committed: Mapping[str, Mapping[TopicPartition, int]],
        ends: Mapping[TopicPartition, int],
    ) -> dict[tuple[TopicPartition, int], _Head]:
        """The first readable record at or after each lagging committed offset."""
        wanted = {
            (tp, offset)
            for offsets in committed.values()
            for tp, offset in offsets.items()
            if tp in ends and ends[tp] > offset
        }
        if not self.read_timestamps or not wanted:
            return {}
        found: dict[tuple[TopicPartition, int], _Head] = {}
        # Several groups can sit at different offsets of one partition: one fetch per position.
        for offset_round in _rounds(wanted):
            found.update(await self._fetch_heads(offset_round, ends))
        return found

    async def _fetch_heads(
        self, positions: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
    ) -> dict[tuple[TopicPartition, int], _Head]:
        """Seek each partition to its position and take the first readable record.

        A partition whose reader reaches the last stable offset without a record holds only
        transaction markers (or aborted records) there: its head is the end, with no age.
        """
        _, consumer = self._require()
        consumer.assign(positions)
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        found: dict[tuple[TopicPartition, int], _Head] = {}
        loop = asyncio.get_running_loop()
        # Bounded: a fetch that finds nothing (compacted away) must not hold the poll; such
        # partitions fall back to the drain-time estimate.
        deadline = loop.time() + min(self.kafka.admin_timeout_seconds, 2.0)
        try:
            while len(found) < len(positions) and (remaining := deadline - loop.time()) > 0:
                batch = await consumer.getmany(
                    timeout_ms=max(int(min(remaining, _HEAD_FETCH_SECONDS) * 1000), 1)
                )
                for tp, records in batch.items():
                    key = (tp, positions[tp])
                    if key in found or not records:
                        continue
                    consumer.pause(tp)
                    first = records[0]
                    age = first.timestamp / 1000.0 if first.timestamp >= 0 else None
                    found[key] = _Head(first.offset, age)
                for tp, offset in positions.items():
                    if (tp, offset) not in found and await consumer.position(tp) >= ends[tp]:
                        consumer.pause(tp)
                        found[tp, offset] = _Head(ends[tp], None)
        finally:
            consumer.unsubscribe()
        return found


@dataclass(frozen=True, slots=True)
class _Head:
    """The first record a ``read_committed`` reader finds from a committed offset on."""

    offset: int
    timestamp: float | None


def _rounds(wanted: Iterable[tuple[TopicPartition, int]]) -> list[dict[TopicPartition, int]]:
    """Split (partition, offset) pairs into rounds with each partition at most once."""
    rounds: list[dict[TopicPartition, int]] = []
    for tp, offset in sorted(wanted, key=lambda item: (item[0].topic, item[0].partition, item[1])):
        for positions in rounds:
            if tp not in positions:
                positions[tp] = offset
                break
        else:
            rounds.append({tp: offset})
    return rounds


async def collect(
    kafka: KafkaClientConfig,
    groups: Sequence[str] | None,
    topic_prefix: str,
    *,
    group_prefix: str = "radstream",
    read_timestamps: bool = True,
) -> list[LagSample]:
    """Every committed partition's lag, once (``groups=None``: the ``<group_prefix>-*`` groups)."""
    async with LagReader(
        kafka, topic_prefix, group_prefix=group_prefix, read_timestamps=read_timestamps
    ) as reader:
        snapshots = await reader.snapshots(groups)
    return [sample for snapshot in snapshots for sample in snapshot.samples]


class LagMonitor:
    """Polls snapshots, keeps each group's window, judges it and exports the gauges.

    Args:
        source: where snapshots come from (a started :class:`LagReader`).
        window_seconds: the Burrow window (``settings.observability.lag_window_seconds``).
        metrics: gauges to set; ``None`` for the one-off CLI table.
        groups: the groups to watch; ``None`` for every radstream group the source lists.
    """

    def __init__(
        self,
        source: SnapshotSource,
        window_seconds: float,
        *,
        metrics: Metrics | None = None,
        groups: Sequence[str] | None = None,
    ) -> None:
        self.source = source
        self.windows = LagWindows(window_seconds)
        self.metrics = metrics
        self.groups = list(groups) if groups is not None else None

    async def poll(self) -> list[GroupReport]:
        """Take one snapshot of every group, judge the windows, export, and report."""
        return self.observe(await self.source.snapshots(self.groups))

    def observe(self, snapshots: Sequence[GroupSnapshot]) -> list[GroupReport]:
        """Add ``snapshots`` to the windows and export each group's lag and status."""
        if self.groups is None:
            self.windows.forget_except(s.group for s in snapshots)
        reports = [report_group(self.windows.add(snapshot)) for snapshot in snapshots]
        if self.metrics is not None:
            for report in reports:
                for part in report.partitions:
                    s = part.sample
                    self.metrics.set_consumer_lag(
                        s.group, s.topic, s.partition, s.lag, part.estimate.seconds
                    )
                self.metrics.set_consumer_group_status(report.group, report.verdict.status)
        return reports


__all__ = [
    "EstimateMethod",
    "GroupReport",
    "GroupSnapshot",
    "GroupVerdict",
    "LagEstimate",
    "LagMonitor",
    "LagReader",
    "LagSample",
    "LagWindows",
    "PartitionReport",
    "SnapshotSource",
    "collect",
    "estimate_lag_seconds",
    "evaluate_group",
    "format_reports",
    "group_matches",
    "judge_group",
    "partition_series",
    "report_group",
]
