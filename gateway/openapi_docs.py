"""Pieces of the OpenAPI document FastAPI cannot derive: error responses and the upload form."""

from __future__ import annotations

from typing import Any

from schemas.api import ErrorBody

_ERROR = {"model": ErrorBody}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_ERROR, "description": "REQUEST_INVALID or an image-reference error"},
    401: {**_ERROR, "description": "AUTHENTICATION_FAILED"},
    403: {**_ERROR, "description": "AUTHORIZATION_FAILED"},
    404: {**_ERROR, "description": "RESOURCE_NOT_FOUND (also for resources of other users)"},
    409: {**_ERROR, "description": "RESULT_ALREADY_VERIFIED"},
    413: {**_ERROR, "description": "PAYLOAD_TOO_LARGE"},
    429: {**_ERROR, "description": "RATE_LIMITED; see the Retry-After header"},
    503: {**_ERROR, "description": "BROKER_UNAVAILABLE or another transient failure"},
}

UPLOAD_FORM_SCHEMA: dict[str, Any] = {
    "title": "ImageUpload",
    "type": "object",
    "description": "An image file and optional arrival fields (see UploadFields).",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "source": {"type": "string", "pattern": r"^[A-Za-z0-9._@:-]{1,64}$"},
        "content_type": {"type": "string", "maxLength": 100},
        "study_instance_uid": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)*$"},
        "series_instance_uid": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)*$"},
        "sop_instance_uid": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)*$"},
        "modality": {"type": "string", "pattern": "^[A-Z0-9]{1,16}$"},
        "model_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
        "priority": {"type": "string", "enum": ["routine", "urgent", "stat"]},
    },
}

INFER_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ImageReference"}},
        "multipart/form-data": {"schema": {"$ref": "#/components/schemas/ImageUpload"}},
    },
}


STOW_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "DICOM Part 10 instances, one per part (PS3.18 10.5).",
    "content": {
        'multipart/related; type="application/dicom"': {
            "schema": {"type": "string", "format": "binary"}
        }
    },
}

_STOW_ANSWER = {
    "application/dicom+json": {
        "schema": {
            "type": "object",
            "description": "DICOM JSON: Referenced SOP Sequence (00081199) of stored instances, "
            "Failed SOP Sequence (00081198) with Failure Reason (00081197) and radstream's "
            "error code (00091001) and reason (00091002) under private creator RADSTREAM.",
        }
    }
}
STOW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "every instance stored", "content": _STOW_ANSWER},
    202: {"description": "some instances stored, some refused", "content": _STOW_ANSWER},
    409: {"description": "no instance stored; see each failure", "content": _STOW_ANSWER},
    503: {
        "description": "no instance stored, the broker or storage is unavailable: send again",
        "content": _STOW_ANSWER,
    },
}


def add_upload_schema(document: dict[str, Any]) -> dict[str, Any]:
    """Add the upload form's schema, which no pydantic body parameter declares."""
    document.setdefault("components", {}).setdefault("schemas", {})["ImageUpload"] = (
        UPLOAD_FORM_SCHEMA
    )
    return document
