"""The reference image-quality model: flags images whose noise is high (NOT FOR CLINICAL USE).

Modality-agnostic: any grey or colour image, min-max normalised, area-resized to 64x64. One
ONNX graph computes four fixed noise and edge features, as their logarithms:

- the median and the mean absolute response of Immerkaer's noise-estimation kernel (a second
  difference that cancels constant and linear intensity, so mostly noise remains; the median
  ignores the few pixels on edges);
- the 99th and 90th percentiles of the gradient magnitude (Sobel), which tell real edges apart;

then a logistic-regression head trained in numpy (Newton's method) on synthetic scenes
(:mod:`ops.reference_model.scenes`). The decision threshold is chosen on a separate tuning set
for 98 % specificity (a quality flag that fires on good images is ignored), and the accuracy is
measured on a held-out set. It writes ``model_registry/image-quality/<version>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ops.reference_model.common import (
    add_logistic_head,
    binary_metrics,
    evaluation_metrics,
    finish_model,
    fit_logistic,
    guard_ranges,
    manifest_data,
    metric_rows,
    reference,
    run,
    statistics_matrix,
    write_version,
)
from ops.reference_model.scenes import (
    ACCEPTABLE_NOISE,
    MODEL_SIZE,
    NOISY_FROM,
    NOISY_NOISE,
    SIZES,
    generate_scenes,
)
from streams.inference.manifest import REFERENCE_STATUS, InputSpec
from streams.inference.preprocessing import preprocess_batch

MODEL_NAME = "image-quality"
VERSION = "1.0.0"
LABEL = "noise"
TRAIN_SEED, TUNING_SEED, HELDOUT_SEED = 1001, 1501, 2002
TRAIN_COUNT, TUNING_COUNT, HELDOUT_COUNT = 2000, 1000, 1000
TARGET_SPECIFICITY = 0.98
L2 = 0.1
EPSILON = 1e-4
FEATURES = ("median |noise kernel|", "mean |noise kernel|", "p99 |gradient|", "p90 |gradient|")
INTENDED_USE = (
    "Demonstration and testing of the radstream pipeline only: flags images whose random noise "
    "is high compared with their contrast, at 64x64. REFERENCE MODEL — NOT FOR CLINICAL USE; it "
    "was trained on synthetic images only and was never validated on patient images."
)
SCORE_MEANING = (
    "Estimated probability (0-1) that the image's noise, at 64x64 after min-max normalisation, "
    f"is at least {NOISY_FROM:.0%} of its contrast (synthetic-scene sense only)."
)


def input_spec() -> InputSpec:
    """Any modality, grey (colour is reduced to luma), min-max normalised, 64x64, NCHW."""
    return InputSpec.model_validate(
        {
            "tensor": "image",
            "modalities": (),
            "channels": 1,
            "height": MODEL_SIZE,
            "width": MODEL_SIZE,
            "layout": "NCHW",
            "normalisation": {"kind": "minmax"},
        }
    )


def _k(count: int) -> int:
    return max(1, count)


def build_graph(head: tuple[np.ndarray, float] | None = None) -> onnx.ModelProto:
    """The ONNX model: log-features only when ``head`` is None, else the ``noise`` score."""
    size = MODEL_SIZE
    noise_kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32) / 8
    valid = (size - 2) ** 2  # "valid" 3x3 convolutions: no border effects
    init = [
        numpy_helper.from_array(noise_kernel[np.newaxis, np.newaxis], "noise_kernel"),
        numpy_helper.from_array(np.stack([sobel, sobel.T])[:, np.newaxis], "sobel"),
        numpy_helper.from_array(np.array([_k(valid // 2)], dtype=np.int64), "k_half"),
        numpy_helper.from_array(np.array([_k(valid // 100)], dtype=np.int64), "k_top1"),
        numpy_helper.from_array(np.array([_k(valid // 10)], dtype=np.int64), "k_top10"),
        numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "split_xy"),
        numpy_helper.from_array(np.array([EPSILON], dtype=np.float32), "epsilon"),
    ]
    nodes = [
        # Immerkaer's kernel: its median absolute response (the lower half's maximum) and mean.
        helper.make_node("Conv", ["image", "noise_kernel"], ["hp"], name="noise_filter"),
        helper.make_node("Abs", ["hp"], ["hp_abs"]),
        helper.make_node("Flatten", ["hp_abs"], ["hp_flat"], axis=1),
        helper.make_node("TopK", ["hp_flat", "k_half"], ["hp_low", "hp_low_i"], axis=1, largest=0),
        helper.make_node("ReduceMax", ["hp_low"], ["f_median"], axes=[1], keepdims=1),
        helper.make_node("ReduceMean", ["hp_flat"], ["f_mean"], axes=[1], keepdims=1),
        # Sobel gradient magnitude: its 99th and 90th percentiles (the top 1 % / 10 % minimum).
        helper.make_node("Conv", ["image", "sobel"], ["grad"], name="gradient_filter"),
        helper.make_node("Mul", ["grad", "grad"], ["grad_sq"]),
        helper.make_node("Split", ["grad_sq", "split_xy"], ["gx_sq", "gy_sq"], axis=1),
        helper.make_node("Add", ["gx_sq", "gy_sq"], ["mag_sq"]),
        helper.make_node("Sqrt", ["mag_sq"], ["mag"]),
        helper.make_node("Flatten", ["mag"], ["mag_flat"], axis=1),
        helper.make_node("TopK", ["mag_flat", "k_top1"], ["top1", "top1_i"], axis=1),
        helper.make_node("ReduceMin", ["top1"], ["f_p99"], axes=[1], keepdims=1),
        helper.make_node("TopK", ["mag_flat", "k_top10"], ["top10", "top10_i"], axis=1),
        helper.make_node("ReduceMin", ["top10"], ["f_p90"], axes=[1], keepdims=1),
        helper.make_node("Concat", ["f_median", "f_mean", "f_p99", "f_p90"], ["raw"], axis=1),
        helper.make_node("Add", ["raw", "epsilon"], ["raw_positive"]),
        helper.make_node("Log", ["raw_positive"], ["features"]),
    ]
    batch = "N"
    if head is None:
        output = helper.make_tensor_value_info(
            "features", TensorProto.FLOAT, [batch, len(FEATURES)]
        )
    else:
        output = add_logistic_head(nodes, init, head, len(FEATURES))
    graph = helper.make_graph(
        nodes,
        f"{MODEL_NAME}-{VERSION}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 1, size, size])],
        [output],
        initializer=init,
    )
    return finish_model(
        graph, "radstream reference image-quality model. REFERENCE MODEL - NOT FOR CLINICAL USE."
    )


def dataset(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed images ``(N, 1, 64, 64)`` and ``noisy`` labels ``(N,)`` of a seeded set."""
    scenes = generate_scenes(seed, count)
    images = preprocess_batch([s.pixels for s in scenes], input_spec())
    return images, np.array([s.noisy for s in scenes], dtype=np.float64)


