"""DICOM in and out against a real Orthanc, real dcmtk and the real broker.

Orthanc → radstream's receiver → ``ImageArrived`` on the broker; refused calling AE titles;
C-ECHO; STOW-RS with a bad part through a gateway publishing to the broker; the result report
sent to Orthanc lands in the source study and references the source instance.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pynetdicom import AE

from schemas.errors import ErrorCode, TransientError
from schemas.events import DeadLetter, ResultExported
from schemas.settings import DicomPeer, Settings
from streams.dicom.instances import read_instance
from streams.dicom.reports import build_result_report
from streams.dicom_io.sender import DicomSender
from streams.dicom_io.store import InstanceStore, sha256_of
from streams.kafka import KafkaClientConfig, KafkaPublisher, ensure_topics
from streams.pipeline import Incoming
from streams.retry import RetryPolicy
from streams.stages.dicom_export import DicomExportStage
from streams.topics import TopicKey, TopicNames
from tests.dicom_peers import (
    Orthanc,
    arrivals,
    dcmtk,
    listening,
    orthanc_peer,
    point_orthanc_at,
    run_tool,
    storescu,
    upload,
)
from tests.dicom_support import SAMPLE_FILES, variant
from tests.ports import free_port
from tests.unit.dicom.test_dicom_reports import result

pytestmark = pytest.mark.requirement("RS-DCM-01", "RS-DCM-03")
RADSTREAM_AET = "RADSTREAM"


def stored_bytes(uri: str) -> bytes:
    """The bytes of a stored instance, by its file URI."""
    return Path(uri.removeprefix("file://")).read_bytes()


@pytest.fixture(scope="module")
def orthanc() -> Orthanc:
    return orthanc_peer()


@pytest.fixture
def settings(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str) -> Settings:
    root = tmp_path / "storage"
    root.mkdir()
    return Settings(
        environment="test",
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        storage_roots=(root,),
        dicom={
            "ae_title": RADSTREAM_AET,
            "port": 0,
            "allowed_calling_ae_titles": ["ORTHANC", "STORESCU"],
            "publish_timeout_seconds": 5,
        },
    )


@pytest.fixture
async def publisher(settings: Settings) -> AsyncIterator[KafkaPublisher]:
    await ensure_topics(KafkaClientConfig.from_settings(settings), settings.topic_prefix)
    async with KafkaPublisher.from_settings(settings, client_id="dicom-test") as kafka:
        yield kafka


class TestReceiver:
    async def test_orthanc_sends_to_radstream(
        self, orthanc: Orthanc, settings: Settings, publisher: KafkaPublisher
    ) -> None:
        """Uncompressed, RLE, JPEG 2000, JPEG baseline and deflate instances sent by Orthanc
        are stored and each announced once, keyed by study, with modality, size and SHA-256."""
        instances = [variant(name) for name in SAMPLE_FILES]
        ids = [(await upload(orthanc, data))["ID"] for data in instances]
        async with listening(settings, publisher) as (_host, port):
            await point_orthanc_at(orthanc, RADSTREAM_AET, port)
            async with orthanc.client() as client:
                response = await client.post(
                    "/modalities/radstream/store", json={"Resources": ids, "Synchronous": True}
                )
            assert response.status_code == 200, response.text
        events = await arrivals(settings.kafka_bootstrap, TopicNames(settings.topic_prefix).arrived)
        by_sop = {event.sop_instance_uid: (key, event) for key, event in events}
        assert len(events) == len(instances)
        for data in instances:
            instance = read_instance(data)
            key, event = by_sop[instance.sop_instance_uid]
            assert key == instance.study_instance_uid.encode()
            assert event.modality == instance.modality
            assert event.source == "ORTHANC"
            stored = stored_bytes(event.image_uri)
            assert (event.sha256, event.size_bytes) == (sha256_of(stored), len(stored))
            assert stored.startswith(b"\x00" * 128 + b"DICM")

    async def test_storescu_and_echoscu(
        self, settings: Settings, publisher: KafkaPublisher
    ) -> None:
        """dcmtk's storescu stores (same instance twice: one event) and echoscu gets an answer."""
        path = settings.storage_roots[0].parent / "one.dcm"
        path.write_bytes(variant())
        async with listening(settings, publisher) as (_host, port):
            for _ in range(2):
                code, output = await storescu(port, [path])
                assert code == 0, output
            code, output = await run_tool(
                dcmtk("echoscu"), "-aet", "STORESCU", "-aec", RADSTREAM_AET, "127.0.0.1", str(port)
            )
            assert code == 0, output
        events = await arrivals(settings.kafka_bootstrap, TopicNames(settings.topic_prefix).arrived)
        assert len(events) == 1

    async def test_refused_calling_ae(self, settings: Settings, publisher: KafkaPublisher) -> None:
        """An AE title outside the allow-list is rejected at association: nothing stored."""
        path = settings.storage_roots[0].parent / "refused.dcm"
        path.write_bytes(variant())
        async with listening(settings, publisher) as (_host, port):
            code, output = await storescu(port, [path], calling="INTRUDER")
        assert code != 0
        assert "Calling AE Title Not Recognized" in output
        topic = TopicNames(settings.topic_prefix).arrived
        assert await arrivals(settings.kafka_bootstrap, topic) == []
        assert list(settings.dicom_storage_dir.rglob("*.dcm")) == []

    async def test_bad_instance_gets_a_failure_status_with_our_code(
        self, settings: Settings, publisher: KafkaPublisher
    ) -> None:
        """An instance whose UID is free text is refused with our code in the error comment."""
        path = settings.storage_roots[0].parent / "bad.dcm"
        path.write_bytes(variant(StudyInstanceUID="1.2.3.4"))  # valid: control
        bad = settings.storage_roots[0].parent / "bad2.dcm"
        bad.write_bytes(variant(SeriesInstanceUID="NOT A UID"))
        async with listening(settings, publisher) as (_host, port):
            code, output = await storescu(port, [path, bad])
        assert code != 0
        assert "datasetdoesnotmatchsopclass" in output.lower(), output  # 0xA900
        events = await arrivals(settings.kafka_bootstrap, TopicNames(settings.topic_prefix).arrived)
        assert len(events) == 1

    async def test_failure_status_carries_our_error_code(
        self, settings: Settings, publisher: KafkaPublisher
    ) -> None:
        """The C-STORE answer's Error Comment is our stable code (pynetdicom as the sender)."""
        dataset = dcmread(BytesIO(variant("CT_small.dcm", StudyInstanceUID="DOE^JANE")))
        async with listening(settings, publisher) as (_host, port):
            answer = await asyncio.to_thread(send_with_pynetdicom, port, dataset)
        assert answer.Status == 0xA900
        assert answer.ErrorComment == "DICOM_INVALID_VALUE"


