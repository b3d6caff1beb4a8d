"""Builders for the inference tests: events, requests, manifests, fake runners and registries."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from schemas.events import ImageFormat, ImageGeometry, ImageValidated, ValidatorVerdict
from streams.inference.batching import InferenceRequest
from streams.inference.manifest import ModelManifest
from streams.inference.registry import ModelRegistry, RegisteredModel
from streams.inference.rollout import RolloutState
from streams.inference.routing import RoutingRules

REPO_ROOT = Path(__file__).resolve().parents[3]
REGISTRY_DIR = REPO_ROOT / "model_registry"


def manifest_data(**overrides: Any) -> dict[str, Any]:
    """A valid manifest as plain data; keyword arguments replace top-level keys."""
    data: dict[str, Any] = {
        "name": "fake-model",
        "version": "1.0.0",
        "runtime": "onnxruntime",
        "default": True,
        "status": "reference — not for clinical use",
        "intended_use": "tests only",
        "weights": {"file": "model.onnx", "sha256": "a" * 64},
        "input": {
            "modalities": ["CT"],
            "channels": 1,
            "height": 2,
            "width": 2,
            "normalisation": {"kind": "minmax"},
        },
        "output": {
            "labels": ["lesion"],
            "score_meaning": "probability",
            "thresholds": {"lesion": 0.5},
        },
    }
    data.update(overrides)
    return data


def make_manifest(**overrides: Any) -> ModelManifest:
    """A valid :class:`ModelManifest` with ``overrides`` applied."""
    return ModelManifest.model_validate_json(json.dumps(manifest_data(**overrides)))


class FakeRunner:
    """A runner scoring each input by its mean value; records the batch sizes it ran."""

    provider = "FakeExecutionProvider"

    def __init__(self, fail_when: Callable[[np.ndarray], bool] | None = None) -> None:
        self.batch_sizes: list[int] = []
        self._fail_when = fail_when

    def run_batch(self, inputs: np.ndarray) -> np.ndarray:
        """Score = mean of each input; raises when ``fail_when`` says so."""
        self.batch_sizes.append(inputs.shape[0])
        if self._fail_when is not None and self._fail_when(inputs):
            raise RuntimeError("runner exploded")
        return np.asarray(inputs.reshape(inputs.shape[0], -1).mean(axis=1, keepdims=True))


def make_event(**overrides: Any) -> ImageValidated:
    """A validated CT image event; keyword arguments replace fields."""
    data: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "occurred_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "source": "router-1",
        "image_uri": "file:///data/image.dcm",
        "sha256": "b" * 64,
        "size_bytes": 1234,
        "study_instance_uid": "1.2.3",
        "series_instance_uid": "1.2.3.4",
        "sop_instance_uid": "1.2.3.4.5",
        "modality": "CT",
        "requested_by": "user-7",
        "geometry": ImageGeometry(format=ImageFormat.DICOM, width=4, height=4, dtype="int16"),
        "verdicts": (ValidatorVerdict(check="pixels_decodable", passed=True),),
    }
    data.update(overrides)
    return ImageValidated(**data)


def make_request(pixels: np.ndarray | None = None, **overrides: Any) -> InferenceRequest:
    """A request for ``pixels`` (default a 4x4 ramp) with a fresh event."""
    if pixels is None:
        pixels = np.arange(16, dtype=np.float32).reshape(4, 4)
    return InferenceRequest(make_event(**overrides), "corr-1", pixels)


def fake_registry(
    *models: tuple[ModelManifest, FakeRunner | None], rollout: RolloutState | None = None
) -> ModelRegistry:
    """A registry of fake runners, without files (modes from ``rollout``, else ``default``)."""
    return ModelRegistry(
        (RegisteredModel(manifest, runner) for manifest, runner in models), rollout=rollout
    )


def rollout_state(text: str) -> RolloutState:
    """A rollout state from YAML text (the format of ``rollout.yaml``)."""
    return RolloutState.parse(text)


NO_RULES = RoutingRules()