def tuned_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The lowest threshold (in steps of 0.01) whose specificity reaches the target."""
    negatives = scores[labels == 0.0]
    for step in range(1, 100):
        threshold = step / 100
        if float(np.mean(negatives < threshold)) >= TARGET_SPECIFICITY:
            return threshold
    return 0.99


def manifest_dict(
    threshold: float,
    metrics: dict[str, float],
    guard: dict[str, dict[str, float]],
    drift_reference: dict[str, Any],
) -> dict[str, Any]:
    """The manifest as plain data, in the documented key order."""
    spec = input_spec().model_dump(mode="json")
    spec["expected_statistics"] = guard
    return manifest_data(
        MODEL_NAME,
        VERSION,
        intended_use=INTENDED_USE,
        spec=spec,
        label=LABEL,
        threshold=threshold,
        score_meaning=SCORE_MEANING,
        negative_decision="acceptable",
        metrics=metrics,
        drift_reference=drift_reference,
    )


def model_card(threshold: float, metrics: dict[str, float]) -> str:
    """The model card (Markdown); ``{digest}`` is filled in when the weights are written."""
    sizes = ", ".join(f"{h}x{w}" for h, w in SIZES)
    rows = metric_rows(metrics, ["heldout_accuracy", "heldout_sensitivity", "heldout_specificity"])
    return f"""# Model card: {MODEL_NAME} {VERSION}

**REFERENCE MODEL — NOT FOR CLINICAL USE.** Status: `{REFERENCE_STATUS}`.

radstream ships this model beside `lesion-detector` so that routing across models, multi-model
micro-batching and per-model thresholds show in the demo. Hospitals register their own models
next to it (see `docs/models.md`).

## Intended use
{INTENDED_USE}

Out of scope: any diagnosis, triage or decision about a person; judging image quality for
clinical reading.

