"""The ONNX Runtime adapter: provider checks, load failures and batched runs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from schemas.errors import ErrorCode, InferenceError
from streams.inference.runtime import OnnxSession, available_providers

pytestmark = pytest.mark.requirement("RS-INF-04")


def _mean_model() -> bytes:
    """A tiny model: scores[N, 1] = mean of image[N, 1, 2, 2]."""
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("ReduceMean", ["flat"], ["scores"], axes=[1], keepdims=1),
        ],
        "mean",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 2, 2])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _create(**overrides: object) -> OnnxSession:
    arguments: dict[str, object] = {"input_name": "image", "output_name": "scores"}
    arguments.update(overrides)
    return OnnxSession.create(_mean_model(), **arguments)  # type: ignore[arg-type]


class TestCreate:
    """Creating sessions."""

    def test_cpu_provider_is_used_by_default(self) -> None:
        """The default provider list is the CPU execution provider."""
        assert _create().provider == "CPUExecutionProvider"

    def test_cpu_is_in_this_build(self) -> None:
        """The installed onnxruntime offers the CPU provider."""
        assert "CPUExecutionProvider" in available_providers()

    def test_unavailable_provider_is_a_load_failure_naming_it(self) -> None:
        """A GPU provider on a CPU-only build is refused with a clear reason."""
        with pytest.raises(InferenceError) as caught:
            _create(providers=("CUDAExecutionProviderThatIsNotHere", "CPUExecutionProvider"))
        assert caught.value.code is ErrorCode.MODEL_LOAD_FAILED
        assert "CUDAExecutionProviderThatIsNotHere" in caught.value.reason
        assert "available:" in caught.value.reason

    def test_empty_provider_list_is_refused(self) -> None:
        """No provider at all cannot run anything."""
        with pytest.raises(InferenceError, match="no execution provider"):
            _create(providers=())

    def test_bytes_that_are_not_a_model_fail_to_load(self) -> None:
        """Garbage weights raise MODEL_LOAD_FAILED instead of a pybind error."""
        with pytest.raises(InferenceError) as caught:
            OnnxSession.create(b"garbage", input_name="image", output_name="scores")
        assert caught.value.code is ErrorCode.MODEL_LOAD_FAILED

    @pytest.mark.parametrize(("input_name", "output_name"), [("x", "scores"), ("image", "y")])
    def test_tensor_names_must_match_the_manifest(self, input_name: str, output_name: str) -> None:
        """A manifest naming tensors the model lacks is a load failure."""
        with pytest.raises(InferenceError, match="do not match"):
            _create(input_name=input_name, output_name=output_name)


class TestRunBatch:
    """Running batches."""

    def test_batch_returns_one_row_per_input(self) -> None:
        """Three inputs give three means."""
        inputs = np.stack([np.full((1, 2, 2), v, dtype=np.float32) for v in (0.0, 0.5, 2.0)])
        np.testing.assert_allclose(
            _create(intra_op_threads=2).run_batch(inputs), [[0.0], [0.5], [2.0]]
        )

    def test_wrong_input_shape_is_an_inference_failure(self) -> None:
        """An input the model cannot take raises INFERENCE_FAILED."""
        with pytest.raises(InferenceError) as caught:
            _create().run_batch(np.zeros((1, 1, 3, 3), dtype=np.float32))
        assert caught.value.code is ErrorCode.INFERENCE_FAILED
