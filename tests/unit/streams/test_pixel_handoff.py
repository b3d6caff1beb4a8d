"""Decode once: the pixel hand-off store, and validation handing pixels to inference.

The store is a bounded, take-once LRU; with it, the inference stage skips read, hash and decode
for images validated in the same process and publishes the same results as without it.
"""

from __future__ import annotations

import uuid
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

import app
from observability.metrics import Metrics
from schemas.events import ImageValidated, InferenceCompleted
from schemas.settings import Settings, ValidationSettings, load_settings
from streams.kafka import Outgoing
from streams.pipeline import Incoming
from streams.retry import FailureRecord, RetryPolicy
from streams.router import arrival_for_file
from streams.stages.common import ImageReader
from streams.stages.handoff import PixelHandoff
from streams.stages.inference import InferenceStage
from streams.stages.validation import ValidationStage
from streams.topics import TopicKey
from streams.validation import load_clinical_rules

pytestmark = pytest.mark.requirement("RS-PRF-02")

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
LIMITS = ValidationSettings()
SHA_A, SHA_B = "a" * 64, "b" * 64
# A DICOM CT (two models), a 16-bit PNG and a JPEG export (modality hint from the router).
FILES = (
    ("dicom/ct_small.dcm", None),
    ("raster/ct_128_16bit.png", "CT"),
    ("raster/ct_64.jpg", "CT"),
)


