"""Train, export and register radstream's reference models (NOT FOR CLINICAL USE).

Run from the repository root::

    PYTHONPATH=. .venv/bin/python -m ops.reference_model.train

It trains the lesion-detector (this module) and the image-quality model
(:mod:`ops.reference_model.quality`). Released versions are frozen: the script rebuilds only the
newest version of each model unless ``--include-frozen`` is given, because a retrain on other
library versions can differ in the last digits of a weight, and a released version's bytes
never change.

The lesion-detector:

It generates labelled synthetic CT phantoms with fixed seeds (:mod:`ops.reference_model.phantoms`),
and for each registered version builds a small ONNX graph with ``onnx.helper``: a fixed bank of
scale-normalised Gaussian second-derivative filters (one convolution), the determinant of the
Hessian and the Laplacian at each scale (blob detectors that ignore straight edges), global max
pooling, then a logistic-regression head trained in numpy (Newton's method, L2 penalty). The
features are computed by ONNX Runtime on images preprocessed by the pipeline's own
``streams.inference.preprocessing``, so training sees exactly what serving sees. It measures the
accuracy on a held-out set it generated with another seed and writes ``model.onnx``,
``manifest.yaml`` (with the weights' SHA-256 and the accuracy) and ``MODEL_CARD.md`` into
``model_registry/lesion-detector/<version>/``. From 1.2.0 the manifest also declares the input
guard (the training images' statistic ranges) and the reference distribution for drift (the
held-out set's scores and statistics). Running it twice writes identical files (one BLAS thread,
set by the package, and the same library versions).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ops.reference_model import quality
from ops.reference_model.common import (
    OPSET,
    REGISTRY,
    add_logistic_head,
    binary_metrics,
    evaluation_metrics,
    finish_model,
    fit_logistic,
    guard_ranges,
    manifest_data,
    reference,
    run,
    statistics_matrix,
    write_version,
)
from ops.reference_model.phantoms import (
    LESION_CONTRAST_HU,
    LESION_SIGMA_FRACTION,
    NOISE_HU,
    SIZES,
    generate_phantoms,
)
from streams.inference.manifest import REFERENCE_STATUS, InputSpec
from streams.inference.preprocessing import preprocess_batch

MODEL_NAME = "lesion-detector"
TRAIN_SEED = 1001
HELDOUT_SEED = 2002
TRAIN_COUNT = 2000
HELDOUT_COUNT = 1000
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
    guard: bool = False  # declare the input guard and the drift reference (from 1.2.0)
    frozen: bool = False  # released before the guard: never rewritten by default


PLANS = (
    VersionPlan(
        "1.0.0",
        size=48,
        sigmas=(1.2, 2.0, 3.0),
        laplacian=False,
        l2=1.0,
        default=False,
        frozen=True,
    ),
    VersionPlan(
        "1.1.0",
        size=64,
        sigmas=(1.0, 1.6, 2.5, 4.0),
        laplacian=True,
        l2=0.1,
        default=True,
        frozen=True,
    ),
    VersionPlan(
        "1.2.0",
        size=64,
        sigmas=(1.0, 1.6, 2.5, 4.0),
        laplacian=True,
        l2=0.1,
        default=False,
        guard=True,
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
        output = add_logistic_head(nodes, init, head, n_features)
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
    return finish_model(
        graph, "radstream reference lesion-detector. REFERENCE MODEL - NOT FOR CLINICAL USE."
    )


def dataset(seed: int, count: int, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed images ``(N, 1, H, W)`` and labels ``(N,)`` of a seeded phantom set."""
    phantoms = generate_phantoms(seed, count)
    images = preprocess_batch([p.pixels for p in phantoms], spec)
    return images, np.array([p.lesion for p in phantoms], dtype=np.float64)