def send_with_pynetdicom(port: int, dataset: Dataset) -> Dataset:
    """One C-STORE from a pynetdicom SCU calling as STORESCU; the response status dataset."""
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", port, ae_title=RADSTREAM_AET)
    assert association.is_established
    try:
        answer: Dataset = association.send_c_store(dataset)
    finally:
        association.release()
    return answer


@pytest.mark.requirement("RS-DCM-02")
class TestStowRs:
    async def test_stow_with_a_bad_part_announces_only_the_good_one(
        self, tmp_path: Path, settings: Settings, publisher: KafkaPublisher
    ) -> None:
        """A STOW-RS body with a good and a bad part: 202, one event on the real broker."""
        from tests.unit.gateway.fakes import build_harness  # noqa: PLC0415

        harness = build_harness(tmp_path)
        harness.app.state.gateway = _with_publisher(harness.app.state.gateway, settings, publisher)
        boundary = "b0undary"
        good = variant()
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + good
            + f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + b"not a dicom file"
            + f"\r\n--{boundary}--\r\n".encode()
        )
        response = await harness.client.post(
            "/dicomweb/studies",
            content=body,
            headers={
                **harness.auth("stow-user", ["service"]),
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            },
        )
        assert response.status_code == 202, response.text
        failed = response.json()["00081198"]["Value"]
        assert [f["00091001"]["Value"][0] for f in failed] == ["DICOM_NOT_PART10"]
        events = await arrivals(settings.kafka_bootstrap, TopicNames(settings.topic_prefix).arrived)
        assert [e.sop_instance_uid for _, e in events] == [read_instance(good).sop_instance_uid]


def _with_publisher(context: object, settings: Settings, publisher: KafkaPublisher) -> object:
    """The gateway context with its DICOM ingest publishing to the real broker."""
    from dataclasses import replace  # noqa: PLC0415

    from streams.dicom_io.ingest import InstanceIngest  # noqa: PLC0415

    return replace(context, dicom=InstanceIngest.from_settings(settings, publisher))  # type: ignore[type-var]


