"""The error catalogue and the one exception hierarchy of radstream.

Every rejection, dead letter and API error carries an :class:`ErrorCode`. Codes are stable: a
code is never renamed, reused or removed
(``tests/unit/schemas/test_error_codes_pinned.py`` pins the list).
Each code has one :class:`ErrorSpec` saying what it means, whether retrying can help and which
HTTP status the API answers with.

The hierarchy, rooted at :class:`RadstreamError`::

    RadstreamError                      code, reason, retryable, http_status
    ├── InputValidationError            400/413/415/422  bad event, bad image, clinical rule
    ├── AuthenticationError             401
    ├── AuthorizationError              403
    ├── ResourceNotFoundError           404
    ├── ConflictError                   409
    ├── RateLimitError                  429
    ├── InferenceError                  500/503          model missing, refused or failing
    ├── IntegrityError                  500              audit chain or checkpoint broken
    └── TransientError                  503/504          broker, database, storage, timeouts

``reason`` must never contain patient data: it is published on topics and returned to clients.
Build errors with :func:`error_for` so the class always matches the code's category.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    """Stable machine-readable error codes (append only; never rename or reuse)."""

    # events and contracts
    EVENT_MALFORMED = "EVENT_MALFORMED"
    EVENT_SCHEMA_VERSION_UNSUPPORTED = "EVENT_SCHEMA_VERSION_UNSUPPORTED"
    # storage access
    STORAGE_URI_SCHEME_UNSUPPORTED = "STORAGE_URI_SCHEME_UNSUPPORTED"
    STORAGE_PATH_OUTSIDE_ROOTS = "STORAGE_PATH_OUTSIDE_ROOTS"
    STORAGE_FILE_NOT_FOUND = "STORAGE_FILE_NOT_FOUND"
    STORAGE_READ_FAILED = "STORAGE_READ_FAILED"
    # image bytes
    IMAGE_EMPTY = "IMAGE_EMPTY"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    IMAGE_SIZE_MISMATCH = "IMAGE_SIZE_MISMATCH"
    CHECKSUM_MISMATCH = "CHECKSUM_MISMATCH"
    IMAGE_FORMAT_UNSUPPORTED = "IMAGE_FORMAT_UNSUPPORTED"
    IMAGE_MALFORMED = "IMAGE_MALFORMED"
    IMAGE_DIMENSIONS_OUT_OF_RANGE = "IMAGE_DIMENSIONS_OUT_OF_RANGE"
    IMAGE_DECOMPRESSION_BOMB = "IMAGE_DECOMPRESSION_BOMB"
    # DICOM structure
    DICOM_NOT_PART10 = "DICOM_NOT_PART10"
    DICOM_TRANSFER_SYNTAX_MISSING = "DICOM_TRANSFER_SYNTAX_MISSING"
    DICOM_INVALID_VALUE = "DICOM_INVALID_VALUE"
    TRANSFER_SYNTAX_UNSUPPORTED = "TRANSFER_SYNTAX_UNSUPPORTED"
    # pixel data
    PIXEL_DATA_MISSING = "PIXEL_DATA_MISSING"
    PIXEL_DATA_TRUNCATED = "PIXEL_DATA_TRUNCATED"
    PIXEL_FORMAT_UNSUPPORTED = "PIXEL_FORMAT_UNSUPPORTED"
    PIXEL_VALUES_OUT_OF_RANGE = "PIXEL_VALUES_OUT_OF_RANGE"
    PHOTOMETRIC_UNSUPPORTED = "PHOTOMETRIC_UNSUPPORTED"
    MULTIFRAME_NOT_ALLOWED = "MULTIFRAME_NOT_ALLOWED"
    # clinical constraints
    CLINICAL_MODALITY_NOT_ALLOWED = "CLINICAL_MODALITY_NOT_ALLOWED"
    CLINICAL_BODY_PART_NOT_ALLOWED = "CLINICAL_BODY_PART_NOT_ALLOWED"
    CLINICAL_ATTRIBUTE_MISSING = "CLINICAL_ATTRIBUTE_MISSING"
    CLINICAL_PIXEL_SPACING_INVALID = "CLINICAL_PIXEL_SPACING_INVALID"
    CLINICAL_SLICE_THICKNESS_INVALID = "CLINICAL_SLICE_THICKNESS_INVALID"
    CLINICAL_PATIENT_AGE_OUT_OF_RANGE = "CLINICAL_PATIENT_AGE_OUT_OF_RANGE"
    MODEL_INPUT_INCOMPATIBLE = "MODEL_INPUT_INCOMPATIBLE"
    # models and inference
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    MODEL_NO_ROUTE = "MODEL_NO_ROUTE"
    MODEL_CHECKSUM_MISMATCH = "MODEL_CHECKSUM_MISMATCH"
    MODEL_LOAD_FAILED = "MODEL_LOAD_FAILED"
    INFERENCE_PREPROCESSING_FAILED = "INFERENCE_PREPROCESSING_FAILED"
    INFERENCE_FAILED = "INFERENCE_FAILED"
    # API
    REQUEST_INVALID = "REQUEST_INVALID"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"
    AUTHORIZATION_FAILED = "AUTHORIZATION_FAILED"
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    RESULT_ALREADY_VERIFIED = "RESULT_ALREADY_VERIFIED"
    RATE_LIMITED = "RATE_LIMITED"
    # audit integrity
    AUDIT_CHAIN_BROKEN = "AUDIT_CHAIN_BROKEN"
    AUDIT_CHECKPOINT_INVALID = "AUDIT_CHECKPOINT_INVALID"
    # infrastructure
    BROKER_UNAVAILABLE = "BROKER_UNAVAILABLE"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    TIMEOUT = "TIMEOUT"
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # dead-letter operations
    DEAD_LETTER_ALREADY_REPLAYED = "DEAD_LETTER_ALREADY_REPLAYED"
    # infrastructure (appended)
    BROKER_REQUEST_REFUSED = "BROKER_REQUEST_REFUSED"
    # operating radstream (the command line)
    SETTINGS_INVALID = "SETTINGS_INVALID"
    CHECK_FAILED = "CHECK_FAILED"
    # DICOM networking (receiver, STOW-RS, result export)
    STORAGE_WRITE_FAILED = "STORAGE_WRITE_FAILED"
    DICOM_SOP_CLASS_UNSUPPORTED = "DICOM_SOP_CLASS_UNSUPPORTED"
    DICOM_PEER_UNAVAILABLE = "DICOM_PEER_UNAVAILABLE"
    DICOM_EXPORT_REFUSED = "DICOM_EXPORT_REFUSED"
    # model lifecycle: input guard, bring your own model, rollout modes
    MODEL_INPUT_OUT_OF_DISTRIBUTION = "MODEL_INPUT_OUT_OF_DISTRIBUTION"
    MODEL_MANIFEST_MISMATCH = "MODEL_MANIFEST_MISMATCH"
    MODEL_VERSION_RETIRED = "MODEL_VERSION_RETIRED"
    MODEL_REGISTRY_CONFLICT = "MODEL_REGISTRY_CONFLICT"
    # storage (appended): patience for slow writers
    STORAGE_FILE_INCOMPLETE = "STORAGE_FILE_INCOMPLETE"
    # contract (appended): an event that names another study than its file
    IMAGE_STUDY_UID_MISMATCH = "IMAGE_STUDY_UID_MISMATCH"
    # studies: completeness, study results, urgent findings
    STUDY_RESULT_MISSING = "STUDY_RESULT_MISSING"
    STUDY_NOT_FOUND = "STUDY_NOT_FOUND"
    # audit integrity (appended)
    AUDIT_RECORD_FORGED = "AUDIT_RECORD_FORGED"


class ErrorCategory(StrEnum):
    """Which branch of the hierarchy a code belongs to."""

    INPUT = "input"
    AUTHENTICATION = "authentication"
    AUTHORIZATION = "authorization"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    RATE_LIMIT = "rate_limit"
    INFERENCE = "inference"
    INTEGRITY = "integrity"
    TRANSIENT = "transient"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """What a code means, whether a retry can help, and the API's status for it."""

    description: str
    category: ErrorCategory
    http_status: int
    retryable: bool = False


