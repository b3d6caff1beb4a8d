"""Turn a decoded image into a model's input tensor, as its manifest declares (numpy only).

Input: a float array ``(H, W)`` in modality units (e.g. Hounsfield units after rescale) or an
``(H, W, 3)`` RGB array. Steps, in order: channel conversion, normalisation (window, min-max or
z-score), resize to the model's size (area averaging when shrinking, bilinear when enlarging,
as two matrix products), channel layout. The result is float32 ``(C, H, W)`` for ``NCHW``
models or ``(H, W, C)`` for ``NHWC``; :func:`preprocess_batch` stacks them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from schemas.errors import ErrorCode, InferenceError
from streams.inference.manifest import (
    InputSpec,
    MinMaxNormalisation,
    Normalisation,
    WindowNormalisation,
)

# ITU-R BT.601 luma weights: the usual RGB to grey conversion for 8-bit images.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MAX_INPUT_PIXELS = 8192 * 8192
# Distinct (input size, output size) pairs kept: a model's two axes times the image sizes a
# site sends; at most 64 x 8192 float32 each (2 MiB), so the bound caps memory too.
RESAMPLE_MATRICES_CACHED = 64


def _fail(reason: str) -> InferenceError:
    return InferenceError(ErrorCode.INFERENCE_PREPROCESSING_FAILED, reason)


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Return ``(H, W, channels)`` float32: grey is replicated, RGB is reduced to luma."""
    if pixels.ndim == 2:
        grey = pixels[:, :, np.newaxis]
        return np.repeat(grey, channels, axis=2) if channels == 3 else grey
    if channels == 3:
        return pixels
    return (pixels @ LUMA_WEIGHTS)[:, :, np.newaxis]


def normalise(image: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """Apply the manifest's windowing or normalisation to the whole image (a new array).

    One new array, then in place: the same float32 operations in the same order as
    ``np.clip((image - lower) / width, 0, 1)``, without its two temporaries (full-resolution
    passes were most of a 2048 px image's preprocessing).
    """
    if isinstance(normalisation, WindowNormalisation):
        lower = normalisation.center - normalisation.width / 2
        return _scaled(image, lower, normalisation.width, clip=True)
    if isinstance(normalisation, MinMaxNormalisation):
        low, high = float(image.min()), float(image.max())
        if high <= low:
            return np.zeros_like(image)
        return _scaled(image, low, high - low)
    if normalisation.mean is not None and normalisation.std is not None:
        return _scaled(image, normalisation.mean, normalisation.std)
    std = float(image.std())
    if std == 0.0:
        return np.zeros_like(image)
    return _scaled(image, float(image.mean()), std)


def _scaled(image: np.ndarray, offset: float, scale: float, *, clip: bool = False) -> np.ndarray:
    """``(image - offset) / scale``, clipped to [0, 1] when asked, in one new array."""
    out: np.ndarray = np.subtract(image, offset)
    np.divide(out, scale, out=out)
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out


@functools.lru_cache(maxsize=RESAMPLE_MATRICES_CACHED)
def resample_matrix(size_in: int, size_out: int) -> np.ndarray:
    """The ``(size_out, size_in)`` matrix resizing one axis (read-only: shared by every call).

    Built once per pair of sizes: a stream of images has few distinct sizes, and building the
    matrix cost about as much as the product with it for small images.

    Shrinking averages the input pixels each output pixel covers, weighted by overlap (area
    interpolation, so nothing aliases). Enlarging interpolates linearly between pixel centres
    (half-pixel convention, edges clamped). Equal sizes give the identity.
    """
    if size_out <= size_in:
        scale = size_in / size_out
        out_lo = np.arange(size_out)[:, np.newaxis] * scale
        in_lo = np.arange(size_in)[np.newaxis, :]
        overlap = np.minimum(out_lo + scale, in_lo + 1) - np.maximum(out_lo, in_lo)
        return _read_only(np.asarray(np.clip(overlap, 0.0, None) / scale, dtype=np.float32))
    centres = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    centres = np.clip(centres, 0.0, size_in - 1)
    left = np.floor(centres).astype(np.intp)
    right = np.minimum(left + 1, size_in - 1)
    frac = centres - left
    matrix = np.zeros((size_out, size_in), dtype=np.float32)
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, left), 1.0 - frac)
    np.add.at(matrix, (rows, right), frac)
    return _read_only(matrix)


def _read_only(matrix: np.ndarray) -> np.ndarray:
    matrix.flags.writeable = False
    return matrix


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``(H, W, C)`` to ``(height, width, C)`` with :func:`resample_matrix` per axis."""
    rows = resample_matrix(image.shape[0], height)
    cols = resample_matrix(image.shape[1], width)
    # (C, H, W) so both products are plain batched matrix multiplications (BLAS).
    channels_first = np.transpose(image, (2, 0, 1))
    resized = np.matmul(np.matmul(rows, channels_first), cols.T)
    return np.transpose(resized, (1, 2, 0))


def preprocess(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One image as the model's float32 input, without the batch axis.

    Raises:
        InferenceError: ``INFERENCE_PREPROCESSING_FAILED`` for a shape, type or value the
            declared steps cannot handle (never silently producing a wrong tensor).
    """
    if pixels.dtype.kind not in "biuf":
        raise _fail("pixels must be a numeric numpy array")
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
        raise _fail(f"pixels must be (H, W) or (H, W, 3), got shape {pixels.shape}")
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise _fail("pixels are empty")
    if pixels.shape[0] * pixels.shape[1] > MAX_INPUT_PIXELS:
        raise _fail(f"image of {pixels.shape[0]}x{pixels.shape[1]} pixels is too large")
    # float32 throughout: the model's tensor is float32 anyway, and float64 copies of a 2048 px
    # image were a third of the stage's CPU (bench/README.md); results differ by < 2e-7.
    image = pixels.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        raise _fail("pixels contain NaN or infinity")
    try:
        image = to_channels(image, spec.channels)
        image = normalise(image, spec.normalisation)
        image = resize(image, spec.height, spec.width)
    except (ValueError, FloatingPointError, MemoryError) as exc:
        raise _fail(f"preprocessing failed: {type(exc).__name__}") from exc
    if spec.layout == "NCHW":
        image = np.transpose(image, (2, 0, 1))
    return np.ascontiguousarray(image, dtype=np.float32)


def preprocess_batch(images: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Several images stacked into one batch tensor (first axis is the batch)."""
    return np.stack([preprocess(image, spec) for image in images])
