"""Rollout of model versions: the mode each version is in, and how two versions compare.

A team rolls out a new model version beside the one in service, compares them on live traffic
and then promotes it (FDA GMLP / PCCP practice). Every version has one :class:`RolloutMode`
(kept in the registry's ``rollout.yaml``); every change of mode is audited as an
:class:`~schemas.audit.ApiAction` on ``api.actions``. :class:`VersionComparison` is the report
comparing a shadow or canary version with the active one, built from stored results.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import ModelId


class RolloutMode(StrEnum):
    """How a registered model version takes part in traffic (append only)."""

    ACTIVE = "active"  # serves the bare model name; results are published
    CANARY = "canary"  # serves the bare name for a share of studies instead of the active one
    SHADOW = "shadow"  # runs beside the active version; results are kept, never published
    STAGED = "staged"  # registered and verified; runs only when an event pins name@version
    RETIRED = "retired"  # never runs; an event pinning it is refused (MODEL_VERSION_RETIRED)


class ResultRole(StrEnum):
    """Whether a stored outcome was published or kept for comparison only (append only)."""

    PUBLISHED = "published"  # on inference.results / images.rejected, in the API's views
    SHADOW = (
        "shadow"  # on inference.shadow only: a shadow version's, or the active's beside a canary
    )


class PairAgreement(StrEnum):
    """How a candidate's outcome on one image compares with the active version's (append only).

    A failure is any outcome without a result, the input guard's refusal included.
    """

    AGREE = "agree"  # both scored, same decision
    DISAGREE = "disagree"  # both scored, different decisions
    CANDIDATE_FAILED = "candidate_failed"  # only the active version scored
    BASELINE_FAILED = "baseline_failed"  # only the candidate scored
    BOTH_FAILED = "both_failed"


class _Report(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class LatencySummary(_Report):
    """Per-image inference time of one version (``inference_seconds`` of its results)."""

    count: int = Field(ge=0)
    p50_seconds: float | None = None
    p95_seconds: float | None = None


class ScoreDelta(_Report):
    """Candidate minus baseline score of one label, over the images both versions scored."""

    label: str = Field(max_length=64)
    pairs: int = Field(ge=0)
    mean_delta: float
    mean_abs_delta: float
    p95_abs_delta: float
    max_abs_delta: float


class DecisionPair(_Report):
    """How often the baseline decided ``baseline`` and the candidate ``candidate`` on one image."""

    baseline: str = Field(max_length=64)
    candidate: str = Field(max_length=64)
    images: int = Field(ge=1)


class VersionOutcomes(_Report):
    """What one version did on the compared traffic: results, failures by code, latency."""

    model_id: ModelId
    results: int = Field(ge=0)
    failures: int = Field(ge=0)
    failures_by_code: dict[str, int] = Field(default_factory=dict)
    failure_rate: float | None = Field(None, ge=0, le=1, description="failures / attempts")
    latency: LatencySummary


class VersionComparison(_Report):
    """A shadow or canary version (``candidate``) against the active one (``baseline``).

    Agreement and score deltas are measured on images *both* versions scored (paired by
    event id), so they compare the models and not the traffic each one happened to see.
    """

    baseline: VersionOutcomes
    candidate: VersionOutcomes
    paired_images: int = Field(ge=0, description="images both versions produced a result for")
    agreement: float | None = Field(
        None, ge=0, le=1, description="share of paired images with the same decision"
    )
    decisions: tuple[DecisionPair, ...] = Field(
        (), description="baseline decision x candidate decision counts, most frequent first"
    )
    score_deltas: tuple[ScoreDelta, ...] = ()
    since: AwareDatetime | None = Field(None, description="start of the compared window")
    until: AwareDatetime | None = Field(None, description="end of the compared window")
    truncated: bool = Field(
        False, description="the window held more rows than one report reads: the newest were used"
    )
