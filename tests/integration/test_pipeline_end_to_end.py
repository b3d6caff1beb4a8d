"""The whole pipeline on the real broker and database: outcomes, metrics, audit, no PHI anywhere.

Runs the same worker users run (``app.run_worker`` with every stage) over a mix of good and bad
sample images plus a poison message, then reads back every topic, the database and the logs.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from cli.demo import run_pipeline_on_files
from observability.metrics import serve_metrics
from schemas.events import DeadLetter, ImageRejected, ImageValidated
from schemas.settings import SAMPLES_DIR, Settings
from sinks.database import Database
from streams.audit.checkpoints import TrustedKeys
from streams.audit.files import checkpoint_file_for, load_public_key
from streams.audit.io import verify_topic
from streams.kafka import KafkaClientConfig
from streams.topics import TopicNames
from tests.integration.settings_support import isolated_settings

SAMPLES = SAMPLES_DIR
# Each good image and what every model it is routed to answers (a decision or a refusal code).
GOOD = {
    "dicom/ct_small.dcm": {
        "image-quality@1.0.0": "acceptable",
        "lesion-detector@1.2.0": "MODEL_INPUT_OUT_OF_DISTRIBUTION",
    },
    "dicom/ct_phantom_lesion.dcm": {
        "image-quality@1.0.0": "acceptable",
        "lesion-detector@1.2.0": "lesion",
    },
    "dicom/mr_small_noisy.dcm": {"image-quality@1.0.0": "noise"},
    "raster/ct_256.png": {
        "image-quality@1.0.0": "acceptable",
        "lesion-detector@1.2.0": "MODEL_INPUT_OUT_OF_DISTRIBUTION",
    },
    "raster/ct_64.jpg": {
        "image-quality@1.0.0": "acceptable",
        "lesion-detector@1.2.0": "MODEL_INPUT_OUT_OF_DISTRIBUTION",
    },
}
BAD = {
    "bad/empty.dcm": "IMAGE_EMPTY",
    "bad/truncated_ct.dcm": "PIXEL_DATA_TRUNCATED",
    "bad/png_bomb_65535.png": "IMAGE_DECOMPRESSION_BOMB",
    "bad/sr_no_pixels.dcm": "PIXEL_DATA_MISSING",
    "dicom/nm_jpeg2000.dcm": "MODEL_NO_ROUTE",
}
RESULTS = sum(1 for answers in GOOD.values() for answer in answers.values() if not answer.isupper())
# Bounded: the pipeline needs a few seconds here; the bound only stops a hung run.
PIPELINE_TIMEOUT_SECONDS = 120


def phi_values() -> set[str]:
    """Every patient name, ID and birth date present in the bundled samples."""
    manifest = json.loads((SAMPLES / "phi_manifest.json").read_text())
    values = {v for attrs in manifest["files"].values() for v in attrs.values()}
    return {v for v in values if len(v) >= 4}


async def read_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every committed message of ``topic`` from the beginning."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1500)
            if not batch:
                return values
            values.extend(r.value for records in batch.values() for r in records if r.value)
    finally:
        await consumer.stop()


pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.requirement("RS-G-01", "RS-G-02", "RS-G-06", "RS-OBS-01", "RS-AUD-01"),
]


@pytest.fixture(scope="module")
def pipeline_settings(
    kafka_bootstrap: str,
    pipeline_database_url: str,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """Settings for one isolated pipeline run: own topics, own audit key and checkpoint file."""
    tmp_path = tmp_path_factory.mktemp("pipeline")
    topic_prefix = f"rstest.{run_id}.e2e-{uuid.uuid4().hex[:6]}."
    return isolated_settings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=pipeline_database_url,
        topic_prefix=topic_prefix,
        storage_roots=(SAMPLES,),
        audit_dir=tmp_path,
        audit={"checkpoint_every_records": 5},
        logging={"format": "json"},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(pipeline_settings: Settings) -> AsyncIterator[dict[str, object]]:
    """Publish the samples and a poison message, run the pipeline, collect what came out."""
    registry = CollectorRegistry()
    server, _thread = serve_metrics(registry, "127.0.0.1", 0)
    producer = AIOKafkaProducer(bootstrap_servers=pipeline_settings.kafka_bootstrap)
    await producer.start()
    topics = TopicNames(pipeline_settings.topic_prefix)
    from streams.kafka import ensure_topics  # noqa: PLC0415

    kafka = KafkaClientConfig.from_settings(pipeline_settings)
    await ensure_topics(kafka, pipeline_settings.topic_prefix)
    await producer.send_and_wait(topics.arrived, b'{"patient_name": "Doe^John", "not": "json')
    await producer.stop()
    files = [SAMPLES / name for name in [*GOOD, *BAD]]
    outcomes = await asyncio.wait_for(
        run_pipeline_on_files(pipeline_settings, files, registry=registry),
        PIPELINE_TIMEOUT_SECONDS,
    )
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    scrape = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    server.shutdown()
    yield {
        "outcomes": {str(o.path.relative_to(SAMPLES)): o for o in outcomes},
        "scrape": scrape.decode(),
    }


class TestEndToEnd:
    async def test_every_image_ends_stored_or_rejected_with_its_code(
        self, run: dict[str, object]
    ) -> None:
        """Each routed model answers each good image; each bad one is rejected with its code."""
        outcomes = run["outcomes"]
        assert isinstance(outcomes, dict)
        for name, expected in GOOD.items():
            outcome = outcomes[name]
            assert "stored" in outcome.states, name
            answers = {
                text.split(": ")[0]: text.split(": ")[1].split(" (")[0]
                for text in (*outcome.decisions, *outcome.refusals)
            }
            assert answers == expected, name
        for name, code in BAD.items():
            assert outcomes[name].error_code == code, name
            assert "stored" not in outcomes[name].states

    async def test_every_lifecycle_starts_with_its_arrival(self, run: dict[str, object]) -> None:
        """Each image's lifecycle has one "arrived" entry, and it comes first."""
        outcomes = run["outcomes"]
        assert isinstance(outcomes, dict)
        for name in [*GOOD, *BAD]:
            states = outcomes[name].states
            assert states[0] == "arrived", (name, states)
            assert states.count("arrived") == 1, (name, states)

    async def test_each_arrival_in_exactly_one_outcome_topic(
        self, run: dict[str, object], pipeline_settings: Settings
    ) -> None:
        """Every arrival appears once in validated or rejected (validation stage), never both."""
        topics = TopicNames(pipeline_settings.topic_prefix)
        bootstrap = pipeline_settings.kafka_bootstrap
        validated = [
            ImageValidated.model_validate_json(v).event_id
            for v in await read_topic(bootstrap, topics.validated)
        ]
        rejected = [
            ImageRejected.model_validate_json(v)
            for v in await read_topic(bootstrap, topics.rejected)
        ]
        at_validation = [r.event_id for r in rejected if r.stage == "validation"]
        assert len(set(validated)) == len(validated)
        assert set(validated).isdisjoint(at_validation)
        assert len(validated) + len(at_validation) == len(GOOD) + len(BAD)

    async def test_poison_message_is_dead_lettered_intact(
        self, run: dict[str, object], pipeline_settings: Settings
    ) -> None:
        """The malformed arrival lands in the dead-letter topic with its original bytes."""
        topics = TopicNames(pipeline_settings.topic_prefix)
        letters = [
            DeadLetter.model_validate_json(v)
            for v in await read_topic(pipeline_settings.kafka_bootstrap, topics.deadletter)
        ]
        poison = [d for d in letters if d.error_code == "EVENT_MALFORMED"]
        assert len(poison) == 1
        assert poison[0].source_topic == topics.arrived
        assert poison[0].stage == "validation"
        assert "Doe" not in poison[0].reason

    async def test_metrics_moved_as_expected(self, run: dict[str, object]) -> None:
        """Scraped over HTTP: stage counters, rejections by code and inference latency moved."""
        families = {f.name: f for f in text_string_to_metric_families(str(run["scrape"]))}
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families.values()
            for s in f.samples
        }
        rejected_empty = samples[
            ("radstream_rejections_total", (("error_code", "IMAGE_EMPTY"), ("stage", "validation")))
        ]
        assert rejected_empty == 1.0
        processed = sum(
            v
            for (name, labels), v in samples.items()
            if name == "radstream_stage_events_processed_total"
            and ("stage", "validation") in labels
        )
        assert processed == len(GOOD) + len(BAD) + 1  # + the poison message
        stored = [
            v
            for (name, _), v in samples.items()
            if name == "radstream_end_to_end_latency_seconds_count"
        ]
        assert sum(stored) == RESULTS

    async def test_audit_trail_verifies_and_covers_every_image(
        self, run: dict[str, object], pipeline_settings: Settings
    ) -> None:
        """The audit topic's chain verifies against the signed checkpoints."""
        audit = pipeline_settings.audit
        report = await verify_topic(
            KafkaClientConfig.from_settings(pipeline_settings),
            TopicNames(pipeline_settings.topic_prefix).audit,
            checkpoint_file_for(
                audit.checkpoint_file, TopicNames(pipeline_settings.topic_prefix).audit
            ),
            TrustedKeys.of(load_public_key(audit.signing_key_file)),
        )
        assert report.ok, report.summary()
        # arrival + validation outcome for each image at least, + results + the dead letter
        assert report.records_checked >= 2 * (len(GOOD) + len(BAD))

    async def test_no_patient_data_on_any_topic_or_table(
        self, run: dict[str, object], pipeline_settings: Settings
    ) -> None:
        """No sample's patient name, ID or birth date reaches a topic or a database row."""
        bootstrap = pipeline_settings.kafka_bootstrap
        names = TopicNames(pipeline_settings.topic_prefix).all().values()
        texts = [
            v.decode("utf-8", "replace") for t in names for v in await read_topic(bootstrap, t)
        ]
        database = Database(pipeline_settings.database_url.get_secret_value())
        try:
            async with database.engine.connect() as connection:
                for table in ("inference_results", "image_events"):
                    rows = (await connection.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608 - fixed table names
                    texts.extend(str(tuple(row)) for row in rows)
        finally:
            await database.dispose()
        corpus = "\n".join(texts)
        assert len(corpus) > 1000
        leaked = [value for value in phi_values() if value in corpus]
        assert leaked == []
