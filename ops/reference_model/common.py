"""What every reference model's training shares: running graphs, fitting heads, measuring,
deriving the input guard and the drift reference, and writing a registry version.

Training sees exactly what serving sees: images go through the pipeline's own
``streams.inference.preprocessing`` and statistics through ``streams.inference.input_guard``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import yaml
from onnx import TensorProto, helper, numpy_helper

from streams.inference.input_guard import input_statistics
from streams.inference.manifest import (
    REFERENCE_QUANTILE_LEVELS,
    REFERENCE_STATUS,
    InputStatistic,
    ModelManifest,
    parse_manifest,
)
from streams.inference.runtime import describe_graph
from streams.inference.signature import check_signature

REGISTRY = Path(__file__).resolve().parents[2] / "model_registry"
OPSET = 17
IR_VERSION = 8
# The input guard accepts the training data's 0.1 %..99.9 % range of each statistic, widened by
# a quarter of that range plus 0.01: images like the training data pass, other kinds do not.
GUARD_QUANTILES = (0.001, 0.999)
GUARD_MARGIN_SHARE = 0.25
GUARD_MARGIN_FLOOR = 0.01
HEADER = "# Written by ops/reference_model/train.py — regenerate, do not edit by hand.\n"


def run(model: onnx.ModelProto, inputs: np.ndarray) -> np.ndarray:
    """Run a graph with ONNX Runtime on the CPU, single-threaded so results are reproducible."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return np.asarray(session.run(None, {"image": inputs})[0], dtype=np.float64)


