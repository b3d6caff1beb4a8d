"""The model manifest: what a registered model is, how to feed it and how to read its output.

A manifest lives at ``<registry>/<name>/<version>/manifest.yaml`` next to its weights. It is
parsed strictly (unknown keys and wrong types are errors, never coerced), so a typo in a
threshold or a window cannot silently change what a model decides.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.errors import ErrorCode, InferenceError

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
MODEL_VERSION_PATTERN = r"^[0-9A-Za-z.+-]{1,32}$"
# Weights are a plain file name inside the version directory: no separators, no "..".
WEIGHTS_FILE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\.onnx$"
REFERENCE_STATUS = "reference — not for clinical use"
DECISION_MAX_LENGTH = 64
# A reference distribution is given by its quantiles at these levels (every 5 %, min to max).
REFERENCE_QUANTILE_LEVELS: tuple[float, ...] = tuple(i / 20 for i in range(21))


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class WindowNormalisation(_Strict):
    """CT-style windowing: ``center - width/2`` maps to 0, ``center + width/2`` to 1, clipped."""

    kind: Literal["window"]
    center: float
    width: float = Field(gt=0)


class MinMaxNormalisation(_Strict):
    """Per-image rescaling of the value range to [0, 1] (a constant image becomes 0)."""

    kind: Literal["minmax"]


class ZScoreNormalisation(_Strict):
    """Standardisation: fixed ``mean``/``std`` when given, else the image's own statistics."""

    kind: Literal["zscore"]
    mean: float | None = None
    std: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _both_or_neither(self) -> ZScoreNormalisation:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither for per-image statistics")
        return self


Normalisation = Annotated[
    WindowNormalisation | MinMaxNormalisation | ZScoreNormalisation,
    Field(discriminator="kind"),
]


class InputStatistic(StrEnum):
    """Per-image statistics of the preprocessed input tensor (what the model actually sees).

    They are the vocabulary of the input guard (``input.expected_statistics``) and of drift
    monitoring (``reference.statistics``); ``streams.inference.input_guard`` computes them.
    """

    MEAN = "mean"  # mean value
    STD = "std"  # standard deviation of the values
    FRACTION_LOW = "fraction_low"  # share of values <= 0 (clipped low by a window, background)
    FRACTION_HIGH = "fraction_high"  # share of values >= 1 (clipped high by a window)
    GRADIENT = "gradient"  # mean absolute difference of neighbouring pixels (texture, noise)


class StatisticRange(_Strict):
    """The inclusive range of one input statistic the model accepts."""

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> StatisticRange:
        if not (math.isfinite(self.min) and math.isfinite(self.max)) or self.min > self.max:
            raise ValueError("a range needs finite min <= max")
        return self


Quantiles = Annotated[
    tuple[float, ...],
    Field(
        min_length=len(REFERENCE_QUANTILE_LEVELS),
        max_length=len(REFERENCE_QUANTILE_LEVELS),
        description="values at the quantile levels 0, 0.05, ..., 1 (21 numbers)",
    ),
]


class ReferenceDistribution(_Strict):
    """What the model's scores and input statistics looked like on its evaluation data.

    Drift monitoring compares live traffic with it; each distribution is summarised by 21
    quantiles (:data:`REFERENCE_QUANTILE_LEVELS`).
    """

    source: str = Field(min_length=1, max_length=500, description="which data was measured")
    scores: dict[str, Quantiles] = Field(default_factory=dict)
    statistics: dict[InputStatistic, Quantiles] = Field(default_factory=dict)

    def score_points(self) -> dict[str, list[tuple[float, float]]]:
        """Each label's reference as ``(value, cumulative share)`` points."""
        return {
            label: list(zip(q, REFERENCE_QUANTILE_LEVELS, strict=True))
            for label, q in self.scores.items()
        }

    def statistic_points(self) -> dict[str, list[tuple[float, float]]]:
        """Each input statistic's reference as ``(value, cumulative share)`` points."""
        return {
            name.value: list(zip(q, REFERENCE_QUANTILE_LEVELS, strict=True))
            for name, q in self.statistics.items()
        }

    @model_validator(mode="after")
    def _quantiles_are_quantiles(self) -> ReferenceDistribution:
        for name, values in [*self.scores.items(), *self.statistics.items()]:
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"reference quantiles of {name} must be finite")
            if any(b < a for a, b in itertools.pairwise(values)):
                raise ValueError(f"reference quantiles of {name} must not decrease")
        return self


