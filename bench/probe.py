"""Publishing the workload and watching it finish: the database and the audit group's offsets.

An arrival is *finished* when PostgreSQL holds a terminal lifecycle row for it (``stored``,
``rejected`` or ``failed``); a phase is *done* when every arrival of the phase is finished and
the audit agent's committed offsets have reached the end of every audited topic (so every
message the phase produced is on the hash chain). Both are polled; the poll interval bounds the
error of the measured end time.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench.workload import ArrivalFactory, WorkItem
from schemas.correlation import new_correlation_id, with_correlation_header
from schemas.errors import TransientError
from schemas.events import ImageArrived
from streams.audit.records import AUDITED_TOPICS
from streams.kafka import (
    KafkaAdmin,
    KafkaClientConfig,
    KafkaConsumer,
    KafkaPublisher,
    Outgoing,
    TopicPartition,
    build_admin,
    build_consumer,
)
from streams.topics import TOPIC_SPECS, TopicNames, arrival_topic

TERMINAL = ["stored", "rejected", "failed"]


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    # Nearest rank: the smallest value with at least ``share`` of the samples at or below it
    # (rounded first so 0.95 * 100 = 95.00000000000001 does not become rank 96).
    rank = max(1, min(len(ordered), math.ceil(round(share * len(ordered), 9))))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50/p95/p99/max in milliseconds and the sample count."""
    return {
        "count": len(seconds),
        "p50_ms": round(1000 * percentile(seconds, 0.50), 1),
        "p95_ms": round(1000 * percentile(seconds, 0.95), 1),
        "p99_ms": round(1000 * percentile(seconds, 0.99), 1),
        "max_ms": round(1000 * max(seconds), 1) if seconds else float("nan"),
    }


# The hops of an image's path to its stored result, as (name, from column, to column).
HOPS = (
    ("arrival_to_validated", "occurred_at", "validated_at"),
    ("validated_to_inferred", "validated_at", "completed_at"),
    ("inferred_to_stored", "completed_at", "stored_at"),
)


def latency_by_hop(rows: Sequence[Mapping[str, datetime | None]]) -> dict[str, Any]:
    """:func:`latency_summary` of each hop in :data:`HOPS`, over the rows that have both times.

    Which hop holds the tail says which stage to look at: validation (with the arrival's
    consumption), inference (with the validated event's), or the results sink's write.
    """
    summaries: dict[str, Any] = {}
    for name, start, end in HOPS:
        seconds: list[float] = []
        for row in rows:
            began, ended = row[start], row[end]
            if began is not None and ended is not None:
                seconds.append((ended - began).total_seconds())
        summaries[name] = latency_summary(seconds)
    return summaries


def outgoing_arrival(event: ImageArrived) -> Outgoing:
    """The arrival message as a router publishes it (key, correlation id header)."""
    headers = tuple(with_correlation_header((), new_correlation_id()))
    return Outgoing(arrival_topic(event.priority), event.message_key(), event, headers)


@dataclass
class Published:
    """What a phase published: the event ids and when publishing started and ended (wall)."""

    event_ids: list[uuid.UUID]
    started_at: float
    finished_at: float


async def publish_all(
    publisher: KafkaPublisher, factory: ArrivalFactory, items: Sequence[WorkItem]
) -> Published:
    """Saturation: every arrival in one delivery, as fast as the producer sends."""
    started = time.time()
    events = [factory.fresh(item) for item in items]
    await publisher.deliver([outgoing_arrival(event) for event in events])
    return Published([e.event_id for e in events], started, time.time())


