"""The full DICOM round trip through the real worker, a real Orthanc and the real services.

pydicom's test files (with PHI canaries in every patient attribute) are uploaded to Orthanc over
REST, Orthanc sends them to radstream's receiver, the worker runs every stage including
``dicom-export`` to Orthanc, and the test reads back: the arrival events, the result rows, each
result's Structured Report in Orthanc (same study, referencing the source), the export events and
their audit records — and proves no canary reached a log line or a topic. The same code runs
``radstream demo --dicom`` (cli/dicom_demo.py).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from cli.dicom_demo import RoundTripOutcome, connect_orthanc, export_settings, run_dicom_round_trip
from observability.logging import configure_logging
from schemas.audit import AuditEventType, AuditRecord
from schemas.events import ImageArrived, ResultExported
from schemas.settings import LoggingSettings, Settings
from streams.audit.checkpoints import TrustedKeys
from streams.audit.files import load_public_key
from streams.audit.io import read_audit_topic
from streams.dicom.instances import read_instance
from streams.kafka import KafkaClientConfig, read_topic
from streams.topics import TopicKey, TopicNames
from tests.dicom_peers import orthanc_peer
from tests.dicom_support import SAMPLE_FILES, canaries_in, variant
from tests.integration.settings_support import isolated_settings
from tests.security.test_logs_have_no_phi import captured_fds

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.requirement("RS-DCM-01", "RS-DCM-03", "RS-G-01", "RS-G-02"),
]
# The pipeline needs well under a minute here; the bound only stops a hung run on a busy machine.
ROUND_TRIP_TIMEOUT_SECONDS = 300.0


@pytest.fixture(scope="module")
def trip_settings(
    kafka_bootstrap: str,
    pipeline_database_url: str,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    tmp_path = tmp_path_factory.mktemp("dicom-trip")
    root = tmp_path / "storage"
    root.mkdir()
    return isolated_settings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=pipeline_database_url,
        topic_prefix=f"rstest.{run_id}.dicomtrip-{uuid.uuid4().hex[:6]}.",
        storage_roots=(root,),
        audit_dir=tmp_path,
        dicom={"allowed_calling_ae_titles": ["ORTHANC"]},
        logging={"format": "json", "level": "DEBUG"},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def trip(trip_settings: Settings) -> AsyncIterator[dict[str, Any]]:
    """Run the round trip once; collect outcomes, topics and every log line."""
    orthanc = await connect_orthanc(orthanc_peer().url)
    settings = export_settings(trip_settings, orthanc)
    instances = [(name, variant(name, phi=True)) for name in SAMPLE_FILES]
    buffer = io.StringIO()
    configure_logging(LoggingSettings(level="DEBUG", format="json"), stream=buffer)
    try:
        with captured_fds() as output:
            outcomes = await run_dicom_round_trip(
                settings, orthanc, instances, timeout_seconds=ROUND_TRIP_TIMEOUT_SECONDS
            )
    finally:
        configure_logging(LoggingSettings())
    topics = TopicNames(settings.topic_prefix)
    kafka = KafkaClientConfig.from_settings(settings)
    records = {
        name: (await read_topic(kafka, topic)).all_records() for name, topic in topics.all().items()
    }
    # Judged by the key the run's audit agent signed with, as a verifier pins it.
    trusted = TrustedKeys.of(load_public_key(settings.audit.signing_key_file))
    audit = await read_audit_topic(kafka, topics.audit, trusted)
    yield {
        "outcomes": outcomes,
        "instances": dict(instances),
        "records": records,
        "audit": [r for part in audit.values() for r in part.records if isinstance(r, AuditRecord)],
        "logs": buffer.getvalue() + output.getvalue(),
    }


def _records(trip: dict[str, Any], key: TopicKey) -> list[Any]:
    records: list[Any] = trip["records"][key]
    return records


async def test_every_instance_arrives_once(trip: dict[str, Any]) -> None:
    """Each instance Orthanc sent is one ImageArrived, keyed by its study, source ORTHANC."""
    events = [
        (r.key, ImageArrived.model_validate_json(r.value))
        for r in _records(trip, TopicKey.IMAGES_ARRIVED)
    ]
    sent = {read_instance(data).sop_instance_uid: data for data in trip["instances"].values()}
    assert sorted(e.sop_instance_uid or "" for _, e in events) == sorted(sent)
    for key, event in events:
        instance = read_instance(sent[event.sop_instance_uid or ""])
        assert key == instance.study_instance_uid.encode()
        assert event.source == "ORTHANC"


async def test_every_instance_finishes_with_results(trip: dict[str, Any]) -> None:
    """Every instance reaches its outcome; the CT and the MR have result rows."""
    outcomes: list[RoundTripOutcome] = trip["outcomes"]
    assert [o.name for o in outcomes if not o.outcome.finished] == []
    with_results = {o.name for o in outcomes if o.outcome.decisions}
    assert {"CT_small.dcm", "MR_small_RLE.dcm"} <= with_results


async def test_every_result_has_its_report_in_orthanc(trip: dict[str, Any]) -> None:
    """Each result row's SR is in Orthanc, in the source study, referencing the source."""
    outcomes: list[RoundTripOutcome] = trip["outcomes"]
    for outcome in outcomes:
        assert len(outcome.reports) == len(outcome.outcome.decisions), outcome.name
        assert all(outcome.reports), outcome.name
    assert sum(len(o.reports) for o in outcomes) >= 2


async def test_every_export_is_an_event_and_audited(trip: dict[str, Any]) -> None:
    """One ResultExported per result (one destination), each recorded by the audit agent."""
    outcomes: list[RoundTripOutcome] = trip["outcomes"]
    exported = [
        ResultExported.model_validate_json(r.value)
        for r in _records(trip, TopicKey.RESULTS_EXPORTED)
    ]
    assert len(exported) == sum(len(o.reports) for o in outcomes)
    assert {e.destination for e in exported} == {"ORTHANC"}
    audited = {
        (r.object.event_id, r.object.result_id)
        for r in trip["audit"]
        if r.event_type is AuditEventType.RESULT_EXPORTED
    }
    assert {(e.event_id, e.result_id) for e in exported} <= audited


async def test_no_phi_in_logs_or_topics(trip: dict[str, Any]) -> None:
    """Canaries in every patient attribute: none in a log line, key, value or header."""
    topics_text = " ".join(
        f"{r.key!r} {r.value!r} {r.headers!r}"
        for records in trip["records"].values()
        for r in records
    )
    assert "dicom_instance_stored" in trip["logs"]  # the control: the logs were captured
    assert canaries_in(trip["logs"]) == []
    assert canaries_in(topics_text) == []
