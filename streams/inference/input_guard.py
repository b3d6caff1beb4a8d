"""The input guard: refuse an image unlike anything the model was trained on, instead of scoring it.

A model trained on one kind of image returns confident scores on any other kind: the shipped
lesion detector, trained on synthetic phantoms, says ``lesion 1.00`` for every real CT slice.
Each manifest may declare the range of a few per-image statistics of its *preprocessed* input
tensor (``input.expected_statistics``, measured on the training data); an image whose statistic
falls outside is refused with ``MODEL_INPUT_OUT_OF_DISTRIBUTION`` and gets no score.

The statistics are computed on the tensor the model would see, so they mean the same for every
modality and normalisation, and the same numbers feed drift monitoring.
"""

from __future__ import annotations

import numpy as np

from schemas.errors import ErrorCode, InputValidationError
from streams.inference.manifest import InputSpec, InputStatistic, ModelManifest

InputStatistics = dict[InputStatistic, float]


def input_statistics(tensor: np.ndarray, layout: str) -> InputStatistics:
    """The :class:`InputStatistic` values of one preprocessed image (no batch axis).

    Args:
        tensor: ``(C, H, W)`` for ``NCHW`` or ``(H, W, C)`` for ``NHWC``, finite floats.
        layout: the manifest's layout, which says where the spatial axes are.
    """
    values = np.asarray(tensor, dtype=np.float32)
    rows, cols = (1, 2) if layout == "NCHW" else (0, 1)
    steps = [np.abs(np.diff(values, axis=axis)) for axis in (rows, cols) if values.shape[axis] > 1]
    gradient = float(np.mean([step.mean() for step in steps])) if steps else 0.0
    return {
        InputStatistic.MEAN: float(values.mean()),
        InputStatistic.STD: float(values.std()),
        InputStatistic.FRACTION_LOW: float(np.mean(values <= 0.0)),
        InputStatistic.FRACTION_HIGH: float(np.mean(values >= 1.0)),
        InputStatistic.GRADIENT: gradient,
    }


def out_of_range(statistics: InputStatistics, spec: InputSpec) -> list[InputStatistic]:
    """The declared statistics whose value lies outside the manifest's range, in declared order."""
    return [
        name
        for name, allowed in spec.expected_statistics.items()
        if not allowed.min <= statistics[name] <= allowed.max
    ]


def check_in_distribution(statistics: InputStatistics, manifest: ModelManifest) -> None:
    """Refuse an image whose statistics are outside the manifest's expected ranges.

    Raises:
        InputValidationError: ``MODEL_INPUT_OUT_OF_DISTRIBUTION``; the reason names the
            statistics, their values and ranges (numbers only, nothing about the patient).
    """
    outside = out_of_range(statistics, manifest.input)
    if not outside:
        return
    ranges = manifest.input.expected_statistics
    details = "; ".join(
        f"{name.value} {statistics[name]:.3f} not in [{ranges[name].min:g}, {ranges[name].max:g}]"
        for name in outside
    )
    raise InputValidationError(
        ErrorCode.MODEL_INPUT_OUT_OF_DISTRIBUTION,
        f"image is outside what {manifest.model_id} was trained on ({details}); no score given"[
            :500
        ],
    )
