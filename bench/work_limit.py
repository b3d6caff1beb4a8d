"""The work limit: the pipeline's work done by the pure functions in one plain loop.

Per arrival: read the bytes (``streams.validation``), validate them, decode the pixels again
for inference (as the inference stage does: the validator does not hand pixels on), infer in
micro-batches of ``inference.batch_size`` (``streams.inference``), and append an audit record
for every event the pipeline audits (arrival, validated or rejected, result or rejection) to a
hash chain with a signed checkpoint every ``audit.checkpoint_every_records`` records
(``streams.audit``). No Kafka, no database, no event loop, no threads: images per second here
is what one core can do, the ceiling the pipeline's per-process throughput is judged against.

:func:`measure_single_decode` is the physical limit of issue 18: only the necessary work — read
once, decode once (``validate_and_decode``: the validator's decode is the inference input),
preprocess and infer on those pixels, the one hash the validator computes, one audit record per
message — as one loop, or split over several processes (one loop per core).
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from numpy.typing import NDArray

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
    validate_and_decode,
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
    # Decode once: the validator's own decode is the inference input (no decode_for_inference).
    single_decode: bool = False

    @classmethod
    def load(cls, settings: Settings, *, single_decode: bool = False) -> WorkLoop:
        """Load the model registry, routing and clinical rules the workers use."""
        return cls(
            settings=settings,
            registry=app.load_model_registry(settings),
            routing=RoutingRules.load(settings.inference.routing_rules_file),
            clinical=load_clinical_rules(settings.validation.clinical_rules_file),
            single_decode=single_decode,
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
        checks: dict[str, Any] = {
            "limits": limits,
            "rules": self.clinical,
            "declared_size": event.size_bytes,
            "declared_sha256": event.sha256,
            "model_ids": event.model_ids,
            "event_modality": event.modality,
        }
        handed: NDArray[np.float32] | None = None
        if self.single_decode:
            outcome, handed = validate_and_decode(data, **checks)
        else:
            outcome = validate(data, **checks)
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
        if handed is not None:
            return InferenceRequest(
                event=validated, correlation_id=new_correlation_id(), pixels=handed
            )
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


def _timed_run(
    settings: Settings,
    items: Sequence[WorkItem],
    warmup: Sequence[WorkItem],
    factory: ArrivalFactory,
    start: Any = None,
) -> dict[str, Any]:
    """One single-decode loop over ``items`` after an untimed pass over ``warmup``.

    ``start`` (a barrier) makes the timed passes of several processes begin together.
    """
    loop = WorkLoop.load(settings, single_decode=True)
    loop.run([factory.fresh(item) for item in warmup])  # first runs allocate ONNX buffers
    arrivals = [factory.fresh(item) for item in items]
    loop.steps.clear()
    if start is not None:
        start.wait()
    cpu_started, started = time.process_time(), time.perf_counter()
    outcomes = loop.run(arrivals)
    return {
        "events": len(items),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "stored": outcomes["stored"],
        "rejected": outcomes["rejected"],
        "audit_records": outcomes["audit_records"],
        "steps": dict(loop.steps),
    }


def _run_in_child(
    *,
    settings: Settings,
    items: Sequence[WorkItem],
    warmup: Sequence[WorkItem],
    factory: ArrivalFactory,
    start: Any,
    results: Any,
    index: int,
) -> None:
    """A spawned process's share: its measurement goes back through ``results``."""
    results.put((index, _timed_run(settings, items, warmup, factory, start)))


# Bounded: a process that dies without reporting must not hang the benchmark.
CHILD_TIMEOUT_SECONDS = 600.0
CHILD_EXIT_SECONDS = 30.0


def measure_single_decode(
    settings: Settings,
    items: Sequence[WorkItem],
    factory: ArrivalFactory,
    *,
    processes: int = 1,
    profile: bool = False,
) -> tuple[dict[str, Any], Any]:
    """Images per second of the decode-once loop, in one process or split over ``processes``.

    With several processes (``multiprocessing`` spawn), ``items`` is split into contiguous
    shares, each process warms up on every distinct file and then runs its share, all timed
    passes starting together; the throughput is all images over the slower process's wall time,
    CPU per image is both processes' CPU over all images. Returns the measurement (the keys of
    :func:`measure_work_limit`, plus ``processes``) and, with ``profile`` in one process, the
    pyinstrument session of a second, profiled pass.

    Raises:
        ValueError: ``processes`` below 1, or ``profile`` with more than one process.
        RuntimeError: a process did not report within :data:`CHILD_TIMEOUT_SECONDS`.
    """
    if processes < 1:
        raise ValueError("processes must be at least 1")
    if profile and processes > 1:
        raise ValueError("profiling covers one process only")
    warmup = list({item.path: item for item in items}.values())
    if processes == 1:
        runs = [_timed_run(settings, items, warmup, factory)]
    else:
        runs = _spawned_runs(settings, items, warmup, factory, processes)
    session = None
    if profile:
        from pyinstrument import Profiler  # noqa: PLC0415 - only when profiling

        loop = WorkLoop.load(settings, single_decode=True)
        profiler = Profiler(interval=0.001)
        profiler.start()
        loop.run([factory.fresh(item) for item in items])
        session = profiler.stop()
    seconds = max(run["seconds"] for run in runs)
    steps: defaultdict[str, float] = defaultdict(float)
    for run in runs:
        for name, value in run["steps"].items():
            steps[name] += value
    return (
        {
            "events": len(items),
            "processes": processes,
            "seconds": round(seconds, 3),
            "images_per_second": round(len(items) / seconds, 2),
            "cpu_seconds_per_image": round(sum(r["cpu_seconds"] for r in runs) / len(items), 5),
            "stored": sum(run["stored"] for run in runs),
            "rejected": sum(run["rejected"] for run in runs),
            "audit_records": sum(run["audit_records"] for run in runs),
            "seconds_by_step": {name: round(value, 3) for name, value in sorted(steps.items())},
        },
        session,
    )


def _spawned_runs(
    settings: Settings,
    items: Sequence[WorkItem],
    warmup: Sequence[WorkItem],
    factory: ArrivalFactory,
    processes: int,
) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes, timeout=CHILD_TIMEOUT_SECONDS)
    results = context.Queue()
    size = -(-len(items) // processes)
    shares = [list(items[i * size : (i + 1) * size]) for i in range(processes)]
    children = [
        context.Process(
            target=_run_in_child,
            kwargs={
                "settings": settings,
                "items": share,
                "warmup": warmup,
                "factory": factory,
                "start": start,
                "results": results,
                "index": index,
            },
            daemon=True,
        )
        for index, share in enumerate(shares)
    ]
    for child in children:
        child.start()
    try:
        reported = dict(results.get(timeout=CHILD_TIMEOUT_SECONDS) for _ in children)
    except queue.Empty as exc:  # a process died (its traceback is on stderr) or hung
        raise RuntimeError("a single-decode process did not report in time") from exc
    finally:
        for child in children:
            child.join(timeout=CHILD_EXIT_SECONDS)
            if child.is_alive():
                child.kill()
    return [reported[index] for index in range(processes)]