_I, _T = ErrorCategory.INPUT, ErrorCategory.TRANSIENT
C = ErrorCode

ERROR_CATALOGUE: dict[ErrorCode, ErrorSpec] = {
    C.EVENT_MALFORMED: ErrorSpec(
        "The message is not valid JSON or does not match the event contract.", _I, 400
    ),
    C.EVENT_SCHEMA_VERSION_UNSUPPORTED: ErrorSpec(
        "The event's schema_version is not one this release understands.", _I, 400
    ),
    C.STORAGE_URI_SCHEME_UNSUPPORTED: ErrorSpec(
        "The image URI uses a scheme other than file://.", _I, 400
    ),
    C.STORAGE_PATH_OUTSIDE_ROOTS: ErrorSpec(
        "The image path resolves outside the configured storage roots "
        "(.., symlink or absolute path elsewhere).",
        _I,
        400,
    ),
    C.STORAGE_FILE_NOT_FOUND: ErrorSpec(
        "The image file does not exist (yet); the router may still be writing it.",
        _T,
        404,
        retryable=True,
    ),
    C.STORAGE_READ_FAILED: ErrorSpec(
        "The image file exists but could not be read (I/O or permission error).",
        _T,
        503,
        retryable=True,
    ),
    C.IMAGE_EMPTY: ErrorSpec("The image file is zero bytes long.", _I, 400),
    C.IMAGE_TOO_LARGE: ErrorSpec("The image file is larger than the configured limit.", _I, 413),
    C.IMAGE_SIZE_MISMATCH: ErrorSpec(
        "The declared size_bytes differs from the number of bytes read.", _I, 400
    ),
    C.CHECKSUM_MISMATCH: ErrorSpec(
        "The declared sha256 differs from the SHA-256 of the bytes read.", _I, 400
    ),
    C.IMAGE_FORMAT_UNSUPPORTED: ErrorSpec(
        "The bytes are not DICOM, PNG or JPEG (detected from content, not the name).", _I, 415
    ),
    C.IMAGE_MALFORMED: ErrorSpec(
        "The file starts like a supported format but is corrupt or truncated.", _I, 400
    ),
    C.IMAGE_DIMENSIONS_OUT_OF_RANGE: ErrorSpec(
        "Width or height (from the header) is outside the configured range.", _I, 400
    ),
    C.IMAGE_DECOMPRESSION_BOMB: ErrorSpec(
        "The image declares more pixels than may be decoded safely.", _I, 400
    ),
    C.DICOM_NOT_PART10: ErrorSpec(
        "The DICOM file has no Part 10 preamble and raw datasets are not allowed.", _I, 400
    ),
    C.DICOM_TRANSFER_SYNTAX_MISSING: ErrorSpec(
        "The DICOM file meta information has no TransferSyntaxUID.", _I, 400
    ),
    C.DICOM_INVALID_VALUE: ErrorSpec(
        "A DICOM attribute needed for validation has an invalid value or VR.", _I, 400
    ),
    C.TRANSFER_SYNTAX_UNSUPPORTED: ErrorSpec(
        "No installed decoder handles the file's transfer syntax.", _I, 415
    ),
    C.PIXEL_DATA_MISSING: ErrorSpec(
        "The dataset has no pixel data (e.g. a structured report or RT plan).", _I, 400
    ),
    C.PIXEL_DATA_TRUNCATED: ErrorSpec(
        "The pixel data is shorter than rows x columns x frames x samples x bits imply.", _I, 400
    ),
    C.PIXEL_FORMAT_UNSUPPORTED: ErrorSpec(
        "Bits allocated/stored, pixel representation or dtype is inconsistent or unsupported.",
        _I,
        415,
    ),
    C.PIXEL_VALUES_OUT_OF_RANGE: ErrorSpec(
        "Pixel values fall outside the range the header allows.", _I, 400
    ),
    C.PHOTOMETRIC_UNSUPPORTED: ErrorSpec(
        "The photometric interpretation is not one radstream handles.", _I, 415
    ),
    C.MULTIFRAME_NOT_ALLOWED: ErrorSpec(
        "The image has more frames than the multi-frame policy allows.", _I, 400
    ),
    C.CLINICAL_MODALITY_NOT_ALLOWED: ErrorSpec(
        "The modality is not allowed by the clinical rules.", _I, 422
    ),
    C.CLINICAL_BODY_PART_NOT_ALLOWED: ErrorSpec(
        "The body part examined is not allowed by the clinical rules.", _I, 422
    ),
    C.CLINICAL_ATTRIBUTE_MISSING: ErrorSpec(
        "A DICOM attribute the clinical rules require is absent.", _I, 422
    ),
    C.CLINICAL_PIXEL_SPACING_INVALID: ErrorSpec(
        "Pixel spacing is missing, non-positive or outside the sane range.", _I, 422
    ),
    C.CLINICAL_SLICE_THICKNESS_INVALID: ErrorSpec(
        "Slice thickness is non-positive or outside the sane range.", _I, 422
    ),
    C.CLINICAL_PATIENT_AGE_OUT_OF_RANGE: ErrorSpec(
        "The patient's age is outside the range the rules allow (the age is never reported).",
        _I,
        422,
    ),
    C.MODEL_INPUT_INCOMPATIBLE: ErrorSpec(
        "The image does not meet the input requirements of the requested model.", _I, 422
    ),
    C.MODEL_NOT_FOUND: ErrorSpec(
        "The requested model or model version is not registered.", ErrorCategory.NOT_FOUND, 404
    ),
    C.MODEL_NO_ROUTE: ErrorSpec(
        "No model was requested and no routing rule matches the image.", _I, 422
    ),
    C.MODEL_CHECKSUM_MISMATCH: ErrorSpec(
        "The model's weights do not match their declared SHA-256; the model is not served.",
        ErrorCategory.INFERENCE,
        503,
    ),
    C.MODEL_LOAD_FAILED: ErrorSpec(
        "The model could not be loaded by its runtime.", ErrorCategory.INFERENCE, 503
    ),
    C.INFERENCE_PREPROCESSING_FAILED: ErrorSpec(
        "The image could not be preprocessed to the model's input spec.",
        ErrorCategory.INFERENCE,
        500,
    ),
    C.INFERENCE_FAILED: ErrorSpec(
        "The model runtime failed on this input.", ErrorCategory.INFERENCE, 500
    ),
    C.REQUEST_INVALID: ErrorSpec("The request body or parameters are invalid.", _I, 400),
    C.PAYLOAD_TOO_LARGE: ErrorSpec("The request body or upload is too large.", _I, 413),
    C.AUTHENTICATION_FAILED: ErrorSpec(
        "The bearer token is missing, malformed, expired or not trusted.",
        ErrorCategory.AUTHENTICATION,
        401,
    ),
    C.AUTHORIZATION_FAILED: ErrorSpec(
        "The caller's role does not allow this action.", ErrorCategory.AUTHORIZATION, 403
    ),
    C.RESOURCE_NOT_FOUND: ErrorSpec(
        "No such resource visible to the caller.", ErrorCategory.NOT_FOUND, 404
    ),
    C.RESULT_ALREADY_VERIFIED: ErrorSpec(
        "The result was verified before; verification happens once.", ErrorCategory.CONFLICT, 409
    ),
    C.RATE_LIMITED: ErrorSpec(
        "Too many requests; retry after the indicated delay.",
        ErrorCategory.RATE_LIMIT,
        429,
        retryable=True,
    ),
    C.DEAD_LETTER_ALREADY_REPLAYED: ErrorSpec(
        "The dead letter was replayed before; replay it again only with --force.",
        ErrorCategory.CONFLICT,
        409,
    ),
    C.SETTINGS_INVALID: ErrorSpec(
        "A RADSTREAM_* setting is invalid or refused; the process does not start.", _I, 400
    ),
    C.CHECK_FAILED: ErrorSpec(
        "A check finished and found a problem it lists (stale contract files, topic drift, "
        "a stalled consumer group, refused dead letters).",
        ErrorCategory.CONFLICT,
        409,
    ),
    C.AUDIT_CHAIN_BROKEN: ErrorSpec(
        "An audit record's hash or link to its predecessor does not verify.",
        ErrorCategory.INTEGRITY,
        500,
    ),
    C.AUDIT_CHECKPOINT_INVALID: ErrorSpec(
        "An audit checkpoint's signature does not verify or its head is missing.",
        ErrorCategory.INTEGRITY,
        500,
    ),
    C.BROKER_UNAVAILABLE: ErrorSpec(
        "The Kafka broker could not be reached.", _T, 503, retryable=True
    ),
    C.DATABASE_UNAVAILABLE: ErrorSpec(
        "PostgreSQL could not be reached or refused the connection.", _T, 503, retryable=True
    ),
    C.TIMEOUT: ErrorSpec("An operation timed out.", _T, 504, retryable=True),
    C.RETRIES_EXHAUSTED: ErrorSpec(
        "A retryable error persisted through every allowed retry.", _T, 503
    ),
    C.BROKER_REQUEST_REFUSED: ErrorSpec(
        "The Kafka broker refused the request (not authorised, or the producer was fenced by a "
        "newer one with the same transactional id); retrying will not help.",
        _T,
        503,
    ),
    C.INTERNAL_ERROR: ErrorSpec(
        "An unexpected internal error; details are in the service log only.",
        ErrorCategory.INFERENCE,
        500,
    ),
    C.STORAGE_WRITE_FAILED: ErrorSpec(
        "A received instance could not be written and synced to storage (disk full, I/O error).",
        _T,
        503,
        retryable=True,
    ),
    C.DICOM_SOP_CLASS_UNSUPPORTED: ErrorSpec(
        "The instance's SOP class is not an image storage class radstream accepts.", _I, 415
    ),
    C.DICOM_PEER_UNAVAILABLE: ErrorSpec(
        "A DICOM destination could not be reached, refused the association or was out of "
        "resources.",
        _T,
        503,
        retryable=True,
    ),
    C.DICOM_EXPORT_REFUSED: ErrorSpec(
        "A DICOM destination permanently refused the result report (failure status).", _I, 422
    ),
    C.MODEL_INPUT_OUT_OF_DISTRIBUTION: ErrorSpec(
        "The image's statistics fall outside the range the model declares it was trained on; "
        "no score is given.",
        _I,
        422,
    ),
    C.MODEL_MANIFEST_MISMATCH: ErrorSpec(
        "The manifest's input or output tensors do not match the ONNX graph; the model is not "
        "served.",
        ErrorCategory.INFERENCE,
        503,
    ),
    C.MODEL_VERSION_RETIRED: ErrorSpec(
        "The requested model version is retired and no longer served.",
        ErrorCategory.NOT_FOUND,
        404,
    ),
    C.MODEL_REGISTRY_CONFLICT: ErrorSpec(
        "The registry change conflicts with its current state (the version exists, or the "
        "rollout change is not allowed from the current modes).",
        ErrorCategory.CONFLICT,
        409,
    ),
    C.STORAGE_FILE_INCOMPLETE: ErrorSpec(
        "The image file changed moments ago; the router may still be writing it.",
        _T,
        503,
        retryable=True,
    ),
    C.IMAGE_STUDY_UID_MISMATCH: ErrorSpec(
        "The event's StudyInstanceUID differs from the DICOM file's; its result would be filed "
        "under the wrong study.",
        _I,
        400,
    ),
    C.STUDY_RESULT_MISSING: ErrorSpec(
        "An image of a completed study had no result from the model within the analysis "
        "timeout; the study result lists it as failed.",
        ErrorCategory.INFERENCE,
        500,
    ),
    C.STUDY_NOT_FOUND: ErrorSpec(
        "No study with this StudyInstanceUID has arrived (or it is not yours to see).",
        ErrorCategory.NOT_FOUND,
        404,
    ),
    C.AUDIT_RECORD_FORGED: ErrorSpec(
        "A record on the audit topic was not written by the audit agent (no valid writer "
        "signature, or it forks the chain); it is quarantined, not stored in the trail.",
        ErrorCategory.INTEGRITY,
        500,
    ),
}
del C


