"""The work limit: the pipeline's work done by the pure functions in one plain loop.

Per arrival: read the bytes (``streams.validation``), validate them, decode the pixels again
for inference (as the inference stage does: the validator does not hand pixels on), infer in
micro-batches of ``inference.batch_size`` (``streams.inference``), and append an audit record
for every event the pipeline audits (arrival, validated or rejected, result or rejection) to a
hash chain with a signed checkpoint every ``audit.checkpoint_every_records`` records
(``streams.audit``). No Kafka, no database, no event loop, no threads: images per second here
is what one core can do, the ceiling the pipeline's per-process throughput is judged against.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import app
from bench.workload import ArrivalFactory, WorkItem
from schemas.audit import AuditSource
from schemas.correlation import new_correlation_id
from schemas.events import ImageArrived, ImageRejected, Stage
from schemas.settings import Settings
from streams.audit.chain import ChainState, append
from streams.audit.checkpoints import CheckpointPolicy, sign_checkpoint
from streams.audit.records import SourceEvent, draft_for_event
from streams.inference.batching import InferenceRequest, infer_batch
from streams.inference.registry import ModelRegistry
from streams.inference.routing import RoutingRules
from streams.stages.validation import validated_event
from streams.topics import TopicKey
from streams.validation import (
    ClinicalRules,
    ValidationAccepted,
    decode_pixels,
    load_clinical_rules,
    read_image_bytes,
    resolve_image_uri,
)
from streams.validation import (
    validate_image as validate,
)


@dataclass
class _AuditTrail:
    """An in-memory hash chain with the audit agent's checkpoint policy."""

    policy: CheckpointPolicy
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    state: ChainState = field(default_factory=lambda: ChainState.genesis(0))
    records: int = 0
    checkpoints: int = 0
    _since: int = 0

    def record(self, topic: TopicKey, event: SourceEvent) -> None:
        """Draft, chain and (when due) checkpoint one audited event."""
        source = AuditSource(topic=topic.value, partition=0, offset=self.records)
        _record, self.state = append(self.state, draft_for_event(event, source))
        self.records += 1
        self._since += 1
        if self.policy.due(self._since, 0.0):
            sign_checkpoint(self.key, self.state, datetime.now(UTC))
            self.checkpoints += 1
            self._since = 0