async def publish_paced(
    publisher: KafkaPublisher,
    factory: ArrivalFactory,
    items: Sequence[WorkItem],
    rate: float,
    *,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> Published:
    """A steady ``rate`` arrivals per second, each event occurring when it is sent.

    ``clock`` (default: the event loop's monotonic clock) and ``sleep`` are injectable so the
    pacing can be tested without measuring real time.
    """
    clock = clock or asyncio.get_running_loop().time
    begin, started = clock(), time.time()
    ids = []
    for index, item in enumerate(items):
        delay = begin + index / rate - clock()
        if delay > 0:
            await sleep(delay)
        event = factory.fresh(item)
        await publisher.deliver([outgoing_arrival(event)])
        ids.append(event.event_id)
    return Published(ids, started, time.time())


async def delete_run_topics(bootstrap: str, topic_prefix: str) -> bool:
    """Delete a run's topics (every catalogue topic under ``topic_prefix``); True when done.

    A shared broker's metadata grows with every topic left behind, and so does the cost of
    anything that lists all topics.
    """
    try:
        async with build_admin(_config(bootstrap)) as admin:
            await admin.delete_topics(TopicNames(topic_prefix).all().values())
    except TransientError:
        return False
    return True


GROUP_OFFSETS_TOPIC = "__consumer_offsets"


def offsets_partition(group: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition that holds ``group``'s commits (Kafka's rule:
    ``Utils.abs(group.hashCode()) % partitions``, Java's ``String.hashCode``)."""
    value = 0
    for unit in group.encode("utf-16-be").hex(" ", 2).split():
        value = (31 * value + int(unit, 16)) & 0xFFFFFFFF
    signed = value - (1 << 32) if value >= 1 << 31 else value
    return (0 if signed == -(1 << 31) else abs(signed)) % partitions


def _config(bootstrap: str) -> KafkaClientConfig:
    return KafkaClientConfig(bootstrap, client_id="radstream-bench")


class Probe:
    """Reads the run's database and the audit group's progress."""

    def __init__(self, bootstrap: str, database_url: str, topic_prefix: str, audit_group: str):
        self._bootstrap = bootstrap
        self._database_url = database_url
        self._topics = TopicNames(topic_prefix)
        self._audit_group = audit_group
        self._db: asyncpg.Connection | None = None
        self._admin: KafkaAdmin | None = None
        self._offsets: KafkaConsumer | None = None

    async def start(self) -> None:
        """Connect to PostgreSQL and the broker."""
        self._db = await asyncpg.connect(self._database_url)
        self._admin = build_admin(_config(self._bootstrap))
        await self._admin.start()
        self._offsets = build_consumer(_config(self._bootstrap))
        await self._offsets.start()

    async def close(self) -> None:
        """Disconnect."""
        if self._offsets is not None:
            await self._offsets.stop()
        if self._admin is not None:
            await self._admin.stop()
        if self._db is not None:
            await self._db.close()

    def _require(self) -> tuple[asyncpg.Connection, KafkaAdmin, KafkaConsumer]:
        if self._db is None or self._admin is None or self._offsets is None:
            raise RuntimeError("Probe.start() was not called")
        return self._db, self._admin, self._offsets

    def audited_partitions(self) -> list[TopicPartition]:
        """Every partition the audit agent consumes."""
        return [
            TopicPartition(self._topics[key], partition)
            for key in AUDITED_TOPICS
            for partition in range(TOPIC_SPECS[key].partitions)
        ]

    async def finished(self, event_ids: Sequence[uuid.UUID]) -> int:
        """How many of ``event_ids`` reached a terminal lifecycle state."""
        db, _, _ = self._require()
        count: int = await db.fetchval(
            "SELECT count(DISTINCT event_id) FROM image_events"
            " WHERE event_id = ANY($1::uuid[]) AND state = ANY($2::text[])",
            list(event_ids),
            TERMINAL,
        )
        return count

    async def audit_lag(self) -> int:
        """Messages on the audited topics the audit agent has not committed yet."""
        _, admin, offsets = self._require()
        partitions = self.audited_partitions()
        ends = await offsets.end_offsets(partitions)
        committed = await admin.group_offsets(self._audit_group)
        return sum(max(0, end - max(committed.get(tp, 0), 0)) for tp, end in ends.items())

    async def audited_messages(self) -> int:
        """Messages on every audited topic so far (sum of end offsets; none is transactional)."""
        _, _, offsets = self._require()
        ends = await offsets.end_offsets(self.audited_partitions())
        return int(sum(ends.values()))

    async def kafka_messages(self, group_prefix: str) -> dict[str, int]:
        """Offsets used so far on each of the run's topics (records and transaction markers),
        and on the ``__consumer_offsets`` partitions of the run's groups (``offset_commits``:
        one record per partition committed, plus markers of transactional commits; other
        groups of the broker that hash to the same partitions count too, so an upper bound)."""
        _, admin, offsets = self._require()
        partitions = [
            TopicPartition(self._topics[key], partition)
            for key, spec in TOPIC_SPECS.items()
            for partition in range(spec.partitions)
        ]
        ends = await offsets.end_offsets(partitions)
        counts = {key.value: 0 for key in TOPIC_SPECS}
        names = {self._topics[key]: key.value for key in TOPIC_SPECS}
        for tp, end in ends.items():
            counts[names[tp.topic]] += end
        groups = [g for g in await admin.list_groups() if g.startswith(group_prefix)]
        total = len(
            (await admin.topic_partitions([GROUP_OFFSETS_TOPIC])).get(GROUP_OFFSETS_TOPIC, [])
        )
        commits = 0
        if total and groups:
            wanted = sorted({offsets_partition(group, total) for group in groups})
            tps = [TopicPartition(GROUP_OFFSETS_TOPIC, p) for p in wanted]
            commits = int(sum((await offsets.end_offsets(tps)).values()))
        counts["offset_commits"] = commits
        return counts

    async def audit_end_offset(self) -> int:
        """End offset of the audit topic (records + checkpoints + transaction markers)."""
        _, _, offsets = self._require()
        tp = TopicPartition(self._topics.audit, 0)
        return (await offsets.end_offsets([tp]))[tp]

    async def wait_done(
        self,
        event_ids: Sequence[uuid.UUID],
        within: float,
        *,
        poll: float = 0.1,
        alive: Any = None,
    ) -> float:
        """Wait until every arrival finished and the audit caught up; the wall time it did.

        Raises:
            TimeoutError: not done ``within`` seconds (the message says how far it got).
            RuntimeError: ``alive()`` returned False (a worker died).
        """
        deadline = time.monotonic() + within
        finished = lag = -1
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise RuntimeError("a worker process exited during the phase")
            finished = await self.finished(event_ids)
            if finished >= len(event_ids):
                lag = await self.audit_lag()
                if lag == 0:
                    return time.time()
            await asyncio.sleep(poll)
        raise TimeoutError(
            f"{finished}/{len(event_ids)} arrivals finished, audit lag {lag} after {within:.0f} s"
        )

    async def outcomes(self, event_ids: Sequence[uuid.UUID]) -> dict[str, Any]:
        """Stored/rejected counts, result rows, latencies and the last commit time of a phase."""
        db, _, _ = self._require()
        ids = list(event_ids)
        # The validation step's time (the event's own ``at``) splits the path into its hops.
        rows = await db.fetch(
            "SELECT r.occurred_at, v.at AS validated_at, r.completed_at, r.stored_at"
            " FROM inference_results r LEFT JOIN LATERAL (SELECT min(e.at) AS at"
            " FROM image_events e WHERE e.event_id = r.event_id AND e.state = 'validated') v"
            " ON true WHERE r.event_id = ANY($1::uuid[])",
            ids,
        )
        states = await db.fetch(
            "SELECT state, count(DISTINCT event_id) AS n FROM image_events"
            " WHERE event_id = ANY($1::uuid[]) AND state = ANY($2::text[]) GROUP BY state",
            ids,
            TERMINAL,
        )
        last: datetime | None = await db.fetchval(
            "SELECT max(recorded_at) FROM image_events WHERE event_id = ANY($1::uuid[])", ids
        )
        latencies = [(r["stored_at"] - r["occurred_at"]).total_seconds() for r in rows]
        return {
            "by_state": {r["state"]: r["n"] for r in states},
            "result_rows": len(rows),
            "latency": latency_summary(latencies),
            "latency_by_hop": latency_by_hop(rows),
            "last_row_at": last.timestamp() if last is not None else None,
        }