def spec_for(code: ErrorCode) -> ErrorSpec:
    """Return the catalogue entry of ``code``."""
    return ERROR_CATALOGUE[code]


class RadstreamError(Exception):
    """Root of every error radstream raises on purpose.

    Args:
        code: the stable error code.
        reason: a short, patient-data-free explanation, safe to publish and return.
    """

    category: ClassVar[ErrorCategory | None] = None

    def __init__(self, code: ErrorCode, reason: str | None = None) -> None:
        self.code = code
        self.spec = ERROR_CATALOGUE[code]
        self.reason = reason or self.spec.description
        super().__init__(f"{code.value}: {self.reason}")

    @property
    def retryable(self) -> bool:
        """Whether trying the same input again can succeed."""
        return self.spec.retryable

    @property
    def http_status(self) -> int:
        """The status the HTTP API answers with."""
        return self.spec.http_status


class InputValidationError(RadstreamError):
    """The event, request or image is not acceptable (retrying will not help)."""

    category = ErrorCategory.INPUT


class AuthenticationError(RadstreamError):
    """Credentials are missing or invalid."""

    category = ErrorCategory.AUTHENTICATION


class AuthorizationError(RadstreamError):
    """The caller is known but not allowed."""

    category = ErrorCategory.AUTHORIZATION


