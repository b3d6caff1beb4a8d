"""A combined worker's step without Kafka, beside the single-decode loop (issue 18).

Issue 18 judges the pipeline's CPU per image — every process, the broker and PostgreSQL — against
the single-decode loop (:func:`bench.work_limit.measure_single_decode`). This splits that gap in
two: what a combined worker's own stage code costs, and what the rest (Kafka clients, Faust, the
sinks, the audit agent, the broker, PostgreSQL) adds. The step is the one a worker running
``--stages validation,inference`` wires (``app.build_validation_specs`` with the fused
inference stage and the pixel hand-off), driven through :func:`streams.pipeline.process_batch`
with the worker's metrics observer, in batches of the validation agent's size, each outcome
serialised to its wire bytes as the producer would. Loop and step run in one process, on the
same arrivals, the loop before and after the step (its two passes bracket any drift of the
machine).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.step_cost [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

import app
from bench.work_limit import WorkLoop
from bench.workload import ArrivalFactory, WorkItem, build_workload
from observability.logging import configure_logging
from observability.metrics import Metrics
from observability.stage_observer import MetricsObserver
from schemas.events import ImageArrived
from schemas.settings import SAMPLES_DIR, Settings, load_settings
from streams.kafka import Outgoing
from streams.pipeline import Incoming, StageHandler, StageObserver, process_batch
from streams.topics import TopicKey, TopicNames

# What the loop counts as stored or rejected, by the topic of the step's outcome.
_COUNTED = {TopicKey.INFERENCE_RESULTS: "stored", TopicKey.IMAGES_REJECTED: "rejected"}


@dataclass(frozen=True, slots=True)
class Step:
    """A combined worker's routine validation agent: its handler, batch size and observer."""

    handler: StageHandler
    batch_size: int
    observer: StageObserver


def build_step(settings: Settings) -> Step:
    """The step as a worker wires it: one metrics registry for the stages and the observer."""
    metrics = Metrics(CollectorRegistry(), process_collector=False)
    observer = MetricsObserver(metrics)
    handoff = app.build_pixel_handoff(settings, ("validation", "inference"))
    inference = app.build_inference_stage(settings, metrics, handoff=handoff)
    routine, _stat = app.build_validation_specs(
        settings,
        TopicNames(settings.topic_prefix),
        handoff=handoff,
        inference=inference,
        observer=observer,
    )
    return Step(routine.handler, routine.batch_size, observer)


def as_incoming(arrivals: Sequence[ImageArrived]) -> list[Incoming]:
    """Arrivals as the validation agent receives them: JSON bytes at consecutive offsets."""
    return [
        Incoming("images.arrived", 0, offset, event.message_key(), event.model_dump_json().encode())
        for offset, event in enumerate(arrivals)
    ]


async def run_step(step: Step, messages: Sequence[Incoming]) -> Counter[str]:
    """Every batch through ``process_batch``; outcomes serialised; counted as the loop counts."""
    outcomes: Counter[str] = Counter()

    async def deliver(batch: Sequence[Outgoing]) -> None:
        for message in batch:
            message.value_bytes()
            outcomes[_COUNTED.get(message.topic, message.topic.value)] += 1

    for start in range(0, len(messages), step.batch_size):
        batch = messages[start : start + step.batch_size]
        await process_batch(step.handler, batch, deliver, step.observer)
    return outcomes


def measure_step_cost(
    settings: Settings, items: Sequence[WorkItem], factory: ArrivalFactory
) -> dict[str, Any]:
    """CPU per image of the single-decode loop (two passes) and of the step, and their outcomes.

    Each is warmed up first on one arrival per distinct file (ONNX sessions, caches).
    """
    loop = WorkLoop.load(settings, single_decode=True)
    step = build_step(settings)
    warmup = list({item.path: item for item in items}.values())
    loop.run([factory.fresh(item) for item in warmup])
    asyncio.run(run_step(step, as_incoming([factory.fresh(i) for i in warmup])))

    def loop_pass() -> tuple[float, Counter[str]]:
        arrivals = [factory.fresh(item) for item in items]
        started = time.process_time()
        outcomes = loop.run(arrivals)
        return time.process_time() - started, outcomes

    def step_pass() -> tuple[float, Counter[str]]:
        messages = as_incoming([factory.fresh(item) for item in items])
        started = time.process_time()
        outcomes = asyncio.run(run_step(step, messages))
        return time.process_time() - started, outcomes

    before, loop_outcomes = loop_pass()
    step_seconds, step_outcomes = step_pass()
    after, _ = loop_pass()
    loop_seconds = (before + after) / 2
    return {
        "events": len(items),
        "loop_cpu_seconds_per_image": round(loop_seconds / len(items), 6),
        "loop_rounds_cpu_seconds_per_image": [
            round(before / len(items), 6),
            round(after / len(items), 6),
        ],
        "step_cpu_seconds_per_image": round(step_seconds / len(items), 6),
        "step_vs_loop": round(step_seconds / loop_seconds, 3),
        "loop_outcomes": {key: loop_outcomes[key] for key in ("stored", "rejected")},
        "step_outcomes": dict(sorted(step_outcomes.items())),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print; logs go to /dev/null (formatted as a worker's, then discarded)."""
    parser = argparse.ArgumentParser(prog="python -m bench.step_cost", description=__doc__)
    parser.add_argument("--events", type=int, default=1600, help="arrivals per pass")
    options = parser.parse_args(argv)
    settings = load_settings(storage_roots=(SAMPLES_DIR,))
    with open(os.devnull, "w", encoding="utf-8") as discard:
        configure_logging(settings.logging, stream=discard)
        result = measure_step_cost(settings, build_workload(options.events), ArrivalFactory())
    rounds = " / ".join(f"{s * 1000:.2f}" for s in result["loop_rounds_cpu_seconds_per_image"])
    print(f"arrivals per pass: {result['events']}")
    print(
        f"single-decode loop: {result['loop_cpu_seconds_per_image'] * 1000:.2f} ms CPU/image"
        f" (before / after the step: {rounds})"
    )
    print(
        f"combined step, no Kafka: {result['step_cpu_seconds_per_image'] * 1000:.2f} ms CPU/image"
    )
    print(f"step / loop: {result['step_vs_loop']:.3f}")
    print(f"outcomes: loop {result['loop_outcomes']}, step {result['step_outcomes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
