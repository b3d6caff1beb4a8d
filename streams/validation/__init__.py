"""Validation stage, pure logic: image bytes and rules in, a verdict out (no Kafka, SQL, logs).

Public API:

* :func:`validate_image` — every check, returning :data:`ValidationOutcome`, never raising;
* :func:`validate_and_decode` — the same, plus the model-ready pixels of its own decode;
* :func:`decode_pixels` — the shared decoder, float32 output for the inference stage;
* :func:`resolve_image_uri` / :func:`read_image_bytes` — the only file access;
* :func:`detect_format` — container format from magic numbers;
* :func:`load_clinical_rules` / :class:`ClinicalRules` — per-model clinical constraints.
"""

from streams.validation.clinical import ClinicalRule, ClinicalRules, load_clinical_rules
from streams.validation.formats import DetectedFormat, detect_format
from streams.validation.pixels import decode_pixels
from streams.validation.storage import read_image_bytes, resolve_image_uri
from streams.validation.validator import (
    ValidationAccepted,
    ValidationOutcome,
    ValidationRejected,
    validate_and_decode,
    validate_image,
)

__all__ = [
    "ClinicalRule",
    "ClinicalRules",
    "DetectedFormat",
    "ValidationAccepted",
    "ValidationOutcome",
    "ValidationRejected",
    "decode_pixels",
    "detect_format",
    "load_clinical_rules",
    "read_image_bytes",
    "resolve_image_uri",
    "validate_and_decode",
    "validate_image",
]
