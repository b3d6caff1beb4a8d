"""The receiver's C-STORE handler, called as pynetdicom calls it (from another thread)."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    Verification,
)
from structlog.testing import capture_logs

import streams.dicom_io.receiver as receiver_module
from observability.metrics import Metrics
from schemas.errors import ErrorCode, RadstreamError
from schemas.settings import DicomSettings
from streams.dicom_io.ingest import InstanceIngest
from streams.dicom_io.receiver import DicomReceiver, ae_fingerprint
from streams.dicom_io.store import InstanceStore
from tests.dicom_support import canaries_in, to_bytes, variant, with_corrupt_length
from tests.unit.dicom.fakes import FakePublisher


@dataclass
class Requestor:
    ae_title: str


@dataclass
class Association:
    requestor: Requestor


@dataclass
class StoreEvent:
    """What the handler reads of pynetdicom's event: the calling AE and the encoded dataset."""

    data: bytes
    calling: str = "ORTHANC"
    assoc: Association = field(init=False)

    def __post_init__(self) -> None:
        self.assoc = Association(Requestor(self.calling))

    def encoded_dataset(self, include_meta: bool = True) -> bytes:
        assert include_meta
        return self.data


class CrashingPublisher(FakePublisher):
    async def publish(self, *_args: object) -> None:
        raise RuntimeError("a bug")


def receiver(tmp_path: Path, publisher: FakePublisher, timeout: float = 2.0) -> DicomReceiver:
    ingest = InstanceIngest(
        InstanceStore(tmp_path), publisher, max_bytes=10_000_000, publish_timeout_seconds=timeout
    )
    settings = DicomSettings(allowed_calling_ae_titles=("ORTHANC",))
    return DicomReceiver(settings, ingest, asyncio.get_running_loop())


