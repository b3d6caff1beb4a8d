"""The suite's litter check sees what ``git status`` alone misses: empty untracked directories."""

from __future__ import annotations

import uuid

from tests.conftest import REPO_ROOT, work_tree_status


def test_an_empty_untracked_directory_tree_counts_as_litter() -> None:
    """Faust leaves ``<app>-data/v1/tables`` without files: the check must still name it."""
    before = work_tree_status()
    assert before is not None, "the tests run in a git checkout"
    top = REPO_ROOT / f"rstest-litter-{uuid.uuid4().hex[:8]}-data"
    (top / "v1" / "tables").mkdir(parents=True)
    try:
        after = work_tree_status()
    finally:
        (top / "v1" / "tables").rmdir()
        (top / "v1").rmdir()
        top.rmdir()
    assert after is not None
    assert after - before == {f"{top.name}/"}
    assert work_tree_status() == before
