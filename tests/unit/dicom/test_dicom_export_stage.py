"""The dicom-export stage: a report per DICOM-sourced result, retried, refused, audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ErrorCode, InputValidationError, TransientError
from schemas.events import DeadLetter, InferenceCompleted, ResultExported
from schemas.settings import DicomPeer
from streams.dicom.instances import read_instance
from streams.dicom_io.store import InstanceStore, sha256_of
from streams.pipeline import Incoming
from streams.retry import RetryPolicy
from streams.stages.common import ImageReader
from streams.stages.dicom_export import DicomExportStage
from streams.topics import TopicKey
from tests.dicom_support import variant
from tests.unit.dicom.fakes import FakeSender
from tests.unit.dicom.test_dicom_reports import result

CORRELATION = "c9" * 16
PACS = DicomPeer(ae_title="PACS", host="127.0.0.1", port=104)
ARCHIVE = DicomPeer(ae_title="ARCHIVE", host="127.0.0.1", port=105)
POLICY = RetryPolicy(max_attempts=3, initial_seconds=0.5, max_seconds=1.0)


async def no_sleep(_seconds: float) -> None:
    """Retries without waiting (the policy's delays are tested in test_retry_policy)."""


def stored_result(tmp_path: Path) -> tuple[InstanceStore, InferenceCompleted]:
    store, data = InstanceStore(tmp_path), variant(phi=True)
    store.write(data, sha256_of(data))
    instance = read_instance(data)
    return store, result(
        input_sha256=sha256_of(data),
        sop_instance_uid=instance.sop_instance_uid,
        study_instance_uid=instance.study_instance_uid,
    )


def message(value: InferenceCompleted | bytes, offset: int = 0) -> Incoming:
    raw = value if isinstance(value, bytes) else value.model_dump_json().encode()
    return Incoming(
        topic="radstream.inference.results",
        partition=0,
        offset=offset,
        key=b"1.2.3",
        value=raw,
        headers=(("correlation_id", CORRELATION.encode()),),
    )


def stage(store: InstanceStore, sender: FakeSender, *peers: DicomPeer) -> DicomExportStage:
    return DicomExportStage(store, sender, peers or (PACS,), POLICY, sleep=no_sleep)


class TestExported:
    async def test_one_report_and_one_exported_event_per_destination(self, tmp_path: Path) -> None:
        """Each destination gets the report; each export is a ResultExported for the audit."""
        store, inferred = stored_result(tmp_path)
        sender = FakeSender()
        out = await stage(store, sender, PACS, ARCHIVE).handle([message(inferred)])
        assert [destination for destination, _ in sender.sent] == ["PACS", "ARCHIVE"]
        assert [o.topic for o in out] == [TopicKey.RESULTS_EXPORTED] * 2
        exported = out[0].value
        assert isinstance(exported, ResultExported)
        report = sender.sent[0][1]
        assert exported.report_sop_instance_uid == report.SOPInstanceUID
        assert exported.study_instance_uid == inferred.study_instance_uid
        assert exported.source_sop_instance_uid == inferred.sop_instance_uid
        assert (exported.event_id, exported.result_id) == (inferred.event_id, inferred.result_id)
        # Keyed by the study, never by the consumed key (docs/security.md).
        assert out[0].key == exported.study_instance_uid.encode()
        assert ("correlation_id", CORRELATION.encode()) in out[0].headers
        assert "CANARY" not in exported.model_dump_json().upper()

    async def test_unavailable_destination_is_retried(self, tmp_path: Path) -> None:
        """A transient failure is retried and the export then succeeds."""
        store, inferred = stored_result(tmp_path)
        sender = FakeSender(errors=[TransientError(ErrorCode.DICOM_PEER_UNAVAILABLE)])
        out = await stage(store, sender).handle([message(inferred)])
        assert sender.attempts == 2
        assert isinstance(out[0].value, ResultExported)


class TestDeadLettered:
    async def test_permanent_refusal_is_dead_lettered_at_once(self, tmp_path: Path) -> None:
        """A destination's failure status is DICOM_EXPORT_REFUSED: no retry, a dead letter."""
        store, inferred = stored_result(tmp_path)
        refused = InputValidationError(ErrorCode.DICOM_EXPORT_REFUSED, "PACS refused (0xC000)")
        sender = FakeSender(errors=[refused])
        out = await stage(store, sender).handle([message(inferred)])
        letter = out[0].value
        assert isinstance(letter, DeadLetter)
        assert letter.error_code is ErrorCode.DICOM_EXPORT_REFUSED
        assert (letter.attempts, sender.attempts) == (1, 1)
        assert letter.event_id == inferred.event_id

    async def test_destination_down_for_every_try(self, tmp_path: Path) -> None:
        """Unavailable through every attempt: RETRIES_EXHAUSTED with the attempt count."""
        store, inferred = stored_result(tmp_path)
        down = [TransientError(ErrorCode.DICOM_PEER_UNAVAILABLE) for _ in range(3)]
        out = await stage(store, FakeSender(errors=down)).handle([message(inferred)])
        letter = out[0].value
        assert isinstance(letter, DeadLetter)
        assert (letter.error_code, letter.attempts) == (ErrorCode.RETRIES_EXHAUSTED, 3)

    async def test_one_destination_failing_does_not_stop_the_other(self, tmp_path: Path) -> None:
        """Each destination has its own outcome."""
        store, inferred = stored_result(tmp_path)
        refused = InputValidationError(ErrorCode.DICOM_EXPORT_REFUSED, "refused")
        out = await stage(store, FakeSender(errors=[refused]), PACS, ARCHIVE).handle(
            [message(inferred)]
        )
        assert [type(o.value) for o in out] == [DeadLetter, ResultExported]

    async def test_malformed_result_is_dead_lettered(self, tmp_path: Path) -> None:
        """A message that is not an InferenceCompleted is a dead letter (EVENT_MALFORMED)."""
        out = await stage(InstanceStore(tmp_path), FakeSender()).handle([message(b"{}")])
        assert isinstance(out[0].value, DeadLetter)
        assert out[0].value.error_code is ErrorCode.EVENT_MALFORMED

    async def test_report_that_cannot_be_built(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A source highdicom refuses becomes an INTERNAL_ERROR dead letter, nothing sent."""
        import streams.stages.dicom_export as module  # noqa: PLC0415

        def refuses(*_args: object) -> None:
            raise ValueError("Evidence has a different study")

        monkeypatch.setattr(module, "build_result_report", refuses)
        store, inferred = stored_result(tmp_path)
        sender = FakeSender()
        out = await stage(store, sender).handle([message(inferred)])
        assert isinstance(out[0].value, DeadLetter)
        assert out[0].value.error_code is ErrorCode.INTERNAL_ERROR
        assert sender.sent == []


class TestSkipped:
    async def test_result_without_sop_instance(self, tmp_path: Path) -> None:
        """A PNG/JPEG result (no SOP Instance UID) has nothing to report back to."""
        sender = FakeSender()
        out = await stage(InstanceStore(tmp_path), sender).handle([message(result())])
        assert (out, sender.sent) == ([], [])

    async def test_result_with_no_stored_source_and_no_uri(self, tmp_path: Path) -> None:
        """A result not in the DICOM store and without a URI (older results) is skipped."""
        sender = FakeSender()
        inferred = result(sop_instance_uid="1.2.3", input_sha256="9" * 64)
        out = await stage(InstanceStore(tmp_path), sender).handle([message(inferred)])
        assert (out, sender.sent) == ([], [])


class TestPublishedByPath:
    """DICOM files a router published by path: the source is read from the result's URI."""

    @staticmethod
    def routed(tmp_path: Path, name: str = "routed.dcm") -> tuple[Path, InferenceCompleted]:
        roots = tmp_path / "root"
        roots.mkdir(exist_ok=True)
        path, data = roots / name, variant(phi=True)
        path.write_bytes(data)
        instance = read_instance(data)
        return path, result(
            input_sha256=sha256_of(data),
            sop_instance_uid=instance.sop_instance_uid,
            study_instance_uid=instance.study_instance_uid,
            image_uri=path.as_uri(),
        )

    @staticmethod
    def by_path(tmp_path: Path, sender: FakeSender) -> DicomExportStage:
        reader = ImageReader([tmp_path / "root"], 10_000_000, POLICY, sleep=no_sleep)
        store = InstanceStore(tmp_path / "store")
        return DicomExportStage(store, sender, (PACS,), POLICY, images=reader, sleep=no_sleep)

    async def dead_letter_code(self, tmp_path: Path, inferred: InferenceCompleted) -> ErrorCode:
        """The code ``inferred`` is dead-lettered with; asserts nothing was sent."""
        sender = FakeSender()
        (out,) = await self.by_path(tmp_path, sender).handle([message(inferred)])
        assert isinstance(out.value, DeadLetter)
        assert sender.sent == []
        return out.value.error_code

    async def test_report_from_the_uri(self, tmp_path: Path) -> None:
        """The report is built from the routed file, in its study, referencing it."""
        _path, inferred = self.routed(tmp_path)
        sender = FakeSender()
        (out,) = await self.by_path(tmp_path, sender).handle([message(inferred)])
        assert out.topic is TopicKey.RESULTS_EXPORTED
        ((_, report),) = sender.sent
        assert report.StudyInstanceUID == inferred.study_instance_uid
        evidence = report.CurrentRequestedProcedureEvidenceSequence[0]
        referenced = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert referenced.ReferencedSOPInstanceUID == inferred.sop_instance_uid

    async def test_file_replaced_after_inference_is_dead_lettered(self, tmp_path: Path) -> None:
        """Bytes that no longer match the result's input digest are never reported on."""
        path, inferred = self.routed(tmp_path)
        path.write_bytes(variant())
        assert await self.dead_letter_code(tmp_path, inferred) is ErrorCode.CHECKSUM_MISMATCH

    async def test_file_outside_the_roots_is_dead_lettered(self, tmp_path: Path) -> None:
        """A URI outside the storage roots is refused like everywhere else."""
        _path, inferred = self.routed(tmp_path)
        elsewhere = inferred.model_copy(update={"image_uri": "file:///etc/passwd"})
        code = await self.dead_letter_code(tmp_path, elsewhere)
        assert code is ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS

    async def test_without_a_reader_it_is_skipped(self, tmp_path: Path) -> None:
        """A stage built without the storage reader only exports what it stored itself."""
        _path, inferred = self.routed(tmp_path)
        sender = FakeSender()
        out = await stage(InstanceStore(tmp_path / "store"), sender).handle([message(inferred)])
        assert (out, sender.sent) == ([], [])


def test_needs_a_destination(tmp_path: Path) -> None:
    """Without destinations the stage refuses to be built (nothing would be exported)."""
    with pytest.raises(ValueError, match="destination"):
        DicomExportStage(InstanceStore(tmp_path), FakeSender(), (), POLICY)