class TestReportBackToOrthanc:
    async def test_report_lands_in_the_source_study_and_references_the_source(
        self, orthanc: Orthanc, tmp_path: Path
    ) -> None:
        """The SR built from a stored source and sent by C-STORE is in Orthanc, same study."""
        data = variant(phi=True)
        source = read_instance(data)
        await upload(orthanc, data)
        store = InstanceStore(tmp_path / "store")
        store.write(data, sha256_of(data))
        inferred = result(
            result_id=uuid.uuid4(),
            input_sha256=sha256_of(data),
            sop_instance_uid=source.sop_instance_uid,
            study_instance_uid=source.study_instance_uid,
        )
        peer = DicomPeer(ae_title=orthanc.ae_title, host="127.0.0.1", port=orthanc.dicom_port)
        stage = DicomExportStage(
            store, DicomSender(RADSTREAM_AET), [peer], RetryPolicy(max_attempts=2)
        )
        message = Incoming(
            topic="t", partition=0, offset=0, key=b"k", value=inferred.model_dump_json().encode()
        )
        (outcome,) = await stage.handle([message])
        assert outcome.topic is TopicKey.RESULTS_EXPORTED
        exported = outcome.value
        assert isinstance(exported, ResultExported)
        report = await _orthanc_instance(orthanc, exported.report_sop_instance_uid)
        assert report.StudyInstanceUID == source.study_instance_uid
        assert report.SOPClassUID == exported.report_sop_class_uid
        evidence = report.CurrentRequestedProcedureEvidenceSequence[0]
        referenced = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert referenced.ReferencedSOPInstanceUID == source.sop_instance_uid

    async def test_resending_the_report_keeps_one_copy(self, orthanc: Orthanc) -> None:
        """The same report sent twice is one instance in Orthanc (derived UIDs)."""
        data = variant()
        source = dcmread(BytesIO(data), stop_before_pixels=True)
        await upload(orthanc, data)

        report = build_result_report(source, result(result_id=uuid.uuid4()))
        peer = DicomPeer(ae_title=orthanc.ae_title, host="127.0.0.1", port=orthanc.dicom_port)
        sender = DicomSender(RADSTREAM_AET)
        await sender.send(report, peer)
        await sender.send(report, peer)
        async with orthanc.client() as client:
            found = await client.post(
                "/tools/find",
                json={"Level": "Instance", "Query": {"SOPInstanceUID": report.SOPInstanceUID}},
            )
        assert len(found.json()) == 1

    async def test_unregistered_ae_ends_in_a_dead_letter(
        self, orthanc: Orthanc, tmp_path: Path
    ) -> None:
        """Orthanc aborts C-STOREs from AE titles it does not know (no failure status): the
        sender cannot tell that from a crash, retries, and the stage dead-letters the result."""
        data = variant()
        store = InstanceStore(tmp_path / "store")
        store.write(data, sha256_of(data))
        inferred = result(
            result_id=uuid.uuid4(),
            input_sha256=sha256_of(data),
            sop_instance_uid=read_instance(data).sop_instance_uid,
        )
        peer = DicomPeer(ae_title=orthanc.ae_title, host="127.0.0.1", port=orthanc.dicom_port)
        stage = DicomExportStage(
            store,
            DicomSender("NOTREGISTERED"),
            [peer],
            RetryPolicy(max_attempts=2, initial_seconds=0.01),
        )
        message = Incoming(
            topic="t", partition=0, offset=0, key=b"k", value=inferred.model_dump_json().encode()
        )
        (outcome,) = await stage.handle([message])
        assert isinstance(outcome.value, DeadLetter)
        assert outcome.value.error_code is ErrorCode.RETRIES_EXHAUSTED
        assert "DICOM_PEER_UNAVAILABLE" in outcome.value.reason

    async def test_unreachable_destination_is_retryable(self) -> None:
        """Nothing listening: DICOM_PEER_UNAVAILABLE, retryable."""
        source = dcmread(BytesIO(variant()), stop_before_pixels=True)

        peer = DicomPeer(ae_title="NOBODY", host="127.0.0.1", port=free_port())
        with pytest.raises(TransientError) as caught:
            await DicomSender(RADSTREAM_AET, connection_timeout_seconds=2).send(
                build_result_report(source, result()), peer
            )
        assert caught.value.code is ErrorCode.DICOM_PEER_UNAVAILABLE


async def _orthanc_instance(orthanc: Orthanc, sop_instance_uid: str) -> object:
    """Download the instance with this SOP Instance UID from Orthanc (bounded polling)."""
    async with orthanc.client() as client:
        for _ in range(50):
            found = await client.post(
                "/tools/find",
                json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}},
            )
            if found.json():
                file = await client.get(f"/instances/{found.json()[0]}/file")
                return dcmread(BytesIO(file.content))
            await asyncio.sleep(0.1)
    raise AssertionError("the report did not arrive in Orthanc")
