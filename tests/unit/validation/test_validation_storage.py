"""file:// URIs resolve only inside the storage roots; reads check the size first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from schemas.errors import ErrorCode, InputValidationError, TransientError
from streams.validation import read_image_bytes, resolve_image_uri

pytestmark = pytest.mark.requirement("RS-VAL-07", "RS-VAL-02")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A storage root holding one image and one sub-folder."""
    storage = tmp_path / "storage"
    (storage / "study").mkdir(parents=True)
    (storage / "study" / "image.dcm").write_bytes(b"x" * 10)
    (tmp_path / "secret.txt").write_bytes(b"secret")
    return storage


class TestResolveImageUri:
    def test_inside_root(self, root: Path) -> None:
        """A file under the root resolves to its real path."""
        uri = (root / "study" / "image.dcm").as_uri()
        assert resolve_image_uri(uri, [root]) == (root / "study" / "image.dcm").resolve()

    def test_localhost_host(self, root: Path) -> None:
        """file://localhost/ is the same host."""
        uri = "file://localhost" + str(root / "study" / "image.dcm")
        assert resolve_image_uri(uri, [root]).name == "image.dcm"

    def test_second_root(self, root: Path, tmp_path: Path) -> None:
        """Any configured root may contain the file."""
        other = tmp_path / "other"
        other.mkdir()
        assert resolve_image_uri((root / "study").as_uri() + "/image.dcm", [other, root])

    @pytest.mark.parametrize(
        "uri",
        ["http://example.org/image.dcm", "ftp://host/x.dcm", "s3://bucket/x", "file://evil/x"],
    )
    def test_other_schemes(self, uri: str, root: Path) -> None:
        """Other schemes and remote hosts are STORAGE_URI_SCHEME_UNSUPPORTED."""
        with pytest.raises(InputValidationError) as caught:
            resolve_image_uri(uri, [root])
        assert caught.value.code is ErrorCode.STORAGE_URI_SCHEME_UNSUPPORTED

    def test_dot_dot(self, root: Path) -> None:
        """.. segments that climb out of the root are refused."""
        uri = "file://" + str(root) + "/study/../../secret.txt"
        with pytest.raises(InputValidationError) as caught:
            resolve_image_uri(uri, [root])
        assert caught.value.code is ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS

    def test_percent_encoded_traversal(self, root: Path) -> None:
        """%2e%2e%2f is decoded before the containment check, so it is refused too."""
        uri = "file://" + str(root) + "/study/%2e%2e/%2E%2E%2fsecret.txt"
        with pytest.raises(InputValidationError) as caught:
            resolve_image_uri(uri, [root])
        assert caught.value.code is ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS

    def test_symlink_out_of_root(self, root: Path, tmp_path: Path) -> None:
        """A symlink inside the root that points outside is refused."""
        (root / "link.txt").symlink_to(tmp_path / "secret.txt")
        with pytest.raises(InputValidationError) as caught:
            resolve_image_uri((root / "link.txt").as_uri(), [root])
        assert caught.value.code is ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS

    def test_absolute_elsewhere(self, root: Path) -> None:
        """An absolute path outside every root is refused."""
        with pytest.raises(InputValidationError) as caught:
            resolve_image_uri("file:///etc/passwd", [root])
        assert caught.value.code is ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS

    def test_root_itself(self, root: Path) -> None:
        """The root directory itself is not an image inside the root."""
        with pytest.raises(InputValidationError):
            resolve_image_uri(root.as_uri(), [root])

    def test_sibling_with_common_prefix(self, root: Path, tmp_path: Path) -> None:
        """/storage-evil is not inside /storage although the strings share a prefix."""
        evil = tmp_path / "storage-evil"
        evil.mkdir()
        with pytest.raises(InputValidationError):
            resolve_image_uri((evil / "x.dcm").as_uri(), [root])

    @pytest.mark.parametrize("suffix", ["%00.dcm", "?q=1", "#frag"])
    def test_nul_query_fragment(self, root: Path, suffix: str) -> None:
        """NUL bytes, queries and fragments are refused."""
        with pytest.raises(InputValidationError) as caught:
            resolve_image_uri((root / "study" / "image.dcm").as_uri() + suffix, [root])
        assert caught.value.code is ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS

    def test_relative_path(self, root: Path) -> None:
        """A relative file: URI has no place to anchor and is refused."""
        with pytest.raises(InputValidationError):
            resolve_image_uri("file:study/image.dcm", [root])


