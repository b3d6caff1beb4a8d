"""Train, export and register radstream's reference lesion-detector (NOT FOR CLINICAL USE).

Run from the repository root::

    PYTHONPATH=. .venv/bin/python -m ops.reference_model.train

It generates labelled synthetic CT phantoms with fixed seeds (:mod:`ops.reference_model.phantoms`),
and for each registered version builds a small ONNX graph with ``onnx.helper``: a fixed bank of
scale-normalised Gaussian second-derivative filters (one convolution), the determinant of the
Hessian and the Laplacian at each scale (blob detectors that ignore straight edges), global max
pooling, then a logistic-regression head trained in numpy (Newton's method, L2 penalty). The
features are computed by ONNX Runtime on images preprocessed by the pipeline's own
``streams.inference.preprocessing``, so training sees exactly what serving sees. It measures the
accuracy on a held-out set it generated with another seed and writes ``model.onnx``,
``manifest.yaml`` (with the weights' SHA-256 and the accuracy) and ``MODEL_CARD.md`` into
``model_registry/lesion-detector/<version>/``. Running it twice writes identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import yaml
from onnx import TensorProto, helper, numpy_helper

from ops.reference_model.phantoms import (
    LESION_CONTRAST_HU,
    LESION_SIGMA_FRACTION,
    NOISE_HU,
    SIZES,
    generate_phantoms,
)
from streams.inference.manifest import REFERENCE_STATUS, InputSpec, parse_manifest
from streams.inference.preprocessing import preprocess_batch

MODEL_NAME = "lesion-detector"
REGISTRY = Path(__file__).resolve().parents[2] / "model_registry"
TRAIN_SEED = 1001
HELDOUT_SEED = 2002
TRAIN_COUNT = 2000
HELDOUT_COUNT = 1000
OPSET = 17
IR_VERSION = 8
WINDOW = {"kind": "window", "center": 40.0, "width": 400.0}
INTENDED_USE = (
    "Demonstration and testing of the radstream pipeline only: flags synthetic CT phantoms "
    "that contain a focal lesion-like blob. REFERENCE MODEL — NOT FOR CLINICAL USE; it was "
    "never trained or validated on real patient images."
)
SCORE_MEANING = (
    "Estimated probability (0-1) that the image contains a focal, roughly round region "
    "brighter or darker than the surrounding soft tissue (synthetic-phantom sense only)."
)


@dataclass(frozen=True)
class VersionPlan:
    """The hyper-parameters that make one registered version."""

    version: str
    size: int
    sigmas: tuple[float, ...]
    laplacian: bool
    l2: float
    default: bool


PLANS = (
    VersionPlan("1.0.0", size=48, sigmas=(1.2, 2.0, 3.0), laplacian=False, l2=1.0, default=False),
    VersionPlan(
        "1.1.0", size=64, sigmas=(1.0, 1.6, 2.5, 4.0), laplacian=True, l2=0.1, default=True
    ),
)


def input_spec(plan: VersionPlan) -> InputSpec:
    """The manifest's input spec of a version (CT, soft-tissue window, 1 channel, NCHW)."""
    return InputSpec.model_validate(
        {
            "tensor": "image",
            "modalities": ("CT",),
            "channels": 1,
            "height": plan.size,
            "width": plan.size,
            "layout": "NCHW",
            "normalisation": WINDOW,
        }
    )


