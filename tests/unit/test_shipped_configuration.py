"""The shipped data files agree with each other: rules, routing and the model registry."""

from __future__ import annotations

import pytest

from schemas.settings import load_settings
from streams.inference.registry import ModelRegistry
from streams.inference.routing import RoutingRules
from streams.validation import load_clinical_rules

pytestmark = pytest.mark.requirement("RS-INF-01", "RS-INF-03", "RS-VAL-06")


class TestShippedConfiguration:
    def test_every_routed_model_is_registered_and_served(self) -> None:
        """routing.yaml names only models the registry serves."""
        settings = load_settings()
        registry = ModelRegistry.load(settings.inference.model_registry_dir)
        rules = RoutingRules.load(settings.inference.routing_rules_file)
        assert rules.unknown_models(registry.knows) == []
        assert all(s.status == "available" for s in registry.list())

    def test_every_registered_model_has_clinical_rules(self) -> None:
        """Each shipped model has its own clinical rule, restricting modalities like its spec."""
        settings = load_settings()
        registry = ModelRegistry.load(settings.inference.model_registry_dir)
        rules = load_clinical_rules(settings.validation.clinical_rules_file)
        for status in registry.list():
            rule = rules.models[status.name]
            assert status.input is not None
            assert set(rule.allowed_modalities or ()) == set(status.input.modalities)