@dataclass
class WorkLoop:
    """Everything the loop needs, loaded before the clock starts (as a worker does at start)."""

    settings: Settings
    registry: ModelRegistry
    routing: RoutingRules
    clinical: ClinicalRules
    steps: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    @classmethod
    def load(cls, settings: Settings) -> WorkLoop:
        """Load the model registry, routing and clinical rules the workers use."""
        return cls(
            settings=settings,
            registry=app.load_model_registry(settings),
            routing=RoutingRules.load(settings.inference.routing_rules_file),
            clinical=load_clinical_rules(settings.validation.clinical_rules_file),
        )

    def run(self, arrivals: Sequence[ImageArrived]) -> Counter[str]:
        """Do the pipeline's work for ``arrivals``; count the outcomes (stored/rejected)."""
        trail = _AuditTrail(CheckpointPolicy.from_settings(self.settings.audit))
        outcomes: Counter[str] = Counter()
        pending: list[InferenceRequest] = []
        for event in arrivals:
            self._audit(trail, TopicKey.IMAGES_ARRIVED, event)
            validated = self._validate(event, trail, outcomes)
            if validated is None:
                continue
            pending.append(validated)
            if len(pending) >= self.settings.inference.batch_size:
                self._infer(pending, trail, outcomes)
                pending = []
        if pending:
            self._infer(pending, trail, outcomes)
        outcomes["audit_records"] = trail.records
        return outcomes

    def _audit(self, trail: _AuditTrail, topic: TopicKey, event: SourceEvent) -> None:
        started = time.perf_counter()
        trail.record(topic, event)
        self.steps["audit"] += time.perf_counter() - started

    def _validate(
        self, event: ImageArrived, trail: _AuditTrail, outcomes: Counter[str]
    ) -> InferenceRequest | None:
        limits = self.settings.validation
        started = time.perf_counter()
        data = read_image_bytes(
            resolve_image_uri(event.image_uri, self.settings.storage_roots), limits.max_file_bytes
        )
        read = time.perf_counter()
        outcome = validate(
            data,
            limits=limits,
            rules=self.clinical,
            declared_size=event.size_bytes,
            declared_sha256=event.sha256,
            model_ids=event.model_ids,
            event_modality=event.modality,
        )
        validated_at = time.perf_counter()
        self.steps["read"] += read - started
        self.steps["validate"] += validated_at - read
        if not isinstance(outcome, ValidationAccepted):
            rejected = ImageRejected(
                event_id=event.event_id,
                occurred_at=event.occurred_at,
                stage=Stage.VALIDATION,
                error_code=outcome.error_code,
                reason=outcome.reason,
                retryable=outcome.retryable,
                source=event.source,
            )
            self._audit(trail, TopicKey.IMAGES_REJECTED, rejected)
            outcomes["rejected"] += 1
            return None
        validated = validated_event(event, outcome)
        self._audit(trail, TopicKey.IMAGES_VALIDATED, validated)
        started = time.perf_counter()
        pixels = decode_pixels(
            data, validated.geometry, allow_raw_dicom=limits.allow_raw_dicom, limits=limits
        )
        self.steps["decode_for_inference"] += time.perf_counter() - started
        return InferenceRequest(event=validated, correlation_id=new_correlation_id(), pixels=pixels)

    def _infer(
        self, batch: list[InferenceRequest], trail: _AuditTrail, outcomes: Counter[str]
    ) -> None:
        started = time.perf_counter()
        inferred = infer_batch(batch, self.registry, self.routing)
        self.steps["preprocess_and_infer"] += time.perf_counter() - started
        for outcome in inferred:
            if outcome.result is not None:
                self._audit(trail, TopicKey.INFERENCE_RESULTS, outcome.result)
                outcomes["stored"] += 1
            else:
                self._audit(trail, TopicKey.IMAGES_REJECTED, outcome.rejection())
                outcomes["rejected"] += 1


def measure_work_limit(
    settings: Settings, items: Sequence[WorkItem], factory: ArrivalFactory, *, profile: bool = False
) -> tuple[dict[str, Any], Any]:
    """Images per second of :class:`WorkLoop` over ``items`` (after one untimed warm-up pass).

    Returns the measurement and, when ``profile`` is set, the pyinstrument session of a second,
    profiled pass (kept out of the timed one so the profiler's overhead is not in the number).
    """
    loop = WorkLoop.load(settings)
    distinct = {item.path: item for item in items}.values()
    loop.run([factory.fresh(item) for item in distinct])  # first runs allocate ONNX buffers
    arrivals = [factory.fresh(item) for item in items]
    loop.steps.clear()
    cpu_started, started = time.process_time(), time.perf_counter()
    outcomes = loop.run(arrivals)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    steps = {name: round(value, 3) for name, value in sorted(loop.steps.items())}
    session = None
    if profile:
        from pyinstrument import Profiler  # noqa: PLC0415 - only when profiling

        profiler = Profiler(interval=0.001)
        profiler.start()
        loop.run([factory.fresh(item) for item in items])
        session = profiler.stop()
    return (
        {
            "events": len(items),
            "seconds": round(seconds, 3),
            "images_per_second": round(len(items) / seconds, 2),
            "cpu_seconds_per_image": round(cpu_seconds / len(items), 5),
            "stored": outcomes["stored"],
            "rejected": outcomes["rejected"],
            "audit_records": outcomes["audit_records"],
            "seconds_by_step": steps,
        },
        session,
    )