def finish_model(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    """Wrap a graph as a checked model with radstream's opset, IR version and producer."""
    model = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="radstream-reference-trainer",
        producer_version="1",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def add_logistic_head(
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    head: tuple[np.ndarray, float],
    n_features: int,
) -> onnx.ValueInfoProto:
    """Append ``scores = sigmoid(features @ w + b)`` to a feature graph; return the output."""
    weights, bias = head
    initializers += [
        numpy_helper.from_array(weights.reshape(n_features, 1).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([bias], dtype=np.float32), "b"),
    ]
    nodes += [
        helper.make_node("Gemm", ["features", "w", "b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["scores"]),
    ]
    return helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 1])


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression by Newton's method, on standardised features.

    Returns weights and bias for the *raw* features (the standardisation is folded in), so the
    ONNX head is a single Gemm.
    """
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-12
    z = np.hstack([(features - mean) / std, np.ones((len(features), 1))])
    theta = np.zeros(z.shape[1])
    penalty = np.diag([l2] * (z.shape[1] - 1) + [0.0])
    for _ in range(50):
        p = 1 / (1 + np.exp(-(z @ theta)))
        gradient = z.T @ (p - labels) + penalty @ theta
        hessian = (z.T * (p * (1 - p))) @ z + penalty
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    weights = theta[:-1] / std
    bias = theta[-1] - float(np.sum(theta[:-1] * mean / std))
    # Rounding makes the exported file byte-identical across runs despite last-bit noise.
    return np.round(weights, 6), round(bias, 6)


def accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    """The share of images whose thresholded score equals the label."""
    return float(np.mean((scores >= threshold) == (labels == 1.0)))


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, sensitivity and specificity of ``scores >= threshold`` against 0/1 labels."""
    predicted = scores >= threshold
    positive = labels == 1.0
    return {
        "accuracy": round(accuracy(scores, labels, threshold), 4),
        "sensitivity": round(float(predicted[positive].mean()), 4),
        "specificity": round(float((~predicted[~positive]).mean()), 4),
    }


def statistics_matrix(
    tensors: np.ndarray, layout: str = "NCHW"
) -> dict[InputStatistic, np.ndarray]:
    """Every input statistic of every preprocessed image, as the guard computes them."""
    rows = [input_statistics(tensor, layout) for tensor in tensors]
    return {name: np.array([row[name] for row in rows]) for name in InputStatistic}


def guard_ranges(statistics: Mapping[InputStatistic, np.ndarray]) -> dict[str, dict[str, float]]:
    """The manifest's ``input.expected_statistics`` from the training images' statistics."""
    ranges = {}
    for name, values in statistics.items():
        low, high = (float(q) for q in np.quantile(values, GUARD_QUANTILES))
        margin = GUARD_MARGIN_SHARE * (high - low) + GUARD_MARGIN_FLOOR
        lower = math.floor((low - margin) * 10_000) / 10_000
        upper = math.ceil((high + margin) * 10_000) / 10_000
        if float(values.min()) >= 0.0:  # std, shares and gradients cannot go below 0
            lower = max(lower, 0.0)
        if name in (InputStatistic.FRACTION_LOW, InputStatistic.FRACTION_HIGH):
            upper = min(upper, 1.0)
        ranges[name.value] = {"min": lower, "max": upper}
    return ranges


def quantiles(values: np.ndarray) -> list[float]:
    """The 21 reference quantiles of ``values`` (levels 0, 0.05, ..., 1), rounded to 1e-4."""
    return [round(float(q), 4) for q in np.quantile(values, REFERENCE_QUANTILE_LEVELS)]


def reference(
    source: str,
    scores: Mapping[str, np.ndarray],
    statistics: Mapping[InputStatistic, np.ndarray],
) -> dict[str, Any]:
    """The manifest's ``reference`` section: quantiles of scores and input statistics."""
    return {
        "source": source,
        "scores": {label: quantiles(values) for label, values in scores.items()},
        "statistics": {name.value: quantiles(values) for name, values in statistics.items()},
    }


def evaluation_metrics(
    heldout: Mapping[str, float], train_accuracy: float, *, heldout_count: int, heldout_seed: int
) -> dict[str, float]:
    """The manifest's ``metrics``: the held-out set's binary metrics and identity, then training
    accuracy (the registry and model cards read these names)."""
    return {
        "heldout_accuracy": heldout["accuracy"],
        "heldout_sensitivity": heldout["sensitivity"],
        "heldout_specificity": heldout["specificity"],
        "heldout_count": float(heldout_count),
        "heldout_seed": float(heldout_seed),
        "train_accuracy": train_accuracy,
    }


def manifest_data(
    name: str,
    version: str,
    *,
    intended_use: str,
    spec: dict[str, Any],
    label: str,
    threshold: float,
    score_meaning: str,
    negative_decision: str,
    metrics: dict[str, float],
    drift_reference: dict[str, Any] | None,
    legacy_default: bool | None = None,
) -> dict[str, Any]:
    """A reference model's manifest as plain data, in the documented key order.

    The output is the one ``scores`` tensor :func:`add_logistic_head` writes, with one label.
    ``legacy_default`` is the ``default`` flag of versions released before ``rollout.yaml``
    decided modes (``None``: no flag); a falsy ``drift_reference`` leaves ``reference`` out.
    """
    data: dict[str, Any] = {"name": name, "version": version, "runtime": "onnxruntime"}
    if legacy_default is not None:
        data["default"] = legacy_default
    data |= {
        "status": REFERENCE_STATUS,
        "intended_use": intended_use,
        "model_card": "MODEL_CARD.md",
        "input": spec,
        "output": {
            "tensor": "scores",
            "labels": [label],
            "score_meaning": score_meaning,
            "thresholds": {label: threshold},
            "negative_decision": negative_decision,
        },
        "metrics": metrics,
    }
    if drift_reference:
        data["reference"] = drift_reference
    return data


def write_version(
    registry: Path,
    model: onnx.ModelProto,
    manifest: Mapping[str, Any],
    card: str,
) -> ModelManifest:
    """Write ``model.onnx``, ``manifest.yaml`` and ``MODEL_CARD.md`` of one version.

    The manifest's ``weights.sha256`` is filled in here; the manifest is checked the way the
    registry will (schema, and the tensors against the graph) before anything is written.
    """
    weights = model.SerializeToString()
    digest = hashlib.sha256(weights).hexdigest()
    data: dict[str, Any] = {}
    for key, value in manifest.items():  # weights go after model_card, the documented order
        data[key] = value
        if key == "model_card":
            data["weights"] = {"file": "model.onnx", "sha256": digest}
    text = HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    parsed = parse_manifest(text)  # refuse to write a manifest the registry would not load
    check_signature(parsed, describe_graph(weights))
    directory = registry / parsed.name / parsed.version
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(weights)
    (directory / "manifest.yaml").write_text(text, encoding="utf-8")
    (directory / "MODEL_CARD.md").write_text(card.replace("{digest}", digest), encoding="utf-8")
    return parsed


def metric_rows(metrics: Mapping[str, float], names: Sequence[str]) -> str:
    """Markdown table rows ``| name | value |`` for a model card."""
    return "\n".join(f"| {name} | {metrics[name]:.4f} |" for name in names)
