"""Study-level contracts: completeness, study results and urgent findings.

Radiologists think in studies and series, not images. These events say when a series or a
study is complete (``SeriesCompleted``, ``StudyCompleted``), what a model found over a whole
study (``StudyResult``) and which finding must be seen now (``UrgentFinding``). The router may
also declare a study fully sent (``StudyTransferCompleted``), one of the three completion rules.

Like every event, they carry UIDs, model names, scores and counts only — never a patient name,
ID or birth date — and forbid unknown fields.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import (
    Event,
    ModelRef,
    Priority,
    Pseudonym,
    Uid,
    utc_now,
)

# Namespace of the deterministic ids of completions, study results and urgent findings: the
# same fact computed twice (a redelivered message, a restarted worker) gets the same id, so
# every consumer can recognise the repetition.
STUDY_EVENT_NAMESPACE = uuid.UUID("6f1d8c8e-4a8b-5c3e-9d1e-2b7a53c0a915")


class CompletionRule(StrEnum):
    """Which of the completion rules completed a series or a study (the first one wins)."""

    EXPECTED_COUNT = "expected_count"
    """The sender said how many instances to expect and that many distinct ones arrived."""
    ROUTER_SIGNAL = "router_signal"
    """The router published ``StudyTransferCompleted`` for the study."""
    QUIET_PERIOD = "quiet_period"
    """No new instance arrived for the modality's quiet period."""


class StudyStatus(StrEnum):
    """Where a study is, as ``GET /studies/{uid}`` reports it."""

    RECEIVING = "receiving"
    COMPLETE = "complete"
    ANALYSED = "analysed"
    FAILED = "failed"


class StudyTransferCompleted(Event):
    """The router has sent every instance of a study (topic ``studies.signals``).

    Optional counts let the router say how many instances it sent; without them the signal
    alone completes the study.
    """

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: AwareDatetime = Field(default_factory=utc_now)
    source: Pseudonym = Field(description="router name or DICOM AE title")
    study_instance_uid: Uid
    instance_count: int | None = Field(None, ge=1, description="instances the router sent")


class SeriesCompleted(Event):
    """A series is complete (topic ``series.completed``); ``generation`` counts reopenings."""

    completion_id: uuid.UUID
    study_instance_uid: Uid
    series_instance_uid: Uid
    modality: str | None = None
    rule: CompletionRule
    generation: int = Field(ge=1)
    instance_count: int = Field(ge=1)
    expected_instances: int | None = Field(None, ge=1)
    first_arrival_at: AwareDatetime
    last_arrival_at: AwareDatetime
    completed_at: AwareDatetime


class StudyCompleted(Event):
    """A study is complete (topic ``studies.completed``); ``generation`` counts reopenings."""

    completion_id: uuid.UUID
    study_instance_uid: Uid
    rule: CompletionRule
    generation: int = Field(ge=1)
    series_count: int = Field(ge=1)
    instance_count: int = Field(ge=1)
    priority: Priority = Priority.ROUTINE
    first_arrival_at: AwareDatetime
    last_arrival_at: AwareDatetime
    completed_at: AwareDatetime


class InstanceFailure(BaseModel):
    """An image of the study that gave no result for the model, and why (a stable code)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    sop_instance_uid: Uid | None = None
    error_code: str = Field(max_length=64)


class TopInstance(BaseModel):
    """One of the highest-scoring images of a study for a model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    result_id: uuid.UUID
    sop_instance_uid: Uid | None = None
    series_instance_uid: Uid | None = None
    score: float
    decision: str = Field(max_length=64)


class StudyResult(Event):
    """What one model found over a completed study (topic ``studies.results``).

    ``finding`` is the score label the study is summarised by (the label of the highest score
    over every image); ``max_score`` its score. Provenance: the exact model (version and
    weights digest), how many instances were analysed, and which failed and why.
    """

    model_config = ConfigDict(protected_namespaces=())

    study_result_id: uuid.UUID
    study_instance_uid: Uid
    generation: int = Field(ge=1)
    model: ModelRef
    priority: Priority = Priority.ROUTINE
    instance_count: int = Field(ge=0, description="instances of the completed study")
    analysed_count: int = Field(ge=0, description="instances the model gave a result for")
    positive_count: int = Field(ge=0, description="analysed instances decided as a finding")
    finding: str = Field(max_length=64)
    max_score: float
    decisions: dict[str, int] = Field(description="analysed instances per decision")
    top_instances: tuple[TopInstance, ...] = Field(max_length=5)
    failures: tuple[InstanceFailure, ...] = Field((), max_length=1000)
    failures_truncated: int = Field(0, ge=0, description="failures beyond those listed")
    study_completed_at: AwareDatetime
    aggregated_at: AwareDatetime = Field(default_factory=utc_now)


