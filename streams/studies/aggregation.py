"""Study results: one model's image results over a completed study, summarised (pure).

For each model that gave an outcome for the study, a :class:`~schemas.studies.StudyResult` is
ready once **every** instance of the completed generation has a terminal outcome for it: a
result of that model, a rejection naming that model, or a rejection before any model ran
(validation). Until then the study waits; after the analysis timeout the result is made anyway
and the instances still without an outcome are listed as failed with ``STUDY_RESULT_MISSING``.

An image is *positive* when its decision is one of the model's score labels (a model decides
its ``negative_decision`` otherwise). The study's ``finding`` is the label with the highest score
over every analysed image, ``max_score`` that score; ``top_instances`` are the five
highest-scoring images. Several arrivals of one SOP instance (a router resending it) count as
one instance: the instance is analysed when any of them has a result.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from schemas.errors import ErrorCode
from schemas.events import ModelRef, Priority
from schemas.studies import InstanceFailure, StudyResult, TopInstance, study_result_id

TOP_INSTANCES = 5
MAX_LISTED_FAILURES = 1000


@dataclass(frozen=True, slots=True)
class StudyInstance:
    """One distinct instance of the study, with every arrival event that carried it."""

    instance_key: str
    event_ids: tuple[uuid.UUID, ...]
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None


@dataclass(frozen=True, slots=True)
class InstanceOutcome:
    """A terminal outcome of one arrival: a model's result, or a rejection (with its code).

    ``model`` is None for a rejection before any model ran: it is terminal for every model.
    ``model_name`` names the model of a rejection at inference (no :class:`ModelRef` there).
    """

    event_id: uuid.UUID
    model: ModelRef | None = None
    model_name: str | None = None
    result_id: uuid.UUID | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    decision: str | None = None
    error_code: str | None = None

    @property
    def is_result(self) -> bool:
        """Whether the outcome is a model's result (not a rejection)."""
        return self.model is not None and self.result_id is not None


@dataclass(frozen=True, slots=True)
class CompletedStudy:
    """What the aggregation needs to know about the completed generation of a study."""

    study_instance_uid: str
    generation: int
    priority: Priority
    completed_at: datetime
    instances: tuple[StudyInstance, ...]


def models_of(outcomes: Sequence[InstanceOutcome]) -> dict[tuple[str, str], ModelRef]:
    """Every model (name, version) that produced a result for the study."""
    found: dict[tuple[str, str], ModelRef] = {}
    for outcome in outcomes:
        if outcome.model is not None and outcome.result_id is not None:
            found.setdefault((outcome.model.name, outcome.model.version), outcome.model)
    return found


def aggregate_study(
    study: CompletedStudy,
    outcomes: Sequence[InstanceOutcome],
    *,
    now: datetime,
    timed_out: bool,
    done: frozenset[tuple[str, str]] = frozenset(),
) -> list[StudyResult]:
    """The study results that are ready (or due, when ``timed_out``), skipping ``done`` models."""
    by_event: dict[uuid.UUID, list[InstanceOutcome]] = {}
    for outcome in outcomes:
        by_event.setdefault(outcome.event_id, []).append(outcome)
    results: list[StudyResult] = []
    for key, model in sorted(models_of(outcomes).items()):
        if key in done:
            continue
        result = _aggregate_model(study, model, by_event, now=now, timed_out=timed_out)
        if result is not None:
            results.append(result)
    return results


def all_rejected(study: CompletedStudy, outcomes: Sequence[InstanceOutcome]) -> bool:
    """Whether every instance was rejected before any model ran (nothing to analyse: failed).

    An instance counts only when every arrival of it was: a corrupt copy beside a resend of the
    same SOP instance that a model analysed (or has yet to) leaves the instance to analyse.
    """
    rejected = {o.event_id for o in outcomes if o.model is None and o.model_name is None}
    return bool(study.instances) and all(
        all(event in rejected for event in instance.event_ids) for instance in study.instances
    )


def _aggregate_model(
    study: CompletedStudy,
    model: ModelRef,
    by_event: Mapping[uuid.UUID, list[InstanceOutcome]],
    *,
    now: datetime,
    timed_out: bool,
) -> StudyResult | None:
    analysed: list[tuple[StudyInstance, InstanceOutcome]] = []
    failures: list[InstanceFailure] = []
    for instance in study.instances:
        outcome = _outcome_for(instance, model, by_event)
        if outcome is None:
            if not timed_out:
                return None  # still waiting for this instance's result
            failures.append(
                _failure(instance, instance.event_ids[0], ErrorCode.STUDY_RESULT_MISSING)
            )
        elif outcome.is_result:
            analysed.append((instance, outcome))
        else:
            failures.append(_failure(instance, outcome.event_id, outcome.error_code))
    decisions = Counter(outcome.decision or "" for _, outcome in analysed)
    positive = sum(1 for _, o in analysed if o.decision in o.scores)
    finding, max_score = _finding(analysed, model)
    ranked = sorted(analysed, key=lambda pair: _top_score(pair[1]), reverse=True)
    return StudyResult(
        study_result_id=study_result_id(
            study.study_instance_uid, study.generation, model.name, model.version
        ),
        study_instance_uid=study.study_instance_uid,
        generation=study.generation,
        model=model,
        priority=study.priority,
        instance_count=len(study.instances),
        analysed_count=len(analysed),
        positive_count=positive,
        finding=finding,
        max_score=max_score,
        decisions=dict(sorted(decisions.items())),
        top_instances=tuple(
            TopInstance(
                event_id=outcome.event_id,
                result_id=outcome.result_id or outcome.event_id,
                sop_instance_uid=instance.sop_instance_uid,
                series_instance_uid=instance.series_instance_uid,
                score=_top_score(outcome),
                decision=outcome.decision or "",
            )
            for instance, outcome in ranked[:TOP_INSTANCES]
        ),
        failures=tuple(failures[:MAX_LISTED_FAILURES]),
        failures_truncated=max(0, len(failures) - MAX_LISTED_FAILURES),
        study_completed_at=study.completed_at,
        aggregated_at=now,
    )


def _outcome_for(
    instance: StudyInstance, model: ModelRef, by_event: Mapping[uuid.UUID, list[InstanceOutcome]]
) -> InstanceOutcome | None:
    """The instance's result for ``model`` if any arrival has one, else a terminal rejection."""
    rejection = None
    for event_id in instance.event_ids:
        for outcome in by_event.get(event_id, ()):
            if outcome.is_result and outcome.model is not None:
                if (outcome.model.name, outcome.model.version) == (model.name, model.version):
                    return outcome
            elif outcome.model is None and outcome.model_name in (None, model.name):
                rejection = rejection or outcome
    return rejection


def _failure(instance: StudyInstance, event_id: uuid.UUID, code: str | None) -> InstanceFailure:
    return InstanceFailure(
        event_id=event_id,
        sop_instance_uid=instance.sop_instance_uid,
        error_code=code or ErrorCode.STUDY_RESULT_MISSING.value,
    )


def _top_score(outcome: InstanceOutcome) -> float:
    return max(outcome.scores.values(), default=0.0)


def _finding(
    analysed: Sequence[tuple[StudyInstance, InstanceOutcome]], model: ModelRef
) -> tuple[str, float]:
    best: tuple[str, float] | None = None
    for _, outcome in analysed:
        for label, score in outcome.scores.items():
            if best is None or score > best[1]:
                best = (label, score)
    return best if best is not None else (f"{model.name}:none", 0.0)
