"""receive_upload streams a multipart body to disk, hashing and limiting as it goes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from gateway.uploads import MAX_FIELDS, receive_upload, upload_directory
from schemas.errors import ErrorCode, InputValidationError

pytestmark = pytest.mark.requirement("RS-API-06")

BOUNDARY = "b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
DAY = date(2026, 11, 27)


def _part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def _body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


async def _chunks(body: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def _receive(root: Path, body: bytes, max_bytes: int = 100, content_type: str = CONTENT_TYPE):
    return await receive_upload(
        _chunks(body), content_type, root=root, max_bytes=max_bytes, day=DAY
    )


def _code_of(exc: pytest.ExceptionInfo[InputValidationError]) -> ErrorCode:
    return exc.value.code


def _files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


class TestReceiveUpload:
    """Streaming, hashing, limits and clean-up."""

    async def test_stores_file_with_size_and_digest(self, tmp_path: Path) -> None:
        """Bytes arriving in small chunks are stored whole, with their SHA-256."""
        data = bytes(range(90))
        stored = await _receive(tmp_path, _body(_part("file", data, "x.dcm")))
        assert (stored.path.read_bytes(), stored.size_bytes, stored.sha256) == (
            data,
            90,
            hashlib.sha256(data).hexdigest(),
        )

    async def test_stored_in_the_day_folder(self, tmp_path: Path) -> None:
        """The file goes to <root>/uploads/<date>/."""
        stored = await _receive(tmp_path, _body(_part("file", b"abc")))
        assert stored.path.parent == upload_directory(tmp_path, DAY)

    async def test_collects_text_fields(self, tmp_path: Path) -> None:
        """Fields before and after the file are collected; repeats become lists."""
        body = _body(_part("model_ids", b"m1"), _part("file", b"abc"), _part("model_ids", b"m2"))
        stored = await _receive(tmp_path, body)
        assert stored.fields == {"model_ids": ["m1", "m2"]}

    async def test_over_limit_is_payload_too_large_and_deleted(self, tmp_path: Path) -> None:
        """One byte over the limit stops the upload and removes the partial file."""
        with pytest.raises(InputValidationError) as caught:
            await _receive(tmp_path, _body(_part("file", b"x" * 101)))
        assert _code_of(caught) == ErrorCode.PAYLOAD_TOO_LARGE
        assert _files(tmp_path) == []

    async def test_exactly_at_limit_is_accepted(self, tmp_path: Path) -> None:
        """max_bytes itself is allowed."""
        stored = await _receive(tmp_path, _body(_part("file", b"x" * 100)))
        assert stored.size_bytes == 100

    async def test_missing_file_part_is_refused(self, tmp_path: Path) -> None:
        """A body with only fields is a request error, and leaves no file."""
        with pytest.raises(InputValidationError) as caught:
            await _receive(tmp_path, _body(_part("source", b"r1")))
        assert _code_of(caught) == ErrorCode.REQUEST_INVALID
        assert _files(tmp_path) == []

    async def test_empty_file_is_image_empty(self, tmp_path: Path) -> None:
        """A zero-byte file part is IMAGE_EMPTY."""
        with pytest.raises(InputValidationError) as caught:
            await _receive(tmp_path, _body(_part("file", b"")))
        assert _code_of(caught) == ErrorCode.IMAGE_EMPTY

    async def test_two_file_parts_are_refused(self, tmp_path: Path) -> None:
        """Exactly one file per request."""
        with pytest.raises(InputValidationError, match="exactly one"):
            await _receive(tmp_path, _body(_part("file", b"a"), _part("file", b"b")))

    async def test_long_field_is_refused(self, tmp_path: Path) -> None:
        """A form field over 4 KiB is refused (fields are ids, not documents)."""
        with pytest.raises(InputValidationError, match="too long"):
            await _receive(tmp_path, _body(_part("source", b"s" * 5000), _part("file", b"a")))

    async def test_too_many_fields_are_refused(self, tmp_path: Path) -> None:
        """More than MAX_FIELDS fields are refused."""
        parts = [_part(f"f{i}", b"v") for i in range(MAX_FIELDS + 1)]
        with pytest.raises(InputValidationError, match="too many"):
            await _receive(tmp_path, _body(*parts, _part("file", b"a")))

    async def test_non_utf8_field_is_refused(self, tmp_path: Path) -> None:
        """Form fields must be text."""
        with pytest.raises(InputValidationError, match="UTF-8"):
            await _receive(tmp_path, _body(_part("source", b"\xff\xfe"), _part("file", b"a")))

    async def test_part_without_name_is_refused(self, tmp_path: Path) -> None:
        """Every part needs a Content-Disposition name."""
        body = f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
        with pytest.raises(InputValidationError, match="name"):
            await _receive(tmp_path, body.encode())

    async def test_malformed_body_is_refused_and_cleaned(self, tmp_path: Path) -> None:
        """A body that breaks the multipart grammar is a request error, with no file left."""
        with pytest.raises(InputValidationError, match="malformed"):
            await _receive(tmp_path, f"--{BOUNDARY}\r\nno-colon-header\r\n\r\n".encode())
        assert _files(tmp_path) == []

    @pytest.mark.parametrize(
        "content_type", ["multipart/form-data", "application/json", "multipart/mixed; boundary=x"]
    )
    async def test_bad_content_type_is_refused(self, tmp_path: Path, content_type: str) -> None:
        """Only multipart/form-data with a boundary is parsed."""
        with pytest.raises(InputValidationError, match="boundary"):
            await _receive(tmp_path, b"", content_type=content_type)
