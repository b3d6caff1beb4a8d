"""The topic catalogue: every topic name radstream uses, and nowhere else.

Names are ``<RADSTREAM_TOPIC_PREFIX><suffix>`` (default prefix ``radstream.``), so several
deployments or test runs can share a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel

from schemas.audit import ApiAction, AuditRecord
from schemas.deadletter_marks import DeadLetterMark
from schemas.events import (
    DeadLetter,
    ImageArrived,
    ImageRejected,
    ImageValidated,
    InferenceCompleted,
    Priority,
    ResultExported,
    ShadowOutcome,
)
from schemas.studies import (
    SeriesCompleted,
    StudyCompleted,
    StudyResult,
    StudyTransferCompleted,
    UrgentFinding,
)

DAY_MS = 24 * 60 * 60 * 1000


class TopicKey(StrEnum):
    """The logical topics, by the suffix they are named with."""

    IMAGES_ARRIVED = "images.arrived"
    IMAGES_VALIDATED = "images.validated"
    IMAGES_REJECTED = "images.rejected"
    INFERENCE_RESULTS = "inference.results"
    AUDIT_LOG = "audit.log"
    DEADLETTER = "deadletter"
    DEADLETTER_MARKS = "deadletter.marks"
    API_ACTIONS = "api.actions"
    RESULTS_EXPORTED = "results.exported"
    INFERENCE_SHADOW = "inference.shadow"
    STUDIES_SIGNALS = "studies.signals"
    SERIES_COMPLETED = "series.completed"
    STUDIES_COMPLETED = "studies.completed"
    STUDIES_RESULTS = "studies.results"
    ALERTS_URGENT = "alerts.urgent"
    IMAGES_ARRIVED_STAT = "images.arrived.stat"
    IMAGES_VALIDATED_STAT = "images.validated.stat"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How a topic is created (partitions, retention, cleanup policy) and what it carries."""

    key: TopicKey
    partitions: int
    retention_ms: int
    cleanup_policy: Literal["delete", "compact"] = "delete"
    description: str = ""
    message_key: str = ""

    def name(self, prefix: str) -> str:
        """The topic's full name under ``prefix``."""
        return f"{prefix}{self.key.value}"

    def configs(self) -> dict[str, str]:
        """Topic-level configs as the broker takes them."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
        }


TOPIC_SPECS: dict[TopicKey, TopicSpec] = {
    spec.key: spec
    for spec in (
        TopicSpec(
            TopicKey.IMAGES_ARRIVED,
            6,
            7 * DAY_MS,
            description="arrival events",
            message_key="StudyInstanceUID when present, else the event id",
        ),
        TopicSpec(
            TopicKey.IMAGES_VALIDATED,
            6,
            7 * DAY_MS,
            description="validated images",
            message_key="StudyInstanceUID when present, else the event id",
        ),
        TopicSpec(
            TopicKey.IMAGES_REJECTED,
            3,
            30 * DAY_MS,
            description="rejections",
            message_key="StudyInstanceUID when present, else the event id",
        ),
        TopicSpec(
            TopicKey.INFERENCE_RESULTS,
            6,
            30 * DAY_MS,
            description="model results",
            message_key="StudyInstanceUID when present, else the event id",
        ),
        # The audit log is never compacted and never expires: records are evidence.
        TopicSpec(
            TopicKey.AUDIT_LOG,
            1,
            -1,
            "delete",
            description="hash-chained audit trail",
            message_key="the audit chain partition",
        ),
        TopicSpec(
            TopicKey.DEADLETTER,
            1,
            30 * DAY_MS,
            description="dead letters",
            message_key="the event id when known, else the dead letter's id",
        ),
        # Compacted, never expiring: a dead letter's latest mark (replayed/purged) must outlive
        # every process; tombstones remove the marks of deleted dead letters.
        TopicSpec(
            TopicKey.DEADLETTER_MARKS,
            1,
            -1,
            "compact",
            description="replay/purge mark per dead letter",
            message_key="the dead letter's id",
        ),
        TopicSpec(
            TopicKey.API_ACTIONS,
            3,
            7 * DAY_MS,
            description="API actions to audit",
            message_key="the acting subject",
        ),
        TopicSpec(
            TopicKey.RESULTS_EXPORTED,
            3,
            30 * DAY_MS,
            description="result reports delivered to DICOM destinations",
            message_key="StudyInstanceUID when present, else the event id",
        ),
        # Outcomes of versions in shadow, kept for comparison: only the results sink reads it.
        TopicSpec(
            TopicKey.INFERENCE_SHADOW,
            6,
            30 * DAY_MS,
            description="outcomes of model versions in shadow (never published downstream)",
            message_key="the arrival's key",
        ),
        TopicSpec(
            TopicKey.STUDIES_SIGNALS,
            6,
            7 * DAY_MS,
            description="routers' study-complete signals",
            message_key="StudyInstanceUID",
        ),
        TopicSpec(
            TopicKey.SERIES_COMPLETED,
            6,
            30 * DAY_MS,
            description="series completions",
            message_key="StudyInstanceUID",
        ),
        TopicSpec(
            TopicKey.STUDIES_COMPLETED,
            6,
            30 * DAY_MS,
            description="study completions",
            message_key="StudyInstanceUID",
        ),
        TopicSpec(
            TopicKey.STUDIES_RESULTS,
            6,
            30 * DAY_MS,
            description="study results per model",
            message_key="StudyInstanceUID",
        ),
        TopicSpec(
            TopicKey.ALERTS_URGENT,
            3,
            30 * DAY_MS,
            description="urgent findings (clinical decision support)",
            message_key="StudyInstanceUID",
        ),
        # The stat lane: stat arrivals and their validated images travel on topics of their own,
        # consumed by agents of their own, so they never queue behind a routine backlog.
        TopicSpec(
            TopicKey.IMAGES_ARRIVED_STAT,
            6,
            7 * DAY_MS,
            description="arrival events marked stat (the stat lane)",
            message_key="StudyInstanceUID when present, else the event id",
        ),
        TopicSpec(
            TopicKey.IMAGES_VALIDATED_STAT,
            6,
            7 * DAY_MS,
            description="validated images marked stat (the stat lane)",
            message_key="the arrival's key",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class StageTopics:
    """What a worker stage consumes and what it may produce (dead letters included).

    The agents subscribe to ``reads`` (``app.py``) and the broker's ACLs for the stage's
    principal are derived from both (``streams/acls.py``), so the two cannot drift apart.
    """

    reads: tuple[TopicKey, ...]
    writes: tuple[TopicKey, ...]
    # The stat lane's inputs: an agent of their own, consuming in a group of its own
    # (``<group prefix>-<stage>-stat``), so no routine backlog holds its fetches back
    # (docs/studies.md, "Priorities").
    stat_reads: tuple[TopicKey, ...] = ()
    # Topics both lanes share that the stat agent reads too, keeping only what a stat lane
    # produced (streams/lanes.py); its own group lets it see every message of them.
    stat_shared: tuple[TopicKey, ...] = ()

    @property
    def all_reads(self) -> tuple[TopicKey, ...]:
        """Both lanes' inputs (what the stage's principal may read), each once."""
        return tuple(dict.fromkeys((*self.reads, *self.stat_reads, *self.stat_shared)))


STAGE_TOPICS: dict[str, StageTopics] = {
    "validation": StageTopics(
        (TopicKey.IMAGES_ARRIVED,),
        (
            TopicKey.IMAGES_VALIDATED,
            TopicKey.IMAGES_VALIDATED_STAT,
            TopicKey.IMAGES_REJECTED,
            TopicKey.DEADLETTER,
        ),
        stat_reads=(TopicKey.IMAGES_ARRIVED_STAT,),
    ),
    "inference": StageTopics(
        (TopicKey.IMAGES_VALIDATED,),
        (
            TopicKey.INFERENCE_RESULTS,
            TopicKey.INFERENCE_SHADOW,
            TopicKey.IMAGES_REJECTED,
            TopicKey.DEADLETTER,
        ),
        stat_reads=(TopicKey.IMAGES_VALIDATED_STAT,),
    ),
    # The arrivals give every image's lifecycle its first step ("arrived"); the results stage
    # is the lifecycle's one writer.
    "results": StageTopics(
        (
            TopicKey.INFERENCE_RESULTS,
            TopicKey.IMAGES_VALIDATED,
            TopicKey.IMAGES_VALIDATED_STAT,
            TopicKey.IMAGES_REJECTED,
            TopicKey.INFERENCE_SHADOW,
            TopicKey.IMAGES_ARRIVED,
            TopicKey.IMAGES_ARRIVED_STAT,
        ),
        (TopicKey.DEADLETTER,),
    ),
    "studies": StageTopics(
        (
            TopicKey.IMAGES_ARRIVED,
            TopicKey.STUDIES_SIGNALS,
            TopicKey.INFERENCE_RESULTS,
            TopicKey.IMAGES_REJECTED,
        ),
        (
            TopicKey.SERIES_COMPLETED,
            TopicKey.STUDIES_COMPLETED,
            TopicKey.STUDIES_RESULTS,
            TopicKey.ALERTS_URGENT,
            TopicKey.DEADLETTER,
        ),
        stat_reads=(TopicKey.IMAGES_ARRIVED_STAT,),
        stat_shared=(TopicKey.INFERENCE_RESULTS, TopicKey.IMAGES_REJECTED),
    ),
    "dicom-export": StageTopics(
        (TopicKey.INFERENCE_RESULTS,),
        (TopicKey.RESULTS_EXPORTED, TopicKey.DEADLETTER),
    ),
}


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The full topic names for one prefix; build once from settings and pass down."""

    prefix: str

    def __getitem__(self, key: TopicKey) -> str:
        return TOPIC_SPECS[key].name(self.prefix)

    @property
    def arrived(self) -> str:
        return self[TopicKey.IMAGES_ARRIVED]

    @property
    def validated(self) -> str:
        return self[TopicKey.IMAGES_VALIDATED]

    @property
    def arrived_stat(self) -> str:
        return self[TopicKey.IMAGES_ARRIVED_STAT]

    @property
    def validated_stat(self) -> str:
        return self[TopicKey.IMAGES_VALIDATED_STAT]

    @property
    def rejected(self) -> str:
        return self[TopicKey.IMAGES_REJECTED]

    @property
    def results(self) -> str:
        return self[TopicKey.INFERENCE_RESULTS]

    @property
    def audit(self) -> str:
        return self[TopicKey.AUDIT_LOG]

    @property
    def deadletter(self) -> str:
        return self[TopicKey.DEADLETTER]

    @property
    def deadletter_marks(self) -> str:
        return self[TopicKey.DEADLETTER_MARKS]

    @property
    def api_actions(self) -> str:
        return self[TopicKey.API_ACTIONS]

    @property
    def results_exported(self) -> str:
        return self[TopicKey.RESULTS_EXPORTED]

    @property
    def shadow(self) -> str:
        return self[TopicKey.INFERENCE_SHADOW]

    def of(self, keys: tuple[TopicKey, ...]) -> tuple[str, ...]:
        """The full names of ``keys``, in their order."""
        return tuple(self[key] for key in keys)

    @property
    def arrival_lanes(self) -> frozenset[str]:
        """Both topics arrivals are published on, routine and stat (:func:`arrival_topic`)."""
        return frozenset((self.arrived, self.arrived_stat))

    def all(self) -> dict[TopicKey, str]:
        """Every topic's full name, by key."""
        return {key: self[key] for key in TOPIC_SPECS}


