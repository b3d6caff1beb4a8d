"""The content-addressed store and the one ingest path: durable, once per instance, bounded."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from schemas.correlation import CORRELATION_ID_HEADER
from schemas.errors import ErrorCode, InputValidationError, TransientError
from schemas.events import ImageArrived
from streams.dicom.instances import read_instance
from streams.dicom_io import store as store_module
from streams.dicom_io.ingest import InstanceIngest
from streams.dicom_io.store import InstanceStore, sha256_of
from streams.topics import TopicKey
from tests.dicom_support import variant
from tests.unit.dicom.fakes import FakePublisher


class TestStore:
    def test_path_is_built_from_the_digest_only(self, tmp_path: Path) -> None:
        """<root>/aa/bb/<sha256>.dcm; anything that is not a digest is refused."""
        store = InstanceStore(tmp_path)
        digest = "ab" * 32
        assert store.path_for(digest) == tmp_path / "ab" / "ab" / f"{digest}.dcm"
        with pytest.raises(ValueError, match="SHA-256"):
            store.path_for("../../etc/passwd")

    def test_write_is_whole_and_idempotent(self, tmp_path: Path) -> None:
        """The bytes land whole; writing them again changes nothing and leaves no temp file."""
        store, data = InstanceStore(tmp_path), b"DICOM bytes"
        path = store.write(data, sha256_of(data))
        assert path.read_bytes() == data
        assert store.write(data, sha256_of(data)) == path
        assert [p.name for p in path.parent.iterdir()] == [path.name]

    def test_failed_sync_leaves_nothing_and_is_retryable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A disk error is STORAGE_WRITE_FAILED (retryable) and no partial file remains."""

        def failing_fsync(_fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(store_module.os, "fsync", failing_fsync)
        store, data = InstanceStore(tmp_path), b"DICOM bytes"
        with pytest.raises(TransientError) as caught:
            store.write(data, sha256_of(data))
        assert caught.value.code is ErrorCode.STORAGE_WRITE_FAILED
        assert caught.value.retryable
        assert [p for p in tmp_path.rglob("*") if p.is_file()] == []

    def test_published_marker(self, tmp_path: Path) -> None:
        """An instance is marked once its event was confirmed."""
        store, digest = InstanceStore(tmp_path), "cd" * 32
        store.write(b"x", digest)
        assert not store.is_published(digest)
        store.mark_published(digest)
        assert store.is_published(digest)

    def test_header_of_a_stored_instance(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The stored header is read back; a missing one is FileNotFoundError, an unreadable
        one IMAGE_MALFORMED."""
        store, data = InstanceStore(tmp_path), variant()
        store.write(data, sha256_of(data))
        assert (
            store.read_header(sha256_of(data)).SOPInstanceUID
            == read_instance(data).sop_instance_uid
        )
        with pytest.raises(FileNotFoundError):
            store.read_header("ee" * 32)

        def unreadable(*_args: object, **_kwargs: object) -> None:
            raise EOFError

        monkeypatch.setattr(store_module, "dcmread", unreadable)
        with pytest.raises(InputValidationError) as caught:
            store.read_header(sha256_of(data))
        assert caught.value.code is ErrorCode.IMAGE_MALFORMED


def stored_bytes(uri: str) -> bytes:
    return Path(uri.removeprefix("file://")).read_bytes()


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def make_ingest(tmp_path: Path, publisher: FakePublisher, timeout: float = 1.0) -> InstanceIngest:
    return InstanceIngest(
        InstanceStore(tmp_path), publisher, max_bytes=10_000_000, publish_timeout_seconds=timeout
    )


class TestEnsureWritable:
    def test_a_missing_folder_is_created_and_no_probe_is_left(self, tmp_path: Path) -> None:
        """A missing storage folder (and its missing parents) is created, mode 0750; the
        probe file that proved it writable is gone again."""
        root = tmp_path / "not" / "yet"
        InstanceStore(root).ensure_writable()
        assert root.is_dir()
        assert root.stat().st_mode & 0o777 == 0o750
        assert list(root.iterdir()) == []

    def test_a_folder_under_a_regular_file_cannot_be_created(self, tmp_path: Path) -> None:
        """A path whose parent is a regular file fails with OSError (even for root, for whom
        os.access says yes to read-only permissions)."""
        (tmp_path / "a-file").write_bytes(b"")
        with pytest.raises(OSError, match="Not a directory"):
            InstanceStore(tmp_path / "a-file" / "dicom").ensure_writable()

    def test_a_regular_file_is_not_a_storage_folder(self, tmp_path: Path) -> None:
        """A storage path that is a regular file fails with OSError."""
        (tmp_path / "a-file").write_bytes(b"")
        with pytest.raises(OSError, match="exists"):
            InstanceStore(tmp_path / "a-file").ensure_writable()

    def test_a_folder_refusing_new_files_fails(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The probe is what proves writability: a folder that exists but refuses a new file
        (a read-only mount; for root, permissions alone do not) fails with that OSError."""

        def refused(*_args: object, **_kwargs: object) -> tuple[int, str]:
            raise OSError(30, "Read-only file system")

        monkeypatch.setattr(store_module.tempfile, "mkstemp", refused)
        with pytest.raises(OSError, match="Read-only"):
            InstanceStore(tmp_path).ensure_writable()


class TestIngest:
    async def test_stored_then_announced_once(self, tmp_path: Path) -> None:
        """The instance is stored, then one ImageArrived keyed by study with the correlation id."""
        publisher, data = FakePublisher(), variant(phi=True)
        ingested = await make_ingest(tmp_path, publisher).ingest(
            data, source="ORTHANC", correlation_id="corr-1"
        )
        (topic, key, value, headers) = publisher.published[0]
        assert topic is TopicKey.IMAGES_ARRIVED
        assert key == ingested.instance.study_instance_uid.encode()
        assert isinstance(value, ImageArrived)
        assert headers == ((CORRELATION_ID_HEADER, b"corr-1"),)
        assert stored_bytes(value.image_uri) == data
        assert value.sha256 == sha256_of(data)
        assert not ingested.duplicate

    async def test_resend_is_recognised(self, tmp_path: Path) -> None:
        """The same instance sent again gets the same event id and no second event."""
        publisher, data = FakePublisher(), variant()
        ingest = make_ingest(tmp_path, publisher)
        first = await ingest.ingest(data, source="A", correlation_id="c1")
        second = await ingest.ingest(data, source="A", correlation_id="c2")
        assert second.duplicate
        assert second.event.event_id == first.event.event_id
        assert len(publisher.published) == 1

    async def test_recognised_across_restarts(self, tmp_path: Path) -> None:
        """A new ingest (a restarted receiver) on the same store still recognises it."""
        publisher, data = FakePublisher(), variant()
        await make_ingest(tmp_path, publisher).ingest(data, source="A", correlation_id="c1")
        again = await make_ingest(tmp_path, publisher).ingest(data, source="A", correlation_id="c")
        assert again.duplicate
        assert len(publisher.published) == 1

    async def test_broker_down_fails_then_the_retry_succeeds_once(self, tmp_path: Path) -> None:
        """An unconfirmed event fails the ingest (retryable); the resend publishes it once."""
        publisher, data = FakePublisher(failures=1), variant()
        ingest = make_ingest(tmp_path, publisher)
        with pytest.raises(TransientError) as caught:
            await ingest.ingest(data, source="A", correlation_id="c1")
        assert caught.value.code is ErrorCode.BROKER_UNAVAILABLE
        result = await ingest.ingest(data, source="A", correlation_id="c2")
        assert not result.duplicate
        assert len(publisher.published) == 1

    async def test_slow_broker_times_out_and_the_resend_joins_the_same_publication(
        self, tmp_path: Path
    ) -> None:
        """A confirmation later than the timeout fails the first try; the resend waits for the
        same publication instead of starting another."""
        gate = asyncio.Event()
        publisher, data = FakePublisher(gate=gate), variant()
        ingest = make_ingest(tmp_path, publisher, timeout=0.05)
        with pytest.raises(TransientError) as caught:
            await ingest.ingest(data, source="A", correlation_id="c1")
        assert caught.value.code is ErrorCode.TIMEOUT
        resend = asyncio.create_task(ingest.ingest(data, source="A", correlation_id="c2"))
        await asyncio.sleep(0)
        gate.set()
        await resend
        assert publisher.calls == 1
        assert len(publisher.published) == 1

    async def test_publication_finishing_after_the_timeout_marks_the_instance(
        self, tmp_path: Path
    ) -> None:
        """A late confirmation still marks the instance, so a later resend is a duplicate."""
        gate = asyncio.Event()
        publisher, data = FakePublisher(gate=gate), variant()
        ingest = make_ingest(tmp_path, publisher, timeout=0.05)
        with pytest.raises(TransientError):
            await ingest.ingest(data, source="A", correlation_id="c1")
        gate.set()
        await ingest.drain()
        assert (await ingest.ingest(data, source="A", correlation_id="c2")).duplicate
        assert publisher.calls == 1

    async def test_bad_instance_is_refused_and_nothing_stored(self, tmp_path: Path) -> None:
        """An instance radstream does not accept is refused before anything is written."""
        publisher = FakePublisher()
        with pytest.raises(InputValidationError) as caught:
            await make_ingest(tmp_path, publisher).ingest(
                b"not dicom at all", source="A", correlation_id="c"
            )
        assert caught.value.code is ErrorCode.DICOM_NOT_PART10
        assert files_under(tmp_path) == []
        assert publisher.published == []

    async def test_too_large(self, tmp_path: Path) -> None:
        """An instance over the size limit is IMAGE_TOO_LARGE."""
        ingest = InstanceIngest(
            InstanceStore(tmp_path), FakePublisher(), max_bytes=10, publish_timeout_seconds=1
        )
        with pytest.raises(InputValidationError) as caught:
            await ingest.ingest(variant(), source="A", correlation_id="c")
        assert caught.value.code is ErrorCode.IMAGE_TOO_LARGE

    async def test_mark_failure_still_answers_stored(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Once the broker confirmed, a failing marker write does not fail the instance."""
        publisher, data = FakePublisher(), variant()
        ingest = make_ingest(tmp_path, publisher)

        def no_marker(_self: InstanceStore, _sha: str) -> None:
            raise OSError("read-only")

        monkeypatch.setattr(InstanceStore, "mark_published", no_marker)
        assert not (await ingest.ingest(data, source="A", correlation_id="c")).duplicate
        assert len(publisher.published) == 1


def test_store_files_are_not_world_readable(tmp_path: Path) -> None:
    """Folders are created 0750 at most (files via mkstemp are 0600)."""
    store, data = InstanceStore(tmp_path / "s"), b"bytes"
    path = store.write(data, sha256_of(data))
    assert os.stat(path).st_mode & 0o007 == 0
