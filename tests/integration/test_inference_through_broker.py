"""Inference through the real broker: one result per event per model, provenance, refusals.

The worker runs the validation and inference stages over a copy of the model registry in which
one version's weights were tampered with: that version is refused (rejection with
MODEL_CHECKSUM_MISMATCH, metric), the other keeps serving with complete provenance.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import app
from schemas.correlation import CORRELATION_ID_HEADER
from schemas.events import ImageRejected, InferenceCompleted
from schemas.settings import SAMPLES_DIR
from streams.kafka import KafkaClientConfig, KafkaPublisher, ensure_topics
from streams.router import arrival_for_file
from streams.topics import TopicKey, TopicNames
from tests.integration.kafka_support import read_from_start
from tests.integration.settings_support import (
    copied_model_registry,
    isolated_settings,
    registry_settings,
)

pytestmark = pytest.mark.requirement("RS-INF-02", "RS-INF-06")

# Bounded: two images through two stages take a few seconds here.
OUTCOME_TIMEOUT_SECONDS = 60


async def collect(bootstrap: str, topics: list[str], want: int) -> list[tuple[str, bytes]]:
    """Read (topic, value) pairs until ``want`` messages arrived or the bound passed."""
    records = await read_from_start(bootstrap, *topics, want=want, within=OUTCOME_TIMEOUT_SECONDS)
    return [(record.topic, record.value) for record in records]


async def test_results_with_provenance_and_tampered_model_refused(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """1.0.0 serves with full provenance; tampered 1.1.0 is refused per event, not a crash."""
    registry_dir = copied_model_registry(tmp_path)
    tampered = registry_dir / "lesion-detector" / "1.1.0" / "model.onnx"
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    settings = isolated_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        storage_roots=(SAMPLES_DIR,),
        inference=registry_settings(registry_dir),
    )
    await ensure_topics(kafka, topic_prefix)
    metrics = CollectorRegistry()
    stop, started = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(
        app.run_worker(
            settings,
            ["validation", "inference"],
            stop,
            started=started,
            registry=metrics,
            serve_http=False,
        )
    )
    ct = SAMPLES_DIR / "dicom" / "ct_small.dcm"
    good = arrival_for_file(ct, source="PACS1", model_ids=["lesion-detector@1.0.0"])
    refused = arrival_for_file(ct, source="PACS1", model_ids=["lesion-detector@1.1.0"])
    names = TopicNames(topic_prefix)
    try:
        await asyncio.wait_for(started.wait(), OUTCOME_TIMEOUT_SECONDS)
        async with KafkaPublisher(kafka, names) as publisher:
            for number, event in enumerate((good, refused), start=1):
                await publisher.publish(
                    TopicKey.IMAGES_ARRIVED,
                    event.message_key(),
                    event,
                    ((CORRELATION_ID_HEADER, f"a{number}".encode() * 16),),
                )
        outcomes = await collect(kafka_bootstrap, [names.results, names.rejected], want=2)
    finally:
        stop.set()
        await worker
    results = [InferenceCompleted.model_validate_json(v) for t, v in outcomes if t == names.results]
    rejected = [ImageRejected.model_validate_json(v) for t, v in outcomes if t == names.rejected]

    (result,) = results
    assert result.event_id == good.event_id
    assert result.correlation_id == "a1" * 16
    assert (result.model.name, result.model.version) == ("lesion-detector", "1.0.0")
    weights = registry_dir / "lesion-detector" / "1.0.0" / "model.onnx"
    assert result.model.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert result.model.runtime == "onnxruntime"
    assert result.model.provider == "CPUExecutionProvider"
    assert result.input_sha256 == hashlib.sha256(ct.read_bytes()).hexdigest()
    assert set(result.scores) == set(result.thresholds)
    assert result.verdicts
    assert result.completed_at >= result.occurred_at

    (refusal,) = rejected
    assert refusal.event_id == refused.event_id
    assert refusal.error_code == "MODEL_CHECKSUM_MISMATCH"
    assert refusal.stage == "inference"
    assert (
        metrics.get_sample_value(
            "radstream_model_checksum_refusals_total",
            {"model": "lesion-detector", "model_version": "1.1.0"},
        )
        == 1.0
    )
