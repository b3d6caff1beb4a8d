"""Fixtures of the unit tests: the committed model registry and routing rules, loaded once.

Shared by the inference tests and the stage tests that run the shipped models.
"""

from __future__ import annotations

import pytest

from streams.inference.registry import ModelRegistry
from streams.inference.routing import RoutingRules
from tests.unit.inference.inference_builders import REGISTRY_DIR


@pytest.fixture(scope="session")
def reference_registry() -> ModelRegistry:
    """The committed model registry, loaded once (sessions are read-only and thread-safe)."""
    return ModelRegistry.load(REGISTRY_DIR)


@pytest.fixture(scope="session")
def reference_rules() -> RoutingRules:
    """The committed routing rules."""
    return RoutingRules.load(REGISTRY_DIR / "routing.yaml")
