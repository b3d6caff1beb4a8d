"""No patient name, ID or birth date reaches the audit topic, table or checkpoint file."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pydicom
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import BaseModel
from pydicom.data import get_testdata_file

from schemas.correlation import CORRELATION_ID_HEADER
from schemas.events import ImageArrived
from sinks.database import Database
from streams.kafka.loop import run_until_idle
from streams.topics import TopicKey, TopicNames
from tests.integration.audit_support import (
    create_topics,
    make_agent,
    make_table_writer,
    publish,
    trusted_in,
)
from tests.integration.database_helpers import migrated_database
from tests.unit.audit.factories import api_action, completed, dead_letter, rejected, validated

pytestmark = pytest.mark.requirement("RS-G-02")

SAMPLES = ("CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm")


def _phi(dataset: pydicom.Dataset) -> set[str]:
    """The patient's name (whole and each component), ID and birth date, where present."""
    values = {str(dataset.get("PatientID", "")), str(dataset.get("PatientBirthDate", ""))}
    name = str(dataset.get("PatientName", ""))
    values |= {name, *name.split("^")}
    return {value for value in values if len(value) >= 4}


def _events_from(path: Path) -> tuple[list[tuple[TopicKey, BaseModel]], set[str]]:
    """Pipeline events for one sample file, with its PHI planted in every free-text field."""
    dataset = pydicom.dcmread(path)
    phi = _phi(dataset)
    leak = " ".join(sorted(phi))
    arrived = ImageArrived(
        source="router-1",
        image_uri=path.as_uri(),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        study_instance_uid=dataset.StudyInstanceUID,
        series_instance_uid=dataset.SeriesInstanceUID,
        sop_instance_uid=dataset.SOPInstanceUID,
        modality=dataset.Modality,
    )
    letter = dead_letter(arrived.event_id, reason=f"failed for {leak}").model_copy(
        update={"value_b64": base64.b64encode(path.read_bytes()).decode()}
    )
    events: list[tuple[TopicKey, BaseModel]] = [
        (TopicKey.IMAGES_ARRIVED, arrived),
        (TopicKey.IMAGES_VALIDATED, validated(arrived.event_id)),
        (TopicKey.IMAGES_REJECTED, rejected(arrived.event_id, reason=f"bad image of {leak}")),
        (TopicKey.INFERENCE_RESULTS, completed(arrived.event_id)),
        (TopicKey.DEADLETTER, letter),
        (TopicKey.API_ACTIONS, api_action(event_id=arrived.event_id)),
    ]
    return events, phi


async def _publish_malformed(bootstrap: str, prefix: str, phi: set[str]) -> None:
    """A router message smuggling patient attributes, with PHI in its correlation id too."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        leak = " ".join(sorted(phi))
        await producer.send_and_wait(
            TopicNames(prefix).arrived,
            value=f'{{"patient_name": "{leak}"}}'.encode(),
            headers=[(CORRELATION_ID_HEADER, leak.encode())],
        )
    finally:
        await producer.stop()


async def _topic_bytes(bootstrap: str, topic: str) -> bytes:
    """Every value, key and header of the audit topic, concatenated."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    chunks: list[bytes] = []
    try:
        # 0.5 s of silence ends the scan: the agent finished before, so everything is there.
        while batch := await consumer.getmany(timeout_ms=500):
            for message in (m for part in batch.values() for m in part):
                chunks += [message.value or b"", message.key or b""]
                chunks += [key.encode() + value for key, value in message.headers]
    finally:
        await consumer.stop()
    return b"\n".join(chunks)


@pytest.fixture
async def database_url(admin_database_url: str) -> AsyncIterator[str]:
    """A fresh migrated database for this test, dropped afterwards."""
    async with migrated_database(admin_database_url) as url:
        yield url


async def test_no_phi_in_audit_trail(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, database_url: str
) -> None:
    """Audit records of events built from the sample files hold none of their PHI."""
    await create_topics(kafka_bootstrap, topic_prefix)
    phi: set[str] = set()
    for sample in SAMPLES:
        events, sample_phi = _events_from(Path(get_testdata_file(sample)))
        await publish(kafka_bootstrap, topic_prefix, events)
        phi |= sample_phi
    assert {"CompressedSamples^CT1", "1CT1", "11111111"} <= phi  # the scan looks for real PHI
    await _publish_malformed(kafka_bootstrap, topic_prefix, phi)
    assert await run_until_idle(make_agent(kafka_bootstrap, topic_prefix, tmp_path)) == 19
    database = Database(database_url, pool_size=1)
    try:
        writer = make_table_writer(kafka_bootstrap, topic_prefix, database, trusted_in(tmp_path))
        await run_until_idle(writer, idle_seconds=0.5)
        assert writer.stored == 19
    finally:
        await database.dispose()

    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT record::text AS record FROM audit_log")
    finally:
        await connection.close()
    stores = {
        "topic": (await _topic_bytes(kafka_bootstrap, TopicNames(topic_prefix).audit)).decode(),
        "table": "\n".join(row["record"] for row in rows),
        "checkpoints": (tmp_path / "checkpoints.jsonl").read_text(),
    }
    assert len(rows) == 19
    for where, text in stores.items():
        found = sorted(value for value in phi if value in text)
        assert not found, f"PHI found in the audit {where}"
