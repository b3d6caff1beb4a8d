"""Oversized bodies and uploads, and image references that try to leave the storage roots."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.gateway.fakes import Harness, build_harness

pytestmark = pytest.mark.requirement("RS-API-06", "RS-VAL-07")

SERVICE = ("svc-1", ["service"])


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    """The API with a 1 KiB upload limit and a 4 KiB JSON limit."""
    return build_harness(tmp_path, max_upload_bytes=1024, max_json_body_bytes=4096)


def _files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


class TestBodyLimits:
    """Bodies over the limits answer 413 and leave nothing behind."""

    async def test_oversized_json_body_is_413(self, harness: Harness) -> None:
        """A JSON body larger than the limit is refused with PAYLOAD_TOO_LARGE."""
        body = {"source": "r1", "image_uri": "file:///" + "a" * 5000}
        response = await harness.client.post("/infer", json=body, headers=harness.auth(*SERVICE))
        assert response.status_code == 413
        assert response.json()["code"] == "PAYLOAD_TOO_LARGE"

    async def test_oversized_streamed_json_without_length_is_413(self, harness: Harness) -> None:
        """A chunked body without Content-Length is cut off once it passes the limit."""

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"source": "r1", "image_uri": "file:///'
            for _ in range(10):
                yield b"a" * 1000
            yield b'"}'

        response = await harness.client.post(
            "/infer",
            content=chunks(),
            headers={**harness.auth(*SERVICE), "Content-Type": "application/json"},
        )
        assert response.status_code == 413
        assert harness.publisher.messages == []

    async def test_upload_one_byte_over_limit_is_413(self, harness: Harness) -> None:
        """An upload of max_upload_bytes + 1 is refused."""
        response = await harness.client.post(
            "/infer", files={"file": ("x.dcm", b"x" * 1025)}, headers=harness.auth(*SERVICE)
        )
        assert response.status_code == 413
        assert response.json()["code"] == "PAYLOAD_TOO_LARGE"

    async def test_refused_upload_leaves_no_partial_file(self, harness: Harness) -> None:
        """The partially written file of a refused upload is deleted."""
        await harness.client.post(
            "/infer", files={"file": ("x.dcm", b"x" * 1025)}, headers=harness.auth(*SERVICE)
        )
        assert _files_under(harness.root) == []

    async def test_upload_far_over_limit_is_413_without_file(self, harness: Harness) -> None:
        """An upload beyond the multipart allowance is refused by the body limit, file-less."""
        response = await harness.client.post(
            "/infer",
            files={"file": ("x.dcm", os.urandom(200 * 1024))},
            headers=harness.auth(*SERVICE),
        )
        assert response.status_code == 413
        assert _files_under(harness.root) == []

    async def test_upload_at_limit_is_accepted(self, harness: Harness) -> None:
        """The control: exactly max_upload_bytes is accepted and stored."""
        response = await harness.client.post(
            "/infer", files={"file": ("x.dcm", b"x" * 1024)}, headers=harness.auth(*SERVICE)
        )
        assert response.status_code == 202
        assert [path.stat().st_size for path in _files_under(harness.root)] == [1024]

    async def test_batch_over_configured_size_is_refused(self, tmp_path: Path) -> None:
        """A batch with more than max_batch_items items is refused as a whole."""
        harness = build_harness(tmp_path, max_batch_items=2)
        item = {"source": "r1", "image_uri": (harness.root / "a.dcm").as_uri()}
        response = await harness.client.post(
            "/infer/batch", json={"items": [item] * 3}, headers=harness.auth(*SERVICE)
        )
        assert response.status_code == 400
        assert harness.publisher.messages == []


class TestPathTraversal:
    """Image references must stay inside the storage roots."""

    @pytest.mark.parametrize(
        "uri",
        [
            "file:///etc/passwd",
            "file://{root}/../outside.dcm",
            "file://{root}/%2e%2e/%2e%2e/etc/passwd",
            "file://{root}/a/../../outside.dcm",
            "file://{root}",
            "file://{root}/x%ff%fe.dcm",
        ],
    )
    async def test_paths_outside_roots_are_refused(self, harness: Harness, uri: str) -> None:
        """Absolute paths elsewhere, dot-dot and encoded dot-dot are all refused."""
        response = await harness.client.post(
            "/infer",
            json={"source": "r1", "image_uri": uri.format(root=harness.root)},
            headers=harness.auth(*SERVICE),
        )
        assert response.status_code == 400
        assert response.json()["code"] == "STORAGE_PATH_OUTSIDE_ROOTS"
        assert harness.publisher.messages == []

    async def test_symlink_escaping_root_is_refused(self, harness: Harness, tmp_path: Path) -> None:
        """A symlink inside a root pointing outside it is refused."""
        outside = tmp_path / "secret.dcm"
        outside.write_bytes(b"x")
        (harness.root / "link.dcm").symlink_to(outside)
        response = await harness.client.post(
            "/infer",
            json={"source": "r1", "image_uri": (harness.root / "link.dcm").as_uri()},
            headers=harness.auth(*SERVICE),
        )
        assert response.json()["code"] == "STORAGE_PATH_OUTSIDE_ROOTS"

    @pytest.mark.parametrize(
        "uri", ["http://evil.example/x.dcm", "file://remote-host/srv/x.dcm", "smb://h/share/x"]
    )
    async def test_non_local_uris_are_refused(self, harness: Harness, uri: str) -> None:
        """Only local file:// URIs are accepted."""
        response = await harness.client.post(
            "/infer", json={"source": "r1", "image_uri": uri}, headers=harness.auth(*SERVICE)
        )
        assert response.json()["code"] == "STORAGE_URI_SCHEME_UNSUPPORTED"

    async def test_traversal_item_rejected_in_batch(self, harness: Harness) -> None:
        """In a batch, a traversal item is rejected while a good one is accepted."""
        good = {"source": "r1", "image_uri": (harness.root / "ok.dcm").as_uri()}
        bad = {"source": "r1", "image_uri": f"file://{harness.root}/../../etc/shadow"}
        response = await harness.client.post(
            "/infer/batch", json={"items": [good, bad]}, headers=harness.auth(*SERVICE)
        )
        outcomes = [(item["status"], item["code"]) for item in response.json()["items"]]
        assert outcomes == [("accepted", None), ("rejected", "STORAGE_PATH_OUTSIDE_ROOTS")]

    async def test_upload_filename_is_never_used(self, harness: Harness) -> None:
        """A traversal file name in an upload does not influence where the file is stored."""
        response = await harness.client.post(
            "/infer",
            files={"file": ("../../../../tmp/evil.dcm", b"DICM")},
            headers=harness.auth(*SERVICE),
        )
        assert response.status_code == 202
        stored = _files_under(harness.root)
        assert len(stored) == 1
        assert stored[0].parent == harness.root / "uploads" / "2026-11-27"
        assert "evil" not in stored[0].name
