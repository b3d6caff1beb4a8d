"""PHI canaries through the DICOM receiver, STOW-RS and the result export.

Instances carry a canary in every patient attribute (tests/dicom_support.py); senders use
PHI-shaped calling AE titles, file names and UIDs. Logging is configured as a deployment does it
(JSON, DEBUG) into a buffer, and file descriptors 1 and 2 are captured too. Nothing of the canaries
may appear in a log line, an event, a Kafka key or header, a dead letter or a STOW-RS answer.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage  # type: ignore[attr-defined]

from observability.logging import configure_logging
from schemas.settings import DicomPeer, LoggingSettings, Settings
from streams.dicom.instances import read_instance
from streams.dicom_io.sender import DicomSender
from streams.dicom_io.store import sha256_of
from streams.kafka import KafkaClientConfig, KafkaPublisher, ensure_topics, read_topic
from streams.pipeline import Incoming
from streams.retry import RetryPolicy
from streams.stages.dicom_export import DicomExportStage
from streams.topics import TopicNames
from tests.dicom_peers import listening, storescu
from tests.dicom_support import canaries_in, variant
from tests.security.test_logs_have_no_phi import captured_fds
from tests.unit.dicom.test_dicom_reports import result

pytestmark = pytest.mark.requirement("RS-G-01", "RS-G-02", "RS-DCM-01", "RS-DCM-02", "RS-DCM-03")
PHI_AE_TITLE = "CANARYDOE_JANEPH"  # a patient's name as the calling AE title (16 characters)
PHI_UID = "CANARYDOE^JANEPHI"
PHI_MODALITY = "CANARYDOE"  # a surname in Modality: the shape of a code string
PHI_BODY_PART = "CANARYDOE"  # a surname in BodyPartExamined: the shape of a code string


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging(LoggingSettings(level="DEBUG", format="json"), stream=buffer)
    yield buffer
    configure_logging(LoggingSettings())


def settings_for(root: Path, bootstrap: str, prefix: str, allowed: list[str]) -> Settings:
    root.mkdir(exist_ok=True)
    return Settings(
        environment="test",
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        storage_roots=(root,),
        dicom={"port": 0, "allowed_calling_ae_titles": allowed, "publish_timeout_seconds": 5},
    )


@pytest.fixture
async def publisher(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[KafkaPublisher]:
    config = KafkaClientConfig(kafka_bootstrap)
    await ensure_topics(config, topic_prefix)
    async with KafkaPublisher(config, TopicNames(topic_prefix)) as kafka:
        yield kafka


async def topic_text(bootstrap: str, topic: str) -> str:
    """Every key, value and header of ``topic`` as text."""
    records = (await read_topic(KafkaClientConfig(bootstrap), topic)).all_records()
    return " ".join(f"{r.key!r} {r.value!r} {r.headers!r}" for r in records)


async def test_receiver_leaks_nothing(
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_prefix: str,
    publisher: KafkaPublisher,
    log_buffer: io.StringIO,
) -> None:
    """PHI in attributes, AE title, file name, UID, Modality and BodyPartExamined: none leaks."""
    good = tmp_path / "CANARYDOE_JANEPHI_19450607.dcm"
    good.write_bytes(variant(phi=True))
    bad = tmp_path / "MRN-CANARY-991177.dcm"
    bad.write_bytes(variant(phi=True, StudyInstanceUID=PHI_UID))
    named = tmp_path / "modality.dcm"  # accepted, but its Modality is no defined term
    named.write_bytes(variant(phi=True, Modality=PHI_MODALITY))
    part = tmp_path / "body_part.dcm"  # accepted, but its BodyPartExamined is no defined term
    part.write_bytes(variant(phi=True, BodyPartExamined=PHI_BODY_PART))
    open_door = settings_for(tmp_path / "open", kafka_bootstrap, topic_prefix, [])
    guarded = settings_for(tmp_path / "guarded", kafka_bootstrap, topic_prefix, ["STORESCU"])
    with captured_fds() as output:
        async with listening(open_door, publisher) as (_host, port):
            code, tool_output = await storescu(port, [good, named, part, bad], calling=PHI_AE_TITLE)
        async with listening(guarded, publisher) as (_host, port):
            refused, _ = await storescu(port, [good], calling=PHI_AE_TITLE)
    assert code != 0  # the bad one was refused
    assert "Success" in tool_output
    assert refused != 0
    topic = await topic_text(kafka_bootstrap, TopicNames(topic_prefix).arrived)
    assert read_instance(good.read_bytes()).sop_instance_uid in topic  # the control
    assert read_instance(named.read_bytes()).sop_instance_uid in topic  # stored, unrouted
    assert read_instance(part.read_bytes()).sop_instance_uid in topic  # stored, no body part
    assert canaries_in(topic) == []
    logs = log_buffer.getvalue() + output.getvalue()
    assert "dicom_association_refused" in logs  # the control: the refusal was logged
    assert "dicom_store_refused" in logs
    assert canaries_in(logs) == []
    assert PHI_AE_TITLE not in logs + topic


async def test_stow_leaks_nothing(
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_prefix: str,
    publisher: KafkaPublisher,
    log_buffer: io.StringIO,
) -> None:
    """STOW-RS with PHI everywhere: the answer, the events and the logs hold none of it."""
    from dataclasses import replace  # noqa: PLC0415

    from streams.dicom_io.ingest import InstanceIngest  # noqa: PLC0415
    from tests.unit.gateway.fakes import build_harness  # noqa: PLC0415

    harness = build_harness(tmp_path)
    settings = settings_for(tmp_path / "stow", kafka_bootstrap, topic_prefix, [])
    harness.app.state.gateway = replace(
        harness.app.state.gateway, dicom=InstanceIngest.from_settings(settings, publisher)
    )
    boundary = "phi-boundary"
    body = b""
    for data in (variant(phi=True), variant(phi=True, SOPInstanceUID=PHI_UID)):
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
        body += b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    with captured_fds() as output:
        response = await harness.client.post(
            "/dicomweb/studies",
            content=body,
            headers={
                **harness.auth("stow-user", ["service"]),
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "X-Correlation-ID": PHI_UID,
            },
        )
    assert response.status_code == 202
    answer = response.text + str(dict(response.headers))
    assert canaries_in(answer) == []
    topic = await topic_text(kafka_bootstrap, TopicNames(topic_prefix).arrived)
    assert canaries_in(topic) == []
    assert canaries_in(log_buffer.getvalue() + output.getvalue()) == []


@pytest.fixture
def refusing_pacs() -> Iterator[DicomPeer]:
    """A PACS that refuses every report (0xC000)."""
    ae = AE(ae_title="PACS")
    ae.add_supported_context(ComprehensiveSRStorage)
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda _e: 0xC000)]
    )
    try:
        yield DicomPeer(ae_title="PACS", host="127.0.0.1", port=server.server_address[1])
    finally:
        server.shutdown()


async def test_export_leaks_nothing(
    tmp_path: Path, refusing_pacs: DicomPeer, log_buffer: io.StringIO
) -> None:
    """A report of a PHI-laden source, refused by the PACS: the dead letter and logs are clean,
    while the report itself did carry the patient (the control)."""
    from streams.dicom_io.store import InstanceStore  # noqa: PLC0415

    data = variant(phi=True)
    store = InstanceStore(tmp_path / "store")
    store.write(data, sha256_of(data))
    instance = read_instance(data)
    inferred = result(input_sha256=sha256_of(data), sop_instance_uid=instance.sop_instance_uid)
    stage = DicomExportStage(
        store, DicomSender("RADSTREAM"), [refusing_pacs], RetryPolicy(max_attempts=1)
    )
    message = Incoming(
        topic="t", partition=0, offset=0, key=b"k", value=inferred.model_dump_json().encode()
    )
    with captured_fds() as output:
        (outcome,) = await stage.handle([message])
    letter = outcome.value.model_dump_json()  # type: ignore[union-attr]
    assert "DICOM_EXPORT_REFUSED" in letter
    assert canaries_in(letter) == []
    assert canaries_in(log_buffer.getvalue() + output.getvalue()) == []
    source = dcmread(io.BytesIO(data), stop_before_pixels=True)
    assert "CANARYDOE" in str(source.PatientName)  # the control: the source did carry PHI
