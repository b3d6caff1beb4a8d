"""Create and check radstream's topics on the broker (``radstream topics ensure``).

Idempotent: a missing topic is created with its catalogue settings; an existing topic's
``cleanup.policy`` and ``retention.ms`` are read back from the broker and corrected when they
drift (the audit topic must never become compacted or expiring); a partition count lower than
the catalogue's is reported, never silently changed, because adding partitions moves keys.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.topics import TOPIC_SPECS, TopicKey, TopicNames

_TOPIC_ALREADY_EXISTS = 36


@dataclass
class TopicReport:
    """What ``ensure_topics`` found and did for one topic."""

    name: str
    created: bool = False
    partitions: int = 0
    configs: dict[str, str] = field(default_factory=dict)
    corrected: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One human-readable line for the CLI."""
        state = "created" if self.created else "exists"
        if self.corrected:
            state += f", corrected {sorted(self.corrected)}"
        cfg = " ".join(f"{k}={v}" for k, v in sorted(self.configs.items()))
        extra = f"  PROBLEM: {'; '.join(self.problems)}" if self.problems else ""
        return f"{self.name:<40} {state:<10} partitions={self.partitions} {cfg}{extra}"


async def describe_topic_configs(
    admin: AIOKafkaAdminClient,
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
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in missing]
        )
        for response in responses:
            for error, _msg, _rtype, resource_name, entries in response.resources:
                if error == 0:
                    found[resource_name] = {e[0]: e[1] for e in entries if e[0] in keys}
        if len(found) == len(names):
            break
        await asyncio.sleep(0.1)
    return found


async def ensure_topics(
    bootstrap: str,
    prefix: str,
    *,
    keys: tuple[TopicKey, ...] | None = None,
    partitions_override: int | None = None,
) -> list[TopicReport]:
    """Create missing topics and correct drifted configs; return one report per topic.

    Args:
        bootstrap: Kafka bootstrap servers.
        prefix: the topic prefix (``RADSTREAM_TOPIC_PREFIX``).
        keys: which topics (default: all in the catalogue).
        partitions_override: create topics with this many partitions (tests use 1 for speed).
    """
    names = TopicNames(prefix)
    selected = keys or tuple(TOPIC_SPECS)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="radstream-topics")
    await admin.start()
    try:
        new_topics = [
            NewTopic(
                names[key],
                partitions_override or TOPIC_SPECS[key].partitions,
                1,
                topic_configs=TOPIC_SPECS[key].configs(),
            )
            for key in selected
        ]
        response = await admin.create_topics(new_topics)
        created = {topic for topic, code, *_rest in response.topic_errors if code == 0}
        failures = [
            f"{topic}: {message}"
            for topic, code, message in response.topic_errors
            if code not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise RuntimeError("topic creation failed: " + "; ".join(failures))
        wanted_keys = ("cleanup.policy", "retention.ms")
        configs = await describe_topic_configs(admin, [names[k] for k in selected], wanted_keys)
        described: list[dict[str, Any]] = await admin.describe_topics([names[k] for k in selected])
        partition_counts = {d["topic"]: len(d["partitions"]) for d in described}
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
                await admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, name, configs=spec.configs())]
                )
                report.corrected = drift
                report.configs.update(drift)
            expected_partitions = partitions_override or spec.partitions
            if report.partitions < expected_partitions:
                report.problems.append(
                    f"has {report.partitions} partitions, catalogue says {expected_partitions}"
                )
            reports.append(report)
        return reports
    finally:
        await admin.close()