class WeightsSpec(_Strict):
    """The weights file (relative to the manifest) and its SHA-256."""

    file: str = Field(pattern=WEIGHTS_FILE_PATTERN)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class InputSpec(_Strict):
    """What the model accepts and how an image is turned into its input tensor."""

    tensor: str = Field("image", min_length=1, max_length=128, description="ONNX input name")
    modalities: tuple[str, ...] = Field(
        (), description="DICOM modalities accepted; empty accepts any (including PNG/JPEG)"
    )
    channels: Literal[1, 3]
    height: int = Field(ge=1, le=4096)
    width: int = Field(ge=1, le=4096)
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    normalisation: Normalisation
    expected_statistics: dict[InputStatistic, StatisticRange] = Field(
        default_factory=dict,
        description="the input guard: an image whose statistic falls outside its range is "
        "refused as out of distribution instead of scored",
    )

    @model_validator(mode="after")
    def _modalities_are_codes(self) -> InputSpec:
        for modality in self.modalities:
            if not re.fullmatch(r"[A-Z0-9]{1,16}", modality):
                raise ValueError(f"modality {modality!r} is not a DICOM modality code")
        return self


class OutputSpec(_Strict):
    """How to read the output tensor: one score per label, thresholds make the decision."""

    tensor: str = Field("scores", min_length=1, max_length=128, description="ONNX output name")
    labels: tuple[str, ...] = Field(min_length=1, max_length=32)
    score_meaning: str = Field(min_length=1, max_length=500)
    thresholds: dict[str, float]
    negative_decision: str = Field("no_finding", pattern=r"^[a-z0-9_]{1,64}$")

    @model_validator(mode="after")
    def _thresholds_cover_labels(self) -> OutputSpec:
        for label in self.labels:
            if not re.fullmatch(r"[a-z0-9_]{1,64}", label):
                raise ValueError(f"label {label!r} must be lower-case letters, digits, _")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if set(self.thresholds) != set(self.labels):
            raise ValueError("thresholds must name exactly the labels")
        if self.negative_decision in self.labels:
            raise ValueError("negative_decision must differ from every label")
        # The decision is the positive labels joined with "+", so every combination must fit.
        if len("+".join(self.labels)) > DECISION_MAX_LENGTH:
            raise ValueError(f"labels joined with '+' exceed {DECISION_MAX_LENGTH} characters")
        return self


class ModelManifest(_Strict):
    """One registered version of one model (``manifest.yaml``)."""

    model_config = ConfigDict(protected_namespaces=())

    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: str = Field(pattern=MODEL_VERSION_PATTERN)
    runtime: Literal["onnxruntime"]
    default: bool = Field(
        False,
        description="legacy: the version served by bare name when rollout.yaml does not list "
        "the model (rollout.yaml's 'active' mode replaces it)",
    )
    status: str = Field(min_length=1, max_length=64, description="e.g. " + REFERENCE_STATUS)
    intended_use: str = Field(min_length=1, max_length=2000)
    model_card: str = Field("MODEL_CARD.md", pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\.md$")
    weights: WeightsSpec
    input: InputSpec
    output: OutputSpec
    metrics: dict[str, float] = Field(default_factory=dict)
    reference: ReferenceDistribution | None = None

    @model_validator(mode="after")
    def _reference_scores_are_labels(self) -> ModelManifest:
        if self.reference is not None:
            unknown = sorted(set(self.reference.scores) - set(self.output.labels))
            if unknown:
                raise ValueError(f"reference scores name unknown labels: {', '.join(unknown)}")
        return self

    @property
    def model_id(self) -> str:
        """The exact id ``name@version``."""
        return f"{self.name}@{self.version}"


def read_model_file(path: Path, what: str) -> str:
    """The text of a file the models are served by (a manifest, the routing rules).

    Raises:
        InferenceError: ``MODEL_LOAD_FAILED`` saying ``what`` is unreadable, with the error's
            type only.
    """
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InferenceError(
            ErrorCode.MODEL_LOAD_FAILED, f"{what} unreadable: {type(exc).__name__}"
        ) from exc


def parse_manifest(text: str) -> ModelManifest:
    """Parse a manifest's YAML text strictly, or raise ``MODEL_LOAD_FAILED`` saying why.

    YAML is turned into JSON first so pydantic's strict JSON mode applies: lists become
    tuples, but strings are never coerced to numbers nor numbers to strings.
    """
    try:
        data = yaml.safe_load(text)
        document = json.dumps(data)
    except (yaml.YAMLError, TypeError, ValueError) as exc:
        raise InferenceError(
            ErrorCode.MODEL_LOAD_FAILED, f"manifest is not valid YAML: {type(exc).__name__}"
        ) from exc
    if not isinstance(data, dict):
        raise InferenceError(ErrorCode.MODEL_LOAD_FAILED, "manifest must be a YAML mapping")
    try:
        return ModelManifest.model_validate_json(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
            for error in exc.errors()[:5]
        )
        raise InferenceError(
            ErrorCode.MODEL_LOAD_FAILED, f"invalid manifest: {problems}"[:500]
        ) from exc
