"""GET /models' catalogue over the real registry: each version's input spec, guard included."""

from __future__ import annotations

from pathlib import Path

from gateway.adapters import RegistryModelCatalog
from streams.inference.registry import ModelRegistry

REGISTRY_DIR = Path(__file__).resolve().parents[3] / "model_registry"


class TestRegistryModelCatalog:
    def test_input_guard_ranges_are_listed_flat(self) -> None:
        """The guard's ranges appear as expected_<statistic>_<bound>, next to the size."""
        models = RegistryModelCatalog(ModelRegistry.load(REGISTRY_DIR)).list()
        guarded = next(m for m in models if (m.name, m.version) == ("lesion-detector", "1.2.0"))
        assert guarded.input_spec["height"] == 64
        assert guarded.input_spec["normalisation_kind"] == "window"
        assert guarded.input_spec["expected_fraction_high_max"] == 0.01
        assert guarded.default
        legacy = next(m for m in models if (m.name, m.version) == ("lesion-detector", "1.1.0"))
        assert not any(key.startswith("expected_") for key in legacy.input_spec)
        assert not legacy.default
