"""Create and check radstream's topics on the broker (``radstream topics ensure``).

Idempotent: a missing topic is created with its catalogue settings; an existing topic's
``cleanup.policy`` and ``retention.ms`` are read back from the broker and corrected when they
drift (the audit topic must never become compacted or expiring); a partition count lower than
the catalogue's is reported, never silently changed, because adding partitions moves keys.
This is the one place topics are created: the dead-letter tools ensure their marks topic here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from streams.kafka.clients import KafkaAdmin, build_admin
from streams.kafka.config import KafkaClientConfig
from streams.topics import TOPIC_SPECS, TopicKey, TopicNames

CHECKED_CONFIGS = ("cleanup.policy", "retention.ms")


@dataclass
class TopicReport:
    """What ``ensure_topics`` found and did for one topic."""

    name: str
    created: bool = False
    partitions: int = 0
    configs: dict[str, str] = field(default_factory=dict)
    corrected: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


async def describe_topic_configs(
    admin: KafkaAdmin,
    names: list[str],
    keys: tuple[str, ...],
    *,
    attempts: int = 50,
) -> dict[str, dict[str, str]]:
    """Read the named topic configs back from the broker.

    A topic created a moment ago can be unknown to the broker's config handler until its
    metadata propagates, so unknown topics are asked for again, briefly (bounded).
    """
    found: dict[str, dict[str, str]] = {}
    for _ in range(attempts):
        missing = [name for name in names if name not in found]
        for name, configs in (await admin.topic_configs(missing)).items():
            found[name] = {k: v for k, v in configs.items() if k in keys}
        if len(found) == len(names):
            break
        await asyncio.sleep(0.1)
    return found


async def ensure_topics(
    config: KafkaClientConfig,
    prefix: str,
    *,
    keys: tuple[TopicKey, ...] | None = None,
    partitions_override: int | None = None,
) -> list[TopicReport]:
    """Create missing topics and correct drifted configs; return one report per topic.

    Args:
        config: the Kafka connection.
        prefix: the topic prefix (``RADSTREAM_TOPIC_PREFIX``).
        keys: which topics (default: all in the catalogue).
        partitions_override: create topics with this many partitions (tests use 1 for speed).

    Raises:
        TransientError: the broker is unavailable, or refused to create a topic.
    """
    names = TopicNames(prefix)
    selected = keys or tuple(TOPIC_SPECS)
    wanted = [names[key] for key in selected]
    async with build_admin(config) as admin:
        created = await admin.create_topics(
            [
                (
                    names[key],
                    partitions_override or TOPIC_SPECS[key].partitions,
                    TOPIC_SPECS[key].configs(),
                )
                for key in selected
            ]
        )
        configs = await describe_topic_configs(admin, wanted, CHECKED_CONFIGS)
        partition_counts = {
            name: len(parts) for name, parts in (await admin.topic_partitions(wanted)).items()
        }
        reports = []
        for key in selected:
            spec, name = TOPIC_SPECS[key], names[key]
            report = TopicReport(
                name=name,
                created=name in created,
                partitions=partition_counts.get(name, 0),
                configs=dict(configs.get(name, {})),
            )
            drift = {k: v for k, v in spec.configs().items() if report.configs.get(k) != v}
            if drift:
                await admin.alter_topic_configs(name, spec.configs())
                report.corrected = drift
                report.configs.update(drift)
            expected_partitions = partitions_override or spec.partitions
            if report.partitions < expected_partitions:
                report.problems.append(
                    f"has {report.partitions} partitions, catalogue says {expected_partitions}"
                )
            reports.append(report)
        return reports


async def create_acls(
    config: KafkaClientConfig, bindings: Sequence[tuple[int, str, int, str, int]]
) -> None:
    """Create the ACLs (see :meth:`KafkaAdmin.create_acls`) with one admin client."""
    async with build_admin(config) as admin:
        await admin.create_acls(bindings)