def manifest_dict(
    plan: VersionPlan,
    metrics: dict[str, float],
    guard: dict[str, dict[str, float]] | None = None,
    drift_reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a version as plain data, in the documented key order."""
    spec = input_spec(plan).model_dump(mode="json")
    if guard:
        spec["expected_statistics"] = guard
    else:
        del spec["expected_statistics"]
    return manifest_data(
        MODEL_NAME,
        plan.version,
        intended_use=INTENDED_USE,
        spec=spec,
        label="lesion",
        threshold=0.5,
        score_meaning=SCORE_MEANING,
        negative_decision="no_finding",
        metrics=metrics,
        drift_reference=drift_reference,
        # Released with the legacy flag; rollout.yaml decides modes since 1.2.0.
        legacy_default=plan.default if plan.frozen else None,
    )


GUARD_SECTION = """
## Input guard (out-of-distribution images get no score)
The manifest declares the range of each statistic of the preprocessed 64x64 input that the
training phantoms span (their 0.1-99.9 % range, widened; see `input.expected_statistics`). An
image outside any range is refused with `MODEL_INPUT_OUT_OF_DISTRIBUTION` instead of scored.
Real CT slices are outside: bone and contrast push `fraction_high` above zero and lungs and
anatomy move `mean` and `fraction_low` (for pydicom's `CT_small.dcm`: `fraction_high` 0.064,
`mean` 0.397). Earlier versions had no guard and scored every real CT slice as `lesion` (1.00).

## Drift reference
`reference` in the manifest holds 21 quantiles of the score and of every input statistic on the
held-out set; the workers export them next to the live histograms and the
`RadstreamModelScoreDrift` / `RadstreamModelInputDrift` alerts compare the two.

## Demo samples
`samples/dicom/ct_phantom_lesion.dcm` and `ct_phantom_clear.dcm` are phantoms of the training
kind written as CT DICOM (`samples/generate_samples.py`): the model flags the first and not the
second. `samples/dicom/ct_small.dcm`, a real CT slice, is refused as out of distribution.
"""


def rollout_line(plan: VersionPlan) -> str:
    """The card's line about serving: the legacy default flag, or where the mode is kept."""
    if plan.frozen:
        return f"- Default version: {'yes' if plan.default else 'no'}."
    return (
        "- Rollout mode: kept in `model_registry/rollout.yaml` (it changes; this card does not).\n"
        "- Same recipe and training data as 1.1.0, retrained with one BLAS thread (the weights\n"
        "  differ from 1.1.0's in the sixth significant digit; the accuracy is the same), plus\n"
        "  the input guard and the drift reference below."
    )


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
their own models next to it (see `{"docs/inference.md" if plan.frozen else "docs/models.md"}`).

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
{rollout_line(plan)}

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
{GUARD_SECTION if plan.guard else ""}
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
    scores = run(model, heldout_x)[:, 0]
    heldout = binary_metrics(scores, heldout_y, 0.5)
    metrics = evaluation_metrics(
        heldout,
        binary_metrics(run(model, train_x)[:, 0], train_y, 0.5)["accuracy"],
        heldout_count=HELDOUT_COUNT,
        heldout_seed=HELDOUT_SEED,
    )
    guard = drift_reference = None
    if plan.guard:
        guard = guard_ranges(statistics_matrix(train_x))
        drift_reference = reference(
            f"held-out synthetic phantoms (seed {HELDOUT_SEED}, {HELDOUT_COUNT} images)",
            {"lesion": scores},
            statistics_matrix(heldout_x),
        )
    write_version(
        registry,
        model,
        manifest_dict(plan, metrics, guard, drift_reference),
        model_card(plan, "{digest}", metrics),
    )
    return metrics


def main() -> None:
    """Train the reference models' versions into the registry and print their metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=REGISTRY)
    parser.add_argument(
        "--include-frozen", action="store_true", help="also rebuild released versions"
    )
    args = parser.parse_args()
    for plan in PLANS:
        if plan.frozen and not args.include_frozen:
            continue
        metrics = train_version(plan, args.registry)
        print(f"{MODEL_NAME}@{plan.version}: {metrics}")
    for version, metrics in quality.train(args.registry).items():
        print(f"{quality.MODEL_NAME}@{version}: {metrics}")


if __name__ == "__main__":
    main()
