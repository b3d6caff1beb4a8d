"""Shared helpers for the validation tests: limits, rules, sample files and DICOM editing."""

from __future__ import annotations

import json
import os
import warnings
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset

from schemas.settings import ValidationSettings
from streams.validation import ClinicalRules

REPO_ROOT = Path(__file__).resolve().parents[3]
SAMPLES = REPO_ROOT / "samples"
# The small CT sample most validation tests start from.
CT = (SAMPLES / "dicom" / "ct_small.dcm").read_bytes()
DEFAULT_LIMITS = ValidationSettings()
# Permissive limits for the pydicom corpus: tiny test images and multi-frame files pass.
PERMISSIVE_LIMITS = ValidationSettings(
    min_dimension=1, max_dimension=4096, max_frames=64, allow_raw_dicom=True
)
OPEN_RULES = ClinicalRules.model_validate(
    {"default": {"allowed_formats": ["dicom", "png", "jpeg"], "model_input": {}}}
)


def corpus_files() -> list[Path]:
    """Every regular file pydicom ships as test data (DICOM and not), sorted."""
    return sorted(Path(name) for name in get_testdata_files() if os.path.isfile(name))


def pydicom_file_bytes(name: str) -> bytes:
    """The bytes of one pydicom test file."""
    return Path(str(get_testdata_file(name))).read_bytes()


def edited_dicom(name: str, **attributes: object) -> bytes:
    """A pydicom test file with some attributes replaced (None deletes), re-encoded."""
    dataset = dcmread(str(get_testdata_file(name)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deliberately invalid values make pydicom warn
        for keyword, value in attributes.items():
            if value is None:
                if keyword in dataset:
                    delattr(dataset, keyword)
            else:
                setattr(dataset, keyword, value)
        return dataset_bytes(dataset)


def dataset_bytes(dataset: Dataset) -> bytes:
    """Serialise a dataset as a Part 10 file."""
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def phi_values() -> list[str]:
    """Patient identifiers listed by the sample generator's manifest."""
    manifest = json.loads((SAMPLES / "phi_manifest.json").read_text(encoding="utf-8"))
    return list(manifest["values"])


def with_transfer_syntax(data: bytes, uid: str) -> bytes:
    """Rewrite a Part 10 file's meta TransferSyntaxUID, keeping the dataset bytes as they are.

    pydicom refuses to *write* a dataset under a syntax it cannot encode, so the meta group is
    rebuilt by hand: that is exactly the kind of file a hostile or broken router sends.
    """
    import struct  # noqa: PLC0415 - only this helper needs it

    meta_end = 144 + struct.unpack_from("<I", data, 140)[0]
    body = data[meta_end:]
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\x00"
    elements = b""
    offset = 144
    while offset < meta_end:
        group, element, vr = struct.unpack_from("<HH2s", data, offset)
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            (length,) = struct.unpack_from("<I", data, offset + 8)
            header_size = 12
        else:
            (length,) = struct.unpack_from("<H", data, offset + 6)
            header_size = 8
        raw = data[offset : offset + header_size + length]
        if (group, element) == (0x0002, 0x0010):
            raw = struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(value)) + value
        elements += raw
        offset += header_size + length
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(elements))
    return data[:132] + group_length + elements + body
