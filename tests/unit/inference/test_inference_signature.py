"""A manifest must tell the truth about its graph's tensors, or the version is not served."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml
from onnx import TensorProto

from schemas.errors import ErrorCode, InferenceError
from streams.inference.manifest import ModelManifest
from streams.inference.registry import ModelRegistry, ServingStatus
from streams.inference.runtime import describe_graph
from streams.inference.signature import (
    GraphSignature,
    TensorInfo,
    check_signature,
    signature_problems,
)
from tests.unit.inference.inference_builders import REGISTRY_DIR, make_manifest
from tests.unit.inference.onnx_builders import mean_model


def _manifest(**input_overrides: object) -> ModelManifest:
    spec = {"channels": 1, "height": 4, "width": 4, "normalisation": {"kind": "minmax"}}
    spec.update(input_overrides)
    return make_manifest(input=spec)


class TestDescribeGraph:
    def test_dynamic_and_fixed_dimensions(self) -> None:
        """Symbolic dimensions become None, fixed ones stay numbers."""
        signature = describe_graph(mean_model(["N", 1, 4, 4], ["N", 2], labels=2))
        assert signature.inputs == (TensorInfo("image", "tensor(float)", (None, 1, 4, 4)),)
        assert signature.outputs == (TensorInfo("scores", "tensor(float)", (None, 2)),)

    def test_garbage_is_a_load_failure(self) -> None:
        """Bytes that are not a model are MODEL_LOAD_FAILED."""
        with pytest.raises(InferenceError) as caught:
            describe_graph(b"not onnx")
        assert caught.value.code is ErrorCode.MODEL_LOAD_FAILED


class TestCheckSignature:
    def test_truthful_manifest_passes(self) -> None:
        """Matching names, types, layout, size and label count: no problem."""
        signature = describe_graph(mean_model())
        assert signature_problems(_manifest(), signature) == []

    def test_dynamic_spatial_dimensions_are_accepted(self) -> None:
        """A graph that takes any size accepts the manifest's size."""
        signature = describe_graph(mean_model(["N", 1, "H", "W"]))
        assert signature_problems(_manifest(height=64, width=48), signature) == []

    def test_nhwc_layout_is_compared_in_its_order(self) -> None:
        """(N, H, W, C) graphs match NHWC manifests."""
        signature = describe_graph(mean_model(["N", 8, 6, 3]))
        manifest = _manifest(channels=3, height=8, width=6, layout="NHWC")
        assert signature_problems(manifest, signature) == []

    @pytest.mark.parametrize(
        ("graph", "manifest_input", "fragment"),
        [
            (
                mean_model(["N", 1, 8, 8]),
                {},
                "is (?, 1, 8, 8) but the manifest declares NCHW (?, 1, 4, 4)",
            ),
            (mean_model(["N", 3, 4, 4]), {}, "(?, 3, 4, 4)"),
            (mean_model([1, 1, 4, 4]), {}, "fixes the batch axis at 1"),
            (mean_model(["N", 16]), {}, "rank 2, not 4"),
            (
                mean_model(input_name="pixels"),
                {},
                "input 'image' is not in the graph (inputs: pixels)",
            ),
            (mean_model(input_type=TensorProto.UINT8), {}, "tensor(uint8), not tensor(float)"),
            (mean_model(["N", 1, 4, 4], ["N", 3], labels=3), {}, "declares 1 label(s)"),
            (mean_model(output_name="logits"), {}, "output 'scores' is not in the graph"),
        ],
    )
    def test_lies_are_named(
        self, graph: bytes, manifest_input: dict[str, object], fragment: str
    ) -> None:
        """Each contradiction is reported in words an engineer can act on."""
        problems = signature_problems(_manifest(**manifest_input), describe_graph(graph))
        assert any(fragment in problem for problem in problems), problems

    def test_two_inputs_cannot_be_fed(self) -> None:
        """A graph with a second input cannot be fed by radstream."""
        info = TensorInfo("image", "tensor(float)", (None, 1, 4, 4))
        signature = GraphSignature(
            inputs=(info, TensorInfo("mask", "tensor(float)", None)),
            outputs=(TensorInfo("scores", "tensor(double)", (None, 1)),),
        )
        assert signature_problems(_manifest(), signature) == [
            "the graph has 2 inputs; radstream feeds one"
        ]

    def test_scores_must_be_a_matrix(self) -> None:
        """Scores of rank 3 cannot be read as (batch, labels)."""
        signature = GraphSignature(
            inputs=(TensorInfo("image", "tensor(float)", (None, 1, 4, 4)),),
            outputs=(TensorInfo("scores", "tensor(float)", (None, 1, 1)),),
        )
        assert signature_problems(_manifest(), signature) == ["output 'scores' has rank 3, not 2"]

    def test_undeclared_shapes_are_not_held_against_the_manifest(self) -> None:
        """A graph that declares no rank is checked by name and type only."""
        signature = GraphSignature(
            inputs=(TensorInfo("image", "tensor(float)", None),),
            outputs=(TensorInfo("scores", "tensor(int64)", None),),
        )
        assert signature_problems(_manifest(), signature) == [
            "output 'scores' is tensor(int64), not float scores"
        ]

    def test_check_raises_manifest_mismatch(self) -> None:
        """check_signature raises MODEL_MANIFEST_MISMATCH with the problems."""
        with pytest.raises(InferenceError) as caught:
            check_signature(_manifest(height=8), describe_graph(mean_model()))
        assert caught.value.code is ErrorCode.MODEL_MANIFEST_MISMATCH
        assert "fake-model@1.0.0" in caught.value.reason


class TestRegistryRefusesLyingManifests:
    def test_manifest_lying_about_the_size_is_not_served(self, tmp_path: Path) -> None:
        """A committed model whose manifest claims another size loads as load_failed."""
        registry_dir = tmp_path / "model_registry"
        shutil.copytree(REGISTRY_DIR, registry_dir)
        manifest_path = registry_dir / "lesion-detector" / "1.0.0" / "manifest.yaml"
        data = yaml.safe_load(manifest_path.read_text(encoding="utf-8"))
        data["input"]["height"] = data["input"]["width"] = 96
        manifest_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        registry = ModelRegistry.load(registry_dir)
        row = next(
            r for r in registry.list() if r.name == "lesion-detector" and r.version == "1.0.0"
        )
        assert (row.status, row.error_code) == (
            ServingStatus.LOAD_FAILED,
            ErrorCode.MODEL_MANIFEST_MISMATCH,
        )
        with pytest.raises(InferenceError, match="manifest declares NCHW"):
            registry.resolve("lesion-detector@1.0.0")
        weights = (manifest_path.parent / "model.onnx").read_bytes()
        assert hashlib.sha256(weights).hexdigest() == data["weights"]["sha256"]  # digest fine
