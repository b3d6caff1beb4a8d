"""Decode once on the real broker: a worker running validation and inference in one process
hands the validator's pixels to inference, and publishes what separate workers publish.

Run 1: one worker with both stages as separate agents (fusion off; one hand-off store). Run 2:
the separate-stage deployment, a validation worker and an inference worker (no store: inference
reads and decodes again). The same arrivals go through both; the outcomes must be equal, and run
1 must count hand-off hits. The fused step (the default) is compared the same way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from prometheus_client import CollectorRegistry

import app
from schemas.events import ImageArrived, ImageRejected, InferenceCompleted
from schemas.settings import SAMPLES_DIR, InferenceSettings, Settings
from streams.kafka import KafkaClientConfig, KafkaPublisher, ensure_topics
from streams.router import arrival_for_file
from streams.topics import TopicKey, TopicNames
from tests.integration.kafka_support import read_from_start
from tests.integration.settings_support import isolated_settings

pytestmark = pytest.mark.requirement("RS-PRF-02")

# Bounded: a dozen outcomes through two stages take a few seconds here.
TIMEOUT_SECONDS = 90
# Each file goes to two models (a quality result, the lesion detector's refusal of these images).
FILES = (("dicom/ct_small.dcm", None), ("raster/ct_256.png", "CT"), ("raster/ct_64.jpg", "CT"))
COPIES = 2
OUTCOMES_PER_IMAGE = 2

Outcome = tuple[uuid.UUID, str, object]


async def collect(bootstrap: str, names: TopicNames, want: int) -> list[Outcome]:
    """(event_id, model, what it said) of ``want`` results and rejections, within the bound."""
    got: list[Outcome] = []
    records = await read_from_start(
        bootstrap, names.results, names.rejected, want=want, within=TIMEOUT_SECONDS
    )
    for record in records:
        if record.topic == names.results:
            r = InferenceCompleted.model_validate_json(record.value)
            said: object = (r.scores, r.decision, r.input_sha256, r.verdicts)
            got.append((r.event_id, f"{r.model.name}@{r.model.version}", said))
        else:
            j = ImageRejected.model_validate_json(record.value)
            got.append((j.event_id, str(j.model_id), (j.stage, j.error_code)))
    return sorted(got, key=repr)


@asynccontextmanager
async def workers(
    settings: Settings, stage_sets: Sequence[Sequence[str]]
) -> AsyncIterator[list[CollectorRegistry]]:
    """One ``app.run_worker`` per stage set (as ``radstream worker --stages``), started."""
    registries = [CollectorRegistry() for _ in stage_sets]
    stop = asyncio.Event()
    tasks = []
    try:
        for stages, registry in zip(stage_sets, registries, strict=True):
            started = asyncio.Event()
            tasks.append(
                asyncio.create_task(
                    app.run_worker(
                        settings,
                        list(stages),
                        stop,
                        started=started,
                        registry=registry,
                        serve_http=False,
                    )
                )
            )
            await asyncio.wait_for(started.wait(), TIMEOUT_SECONDS)
        yield registries
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT_SECONDS)


async def run(
    kafka: KafkaClientConfig,
    bootstrap: str,
    stage_sets: Sequence[Sequence[str]],
    arrivals: Sequence[ImageArrived],
    *,
    fuse: bool = True,
) -> tuple[list[Outcome], list[CollectorRegistry]]:
    """Every outcome of ``arrivals`` through workers running ``stage_sets`` on fresh topics."""
    prefix = f"rstest.handoff.{uuid.uuid4().hex[:12]}."
    await ensure_topics(kafka, prefix)
    settings = isolated_settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        storage_roots=(SAMPLES_DIR,),
        inference=InferenceSettings(fuse_with_validation=fuse),
    )
    names = TopicNames(prefix)
    async with AsyncExitStack() as stack:
        registries = await stack.enter_async_context(workers(settings, stage_sets))
        async with KafkaPublisher(kafka, names) as publisher:
            for event in arrivals:
                await publisher.publish(TopicKey.IMAGES_ARRIVED, event.message_key(), event)
        outcomes = await collect(bootstrap, names, len(arrivals) * OUTCOMES_PER_IMAGE)
    return outcomes, registries


async def test_combined_worker_decodes_once_and_publishes_what_separate_workers_do(
    kafka_bootstrap: str, kafka: KafkaClientConfig
) -> None:
    """Hits counted in the combined worker; outcomes equal to the separate-stage deployment."""
    arrivals = [
        arrival_for_file(SAMPLES_DIR / relative, source="PACS1", modality=modality)
        for relative, modality in FILES
        for _ in range(COPIES)
    ]
    combined, (registry,) = await run(
        kafka, kafka_bootstrap, [["validation", "inference"]], arrivals, fuse=False
    )
    separate, (_, inference_only) = await run(
        kafka, kafka_bootstrap, [["validation"], ["inference"]], arrivals
    )

    assert combined == separate
    assert {event_id for event_id, _, _ in combined} == {a.event_id for a in arrivals}
    assert any(model == "image-quality@1.0.0" for _, model, _ in combined)
    hits = registry.get_sample_value("radstream_pixel_handoff_total", {"result": "hit"}) or 0
    misses = registry.get_sample_value("radstream_pixel_handoff_total", {"result": "miss"}) or 0
    assert hits > 0
    assert hits + misses >= len(arrivals)  # every validated event asked (more if redelivered)
    # The separate deployment has no store: its inference worker reports no hand-off at all.
    assert (
        inference_only.get_sample_value("radstream_pixel_handoff_total", {"result": "miss"}) is None
    )


async def test_fused_worker_infers_once_and_publishes_what_separate_workers_do(
    kafka_bootstrap: str, kafka: KafkaClientConfig
) -> None:
    """Fused (the default): a combined worker infers each image in the step that validated it,
    and a separately deployed inference worker (a group of its own, reading every validated
    event) skips the marked events: the same outcomes as the separate stages, each once.
    """
    arrivals = [
        arrival_for_file(SAMPLES_DIR / relative, source="PACS1", modality=modality)
        for relative, modality in FILES
        for _ in range(COPIES)
    ]
    fused, (combined, inference_only) = await run(
        kafka, kafka_bootstrap, [["validation", "inference"], ["inference"]], arrivals
    )
    separate, _ = await run(kafka, kafka_bootstrap, [["validation"], ["inference"]], arrivals)

    assert fused == separate
    assert len(fused) == len(arrivals) * OUTCOMES_PER_IMAGE
    received = "radstream_stage_events_received_total"
    # Each image reached inference in the fused step (more only if redelivered) ...
    assert (combined.get_sample_value(received, {"stage": "inference"}) or 0) >= len(arrivals)
    # ... and the separately deployed inference worker handed its stage none of them.
    assert (inference_only.get_sample_value(received, {"stage": "inference"}) or 0) == 0