class ResourceNotFoundError(RadstreamError):
    """The thing asked for does not exist for this caller."""

    category = ErrorCategory.NOT_FOUND


class ConflictError(RadstreamError):
    """The action conflicts with the current state."""

    category = ErrorCategory.CONFLICT


class RateLimitError(RadstreamError):
    """The caller sent too much too fast."""

    category = ErrorCategory.RATE_LIMIT

    def __init__(
        self, code: ErrorCode, reason: str | None = None, retry_after_seconds: float = 1.0
    ) -> None:
        super().__init__(code, reason)
        self.retry_after_seconds = retry_after_seconds


class InferenceError(RadstreamError):
    """A model could not be served or failed on an input."""

    category = ErrorCategory.INFERENCE


class IntegrityError(RadstreamError):
    """The audit trail does not verify."""

    category = ErrorCategory.INTEGRITY


class TransientError(RadstreamError):
    """Infrastructure trouble; the same work may succeed later."""

    category = ErrorCategory.TRANSIENT


_CLASS_FOR_CATEGORY: dict[ErrorCategory, type[RadstreamError]] = {
    ErrorCategory.INPUT: InputValidationError,
    ErrorCategory.AUTHENTICATION: AuthenticationError,
    ErrorCategory.AUTHORIZATION: AuthorizationError,
    ErrorCategory.NOT_FOUND: ResourceNotFoundError,
    ErrorCategory.CONFLICT: ConflictError,
    ErrorCategory.RATE_LIMIT: RateLimitError,
    ErrorCategory.INFERENCE: InferenceError,
    ErrorCategory.INTEGRITY: IntegrityError,
    ErrorCategory.TRANSIENT: TransientError,
}


