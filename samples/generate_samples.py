"""Build radstream's bundled sample images from files that ship inside pydicom (offline).

Run from the repository root::

    PYTHONPATH=. .venv/bin/python samples/generate_samples.py

It rewrites ``samples/dicom/``, ``samples/raster/``, ``samples/bad/`` and
``samples/phi_manifest.json`` deterministically (same library versions give the same bytes).
Three DICOM samples are made for the reference models, so the demo shows them discriminate:
two synthetic CT phantoms of the kind ``lesion-detector`` was trained on (one with a lesion),
and pydicom's real MR slice with noise added, which ``image-quality`` flags.
The DICOM samples keep pydicom's fake patient names and IDs on purpose: tests scan every output
for them (listed in ``phi_manifest.json``) to prove that no patient data leaks.
"""

from __future__ import annotations

import copy
import json
import shutil
import struct
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    generate_uid,
)

from ops.reference_model.phantoms import render_phantom

SAMPLES = Path(__file__).resolve().parent
DICOM_DIR, RASTER_DIR, BAD_DIR = SAMPLES / "dicom", SAMPLES / "raster", SAMPLES / "bad"

# sample name -> pydicom test file it is copied from
DICOM_SOURCES = {
    "ct_small.dcm": "CT_small.dcm",  # CT, 128x128, int16, explicit VR little endian
    "mr_small.dcm": "MR_small.dcm",  # MR, 64x64, int16
    "mr_small_rle.dcm": "MR_small_RLE.dcm",  # MR, 64x64, RLE lossless
    "nm_jpeg2000.dcm": "JPEG2000.dcm",  # NM, 256x1024, JPEG 2000
    "ot_rgb_jpeg_ybr.dcm": "SC_rgb_jpeg_dcmtk.dcm",  # OT, 100x100, JPEG baseline YBR_FULL
    "us_rgb_jpeg2000.dcm": "examples_jpeg2k.dcm",  # US, 640x480, JPEG 2000 YBR_RCT
}
# A fake birth date is added to the CT sample so that age rules and PHI scans have one.
FAKE_BIRTH_DATE = "19700101"
RASTER_SIZES = (64, 256, 512, 2048)
# Reference-model samples: phantoms rendered by the lesion-detector's own generator (256 px,
# 10 HU noise, seed 7 for the lesion's position, size and contrast), and the real MR slice with
# white noise of 8 % of its 1-99 % contrast (seed 8), above image-quality's 4 % definition.
PHANTOM_SEED, PHANTOM_SIZE, PHANTOM_NOISE_HU = 7, 256, 10.0
NOISY_MR_SEED, NOISY_MR_RELATIVE = 8, 0.08


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _dataset_bytes(dataset: Dataset) -> bytes:
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _png_bytes(image: Image.Image) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _jpeg_bytes(image: Image.Image, quality: int = 85) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Window a frame to its own min..max and scale to 8 bits."""
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels.astype(np.float64) - low) / max(high - low, 1.0) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def build_dicom() -> dict[str, Dataset]:
    """Copy the chosen pydicom test files (CT gets a fake birth date)."""
    datasets: dict[str, Dataset] = {}
    for name, source in DICOM_SOURCES.items():
        dataset = dcmread(get_testdata_file(source))
        if name == "ct_small.dcm":
            dataset.PatientBirthDate = FAKE_BIRTH_DATE
        _write(DICOM_DIR / name, _dataset_bytes(dataset))
        datasets[name] = dataset
    return datasets


def _uid(*parts: str) -> str:
    """A deterministic UID (pydicom's prefix + a hash of ``parts``)."""
    return str(generate_uid(entropy_srcs=["radstream-samples", *parts]))


def phantom_dataset(name: str, *, lesion: bool) -> Dataset:
    """A CT image of a synthetic phantom (HU as signed 16-bit), with fake patient attributes."""
    rng = np.random.default_rng(PHANTOM_SEED)
    hu = render_phantom(rng, PHANTOM_SIZE, PHANTOM_SIZE, PHANTOM_NOISE_HU, lesion=lesion)
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = CTImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = _uid(name, "sop")
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID = _uid(name, "study")
    dataset.SeriesInstanceUID = _uid(name, "series")
    # Fake identifiers on purpose: tests scan every output for them (phi_manifest.json).
    dataset.PatientName = "Phantomova^Ada" if lesion else "Phantomova^Bea"
    dataset.PatientID = "PH-0001" if lesion else "PH-0002"
    dataset.Modality = "CT"
    dataset.ImageType = ["DERIVED", "SECONDARY", "SYNTHETIC"]
    dataset.SeriesDescription = "radstream synthetic phantom (not a patient)"
    dataset.BodyPartExamined = "ABDOMEN"
    dataset.PixelSpacing = [0.7, 0.7]
    dataset.SliceThickness = 5.0
    dataset.Rows, dataset.Columns = hu.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
    dataset.PixelRepresentation = 1
    dataset.RescaleIntercept, dataset.RescaleSlope = 0, 1
    dataset.WindowCenter, dataset.WindowWidth = 40, 400
    dataset.PixelData = np.clip(np.rint(hu), -32768, 32767).astype("<i2").tobytes()
    return dataset


def noisy_mr_dataset(source: Dataset) -> Dataset:
    """pydicom's MR slice with white Gaussian noise added (a derived image, same fake patient)."""
    dataset = copy.deepcopy(source)
    pixels = source.pixel_array.astype(np.float64)
    low, high = np.percentile(pixels, [1, 99])
    noise = np.random.default_rng(NOISY_MR_SEED).normal(
        0.0, NOISY_MR_RELATIVE * (high - low), pixels.shape
    )
    noisy = np.clip(np.rint(pixels + noise), -32768, 32767).astype(source.pixel_array.dtype)
    dataset.PixelData = noisy.tobytes()
    dataset.SOPInstanceUID = _uid("mr_small_noisy.dcm", "sop")
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.ImageType = ["DERIVED", "SECONDARY", "NOISE_ADDED"]
    return dataset


def build_reference_model_samples(datasets: dict[str, Dataset]) -> None:
    """The phantoms the lesion-detector discriminates and the noisy MR image-quality flags."""
    for name, lesion in (("ct_phantom_lesion.dcm", True), ("ct_phantom_clear.dcm", False)):
        _write(DICOM_DIR / name, _dataset_bytes(phantom_dataset(name, lesion=lesion)))
    noisy = noisy_mr_dataset(datasets["mr_small.dcm"])
    _write(DICOM_DIR / "mr_small_noisy.dcm", _dataset_bytes(noisy))


def build_raster(datasets: dict[str, Dataset]) -> None:
    """PNG and JPEG images made from the CT, MR and colour ultrasound pixels."""
    ct = Image.fromarray(_to_uint8(datasets["ct_small.dcm"].pixel_array))
    mr = Image.fromarray(_to_uint8(datasets["mr_small.dcm"].pixel_array))
    for size in RASTER_SIZES:
        # Nearest-neighbour keeps the big images small on disk (long runs compress well).
        resample = Image.Resampling.NEAREST if size > 512 else Image.Resampling.BILINEAR
        ct_sized = ct.resize((size, size), resample)
        _write(RASTER_DIR / f"ct_{size}.png", _png_bytes(ct_sized))
        _write(
            RASTER_DIR / f"ct_{size}.jpg", _jpeg_bytes(ct_sized, quality=60 if size > 512 else 85)
        )
    _write(RASTER_DIR / "mr_256.png", _png_bytes(mr.resize((256, 256), Image.Resampling.BILINEAR)))
    ct16 = datasets["ct_small.dcm"].pixel_array.astype(np.int32)
    ct16 = (ct16 - ct16.min()).astype(np.uint16)
    _write(RASTER_DIR / "ct_128_16bit.png", _png_bytes(Image.fromarray(ct16)))
    us = datasets["us_rgb_jpeg2000.dcm"].pixel_array
    us_image = Image.fromarray(np.ascontiguousarray(us)).resize((320, 240))
    _write(RASTER_DIR / "us_rgb_320x240.png", _png_bytes(us_image))
    _write(RASTER_DIR / "us_rgb_320x240.jpg", _jpeg_bytes(us_image))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_bomb(width: int = 65535, height: int = 65535) -> bytes:
    """A PNG whose IHDR claims ``width x height`` greyscale pixels, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_with_declared_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Patch the SOF segment of a real JPEG so that it declares another size."""
    offset = 2
    while offset + 4 <= len(jpeg):
        marker = jpeg[offset + 1]
        (length,) = struct.unpack_from(">H", jpeg, offset + 2)
        if marker in (0xC0, 0xC1, 0xC2):
            patched = bytearray(jpeg)
            struct.pack_into(">HH", patched, offset + 5, height, width)
            return bytes(patched)
        offset += 2 + length
    raise ValueError("no SOF segment found")


def deflate_bomb(inflated_bytes: int = 80 * 1024 * 1024) -> bytes:
    """A Deflated Explicit VR Little Endian file whose dataset inflates to ``inflated_bytes``."""
    ct = dcmread(get_testdata_file("CT_small.dcm"))
    ct.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    head = _dataset_bytes(ct)
    meta_end = 132 + 12 + struct.unpack_from("<I", head, 132 + 8)[0]
    # An OB private element of zeros: the payload deflates about a thousand to one.
    element = struct.pack("<HH2sHI", 0x0009, 0x0010, b"OB", 0, inflated_bytes)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(element)
    chunk = b"\x00" * (1 << 20)
    for _ in range(inflated_bytes >> 20):
        body += compressor.compress(chunk)
    body += compressor.flush()
    return head[:meta_end] + body


def build_bad() -> None:
    """Crafted inputs, one per failure the validator must name."""
    ct_path = get_testdata_file("CT_small.dcm")
    ct_bytes = Path(ct_path).read_bytes()
    _write(BAD_DIR / "empty.dcm", b"")
    _write(BAD_DIR / "truncated_ct.dcm", ct_bytes[: len(ct_bytes) - 4096])
    _write(BAD_DIR / "not_an_image.bin", b"%PDF-1.4\nthis is not an image\n" * 8)
    huge = dcmread(ct_path)
    huge.Rows = huge.Columns = 65535
    _write(BAD_DIR / "huge_rows_columns.dcm", _dataset_bytes(huge))
    _write(BAD_DIR / "png_bomb_65535.png", png_bomb())
    small_jpeg = (RASTER_DIR / "ct_64.jpg").read_bytes()
    _write(BAD_DIR / "jpeg_bomb_65535.jpg", jpeg_with_declared_size(small_jpeg, 65535, 65535))
    shutil.copyfile(get_testdata_file("test-SR.dcm"), BAD_DIR / "sr_no_pixels.dcm")
    _write(
        BAD_DIR / "raw_no_preamble.dcm",
        ct_bytes[132 + 12 + struct.unpack_from("<I", ct_bytes, 140)[0] :],
    )
    _write(BAD_DIR / "deflate_bomb.dcm", deflate_bomb())
    palette = get_testdata_file("examples_palette.dcm")
    shutil.copyfile(palette, BAD_DIR / "palette_color.dcm")


def phi_manifest() -> dict[str, object]:
    """Patient identifiers present in the DICOM samples, for tests that scan outputs."""
    files: dict[str, dict[str, str]] = {}
    for path in sorted([*DICOM_DIR.glob("*.dcm"), *BAD_DIR.glob("*.dcm")]):
        try:
            # Our own generated files, so force is safe here (never on untrusted input).
            dataset = dcmread(path, stop_before_pixels=True, force=True)
        except Exception:  # noqa: BLE001, S112 - bad samples may not parse; they hold no PHI then
            continue
        entry = {
            keyword: str(dataset.get(keyword, "") or "")
            for keyword in ("PatientName", "PatientID", "PatientBirthDate")
        }
        entry = {key: value for key, value in entry.items() if value}
        if entry:
            files[path.relative_to(SAMPLES).as_posix()] = entry
    values = sorted({value for entry in files.values() for value in entry.values()})
    return {
        "attributes": ["PatientName", "PatientID", "PatientBirthDate"],
        "files": files,
        "values": values,
    }


def main() -> None:
    """Regenerate every sample and the PHI manifest."""
    for folder in (DICOM_DIR, RASTER_DIR, BAD_DIR):
        shutil.rmtree(folder, ignore_errors=True)
    datasets = build_dicom()
    build_reference_model_samples(datasets)
    build_raster(datasets)
    build_bad()
    manifest = json.dumps(phi_manifest(), indent=2, sort_keys=True) + "\n"
    (SAMPLES / "phi_manifest.json").write_text(manifest, encoding="utf-8")
    total = sum(path.stat().st_size for path in SAMPLES.rglob("*") if path.is_file())
    print(f"samples written: {total} bytes in total")


if __name__ == "__main__":
    main()