def derivative_kernels(sigmas: tuple[float, ...]) -> np.ndarray:
    """Kernels ``(3*S, 1, K, K)``: Gxx for every scale, then Gyy, then Gxy, each times sigma²."""
    half = math.ceil(2.5 * max(sigmas))
    grid = np.arange(-half, half + 1, dtype=np.float64)
    y, x = np.meshgrid(grid, grid, indexing="ij")
    xx, yy, xy = [], [], []
    for sigma in sigmas:
        g = np.exp(-(x**2 + y**2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
        # Scale-normalised (sigma²) second derivatives, so scales compare fairly.
        xx.append((x**2 / sigma**4 - 1 / sigma**2) * g * sigma**2)
        yy.append((y**2 / sigma**4 - 1 / sigma**2) * g * sigma**2)
        xy.append((x * y / sigma**4) * g * sigma**2)
    return np.stack(xx + yy + xy)[:, np.newaxis].astype(np.float32)


def build_graph(plan: VersionPlan, head: tuple[np.ndarray, float] | None = None) -> onnx.ModelProto:
    """The ONNX model: features only when ``head`` is None, else scores through the head."""
    kernels = derivative_kernels(plan.sigmas)
    scales = len(plan.sigmas)
    pad = kernels.shape[-1] // 2
    init = [
        numpy_helper.from_array(kernels, "hessian_kernels"),
        numpy_helper.from_array(np.array([scales] * 3, dtype=np.int64), "split_sizes"),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["image", "hessian_kernels"], ["d2"], pads=[pad] * 4, name="hessian"
        ),
        helper.make_node("Split", ["d2", "split_sizes"], ["dxx", "dyy", "dxy"], axis=1),
        helper.make_node("Mul", ["dxx", "dyy"], ["xx_yy"]),
        helper.make_node("Mul", ["dxy", "dxy"], ["xy_xy"]),
        helper.make_node("Sub", ["xx_yy", "xy_xy"], ["doh"]),
        helper.make_node("Relu", ["doh"], ["doh_pos"]),
        helper.make_node("GlobalMaxPool", ["doh_pos"], ["doh_max"]),
        # The square root makes the determinant (contrast squared) linear in contrast.
        helper.make_node("Sqrt", ["doh_max"], ["f_doh"]),
    ]
    pooled = ["f_doh"]
    if plan.laplacian:
        nodes += [
            helper.make_node("Add", ["dxx", "dyy"], ["lap"]),
            helper.make_node("Neg", ["lap"], ["neg_lap"]),
            helper.make_node("Relu", ["neg_lap"], ["bright"]),
            helper.make_node("Relu", ["lap"], ["dark"]),
            helper.make_node("GlobalMaxPool", ["bright"], ["f_bright"]),
            helper.make_node("GlobalMaxPool", ["dark"], ["f_dark"]),
        ]
        pooled += ["f_bright", "f_dark"]
    nodes += [
        helper.make_node("Concat", pooled, ["pooled"], axis=1),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
    ]
    n_features = scales * len(pooled)
    batch = "N"
    if head is None:
        output = helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, n_features])
    else:
        weights, bias = head
        init += [
            numpy_helper.from_array(weights.reshape(n_features, 1).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([bias], dtype=np.float32), "b"),
        ]
        nodes += [
            helper.make_node("Gemm", ["features", "w", "b"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["scores"]),
        ]
        output = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 1])
    graph = helper.make_graph(
        nodes,
        f"{MODEL_NAME}-{plan.version}",
        [
            helper.make_tensor_value_info(
                "image", TensorProto.FLOAT, [batch, 1, plan.size, plan.size]
            )
        ],
        [output],
        initializer=init,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="radstream-reference-trainer",
        producer_version="1",
        doc_string="radstream reference lesion-detector. REFERENCE MODEL - NOT FOR CLINICAL USE.",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def run(model: onnx.ModelProto, inputs: np.ndarray) -> np.ndarray:
    """Run a graph with ONNX Runtime on the CPU, single-threaded so results are reproducible."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return np.asarray(session.run(None, {"image": inputs})[0], dtype=np.float64)


def dataset(seed: int, count: int, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed images ``(N, 1, H, W)`` and labels ``(N,)`` of a seeded phantom set."""
    phantoms = generate_phantoms(seed, count)
    images = preprocess_batch([p.pixels for p in phantoms], spec)
    return images, np.array([p.lesion for p in phantoms], dtype=np.float64)


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
    return float(np.mean((scores[:, 0] >= threshold) == (labels == 1.0)))


def manifest_dict(plan: VersionPlan, digest: str, metrics: dict[str, float]) -> dict[str, Any]:
    """The manifest of a version as plain data, in the documented key order."""
    return {
        "name": MODEL_NAME,
        "version": plan.version,
        "runtime": "onnxruntime",
        "default": plan.default,
        "status": REFERENCE_STATUS,
        "intended_use": INTENDED_USE,
        "model_card": "MODEL_CARD.md",
        "weights": {"file": "model.onnx", "sha256": digest},
        "input": input_spec(plan).model_dump(mode="json"),
        "output": {
            "tensor": "scores",
            "labels": ["lesion"],
            "score_meaning": SCORE_MEANING,
            "thresholds": {"lesion": 0.5},
            "negative_decision": "no_finding",
        },
        "metrics": metrics,
    }


def model_card(plan: VersionPlan, digest: str, metrics: dict[str, float]) -> str:
    """The model card of a version (Markdown)."""
    sizes = ", ".join(f"{h}x{w}" for h, w in SIZES)
    noise = ", ".join(f"{n:g}" for n in NOISE_HU)
    features = "determinant of the Hessian" + (
        " and bright/dark Laplacian" if plan.laplacian else ""
    )
    return f"""# Model card: {MODEL_NAME} {plan.version}

**REFERENCE MODEL — NOT FOR CLINICAL USE.** Status: `{REFERENCE_STATUS}`.

radstream ships this model so the pipeline runs end to end out of the box. Hospitals register
their own models next to it (see `docs/inference.md`).

## Intended use
{INTENDED_USE}

Out of scope: any diagnosis, triage, screening or other decision about a person.

## Model
- Runtime: ONNX Runtime (opset {OPSET}); weights `model.onnx`, SHA-256 `{digest}`.
- Input: CT in Hounsfield units, soft-tissue window (center 40, width 400) to [0, 1],
  area-resized to {plan.size}x{plan.size}, 1 channel, NCHW float32.
- Architecture: one convolution with fixed scale-normalised Gaussian second-derivative
  filters at sigmas {", ".join(f"{s:g}" for s in plan.sigmas)} px; {features} per scale;
  global max pooling; logistic-regression head (L2 = {plan.l2:g}) trained with Newton's method.
- Output: `scores[:, 0]` = probability of `lesion`; decision `lesion` when the score is at least
  0.5, else `no_finding`.
- Default version: {"yes" if plan.default else "no"}.

## Training data
Synthetic only, generated by `ops/reference_model/phantoms.py` with seed {TRAIN_SEED}
({TRAIN_COUNT} images, half with a lesion): an elliptical body (soft tissue around 40 HU inside a
fat ring at -90 HU) in air (-1000 HU), image sizes {sizes}, Gaussian noise of {noise} HU. A
positive image has one Gaussian blob inside the tissue, sigma {LESION_SIGMA_FRACTION[0]:g}-
{LESION_SIGMA_FRACTION[1]:g} of the image size, contrast ±{LESION_CONTRAST_HU[0]:g}-
{LESION_CONTRAST_HU[1]:g} HU. No real patient image was used.

## Evaluation
Held-out synthetic set generated with seed {HELDOUT_SEED} ({HELDOUT_COUNT} images, balanced):

| metric | value |
|---|---|
| accuracy | {metrics["heldout_accuracy"]:.4f} |
| sensitivity | {metrics["heldout_sensitivity"]:.4f} |
| specificity | {metrics["heldout_specificity"]:.4f} |

`tests/unit/inference/test_reference_model_accuracy.py` re-measures the accuracy through the
registry, preprocessing and runtime the pipeline uses, on a fresh set with another seed.

## Limitations
- Knows nothing about anatomy: real CT has vessels, bowel gas, bone and implants, all of which
  would look like "lesions" to it. Its scores on real images mean nothing.
- Small or faint blobs in strong noise are missed; blobs near the body outline are not in the
  training data.
- Not calibrated for any population; the 0.5 threshold was not tuned.

## Reproduce
`PYTHONPATH=. .venv/bin/python -m ops.reference_model.train` (deterministic: same bytes, same
SHA-256, on the same CPU architecture and ONNX Runtime version).
"""


def train_version(plan: VersionPlan, registry: Path) -> dict[str, float]:
    """Train, export, evaluate and register one version; return its held-out metrics."""
    spec = input_spec(plan)
    train_x, train_y = dataset(TRAIN_SEED, TRAIN_COUNT, spec)
    features = run(build_graph(plan), train_x)
    head = fit_logistic(features, train_y, plan.l2)
    model = build_graph(plan, head)
    heldout_x, heldout_y = dataset(HELDOUT_SEED, HELDOUT_COUNT, spec)
    scores = run(model, heldout_x)
    predicted = scores[:, 0] >= 0.5
    positive = heldout_y == 1.0
    metrics = {
        "heldout_accuracy": round(accuracy(scores, heldout_y), 4),
        "heldout_sensitivity": round(float(predicted[positive].mean()), 4),
        "heldout_specificity": round(float((~predicted[~positive]).mean()), 4),
        "heldout_count": float(HELDOUT_COUNT),
        "heldout_seed": float(HELDOUT_SEED),
        "train_accuracy": round(accuracy(run(model, train_x), train_y), 4),
    }
    weights = model.SerializeToString()
    digest = hashlib.sha256(weights).hexdigest()
    directory = registry / MODEL_NAME / plan.version
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(weights)
    text = "# Written by ops/reference_model/train.py — regenerate, do not edit by hand.\n"
    text += yaml.safe_dump(
        manifest_dict(plan, digest, metrics), sort_keys=False, allow_unicode=True, width=100
    )
    parse_manifest(text)  # refuse to write a manifest the registry would not load
    (directory / "manifest.yaml").write_text(text, encoding="utf-8")
    (directory / "MODEL_CARD.md").write_text(model_card(plan, digest, metrics), encoding="utf-8")
    return metrics


def main() -> None:
    """Train every planned version into the registry and print their metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=REGISTRY)
    args = parser.parse_args()
    for plan in PLANS:
        metrics = train_version(plan, args.registry)
        print(f"{MODEL_NAME}@{plan.version}: {metrics}")


if __name__ == "__main__":
    main()