def value_models() -> dict[TopicKey, type[BaseModel]]:
    """The pydantic model of each topic's values (the contract consumers validate against)."""
    return {
        TopicKey.IMAGES_ARRIVED: ImageArrived,
        TopicKey.IMAGES_VALIDATED: ImageValidated,
        TopicKey.IMAGES_REJECTED: ImageRejected,
        TopicKey.INFERENCE_RESULTS: InferenceCompleted,
        TopicKey.AUDIT_LOG: AuditRecord,
        TopicKey.DEADLETTER: DeadLetter,
        TopicKey.DEADLETTER_MARKS: DeadLetterMark,
        TopicKey.API_ACTIONS: ApiAction,
        TopicKey.RESULTS_EXPORTED: ResultExported,
        TopicKey.INFERENCE_SHADOW: ShadowOutcome,
        TopicKey.STUDIES_SIGNALS: StudyTransferCompleted,
        TopicKey.SERIES_COMPLETED: SeriesCompleted,
        TopicKey.STUDIES_COMPLETED: StudyCompleted,
        TopicKey.STUDIES_RESULTS: StudyResult,
        TopicKey.ALERTS_URGENT: UrgentFinding,
        TopicKey.IMAGES_ARRIVED_STAT: ImageArrived,
        TopicKey.IMAGES_VALIDATED_STAT: ImageValidated,
    }


ARRIVAL_TOPICS: Final = (TopicKey.IMAGES_ARRIVED, TopicKey.IMAGES_ARRIVED_STAT)
"""Every topic :func:`arrival_topic` names: what a router or the API must be allowed to write."""


def arrival_topic(priority: Priority) -> TopicKey:
    """Where an arrival of ``priority`` is published: stat has a lane of its own."""
    return TopicKey.IMAGES_ARRIVED_STAT if priority is Priority.STAT else TopicKey.IMAGES_ARRIVED


def validated_topic(priority: Priority) -> TopicKey:
    """Where a validated image of ``priority`` goes: stat has a lane of its own."""
    return (
        TopicKey.IMAGES_VALIDATED_STAT if priority is Priority.STAT else TopicKey.IMAGES_VALIDATED
    )
