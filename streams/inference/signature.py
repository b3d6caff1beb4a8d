"""The tensors an ONNX graph declares, and whether a manifest tells the truth about them.

A manifest that says "64x64 grey image in, 2 scores out" for a graph that takes 3x224x224 and
returns 1000 logits would fail on the first image, or worse, be fed a tensor the runtime
reshapes silently. :func:`check_signature` compares the manifest with the graph's declared
inputs and outputs when a model is added and every time the registry loads it; a mismatch is
``MODEL_MANIFEST_MISMATCH`` and the version is not served.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.errors import ErrorCode, InferenceError
from streams.inference.manifest import ModelManifest

FLOAT_TYPES = frozenset({"tensor(float)"})
SCORE_TYPES = frozenset({"tensor(float)", "tensor(double)"})

Dim = int | None
"""A fixed dimension, or ``None`` for a symbolic/dynamic one (e.g. the batch axis ``N``)."""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One graph input or output: name, ONNX element type (``tensor(float)``) and shape."""

    name: str
    element_type: str
    shape: tuple[Dim, ...] | None  # None when the graph does not declare the rank


@dataclass(frozen=True, slots=True)
class GraphSignature:
    """The inputs and outputs a graph declares."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def input(self, name: str) -> TensorInfo | None:
        """The input called ``name``, if any."""
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorInfo | None:
        """The output called ``name``, if any."""
        return next((t for t in self.outputs if t.name == name), None)


def _dims(shape: tuple[Dim, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _input_problems(manifest: ModelManifest, signature: GraphSignature) -> list[str]:
    spec = manifest.input
    tensor = signature.input(spec.tensor)
    if tensor is None:
        names = ", ".join(t.name for t in signature.inputs)
        return [f"input {spec.tensor!r} is not in the graph (inputs: {names})"]
    problems = []
    if len(signature.inputs) != 1:
        problems.append(f"the graph has {len(signature.inputs)} inputs; radstream feeds one")
    if tensor.element_type not in FLOAT_TYPES:
        problems.append(f"input {tensor.name!r} is {tensor.element_type}, not tensor(float)")
    if tensor.shape is None:
        return problems
    if len(tensor.shape) != 4:
        return [*problems, f"input {tensor.name!r} has rank {len(tensor.shape)}, not 4"]
    if tensor.shape[0] is not None:
        problems.append(
            f"input {tensor.name!r} fixes the batch axis at {tensor.shape[0]}; export it dynamic"
        )
    expected = (
        (spec.channels, spec.height, spec.width)
        if spec.layout == "NCHW"
        else (spec.height, spec.width, spec.channels)
    )
    declared = tensor.shape[1:]
    if any(d is not None and d != e for d, e in zip(declared, expected, strict=True)):
        problems.append(
            f"input {tensor.name!r} is {_dims(tensor.shape)} but the manifest declares "
            f"{spec.layout} {_dims((None, *expected))}"
        )
    return problems


def _output_problems(manifest: ModelManifest, signature: GraphSignature) -> list[str]:
    spec = manifest.output
    tensor = signature.output(spec.tensor)
    if tensor is None:
        names = ", ".join(t.name for t in signature.outputs)
        return [f"output {spec.tensor!r} is not in the graph (outputs: {names})"]
    problems = []
    if tensor.element_type not in SCORE_TYPES:
        problems.append(f"output {tensor.name!r} is {tensor.element_type}, not float scores")
    if tensor.shape is None:
        return problems
    if len(tensor.shape) != 2:
        return [*problems, f"output {tensor.name!r} has rank {len(tensor.shape)}, not 2"]
    labels = len(spec.labels)
    if tensor.shape[1] is not None and tensor.shape[1] != labels:
        problems.append(
            f"output {tensor.name!r} is {_dims(tensor.shape)} but the manifest declares "
            f"{labels} label(s)"
        )
    return problems


def signature_problems(manifest: ModelManifest, signature: GraphSignature) -> list[str]:
    """Every way the manifest's input and output specs contradict the graph (empty if none).

    Dimensions the graph leaves dynamic are accepted (the manifest's size is what radstream
    resizes to); the batch axis must be dynamic, since images are micro-batched.
    """
    return _input_problems(manifest, signature) + _output_problems(manifest, signature)


def check_signature(manifest: ModelManifest, signature: GraphSignature) -> None:
    """Raise ``MODEL_MANIFEST_MISMATCH`` naming the problems when the manifest lies."""
    problems = signature_problems(manifest, signature)
    if problems:
        raise InferenceError(
            ErrorCode.MODEL_MANIFEST_MISMATCH,
            f"manifest of {manifest.model_id} does not match its graph: {'; '.join(problems)}"[
                :500
            ],
        )