## Model
- Runtime: ONNX Runtime (opset 17); weights `model.onnx`, SHA-256 `{{digest}}`.
- Input: any image (grey, or colour reduced to luma), min-max normalised per image to [0, 1],
  area-resized to {MODEL_SIZE}x{MODEL_SIZE}, 1 channel, NCHW float32. Images larger than 64 px
  are averaged down first, which also averages noise away: the model judges the noise visible
  at {MODEL_SIZE}x{MODEL_SIZE}.
- Architecture: fixed features ({", ".join(FEATURES)}; logarithms) and a logistic-regression
  head (L2 = {L2:g}) trained with Newton's method.
- Output: `scores[:, 0]` = probability of `{LABEL}`; decision `{LABEL}` when the score is at
  least {threshold:g}, else `acceptable`. The threshold was chosen on a separate tuning set (seed
  {TUNING_SEED}, {TUNING_COUNT} images) as the lowest reaching {TARGET_SPECIFICITY:.0%}
  specificity: an image-quality flag that fires on good images gets ignored.

## Training data
Synthetic only, generated by `ops/reference_model/scenes.py` with seed {TRAIN_SEED}
({TRAIN_COUNT} images): piecewise-smooth scenes of 3-13 ellipses with texture and intensity
bias, sizes {sizes}, random gain and offset. Half are acceptable (relative noise
{ACCEPTABLE_NOISE[0]:g}-{ACCEPTABLE_NOISE[1]:g}), half noisy
({NOISY_NOISE[0]:g}-{NOISY_NOISE[1]:g}); relative noise = noise standard deviation at 64x64 /
the clean image's 1-99 % contrast. No real patient image was used.

## Evaluation
Held-out synthetic set generated with seed {HELDOUT_SEED} ({HELDOUT_COUNT} images, balanced),
at the threshold {threshold:g}:

| metric | value |
|---|---|
{rows}

`tests/unit/inference/test_reference_model_accuracy.py` re-measures the accuracy through the
registry, preprocessing and runtime the pipeline uses, on a fresh set with another seed, and
checks the demo samples below.

## Input guard and drift reference
`input.expected_statistics` holds the range of each statistic of the preprocessed input that
the training scenes span (0.1-99.9 %, widened); an image outside is refused with
`MODEL_INPUT_OUT_OF_DISTRIBUTION`. `reference` holds 21 quantiles of the score and of every
statistic on the held-out set, for the drift alerts.

## Demo samples
`samples/dicom/mr_small.dcm` (pydicom's real MR test slice) is `acceptable`;
`samples/dicom/mr_small_noisy.dcm` is the same slice with Gaussian noise of 8 % of its
contrast added by `samples/generate_samples.py`, and is flagged `{LABEL}`.

## Limitations
- Knows white noise only: structured artefacts (streaks, ghosting, motion), blur, or noise that
  is not white are not what it measures. Ultrasound speckle reads as noise.
- Fine, dense texture (trabecular bone, lung parenchyma at high resolution) raises the noise
  features; such images were not in the training data.
- Not calibrated for any modality or population.

## Reproduce
`PYTHONPATH=. .venv/bin/python -m ops.reference_model.train` (deterministic: same bytes, same
SHA-256, on the same CPU architecture and library versions).
"""


def train(registry: Path) -> dict[str, dict[str, float]]:
    """Train, tune, evaluate and register the model; return its metrics by version."""
    train_x, train_y = dataset(TRAIN_SEED, TRAIN_COUNT)
    head = fit_logistic(run(build_graph(), train_x), train_y, L2)
    model = build_graph(head)
    tuning_x, tuning_y = dataset(TUNING_SEED, TUNING_COUNT)
    threshold = tuned_threshold(run(model, tuning_x)[:, 0], tuning_y)
    heldout_x, heldout_y = dataset(HELDOUT_SEED, HELDOUT_COUNT)
    scores = run(model, heldout_x)[:, 0]
    heldout = binary_metrics(scores, heldout_y, threshold)
    metrics = evaluation_metrics(
        heldout,
        binary_metrics(run(model, train_x)[:, 0], train_y, threshold)["accuracy"],
        heldout_count=HELDOUT_COUNT,
        heldout_seed=HELDOUT_SEED,
    )
    write_version(
        registry,
        model,
        manifest_dict(
            threshold,
            metrics,
            guard_ranges(statistics_matrix(train_x)),
            reference(
                f"held-out synthetic scenes (seed {HELDOUT_SEED}, {HELDOUT_COUNT} images)",
                {LABEL: scores},
                statistics_matrix(heldout_x),
            ),
        ),
        model_card(threshold, metrics),
    )
    return {VERSION: metrics}
