"""Fixtures of the stage tests that run the shipped models."""

from __future__ import annotations

from functools import partial

import pytest

from schemas.settings import ValidationSettings
from streams.inference.registry import ModelRegistry
from streams.inference.routing import RoutingRules
from streams.stages.inference import InferenceStage

StageFactory = partial[InferenceStage]


@pytest.fixture
def stage_for(reference_registry: ModelRegistry, reference_rules: RoutingRules) -> StageFactory:
    """An inference stage over the shipped models and default limits: give it the reader (and
    the hand-off and hooks a test needs)."""
    return partial(
        InferenceStage,
        registry=reference_registry,
        rules=reference_rules,
        limits=ValidationSettings(),
    )
