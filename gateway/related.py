"""Read a ``multipart/related`` body (DICOMweb STOW-RS) into its parts, with bounds.

Parsed incrementally with python-multipart's streaming parser (the same framing as form data);
each part's bytes are kept in memory up to ``max_part_bytes`` (the API's upload limit, which a
DICOM receiver holds in memory anyway) and at most ``max_parts`` parts are taken. A part whose
``Content-Type`` is not ``application/dicom`` is kept with its type so the route can refuse that
part alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from gateway.uploads import PartHeaders, request_invalid

DICOM_MEDIA_TYPE = "application/dicom"


@dataclass(frozen=True, slots=True)
class RelatedPart:
    """One body part: its media type (lower case) and bytes; ``too_large`` if cut off."""

    media_type: str
    data: bytes
    too_large: bool = False


@dataclass(slots=True, kw_only=True)
class _Parts(PartHeaders):
    max_part_bytes: int
    max_parts: int
    parts: list[RelatedPart] = field(default_factory=list)
    media_type: str = ""
    buffer: bytearray = field(default_factory=bytearray)
    too_large: bool = False

    def on_part_begin(self) -> None:
        if len(self.parts) >= self.max_parts:
            raise request_invalid(f"a STOW-RS request holds at most {self.max_parts} instances")
        self.media_type = ""
        self.buffer.clear()
        self.too_large = False

    def on_header_end(self) -> None:
        name, value = self.take_header()
        if name == b"content-type":
            kind, _ = parse_options_header(value)
            self.media_type = kind.decode("latin-1").lower()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.too_large:
            return
        self.buffer.extend(data[start:end])
        if len(self.buffer) > self.max_part_bytes:
            # Keep reading (the other parts still count) but drop this part's bytes.
            self.too_large = True
            self.buffer.clear()

    def on_part_end(self) -> None:
        self.parts.append(RelatedPart(self.media_type, bytes(self.buffer), self.too_large))
        self.buffer.clear()


def related_boundary(content_type: str) -> bytes:
    """The boundary of a ``multipart/related; type="application/dicom"`` Content-Type.

    Raises:
        InputValidationError: ``REQUEST_INVALID`` for another media type, another root type,
            or no usable boundary.
    """
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    root_type = params.get(b"type", DICOM_MEDIA_TYPE.encode()).lower()
    if kind != b"multipart/related" or root_type != DICOM_MEDIA_TYPE.encode():
        raise request_invalid('Content-Type must be multipart/related; type="application/dicom"')
    if not boundary or len(boundary) > 200:
        raise request_invalid("the multipart/related body needs a boundary")
    return boundary


async def read_related_parts(
    chunks: AsyncIterator[bytes], boundary: bytes, *, max_part_bytes: int, max_parts: int
) -> list[RelatedPart]:
    """Every part of the body, in order.

    Raises:
        InputValidationError: ``REQUEST_INVALID`` for a malformed body, no part at all, or more
            than ``max_parts`` parts.
    """
    state = _Parts(max_part_bytes=max_part_bytes, max_parts=max_parts)
    parser = state.parser(boundary)
    try:
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise request_invalid("the multipart/related body is malformed") from exc
    if not state.parts:
        raise request_invalid("the multipart/related body has no part")
    return state.parts