class UrgentFinding(Event):
    """A finding a clinical decision support rule calls urgent (topic ``alerts.urgent``).

    At most one per study and finding: ``alert_id`` is derived from both. PHI-free: the study
    UID, the model, the finding, its score and the rule that fired.
    """

    model_config = ConfigDict(protected_namespaces=())

    alert_id: uuid.UUID
    study_instance_uid: Uid
    model_name: str = Field(max_length=64)
    model_version: str = Field(max_length=32)
    finding: str = Field(max_length=64)
    score: float
    rule: str = Field(max_length=64, description="the rule's name in the model's rules file")
    level: str = Field("study", pattern=r"^(image|study)$")
    priority: Priority = Priority.ROUTINE
    raised_at: AwareDatetime = Field(default_factory=utc_now)


def completion_id(study_instance_uid: str, generation: int, series: str | None = None) -> uuid.UUID:
    """The deterministic id of a study's (or one of its series') completion of ``generation``."""
    name = f"study:{study_instance_uid}:{generation}"
    if series is not None:
        name = f"series:{study_instance_uid}:{series}:{generation}"
    return uuid.uuid5(STUDY_EVENT_NAMESPACE, name)


def study_result_id(
    study_instance_uid: str, generation: int, model: str, version: str
) -> uuid.UUID:
    """The deterministic id of one model's result over one generation of a study."""
    return uuid.uuid5(
        STUDY_EVENT_NAMESPACE, f"result:{study_instance_uid}:{generation}:{model}@{version}"
    )


def urgent_alert_id(study_instance_uid: str, model: str, finding: str) -> uuid.UUID:
    """The deterministic id of the urgent alert of a study and finding (one per pair)."""
    return uuid.uuid5(STUDY_EVENT_NAMESPACE, f"urgent:{study_instance_uid}:{model}:{finding}")


# ------------------------------------------------------------------ the status API's answers
class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class SeriesView(_View):
    """One series of a study as the status API reports it."""

    series_instance_uid: str = Field(max_length=64)
    modality: str | None = None
    instance_count: int = Field(ge=0)
    expected_instances: int | None = None
    generation: int = Field(ge=1)
    completed_by: CompletionRule | None = None


class UrgentFindingView(_View):
    """An urgent finding of a study and whether (and by whom) it was acknowledged."""

    alert_id: uuid.UUID
    model_name: str
    model_version: str
    finding: str
    score: float
    rule: str
    level: str
    raised_at: AwareDatetime
    acknowledged_by: Pseudonym | None = None
    acknowledged_at: AwareDatetime | None = None


class StudyView(_View):
    """``GET /studies/{study_uid}``: where a study is, its counts, study results and findings.

    ``lifecycle`` counts the study's arrivals per lifecycle state the results sink recorded
    (``arrived``, ``validated``, ``rejected``, ``inferred`` …).
    """

    study_instance_uid: Uid
    status: StudyStatus
    priority: Priority
    generation: int = Field(ge=1)
    completed_by: CompletionRule | None = None
    completed_at: AwareDatetime | None = None
    instance_count: int = Field(ge=0, description="distinct instances")
    arrivals: int = Field(ge=0, description="arrival events, duplicates included")
    series: tuple[SeriesView, ...] = ()
    lifecycle: dict[str, int] = Field(default_factory=dict)
    results: tuple[StudyResult, ...] = ()
    urgent_findings: tuple[UrgentFindingView, ...] = ()


class StudyAcknowledged(_View):
    """``POST /studies/{study_uid}/acknowledge``: the urgent findings this call acknowledged."""

    study_instance_uid: Uid
    acknowledged: tuple[uuid.UUID, ...]
    acknowledged_at: AwareDatetime
