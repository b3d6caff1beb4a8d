"""``validate_image``: bytes in, one verdict out — never an exception.

The checks run cheapest and safest first (size, checksum, format, header, geometry) so that
hostile input is refused before anything is decoded; then the pixel data is loaded, its stored
values checked and decoded through the same code the inference stage uses
(:mod:`streams.validation.decoding`); last come the clinical rules of the requested models.
Each check leaves a :class:`~schemas.events.ValidatorVerdict`; the first failure ends the run.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Required, TypedDict, TypeVar, Unpack

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from pydicom.dataset import Dataset

from schemas.body_part import recognised_body_part
from schemas.errors import ErrorCode, RadstreamError, error_for
from schemas.events import (
    ImageFormat,
    ImageGeometry,
    SenderBodyPart,
    Sha256Hex,
    Uid,
    ValidatorVerdict,
)
from schemas.modality import recognised_modality
from schemas.settings import ValidationSettings
from streams.validation.clinical import (
    ClinicalFacts,
    ClinicalRules,
    check_clinical_rules,
    pixel_spacing,
)
from streams.validation.decoding import (
    ImageHeader,
    check_decoded_values,
    check_geometry,
    check_pixel_format,
    check_stored_values,
    decode_frames,
    element_value,
    load_pixels,
    optional_float,
    read_header,
)
from streams.validation.pixels import model_pixels

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_CODE = re.compile(r"^[A-Z0-9_]{1,16}$")
_PHOTOMETRIC = re.compile(r"^[A-Z0-9_ ]{1,32}$")
_T = TypeVar("_T")


class _Outcome(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    verdicts: tuple[ValidatorVerdict, ...] = ()


class ValidationAccepted(_Outcome):
    """The image passed every check; carries what later stages need (no patient data)."""

    accepted: Literal[True] = True
    geometry: ImageGeometry
    sha256: Sha256Hex
    size_bytes: int = Field(ge=0)
    modality: str | None = None
    study_instance_uid: Uid | None = None
    series_instance_uid: Uid | None = None
    sop_instance_uid: Uid | None = None
    body_part: SenderBodyPart = None


class ValidationRejected(_Outcome):
    """The image failed a check: a stable code and a reason free of patient data."""

    accepted: Literal[False] = False
    error_code: ErrorCode
    reason: str = Field(max_length=500)
    retryable: bool = False


ValidationOutcome = ValidationAccepted | ValidationRejected


class _Run:
    """Records one verdict per named check; the first failure raises out of ``validate``."""

    def __init__(self) -> None:
        self.verdicts: list[ValidatorVerdict] = []

    def check(self, name: str, step: Callable[[], _T], detail: str = "") -> _T:
        try:
            result = step()
        except RadstreamError as error:
            self.verdicts.append(ValidatorVerdict(check=name, passed=False, detail=_cut(error)))
            raise
        self.verdicts.append(ValidatorVerdict(check=name, passed=True, detail=detail))
        return result


class ValidationChecks(TypedDict, total=False):
    """The keyword arguments of :func:`validate_image` and :func:`validate_and_decode`.

    Both entry points check the same things and differ only in what they return, so what an
    image is checked against is declared once, here.

    Keys:
        limits: size, dimension and frame limits, and whether raw DICOM is allowed.
        rules: the clinical rules (per model and default).
        declared_size: the event's ``size_bytes``, compared when given.
        declared_sha256: the event's ``sha256``, compared when given.
        model_ids: the requested models, whose clinical rules apply (default rule when empty).
        event_modality: the router's modality hint, used only for formats without headers.
        declared_study_instance_uid: the event's StudyInstanceUID; a DICOM file of another
            study is rejected (``IMAGE_STUDY_UID_MISMATCH``): its result would be filed under
            the wrong study.
    """

    limits: Required[ValidationSettings]
    rules: Required[ClinicalRules]
    declared_size: int | None
    declared_sha256: str | None
    model_ids: Sequence[str]
    event_modality: str | None
    declared_study_instance_uid: str | None


def validate_image(data: bytes, **checks: Unpack[ValidationChecks]) -> ValidationOutcome:
    """Validate image bytes against the limits and clinical rules; never raises.

    ``data`` are the bytes read from storage; ``checks`` are described by
    :class:`ValidationChecks`.
    """
    outcome, _ = _checked(data, _Checks(**checks), with_pixels=False)
    return outcome


def validate_and_decode(
    data: bytes, **checks: Unpack[ValidationChecks]
) -> tuple[ValidationOutcome, NDArray[np.float32] | None]:
    """:func:`validate_image`, plus the model-ready pixels of an accepted image; never raises.

    The pixels come from the validator's own decode of ``data`` (no second decode) and are
    exactly what :func:`~streams.validation.pixels.decode_pixels` returns for ``data`` and the
    accepted geometry with the same ``limits``: the first frame as float32, modality LUT applied.
    They are ``None`` for a rejected image. Arguments as for :func:`validate_image`.
    """
    return _checked(data, _Checks(**checks), with_pixels=True)


@dataclass(frozen=True, slots=True)
class _Checks:
    """:class:`ValidationChecks` with its defaults filled in.

    Built before any check runs, so a call with an unknown or a missing keyword fails with a
    ``TypeError`` instead of becoming a verdict.
    """

    limits: ValidationSettings
    rules: ClinicalRules
    declared_size: int | None = None
    declared_sha256: str | None = None
    model_ids: Sequence[str] = ()
    event_modality: str | None = None
    declared_study_instance_uid: str | None = None


def _checked(
    data: bytes, checks: _Checks, *, with_pixels: bool
) -> tuple[ValidationOutcome, NDArray[np.float32] | None]:
    """Run every check; any failure becomes a :class:`ValidationRejected` without pixels."""
    run = _Run()
    try:
        return _validate(run, data, checks, with_pixels=with_pixels)
    except RadstreamError as error:
        rejected = ValidationRejected(
            error_code=error.code,
            reason=error.reason[:500],
            retryable=error.retryable,
            verdicts=tuple(run.verdicts),
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - the stage must turn every input into a verdict
        # The exception text may quote header values, so only a fixed reason leaves here.
        rejected = ValidationRejected(
            error_code=ErrorCode.IMAGE_MALFORMED,
            reason="image could not be validated (unexpected decoder failure)",
            verdicts=tuple(run.verdicts),
        )
    return rejected, None


def _validate(
    run: _Run,
    data: bytes,
    checks: _Checks,
    *,
    with_pixels: bool,
) -> tuple[ValidationAccepted, NDArray[np.float32] | None]:
    limits = checks.limits
    size = len(data)
    run.check("size", lambda: _check_size(size, limits, checks.declared_size), f"{size} bytes")
    sha256 = hashlib.sha256(data).hexdigest()
    run.check("checksum", lambda: _check_checksum(sha256, checks.declared_sha256))
    # A deflated dataset may inflate to at most the biggest acceptable pixel payload.
    max_inflated = max(limits.max_file_bytes, limits.max_dimension**2 * limits.max_frames * 12)
    header = run.check(
        "header",
        lambda: read_header(
            data, allow_raw_dicom=limits.allow_raw_dicom, max_inflated_bytes=max_inflated
        ),
    )
    run.check(
        "geometry",
        lambda: check_geometry(header, limits),
        f"{header.width}x{header.height}x{header.frames}",
    )
    run.check("pixel_format", lambda: check_pixel_format(header), _format_detail(header))
    source = run.check("pixel_data", lambda: load_pixels(data, header))
    run.check("stored_values", lambda: check_stored_values(source))
    pixels = run.check("decode", lambda: decode_frames(source))
    run.check("decoded_values", lambda: check_decoded_values(header, pixels))
    geometry = build_geometry(header, source.dataset, str(pixels.dtype))
    dataset = source.dataset
    study_instance_uid = _uid(dataset, "StudyInstanceUID")
    declared_study_instance_uid = checks.declared_study_instance_uid
    if declared_study_instance_uid not in (None, study_instance_uid) and study_instance_uid:
        # Neither UID in the reason: the router's log and ours would otherwise pair them up.
        raise error_for(
            ErrorCode.IMAGE_STUDY_UID_MISMATCH,
            "the event's StudyInstanceUID differs from the image file's",
        )
    # Only a defined term: free text in Modality (a name, say) is no modality (schemas/modality.py).
    modality = (
        recognised_modality(_dicom_code(dataset, "Modality")) if dataset is not None else None
    )
    hint = recognised_modality(checks.event_modality)
    if dataset is None and hint is not None:
        modality = hint
    # The geometry carries a body part only when it is a defined term; one that was given in
    # code-string shape but is none (a name, say) is still no body part a rule allows.
    given_body_part = _dicom_code(dataset, "BodyPartExamined") if dataset is not None else None
    facts = ClinicalFacts(
        format=header.format,
        modality=modality,
        body_part=geometry.body_part,
        dataset=dataset,
        body_part_unrecognised=given_body_part is not None and geometry.body_part is None,
    )
    run.verdicts.extend(
        run.check(
            "clinical",
            lambda: check_clinical_rules(facts, geometry, checks.rules, checks.model_ids),
        )
    )
    accepted = ValidationAccepted(
        geometry=geometry,
        sha256=sha256,
        size_bytes=size,
        modality=modality,
        study_instance_uid=study_instance_uid,
        series_instance_uid=_uid(dataset, "SeriesInstanceUID"),
        sop_instance_uid=_uid(dataset, "SOPInstanceUID"),
        body_part=geometry.body_part,
        verdicts=tuple(run.verdicts),
    )
    return accepted, model_pixels(header, dataset, pixels) if with_pixels else None


def _check_size(size: int, limits: ValidationSettings, declared: int | None) -> None:
    if size == 0:
        raise error_for(ErrorCode.IMAGE_EMPTY, "image is zero bytes long")
    if size > limits.max_file_bytes:
        raise error_for(
            ErrorCode.IMAGE_TOO_LARGE, f"image exceeds the limit of {limits.max_file_bytes} bytes"
        )
    if declared is not None and declared != size:
        raise error_for(
            ErrorCode.IMAGE_SIZE_MISMATCH, f"declared {declared} bytes, read {size} bytes"
        )


def _check_checksum(actual: str, declared: str | None) -> None:
    if declared is not None and not hmac.compare_digest(actual, declared.strip().lower()):
        raise error_for(ErrorCode.CHECKSUM_MISMATCH, "declared sha256 differs from the bytes read")


def build_geometry(header: ImageHeader, dataset: Dataset | None, dtype: str) -> ImageGeometry:
    """Describe the decoded image for later stages (only numbers and controlled values)."""
    photometric = header.photometric
    if header.samples_per_pixel == 3:
        photometric = "RGB"  # YBR data is converted to RGB by the shared decoder
    fields: dict[str, Any] = {}
    if dataset is not None:
        ts = header.transfer_syntax_uid
        fields = {
            "transfer_syntax_uid": ts if ts and _UID.match(ts) and len(ts) <= 64 else None,
            "pixel_spacing_mm": _positive_pair(pixel_spacing(dataset)),
            "slice_thickness_mm": optional_float(dataset, "SliceThickness"),
            # Only a defined term: free text in it is no body part (schemas/body_part.py).
            "body_part": recognised_body_part(_dicom_code(dataset, "BodyPartExamined")),
            "rescale_slope": optional_float(dataset, "RescaleSlope") or 1.0,
            "rescale_intercept": optional_float(dataset, "RescaleIntercept") or 0.0,
            "window_center": optional_float(dataset, "WindowCenter"),
            "window_width": optional_float(dataset, "WindowWidth"),
        }
    return ImageGeometry(
        format=header.format,
        width=header.width,
        height=header.height,
        frames=header.frames,
        samples_per_pixel=3 if header.samples_per_pixel == 3 else 1,
        dtype=dtype,
        bits_allocated=header.bits_allocated,
        bits_stored=header.bits_stored,
        photometric_interpretation=photometric
        if photometric and _PHOTOMETRIC.match(photometric)
        else None,
        **fields,
    )


def _positive_pair(pair: tuple[float, float] | None) -> tuple[float, float] | None:
    if pair is None or not all(0 < value < 1e6 for value in pair):
        return None
    return pair


def _dicom_code(dataset: Dataset, keyword: str) -> str | None:
    """A code string (CS) value only if it looks like one: free text never leaves."""
    try:
        value = str(element_value(dataset, keyword) or "").strip().upper()
    except RadstreamError:
        return None
    return value if _CODE.match(value) else None


def _uid(dataset: Dataset | None, keyword: str) -> str | None:
    if dataset is None:
        return None
    try:
        value = str(element_value(dataset, keyword) or "").strip()
    except RadstreamError:
        return None
    return value if _UID.match(value) and len(value) <= 64 else None


def _format_detail(header: ImageHeader) -> str:
    parts = [header.format.value, f"{header.samples_per_pixel} samples"]
    if header.bits_allocated is not None:
        parts.append(f"{header.bits_allocated} bits")
    if header.format is ImageFormat.DICOM and header.transfer_syntax_uid:
        parts.append(header.transfer_syntax_uid)
    return ", ".join(parts)


def _cut(error: RadstreamError) -> str:
    return f"{error.code.value}: {error.reason}"[:256]
