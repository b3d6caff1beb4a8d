"""Validation and inference as one step (streams/stages/fused.py) and what it relies on:
inference on parsed events, skipped marked events, and metrics counted per stage."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from functools import partial

import pytest

import app
from schemas.correlation import correlation_id_from_headers
from schemas.errors import ErrorCode, error_for
from schemas.events import (
    DeadLetter,
    ImageArrived,
    ImageRejected,
    ImageValidated,
    Stage,
)
from schemas.settings import Settings, load_settings
from streams.agents import AgentSpec
from streams.inference.registry import ModelRegistry
from streams.inference.routing import RoutingRules
from streams.kafka import Outgoing
from streams.pipeline import (
    Incoming,
    NullObserver,
    dead_letter_for,
    outcome_stage,
    process_batch,
)
from streams.retry import FailureRecord, RetriesExhaustedError
from streams.router import arrival_for_file
from streams.stages.fused import INFERRED_HEADER, ValidateThenInfer, already_inferred
from streams.stages.handoff import PixelHandoff
from streams.stages.inference import InferenceStage
from streams.stages.validation import ValidationStage
from streams.topics import TopicKey, TopicNames
from streams.validation import load_clinical_rules
from tests.unit.audit import factories
from tests.unit.streams.test_pixel_handoff import (
    FILES,
    LIMITS,
    SAMPLES,
    CountingReader,
    arrivals,
    results,
)

pytestmark = pytest.mark.requirement("RS-PRF-04")


def validation_stage(store: PixelHandoff | None) -> ValidationStage:
    rules = load_clinical_rules(load_settings().validation.clinical_rules_file)
    return ValidationStage(CountingReader(), LIMITS, rules, handoff=store)


def bad_arrival(offset: int) -> Incoming:
    event = arrival_for_file(SAMPLES / "bad" / "truncated_ct.dcm", source="demo")
    return Incoming("t.images.arrived", 0, offset, b"k", event.model_dump_json().encode())


class FailingReader(CountingReader):
    """Reads succeed for validation, then the storage is gone (inference's re-read fails)."""

    def __init__(self, good_reads: int) -> None:
        super().__init__()
        self.good_reads = good_reads

    async def read(self, uri: str, record: FailureRecord) -> bytes:
        if self.reads >= self.good_reads:
            self.reads += 1
            raise RetriesExhaustedError(error_for(ErrorCode.STORAGE_FILE_NOT_FOUND, "gone"), 3)
        return await super().read(uri, record)


class RecordingObserver(NullObserver):
    def __init__(self) -> None:
        self.batches: list[tuple[Stage, int, list[tuple[str, str | None]]]] = []

    def batch_processed(
        self, stage: Stage, size: int, seconds: float, outcomes: Sequence[tuple[str, str | None]]
    ) -> None:
        self.batches.append((stage, size, list(outcomes)))


class TestValidateThenInfer:
    async def test_accepted_images_are_inferred_in_the_same_step(
        self, stage_for: partial[InferenceStage]
    ) -> None:
        """Validated events (marked), the rejection, then the results: what the two stages
        publish apart, without a second read or decode."""
        store = PixelHandoff(LIMITS.max_file_bytes)
        inference_reader = CountingReader()
        fused = ValidateThenInfer(
            validation_stage(store),
            stage_for(inference_reader, handoff=store),
        )
        batch = [*arrivals(), bad_arrival(len(FILES))]
        out = await fused.handle(batch)

        validated = [o for o in out[: len(batch)] if isinstance(o.value, ImageValidated)]
        assert len(validated) == len(FILES)
        assert all(dict(o.headers).get(INFERRED_HEADER) == b"1" for o in validated)
        rejected = out[len(FILES)]
        assert rejected.topic is TopicKey.IMAGES_REJECTED
        assert INFERRED_HEADER not in dict(rejected.headers)
        assert inference_reader.reads == 0
        assert store.stats().entries == 0

        # The same images through the stages apart: the same results.
        apart = validation_stage(None)
        consumed = [
            Incoming("t.images.validated", 0, i, o.key, o.value.model_dump_json().encode())
            for i, o in enumerate(await apart.handle(batch[: len(FILES)]))
        ]
        separate = stage_for(CountingReader())
        assert results(out) == results(await separate.handle(consumed))
        assert results(out)

    async def test_outcomes_carry_the_arrivals_correlation_id(
        self, stage_for: partial[InferenceStage]
    ) -> None:
        store = PixelHandoff(LIMITS.max_file_bytes)
        fused = ValidateThenInfer(
            validation_stage(store),
            stage_for(CountingReader(), handoff=store),
        )
        batch = arrivals()
        out = await fused.handle(batch)
        expected = {message.correlation_id for message in batch}
        carried = {correlation_id_from_headers(o.headers) for o in out}
        assert carried == expected

    async def test_an_inference_dead_letter_keeps_the_arrival(
        self, stage_for: partial[InferenceStage]
    ) -> None:
        """No pixels handed on and the file gone: the dead letter is the arrival's, so a replay
        validates and infers the image again."""
        (arrival, *_) = arrivals()
        reader = FailingReader(good_reads=0)
        fused = ValidateThenInfer(validation_stage(None), stage_for(reader))
        out = await fused.handle([arrival])
        assert out[0].topic is TopicKey.IMAGES_VALIDATED
        letters = [o.value for o in out if isinstance(o.value, DeadLetter)]
        assert letters
        for letter in letters:
            assert letter.stage is Stage.INFERENCE
            assert letter.error_code is ErrorCode.RETRIES_EXHAUSTED
            assert (letter.source_topic, letter.source_offset) == ("t.images.arrived", 0)
            assert base64.b64decode(letter.value_b64) == arrival.value

    async def test_a_batch_with_nothing_accepted_runs_no_model(
        self, stage_for: partial[InferenceStage]
    ) -> None:
        reader = CountingReader()
        fused = ValidateThenInfer(validation_stage(None), stage_for(reader))
        out = await fused.handle([bad_arrival(0), bad_arrival(1)])
        assert [o.topic for o in out] == [TopicKey.IMAGES_REJECTED] * 2
        assert all(isinstance(o.value, ImageRejected) for o in out)
        assert reader.reads == 0


class TestCountedPerStage:
    async def test_each_stage_counts_what_it_received_and_did(
        self, stage_for: partial[InferenceStage]
    ) -> None:
        """Validation received the batch; inference the accepted images, once per image
        whatever the number of models; rejections are counted under the stage that made them."""
        store = PixelHandoff(LIMITS.max_file_bytes)
        fused = ValidateThenInfer(
            validation_stage(store),
            stage_for(CountingReader(), handoff=store),
        )
        observer = RecordingObserver()
        batch = [*arrivals(), bad_arrival(len(FILES))]

        async def deliver(messages: Sequence[Outgoing]) -> None:
            return None

        out = await process_batch(fused, batch, deliver, observer)
        by_stage = {stage: (size, outcomes) for stage, size, outcomes in observer.batches}
        assert set(by_stage) == {Stage.VALIDATION, Stage.INFERENCE}
        size, outcomes = by_stage[Stage.VALIDATION]
        assert size == len(batch)
        assert sorted(o for o, _ in outcomes) == ["rejected"] + ["validated"] * len(FILES)
        size, outcomes = by_stage[Stage.INFERENCE]
        assert size == len(FILES)
        inference_out = [o for o in out if outcome_stage(o, Stage.VALIDATION) is Stage.INFERENCE]
        assert len(outcomes) == len(inference_out) > len(FILES)  # two models for these images

    def test_outcome_stage(self) -> None:
        """A rejection and a dead letter name their stage; a result is inference's; anything
        else is the handling stage's."""
        event = arrival_for_file(SAMPLES / "dicom" / "ct_small.dcm", source="demo")
        rejection = factories.rejected(event.event_id, stage=Stage.INFERENCE)
        as_rejection = Outgoing(TopicKey.IMAGES_REJECTED, b"k", rejection, ())
        assert outcome_stage(as_rejection, Stage.VALIDATION) is Stage.INFERENCE
        (arrival, *_) = arrivals()
        letter = dead_letter_for(arrival, Stage.INFERENCE, ValueError("model crashed"))
        assert outcome_stage(letter, Stage.VALIDATION) is Stage.INFERENCE
        other = Outgoing(TopicKey.IMAGES_VALIDATED, b"k", event, ())
        assert outcome_stage(other, Stage.RESULTS_SINK) is Stage.RESULTS_SINK
        assert outcome_stage(other, Stage.VALIDATION) is Stage.VALIDATION


class TestInFlight:
    """A combined worker's inference in-flight gauge moves while the step infers."""

    async def test_accepted_images_are_in_flight_in_inference_while_inferred(
        self, stage_for: partial[InferenceStage], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        changes: list[tuple[Stage, int]] = []
        seen_during: list[list[tuple[Stage, int]]] = []
        inference = stage_for(CountingReader())
        infer = inference.infer

        async def spy(events: Sequence[tuple[Incoming, ImageValidated]]) -> list[Outgoing]:
            seen_during.append(list(changes))
            return await infer(events)

        monkeypatch.setattr(inference, "infer", spy)
        fused = ValidateThenInfer(
            validation_stage(None),
            inference,
            in_flight=lambda stage, delta: changes.append((stage, delta)),
        )
        await fused.handle([*arrivals(), bad_arrival(len(FILES))])
        assert seen_during == [[(Stage.INFERENCE, len(FILES))]]
        assert changes == [(Stage.INFERENCE, len(FILES)), (Stage.INFERENCE, -len(FILES))]

    async def test_a_crashing_inference_leaves_nothing_in_flight(
        self, stage_for: partial[InferenceStage], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        changes: list[tuple[Stage, int]] = []
        inference = stage_for(CountingReader())

        async def crash(events: Sequence[tuple[Incoming, ImageValidated]]) -> list[Outgoing]:
            raise RuntimeError("model runtime died")

        monkeypatch.setattr(inference, "infer", crash)
        fused = ValidateThenInfer(
            validation_stage(None),
            inference,
            in_flight=lambda stage, delta: changes.append((stage, delta)),
        )
        with pytest.raises(RuntimeError):
            await fused.handle(arrivals()[:1])
        assert changes == [(Stage.INFERENCE, 1), (Stage.INFERENCE, -1)]

    async def test_nothing_accepted_moves_no_gauge(
        self, stage_for: partial[InferenceStage]
    ) -> None:
        changes: list[tuple[Stage, int]] = []
        fused = ValidateThenInfer(
            validation_stage(None),
            stage_for(CountingReader()),
            in_flight=lambda stage, delta: changes.append((stage, delta)),
        )
        await fused.handle([bad_arrival(0)])
        assert changes == []


class TestSkippingMarkedEvents:
    def test_only_marked_events_count_as_inferred(self) -> None:
        marked = Incoming("t", 0, 0, None, b"{}", ((INFERRED_HEADER, b"1"),))
        assert already_inferred(marked)
        assert not already_inferred(Incoming("t", 0, 1, None, b"{}"))
        assert not already_inferred(Incoming("t", 0, 2, None, b"{}", ((INFERRED_HEADER, b"0"),)))

    def test_an_agent_hands_its_stage_only_what_it_keeps(self) -> None:
        marked = Incoming("t", 0, 0, None, b"{}", ((INFERRED_HEADER, b"1"),))
        plain = Incoming("t", 0, 1, None, b"{}")
        stage = validation_stage(None)
        skipping = AgentSpec("inference", ("t",), stage, 8, 0.0, skip=already_inferred)
        assert skipping.kept([marked, plain, marked]) == [plain]
        assert AgentSpec("validation", ("t",), stage, 8, 0.0).kept([marked, plain]) == [
            marked,
            plain,
        ]


class TestWiring:
    def test_a_combined_worker_fuses_unless_told_not_to(self) -> None:
        settings = Settings()
        topics = TopicNames("t.")
        inference = InferenceStage(
            CountingReader(),
            ModelRegistry.load(settings.inference.model_registry_dir),
            RoutingRules.load(settings.inference.routing_rules_file),
            LIMITS,
        )
        fused = app.build_validation_specs(settings, topics, inference=inference)
        assert [type(spec.handler).__name__ for spec in fused] == ["ValidateThenInfer", "MarkLane"]
        assert fused[0].handler._in_flight is None  # type: ignore[attr-defined]
        observer = NullObserver()
        observed = app.build_validation_specs(
            settings, topics, inference=inference, observer=observer
        )
        assert observed[0].handler._in_flight == observer.in_flight  # type: ignore[attr-defined]
        alone = app.build_validation_specs(settings, topics)
        assert type(alone[0].handler) is ValidationStage
        for spec in app.build_inference_specs(settings, topics, inference):
            assert spec.skip is already_inferred
        assert settings.inference.fuse_with_validation

    async def test_a_stat_arrival_marks_its_result_too(
        self, stage_for: partial[InferenceStage]
    ) -> None:
        """The stat lane wraps the whole step: its inference outcomes carry the lane header."""
        settings = Settings()
        inference = stage_for(CountingReader())
        _, stat = app.build_validation_specs(settings, TopicNames("t."), inference=inference)
        out = await stat.handler.handle(arrivals()[:1])
        assert len(out) > 1
        assert all(dict(o.headers).get("radstream-lane") == b"stat" for o in out)


def test_event_ids_are_unique_per_arrival() -> None:
    """The helpers above rely on distinct event ids per file."""
    ids = [ImageArrived.model_validate_json(m.value).event_id for m in arrivals()]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, uuid.UUID) for i in ids)