def for_code(code: ErrorCode) -> type[RadstreamError]:
    """Return the exception class that carries ``code``."""
    return _CLASS_FOR_CATEGORY[ERROR_CATALOGUE[code].category]


def error_for(code: ErrorCode, reason: str | None = None) -> RadstreamError:
    """Build the right exception for ``code`` with a patient-data-free ``reason``."""
    return for_code(code)(code, reason)


def address_unusable(
    service: str, host: str, port: int, exc: OSError, variables: str
) -> RadstreamError:
    """``SETTINGS_INVALID`` for an address a server cannot listen on.

    In use by another process, not an address of this host, a privileged port: a setting to
    change (``variables``), not a bug and not a retry. ``service`` says what would listen
    there ("listen for DICOM").
    """
    return error_for(
        ErrorCode.SETTINGS_INVALID,
        f"cannot {service} on {host}:{port} ({exc.strerror or 'refused'}); stop the process "
        f"that holds the port, or set {variables}",
    )


def folder_unusable(purpose: str, folder: str, exc: OSError, variable: str) -> RadstreamError:
    """``SETTINGS_INVALID`` for a folder a service must write to but cannot, found at start.

    Not creatable (a parent is a file, no permission), read-only, not a folder: a setting to
    change (``variable``) or a folder to fix, not a bug and not a retry; found at start rather
    than on every instance afterwards. ``purpose`` says what the folder is for ("store
    received DICOM").
    """
    return error_for(
        ErrorCode.SETTINGS_INVALID,
        f"cannot {purpose} in {folder} ({exc.strerror or type(exc).__name__}); set {variable} "
        "to a folder this process can create and write",
    )