def pixels(nbytes: int, fill: float = 0.0) -> np.ndarray:
    """A float32 array of exactly ``nbytes`` bytes."""
    return np.full(nbytes // 4, fill, dtype=np.float32)


class TestStore:
    def test_take_returns_what_was_put_once(self) -> None:
        """An entry is taken at most once: a redelivered event decodes again."""
        store = PixelHandoff(1024)
        event_id, image = uuid.uuid4(), pixels(64, 1.5)
        assert store.put(event_id, SHA_A, image)
        assert store.take(event_id, SHA_A) is image
        assert store.take(event_id, SHA_A) is None
        assert store.stats().entries == 0
        assert store.stats().held_bytes == 0

    def test_the_key_is_event_and_digest(self) -> None:
        """Another digest (other bytes) or another event misses, and leaves the entry."""
        store = PixelHandoff(1024)
        event_id = uuid.uuid4()
        store.put(event_id, SHA_A, pixels(64))
        assert store.take(event_id, SHA_B) is None
        assert store.take(uuid.uuid4(), SHA_A) is None
        assert store.take(event_id, SHA_A) is not None

    def test_least_recently_put_is_evicted_beyond_the_budget(self) -> None:
        """Held bytes never exceed the budget; the oldest entries go first."""
        store = PixelHandoff(256)
        ids = [uuid.uuid4() for _ in range(4)]
        for event_id in ids[:3]:
            assert store.put(event_id, SHA_A, pixels(100))
        assert store.stats().entries == 2
        assert store.stats().held_bytes == 200
        assert store.take(ids[0], SHA_A) is None
        store.put(ids[3], SHA_A, pixels(56))
        assert store.stats().held_bytes == 256
        assert [store.take(i, SHA_A) is not None for i in ids] == [False, True, True, True]

    def test_putting_again_replaces_and_refreshes(self) -> None:
        """A re-validated event replaces its entry (counted once) and becomes the newest."""
        store = PixelHandoff(300)
        first, second = uuid.uuid4(), uuid.uuid4()
        store.put(first, SHA_A, pixels(100, 1.0))
        store.put(second, SHA_A, pixels(100))
        store.put(first, SHA_A, pixels(100, 2.0))
        assert store.stats().held_bytes == 200
        store.put(uuid.uuid4(), SHA_A, pixels(100))
        store.put(uuid.uuid4(), SHA_A, pixels(100))  # evicts `second`, the oldest now
        assert store.take(second, SHA_A) is None
        again = store.take(first, SHA_A)
        assert again is not None
        assert float(again[0]) == 2.0

    def test_an_image_larger_than_the_budget_is_not_kept(self) -> None:
        """It would evict everything and still not fit: refused, the others stay."""
        store = PixelHandoff(256)
        kept = uuid.uuid4()
        store.put(kept, SHA_A, pixels(128))
        assert not store.put(uuid.uuid4(), SHA_A, pixels(512))
        assert store.take(kept, SHA_A) is not None

    def test_zero_budget_disables(self) -> None:
        """Budget 0: nothing is kept, every take misses."""
        store = PixelHandoff(0)
        event_id = uuid.uuid4()
        assert not store.enabled
        assert not store.put(event_id, SHA_A, pixels(4))
        assert store.take(event_id, SHA_A) is None
        assert store.stats().budget_bytes == 0

    def test_negative_budget_is_refused(self) -> None:
        with pytest.raises(ValueError, match="budget_bytes"):
            PixelHandoff(-1)


class CountingReader(ImageReader):
    """The real reader over the samples, counting every read."""

    def __init__(self) -> None:
        super().__init__([SAMPLES], LIMITS.max_file_bytes, RetryPolicy(max_attempts=1))
        self.reads = 0

    async def read(self, uri: str, record: FailureRecord) -> bytes:
        self.reads += 1
        return await super().read(uri, record)


def arrivals() -> list[Incoming]:
    """The arrival messages of FILES, as the router publishes them."""
    out = []
    for offset, (relative, modality) in enumerate(FILES):
        arrival = arrival_for_file(SAMPLES / relative, source="demo", modality=modality)
        out.append(
            Incoming("t.images.arrived", 0, offset, b"k", arrival.model_dump_json().encode())
        )
    return out


async def validate(store: PixelHandoff | None) -> list[Incoming]:
    """Run the validation stage with ``store``; its images.validated messages as consumed."""
    rules = load_clinical_rules(load_settings().validation.clinical_rules_file)
    stage = ValidationStage(CountingReader(), LIMITS, rules, handoff=store)
    out = await stage.handle(arrivals())
    events = [o.value for o in out if isinstance(o.value, ImageValidated)]
    assert len(events) == len(FILES), out
    return [
        Incoming("t.images.validated", 0, i, e.message_key(), e.model_dump_json().encode())
        for i, e in enumerate(events)
    ]


def results(out: list[Outgoing]) -> list[tuple[object, ...]]:
    """What a result says, without its timing (inference_seconds, completed_at, result_id)."""
    found = []
    for o in out:
        if o.topic is TopicKey.INFERENCE_RESULTS:
            assert isinstance(o.value, InferenceCompleted)
            v = o.value
            found.append((v.event_id, v.model, v.input_sha256, v.scores, v.decision, v.verdicts))
    return sorted(found, key=repr)


class TestStages:
    async def test_a_hit_skips_read_hash_and_decode(
        self, stage_for: partial[InferenceStage]
    ) -> None:
        """Validated in this process: inference never reads the file, and every image hits."""
        store = PixelHandoff(LIMITS.max_file_bytes)
        validated = await validate(store)
        assert store.stats().entries == len(FILES)
        reader, hits = CountingReader(), list[bool]()
        stage = stage_for(reader, handoff=store, on_pixel_handoff=hits.append)
        out = await stage.handle(validated)
        assert reader.reads == 0
        assert hits == [True] * len(FILES)
        assert store.stats().entries == 0
        assert len(results(out)) >= len(FILES)

    async def test_hit_and_miss_publish_the_same_results(
        self, stage_for: partial[InferenceStage]
    ) -> None:
        """The handed-off pixels are the decode inference would do: identical scores, decisions
        and provenance as a worker without the hand-off (read, hash and decode again)."""
        store = PixelHandoff(LIMITS.max_file_bytes)
        validated = await validate(store)
        hit_stage = stage_for(CountingReader(), handoff=store)
        miss_reader, misses = CountingReader(), list[bool]()
        miss_stage = stage_for(
            miss_reader,
            handoff=PixelHandoff(LIMITS.max_file_bytes),  # validation ran elsewhere: empty
            on_pixel_handoff=misses.append,
        )
        plain_stage = stage_for(CountingReader())
        hit = results(await hit_stage.handle(validated))
        miss = results(await miss_stage.handle(validated))
        plain = results(await plain_stage.handle(validated))
        assert hit == miss == plain
        assert hit
        assert miss_reader.reads == len(FILES)
        assert misses == [False] * len(FILES)

    async def test_a_disabled_store_changes_nothing(
        self, stage_for: partial[InferenceStage]
    ) -> None:
        """Budget 0: validation converts nothing and keeps nothing; inference reads as today."""
        store = PixelHandoff(0)
        validated = await validate(store)
        assert store.stats().entries == 0
        reader = CountingReader()
        stage = stage_for(reader, handoff=store)
        assert results(await stage.handle(validated))
        assert reader.reads == len(FILES)

    async def test_a_rejected_image_hands_nothing_on(self) -> None:
        """Only accepted images are put: a rejection has no pixels to take."""
        store = PixelHandoff(LIMITS.max_file_bytes)
        rules = load_clinical_rules(load_settings().validation.clinical_rules_file)
        stage = ValidationStage(CountingReader(), LIMITS, rules, handoff=store)
        bad = arrival_for_file(SAMPLES / "bad" / "truncated_ct.dcm", source="demo")
        message = Incoming("t.images.arrived", 0, 0, b"k", bad.model_dump_json().encode())
        (out,) = await stage.handle([message])
        assert out.topic is TopicKey.IMAGES_REJECTED
        assert store.stats().entries == 0


class TestWiring:
    def test_one_store_only_where_both_stages_run(self) -> None:
        """The composition root builds a store for a worker running validation and inference
        together, none for either alone or when the budget is 0."""
        settings = Settings()
        store = app.build_pixel_handoff(settings, ["validation", "inference", "results"])
        assert store is not None
        assert store.stats().budget_bytes == settings.inference.pixel_handoff_bytes
        assert app.build_pixel_handoff(settings, ["validation", "results"]) is None
        assert app.build_pixel_handoff(settings, ["inference"]) is None
        off = settings.model_copy(
            update={"inference": settings.inference.model_copy(update={"pixel_handoff_bytes": 0})}
        )
        assert app.build_pixel_handoff(off, ["validation", "inference"]) is None

    def test_the_metric_counts_hits_and_misses(self) -> None:
        """The stage's hook moves radstream_pixel_handoff_total{result}."""
        registry = CollectorRegistry()
        metrics = Metrics(registry, process_collector=False)
        metrics.pixel_handoff_used(True)
        metrics.pixel_handoff_used(True)
        metrics.pixel_handoff_used(False)
        sample = registry.get_sample_value
        assert sample("radstream_pixel_handoff_total", {"result": "hit"}) == 2
        assert sample("radstream_pixel_handoff_total", {"result": "miss"}) == 1