class TestReadImageBytes:
    def test_reads_file(self, root: Path) -> None:
        """A small regular file is read whole."""
        assert read_image_bytes(root / "study" / "image.dcm", 100) == b"x" * 10

    def test_missing_file_is_retryable(self, root: Path) -> None:
        """A missing file is a retryable transient error (the router may still be writing)."""
        with pytest.raises(TransientError) as caught:
            read_image_bytes(root / "nope.dcm", 100)
        assert caught.value.code is ErrorCode.STORAGE_FILE_NOT_FOUND
        assert caught.value.retryable

    def test_recently_modified_file_is_incomplete(self, root: Path) -> None:
        """A file modified within the settle time is still being written: retry, not decode."""
        path = root / "study" / "image.dcm"
        os.utime(path, (1000.0, 1000.0))
        with pytest.raises(TransientError) as caught:
            read_image_bytes(path, 100, settle_seconds=2.0, now=1001.5)
        assert caught.value.code is ErrorCode.STORAGE_FILE_INCOMPLETE
        assert caught.value.retryable

    def test_settled_file_is_read(self, root: Path) -> None:
        """Once the file has been quiet for the settle time it is read."""
        path = root / "study" / "image.dcm"
        os.utime(path, (1000.0, 1000.0))
        assert read_image_bytes(path, 100, settle_seconds=2.0, now=1002.0) == b"x" * 10

    def test_too_large_before_reading(self, root: Path) -> None:
        """A file above the limit is refused from its size, not read."""
        with pytest.raises(InputValidationError) as caught:
            read_image_bytes(root / "study" / "image.dcm", 9)
        assert caught.value.code is ErrorCode.IMAGE_TOO_LARGE

    def test_directory(self, root: Path) -> None:
        """A directory is not a readable image."""
        with pytest.raises(TransientError) as caught:
            read_image_bytes(root / "study", 100)
        assert caught.value.code is ErrorCode.STORAGE_READ_FAILED

    def test_fifo_does_not_block(self, root: Path) -> None:
        """A FIFO is refused at once instead of blocking the stage."""
        fifo = root / "pipe"
        os.mkfifo(fifo)
        with pytest.raises(TransientError) as caught:
            read_image_bytes(fifo, 100)
        assert caught.value.code is ErrorCode.STORAGE_READ_FAILED

    def test_symlink_swapped_in_is_not_followed(self, root: Path, tmp_path: Path) -> None:
        """A symlink at the resolved path is refused (O_NOFOLLOW), not followed."""
        link = root / "swapped.dcm"
        link.symlink_to(tmp_path / "secret.txt")
        with pytest.raises(TransientError) as caught:
            read_image_bytes(link, 100)
        assert caught.value.code is ErrorCode.STORAGE_READ_FAILED

    def test_unreadable_file(self, root: Path) -> None:
        """An OS error other than not-found is STORAGE_READ_FAILED."""
        target = root / "study" / "image.dcm"
        target.chmod(0)
        try:
            if os.access(target, os.R_OK):  # running as root: permissions do not apply
                target = root / "study" / ("x" * 300)  # ENAMETOOLONG instead
            with pytest.raises(TransientError) as caught:
                read_image_bytes(target, 100)
        finally:
            (root / "study" / "image.dcm").chmod(0o644)
        assert caught.value.code is ErrorCode.STORAGE_READ_FAILED
