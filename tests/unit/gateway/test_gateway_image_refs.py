"""resolve_image_uri keeps references inside the storage roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.image_refs import resolve_image_uri
from schemas.errors import ErrorCode, InputValidationError

pytestmark = pytest.mark.requirement("RS-VAL-07")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """One storage root."""
    path = tmp_path / "root"
    path.mkdir()
    return path


def _code(uri: str, roots: list[Path]) -> ErrorCode:
    with pytest.raises(InputValidationError) as caught:
        resolve_image_uri(uri, roots)
    return caught.value.code


class TestResolveImageUri:
    """Accepted and refused URIs."""

    def test_path_inside_root_resolves(self, root: Path) -> None:
        """A plain path in the root comes back absolute."""
        assert resolve_image_uri((root / "a" / "b.dcm").as_uri(), [root]) == root / "a" / "b.dcm"

    def test_localhost_authority_is_local(self, root: Path) -> None:
        """file://localhost/... is the same as file:///..."""
        assert resolve_image_uri(f"file://localhost{root}/x.dcm", [root]) == root / "x.dcm"

    def test_second_root_is_accepted(self, root: Path, tmp_path: Path) -> None:
        """Any configured root will do."""
        other = tmp_path / "other"
        other.mkdir()
        assert resolve_image_uri((other / "x").as_uri(), [root, other]) == other / "x"

    def test_sibling_with_root_prefix_is_refused(self, root: Path) -> None:
        """/root-evil is not inside /root even though it starts with the same text."""
        assert _code(f"file://{root}-evil/x.dcm", [root]) == ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS

    def test_query_is_refused(self, root: Path) -> None:
        """A query or fragment has no meaning for a file and is refused."""
        assert _code(f"file://{root}/x.dcm?a=1", [root]) == ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS

    def test_non_utf8_percent_encoding_is_refused(self, root: Path) -> None:
        """%ff is not UTF-8: refused as unreadable, never an unexpected exception."""
        assert _code(f"file://{root}/x%ff.dcm", [root]) == ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS

    def test_relative_path_is_refused(self, root: Path) -> None:
        """file:relative has no absolute path."""
        assert _code("file:x/y.dcm", [root]) == ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS

    def test_nul_byte_is_refused(self, root: Path) -> None:
        """An encoded NUL byte is refused before touching the file system."""
        assert _code(f"file://{root}/x%00.dcm", [root]) == ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS

    def test_symlink_inside_root_is_accepted(self, root: Path) -> None:
        """A symlink to another file in the root resolves to its target."""
        (root / "real.dcm").write_bytes(b"x")
        (root / "alias.dcm").symlink_to(root / "real.dcm")
        assert resolve_image_uri((root / "alias.dcm").as_uri(), [root]) == root / "real.dcm"