class TestOnStore:
    async def test_success_after_confirmation(self, tmp_path: Path) -> None:
        """Success (0000, no error comment) once the event is confirmed."""
        publisher = FakePublisher()
        answer = await asyncio.to_thread(
            receiver(tmp_path, publisher).on_store, StoreEvent(variant())
        )
        assert answer.Status == 0x0000
        assert "ErrorComment" not in answer
        assert len(publisher.published) == 1

    async def test_unexpected_error_is_a_processing_failure(self, tmp_path: Path) -> None:
        """A bug answers 0110 with INTERNAL_ERROR instead of escaping into pynetdicom."""
        answer = await asyncio.to_thread(
            receiver(tmp_path, CrashingPublisher()).on_store, StoreEvent(variant())
        )
        assert (answer.Status, answer.ErrorComment) == (0x0110, "INTERNAL_ERROR")

    async def test_bounded_wait_answers_out_of_resources(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the loop does not answer within the bound, the sender is told to retry (A700)."""
        monkeypatch.setattr(receiver_module, "BRIDGE_MARGIN_SECONDS", -0.95)
        publisher = FakePublisher(gate=asyncio.Event())
        answer = await asyncio.to_thread(
            receiver(tmp_path, publisher, timeout=1.0).on_store, StoreEvent(variant())
        )
        assert (answer.Status, answer.ErrorComment) == (0xA700, "TIMEOUT")
        assert publisher.gate is not None
        publisher.gate.set()


class TestSource:
    async def test_allow_listed_title_is_the_source(self, tmp_path: Path) -> None:
        """An allow-listed AE title is the event's source; any other is a fingerprint."""
        rx = receiver(tmp_path, FakePublisher())
        assert rx.source_of("ORTHANC ") == "ORTHANC"
        assert rx.source_of("DOE^JANE") == ae_fingerprint("DOE^JANE")
        assert "DOE" not in ae_fingerprint("DOE^JANE")

    async def test_echo_succeeds(self, tmp_path: Path) -> None:
        """C-ECHO answers success."""
        assert receiver(tmp_path, FakePublisher()).on_echo(object()) == 0x0000  # type: ignore[arg-type]


class TestObserved:
    async def test_each_answer_is_counted_with_its_outcome(self, tmp_path: Path) -> None:
        """Stored, duplicate and refused answers reach the metrics, timed by the given clock."""
        registry = CollectorRegistry()
        metrics = Metrics(registry, process_collector=False)
        ticks = iter(float(n) for n in range(100))
        ingest = InstanceIngest(
            InstanceStore(tmp_path),
            FakePublisher(),
            max_bytes=10_000_000,
            publish_timeout_seconds=2,
        )
        rx = DicomReceiver(
            DicomSettings(),
            ingest,
            asyncio.get_running_loop(),
            observer=metrics,
            clock=lambda: next(ticks),
        )
        data = variant()
        for event in (StoreEvent(data), StoreEvent(data), StoreEvent(b"not dicom")):
            await asyncio.to_thread(rx.on_store, event)

        def count(outcome: str, code: str = "") -> float | None:
            labels = {"outcome": outcome, "error_code": code}
            return registry.get_sample_value("radstream_dicom_instances_total", labels)

        assert (count("stored"), count("duplicate")) == (1, 1)
        assert count("refused", "DICOM_NOT_PART10") == 1
        assert registry.get_sample_value("radstream_dicom_store_seconds_sum") == 3.0

    async def test_a_rejected_association_is_counted(self, tmp_path: Path) -> None:
        """A refused calling AE title is counted (its title is never a label)."""
        registry = CollectorRegistry()
        metrics = Metrics(registry, process_collector=False)
        ingest = InstanceIngest(
            InstanceStore(tmp_path), FakePublisher(), max_bytes=1, publish_timeout_seconds=1
        )
        rx = DicomReceiver(DicomSettings(), ingest, asyncio.get_running_loop(), observer=metrics)
        rx.on_rejected(StoreEvent(b"", calling="DOE^JANE"))  # type: ignore[arg-type]
        assert registry.get_sample_value("radstream_dicom_associations_refused_total") == 1


class TestListening:
    async def test_a_port_in_use_is_a_settings_error(self, tmp_path: Path) -> None:
        """Another process holds the DICOM port: SETTINGS_INVALID naming the variables, not a
        bare OSError (which the command line reports as a bug)."""
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = int(holder.getsockname()[1])
            settings = DicomSettings(host="127.0.0.1", port=port)
            ingest = InstanceIngest(
                InstanceStore(tmp_path), FakePublisher(), max_bytes=1, publish_timeout_seconds=1
            )
            rx = DicomReceiver(settings, ingest, asyncio.get_running_loop())
            with pytest.raises(RadstreamError) as refused:
                rx.start()
        assert refused.value.code is ErrorCode.SETTINGS_INVALID
        assert f"127.0.0.1:{port}" in refused.value.reason
        assert "RADSTREAM_DICOM__PORT" in refused.value.reason


class TestCalledAeTitle:
    @pytest.mark.parametrize(("required", "accepted"), [(False, True), (True, False)])
    async def test_a_wrong_called_title_is_refused_only_when_required(
        self, tmp_path: Path, required: bool, accepted: bool
    ) -> None:
        """A sender addressing "WRONG" is accepted by default (as Orthanc does) and refused
        at association when require_called_ae_title is set; the right title always works."""
        settings = DicomSettings(
            host="127.0.0.1", port=0, ae_title="RADSTREAM", require_called_ae_title=required
        )
        ingest = InstanceIngest(
            InstanceStore(tmp_path), FakePublisher(), max_bytes=1, publish_timeout_seconds=1
        )
        rx = DicomReceiver(settings, ingest, asyncio.get_running_loop())
        host, port = rx.start()
        try:
            wrong = await asyncio.to_thread(_associates, host, port, "WRONG")
            right = await asyncio.to_thread(_associates, host, port, "RADSTREAM")
        finally:
            rx.stop()
        assert (wrong, right) == (accepted, True)


def _associates(host: str, port: int, called: str) -> bool:
    """Whether an association (Verification) addressed to ``called`` is accepted."""
    scu = AE(ae_title="SENDER")
    scu.add_requested_context(Verification)
    assoc = scu.associate(host, port, ae_title=called)
    established = bool(assoc.is_established)
    if established:
        assoc.release()
    return established


class TestUnreadableDataset:
    """C-STOREs over a real association, the dataset sent byte for byte as written."""

    async def test_corrupt_element_length_is_cannot_understand(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A dataset whose PatientName length runs past its end is answered C000
        IMAGE_MALFORMED ("could not be read"), not A900 "StudyInstanceUID is missing", and
        nothing of the dataset reaches the answer or the log."""
        corrupt = with_corrupt_length(variant(phi=True), "PatientName")
        with capture_logs() as logs:
            answer = await _send_over_association(tmp_path, monkeypatch, corrupt)
        assert (answer.Status, answer.ErrorComment) == (0xC000, "IMAGE_MALFORMED")
        (refused,) = [entry for entry in logs if entry["event"] == "dicom_store_refused"]
        assert "could not be read" in refused["reason"]
        assert refused["dicom_status"] == "0xC000"
        assert canaries_in(repr(logs) + repr(answer)) == []

    async def test_missing_study_uid_in_a_well_formed_dataset_is_still_a900(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The same path with a readable dataset lacking StudyInstanceUID still answers A900
        DICOM_INVALID_VALUE naming the attribute."""
        dataset = dcmread(BytesIO(variant()))
        del dataset.StudyInstanceUID
        with capture_logs() as logs:
            answer = await _send_over_association(tmp_path, monkeypatch, to_bytes(dataset))
        assert (answer.Status, answer.ErrorComment) == (0xA900, "DICOM_INVALID_VALUE")
        (refused,) = [entry for entry in logs if entry["event"] == "dicom_store_refused"]
        assert refused["reason"] == "StudyInstanceUID is missing or not a valid UID"


async def _send_over_association(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes
) -> Dataset:
    """Send ``data`` (a Part 10 file) to a receiver on a free port; return its answer."""
    # Sent from the file as chunks: pynetdicom sends the bytes after the file meta as they are
    # instead of decoding and re-encoding the dataset (which would repair or refuse it).
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)
    path = tmp_path / "sent.dcm"
    path.write_bytes(data)
    settings = DicomSettings(host="127.0.0.1", port=0, allowed_calling_ae_titles=("SENDER",))
    ingest = InstanceIngest(
        InstanceStore(tmp_path / "store"),
        FakePublisher(),
        max_bytes=10_000_000,
        publish_timeout_seconds=2,
    )
    rx = DicomReceiver(settings, ingest, asyncio.get_running_loop())
    host, port = rx.start()
    try:
        return await asyncio.to_thread(_store, host, port, path)
    finally:
        rx.stop()


def _store(host: str, port: int, path: Path) -> Dataset:
    scu = AE(ae_title="SENDER")
    scu.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = scu.associate(host, port, ae_title="RADSTREAM")
    assert assoc.is_established
    try:
        answer = assoc.send_c_store(path)
    finally:
        assoc.release()
    assert isinstance(answer, Dataset)
    return answer
