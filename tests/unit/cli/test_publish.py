"""``radstream publish`` refuses, before it connects, what the pipeline could never read."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main
from schemas.settings import Settings, load_settings

# Nothing listens on port 1: a command that gets as far as publishing fails BROKER_UNAVAILABLE
# (exit 5) at once, so exit 2 proves the file was refused before any connection was tried.
UNREACHABLE_BROKER = "127.0.0.1:1"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A storage root of its own (the default root is the bundled samples folder)."""
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


def settings_for(root: Path) -> Settings:
    return load_settings(
        kafka_bootstrap=UNREACHABLE_BROKER,
        topic_prefix="rstest.publish.",
        storage_roots=(root,),
    )


class TestStorageRoots:
    def test_a_file_outside_the_roots_is_refused_before_publishing(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Outside every root: the API's 400 code, as one line, exit 2, and no connection."""
        outside = tmp_path / "Doe_Jane_chest.dcm"
        outside.write_bytes(b"not read")
        assert main(["publish", str(outside)], settings=settings_for(root)) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert captured.err.startswith(
            "radstream publish: STORAGE_PATH_OUTSIDE_ROOTS: FILE 1: path resolves outside the "
            "configured storage roots."
        )
        assert "RADSTREAM_STORAGE_ROOTS" in captured.err
        assert "Doe" not in captured.err  # a path may hold patient data: never echoed
        assert str(tmp_path) not in captured.err

    def test_the_refused_file_is_named_by_its_position(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With several files, the line says which one (by position) and none is published."""
        inside, outside = root / "a.dcm", tmp_path / "b.dcm"
        inside.write_bytes(b"x")
        outside.write_bytes(b"x")
        argv = ["publish", str(inside), str(outside)]
        assert main(argv, settings=settings_for(root)) == 2
        assert "STORAGE_PATH_OUTSIDE_ROOTS: FILE 2: " in capsys.readouterr().err

    def test_a_symlink_out_of_a_root_is_refused(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A link in a root to a file elsewhere is judged where the bytes are, as the API does."""
        target = tmp_path / "elsewhere.dcm"
        target.write_bytes(b"x")
        (root / "link.dcm").symlink_to(target)
        assert main(["publish", str(root / "link.dcm")], settings=settings_for(root)) == 2
        assert "STORAGE_PATH_OUTSIDE_ROOTS" in capsys.readouterr().err

    def test_a_file_inside_a_root_goes_on_to_publish(
        self, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A file in a root passes the check (here it then meets the unreachable broker)."""
        inside = root / "sub" / "a.dcm"
        inside.parent.mkdir()
        inside.write_bytes(b"x")
        assert main(["publish", str(inside)], settings=settings_for(root)) == 5
        assert "BROKER_UNAVAILABLE" in capsys.readouterr().err


class TestModality:
    def test_a_modality_that_is_no_defined_term_is_a_usage_error(
        self, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`--modality` takes DICOM defined terms only: exit 2, before any connection."""
        image = root / "a.png"
        image.write_bytes(b"x")
        argv = ["publish", "--modality", "DOEJANE", str(image)]
        assert main(argv, settings=settings_for(root)) == 2
        assert "not a DICOM modality defined term" in capsys.readouterr().err
