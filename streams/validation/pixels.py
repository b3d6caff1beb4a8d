"""``decode_pixels``: validated bytes to a float32 array for model preprocessing.

It runs the very same steps as :func:`~streams.validation.validator.validate_image` (shared in
:mod:`streams.validation.decoding`), with limits taken from the geometry the validator
published: the bytes must still describe exactly that image, so a file swapped after
validation cannot smuggle a bigger one in.

Output conventions:

* greyscale: shape (H, W), modality LUT applied (RescaleSlope/Intercept; missing means 1/0, a
  zero slope is refused), MONOCHROME1 inverted so that higher always means brighter;
* colour: shape (H, W, 3) in RGB (YBR converted by the decoder);
* multi-frame: the first frame only — radstream's models take single 2-D images, and the
  validator's ``max_frames`` policy decides whether multi-frame images get this far at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from schemas.errors import ErrorCode, error_for
from schemas.events import ImageGeometry
from schemas.settings import ValidationSettings
from streams.validation.decoding import (
    ImageHeader,
    check_decoded_values,
    check_geometry,
    check_pixel_format,
    check_stored_values,
    decode_frames,
    load_pixels,
    optional_float,
    read_header,
)


def decode_pixels(
    data: bytes,
    geometry: ImageGeometry,
    *,
    allow_raw_dicom: bool = False,
    limits: ValidationSettings | None = None,
) -> NDArray[np.float32]:
    """Decode the first frame of validated image bytes to float32 (see the module docstring).

    Args:
        data: the image bytes (the same ones the validator saw).
        geometry: the geometry the validator published for them.
        allow_raw_dicom: accept DICOM without preamble, as the validator was configured.
        limits: the validator's limits; by default the geometry itself is the limit.

    Raises:
        RadstreamError: with the same codes the validator uses, or ``IMAGE_MALFORMED`` when
            the bytes no longer match ``geometry``.
    """
    limits = limits or ValidationSettings(
        min_dimension=1,
        max_dimension=max(geometry.width, geometry.height),
        max_frames=geometry.frames,
        allow_raw_dicom=allow_raw_dicom,
    )
    header = read_header(data, allow_raw_dicom=allow_raw_dicom)
    if (header.format, header.width, header.height, header.frames) != (
        geometry.format,
        geometry.width,
        geometry.height,
        geometry.frames,
    ):
        raise error_for(ErrorCode.IMAGE_MALFORMED, "image bytes differ from the validated geometry")
    check_geometry(header, limits)
    check_pixel_format(header)
    source = load_pixels(data, header)
    check_stored_values(source)
    frames = decode_frames(source, first_frame_only=True)
    check_decoded_values(header, frames)
    return model_pixels(header, source.dataset, frames)


def model_pixels(
    header: ImageHeader, dataset: Dataset | None, frames: NDArray[Any]
) -> NDArray[np.float32]:
    """The first of ``frames`` (as :func:`decode_frames` returns them) as model-ready float32.

    The one conversion both :func:`decode_pixels` and
    :func:`~streams.validation.validator.validate_and_decode` use. The result is a new array
    (never a view of ``frames``, so a multi-frame decode is not kept alive by it); the modality
    LUT is applied in place on that copy.
    """
    frame = frames[0]
    if frame.shape[-1] == 3:
        colour: NDArray[np.float32] = frame.astype(np.float32)
        return colour
    grey: NDArray[np.float32] = frame[..., 0].astype(np.float32)
    if dataset is None:
        return grey
    return _to_presentation(grey, header, dataset)


def _to_presentation(
    grey: NDArray[np.float32], header: ImageHeader, dataset: Dataset
) -> NDArray[np.float32]:
    """Invert MONOCHROME1 (in stored units) and apply the modality LUT, in place on ``grey``."""
    if header.photometric == "MONOCHROME1":
        stored = header.bits_stored or 8
        low = -(1 << (stored - 1)) if header.signed else 0
        high = (1 << (stored - 1)) - 1 if header.signed else (1 << stored) - 1
        np.subtract(np.float32(low + high), grey, out=grey)
    # check_pixel_format has already refused a zero or non-numeric RescaleSlope.
    slope = optional_float(dataset, "RescaleSlope")
    intercept = optional_float(dataset, "RescaleIntercept")
    slope = 1.0 if slope is None else slope
    intercept = 0.0 if intercept is None else intercept
    np.multiply(grey, np.float32(slope), out=grey)
    np.add(grey, np.float32(intercept), out=grey)
    return grey
