"""The ONNX Runtime adapter: the only code that creates sessions and runs them.

Sessions are created from the very bytes whose SHA-256 was verified (never re-read from disk),
so a file swapped between the check and the load cannot be served. Every runtime exception is
translated where it enters, into ``MODEL_LOAD_FAILED`` or ``INFERENCE_FAILED``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from schemas.errors import ErrorCode, InferenceError
from streams.inference.signature import GraphSignature, TensorInfo

RUNTIME_NAME = "onnxruntime"


class BatchRunner(Protocol):
    """Anything that turns a batch of model inputs into a batch of scores."""

    @property
    def provider(self) -> str:
        """The execution provider that actually runs the model."""

    def run_batch(self, inputs: np.ndarray) -> np.ndarray:
        """Run one batch (first axis is the batch) and return the first output."""


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers."""
    return list(ort.get_available_providers())


def _tensor_info(node: Any) -> TensorInfo:
    """A session input/output (onnxruntime ``NodeArg``) as a :class:`TensorInfo`."""
    shape = node.shape
    dims = None if shape is None else tuple(d if isinstance(d, int) else None for d in shape)
    return TensorInfo(name=str(node.name), element_type=str(node.type), shape=dims)


def _session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the worker logs through structlog
    return options


def _open(model_bytes: bytes, providers: Sequence[str], intra_op_threads: int) -> Any:
    try:
        return ort.InferenceSession(
            model_bytes, sess_options=_session_options(intra_op_threads), providers=list(providers)
        )
    except Exception as exc:  # onnxruntime raises its own untyped pybind errors
        raise InferenceError(
            ErrorCode.MODEL_LOAD_FAILED,
            f"onnxruntime could not load the model: {type(exc).__name__}",
        ) from exc


def describe_graph(model_bytes: bytes) -> GraphSignature:
    """The inputs and outputs an ONNX model declares (CPU session, nothing run).

    Raises:
        InferenceError: ``MODEL_LOAD_FAILED`` when the bytes are not a model onnxruntime loads.
    """
    session = _open(model_bytes, ("CPUExecutionProvider",), 1)
    return GraphSignature(
        inputs=tuple(_tensor_info(node) for node in session.get_inputs()),
        outputs=tuple(_tensor_info(node) for node in session.get_outputs()),
    )


class OnnxSession:
    """An ONNX Runtime inference session with a fixed input and output tensor."""

    def __init__(self, session: ort.InferenceSession, input_name: str, output_name: str) -> None:
        self._session = session
        self._input_name = input_name
        self._output_name = output_name

    @classmethod
    def create(
        cls,
        model_bytes: bytes,
        *,
        input_name: str,
        output_name: str,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        intra_op_threads: int = 1,
    ) -> OnnxSession:
        """Create a session from verified model bytes, or raise ``MODEL_LOAD_FAILED``.

        Every requested provider must exist in this build: silently falling back from a GPU
        to the CPU would change latency and, for some models, results.
        """
        if not providers:
            raise InferenceError(ErrorCode.MODEL_LOAD_FAILED, "no execution provider configured")
        available = available_providers()
        missing = [name for name in providers if name not in available]
        if missing:
            raise InferenceError(
                ErrorCode.MODEL_LOAD_FAILED,
                f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
                f"build (available: {', '.join(available)})",
            )
        session = _open(model_bytes, providers, intra_op_threads)
        inputs = [node.name for node in session.get_inputs()]
        outputs = [node.name for node in session.get_outputs()]
        if input_name not in inputs or output_name not in outputs:
            raise InferenceError(
                ErrorCode.MODEL_LOAD_FAILED,
                f"model tensors {inputs} -> {outputs} do not match the manifest's "
                f"{input_name!r} -> {output_name!r}",
            )
        return cls(session, input_name, output_name)

    def signature(self) -> GraphSignature:
        """The inputs and outputs the loaded graph declares."""
        return GraphSignature(
            inputs=tuple(_tensor_info(node) for node in self._session.get_inputs()),
            outputs=tuple(_tensor_info(node) for node in self._session.get_outputs()),
        )

    @property
    def provider(self) -> str:
        """The execution provider ONNX Runtime chose first for this session."""
        return str(self._session.get_providers()[0])

    def run_batch(self, inputs: np.ndarray) -> np.ndarray:
        """Run one batch and return the declared output, or raise ``INFERENCE_FAILED``."""
        try:
            outputs = self._session.run(
                [self._output_name], {self._input_name: np.ascontiguousarray(inputs)}
            )
        except Exception as exc:  # onnxruntime raises its own untyped pybind errors
            raise InferenceError(
                ErrorCode.INFERENCE_FAILED, f"onnxruntime failed: {type(exc).__name__}"
            ) from exc
        return np.asarray(outputs[0])
