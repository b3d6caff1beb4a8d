"""Stat priority under a routine backlog, and completion-to-study-result latency.

One worker process (validation, inference, results and studies stages, Faust as in production)
on the real broker and a fresh database. The run:

1. publishes a routine backlog of ``--backlog`` CT phantom images (no lesion) at once, as
   studies of ``--study-size`` instances that declare their instance count;
2. while that backlog waits, publishes ``--stat`` single-image **stat** studies of the lesion
   phantom, one per ``--stat-interval`` seconds (they take the stat lane);
3. publishes ``--baseline`` of the same lesion studies marked **urgent** (they share the routine
   lane: what a stat image would wait without the lane);
4. waits until every study has its results and every lesion study its urgent finding.

Measured: arrival published → urgent finding committed (``urgent_findings.raised_at``; the
alert is published from the outbox right after the commit) for the stat and the baseline
studies, and study completion → study result (``study_results.aggregated_at`` minus the
study's ``completed_at``) for routine and stat studies. The worker runs in this process, so
publishing and measuring share its CPU; the machine may be shared: the report records the load.

Also reported: where each lesion study's time went (``stat_hops`` / ``baseline_hops``:
published → validated → inferred → finding raised) and how far ahead the stat lane is
(``routine_lane_over_stat_p50``). ``--stat`` is the sample size of the stat percentiles.

Run: ``python -m bench.bench_studies`` (``make bench`` runs it after the pipeline benchmark;
``make bench-studies`` alone); results go to ``bench/results/studies.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pydicom
from pydicom.uid import UID

import app
from bench.probe import delete_run_topics, latency_summary, outgoing_arrival
from bench.run_pipeline import fresh_database
from observability.logging import configure_logging
from schemas.events import ImageArrived, Priority, utc_now
from schemas.settings import SAMPLES_DIR, STATE_DIR, load_settings
from streams.kafka import KafkaClientConfig, KafkaPublisher
from streams.router import arrival_for_file
from streams.topics import TopicNames

RESULTS = Path(__file__).resolve().parent / "results" / "studies.json"
CLEAR = SAMPLES_DIR / "dicom" / "ct_phantom_clear.dcm"
LESION = SAMPLES_DIR / "dicom" / "ct_phantom_lesion.dcm"
UID_ROOT = "2.25"


def _uid() -> str:
    return f"{UID_ROOT}.{uuid.uuid4().int}"[:64]


def study_arrivals(
    template: Path, directory: Path, size: int, priority: Priority
) -> list[ImageArrived]:
    """One study of ``size`` copies of ``template`` with fresh UIDs, declaring its count.

    Validation takes the UIDs from the DICOM header, so each instance is a file of its own.
    """
    study, series = UID(_uid()), UID(_uid())
    dataset = pydicom.dcmread(template)
    events = []
    for _ in range(size):
        sop = UID(_uid())
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID = (
            study,
            series,
            sop,
        )
        dataset.file_meta.MediaStorageSOPInstanceUID = sop
        path = directory / f"{sop}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        event = arrival_for_file(path, source="bench", modality="CT")
        events.append(
            event.model_copy(update={"priority": priority, "expected_study_instances": size})
        )
    return events


async def wait_for(
    db: asyncpg.Connection, studies: Sequence[str], lesion: Sequence[str], within: float
) -> None:
    """Until every study has a study result and every lesion study an urgent finding."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        analysed = await db.fetchval(
            "SELECT count(DISTINCT study_instance_uid) FROM study_results"
            " WHERE study_instance_uid = ANY($1::text[])",
            list(studies),
        )
        urgent = await db.fetchval(
            "SELECT count(*) FROM urgent_findings WHERE study_instance_uid = ANY($1::text[])",
            list(lesion),
        )
        if analysed >= len(studies) and urgent >= len(lesion):
            return
        await asyncio.sleep(0.5)
    statuses = await db.fetch(
        "SELECT status, count(*) AS n FROM study_states GROUP BY status ORDER BY status"
    )
    seen = ", ".join(f"{r['status']}: {r['n']}" for r in statuses)
    raise TimeoutError(f"not every study analysed and alerted within {within:.0f} s ({seen})")


async def urgent_latencies(db: asyncpg.Connection, published: dict[str, float]) -> list[float]:
    """Seconds from publishing each lesion study's arrival to its urgent finding's commit."""
    rows = await db.fetch(
        "SELECT study_instance_uid, raised_at FROM urgent_findings"
        " WHERE study_instance_uid = ANY($1::text[])",
        list(published),
    )
    return [r["raised_at"].timestamp() - published[r["study_instance_uid"]] for r in rows]


async def hop_latencies(
    db: asyncpg.Connection, published: dict[str, float]
) -> dict[str, list[float]]:
    """Where each lesion study's time went: published → validated → inferred → finding raised.

    From the lifecycle's event times (``image_events.at``: the validator's and the model's own
    timestamps) and ``urgent_findings.raised_at``; shows which hop a lane waits in.
    """
    rows = await db.fetch(
        "SELECT f.study_instance_uid, f.raised_at,"
        " min(e.at) FILTER (WHERE e.state = 'validated') AS validated,"
        " min(e.at) FILTER (WHERE e.state = 'inferred') AS inferred"
        " FROM urgent_findings f JOIN study_instances i USING (study_instance_uid)"
        " JOIN image_events e ON e.event_id = i.event_id"
        " WHERE f.study_instance_uid = ANY($1::text[])"
        " GROUP BY f.study_instance_uid, f.raised_at",
        list(published),
    )
    hops: dict[str, list[float]] = {"to_validated": [], "to_inferred": [], "to_finding": []}
    for r in rows:
        if r["validated"] is None or r["inferred"] is None:
            continue
        start = published[r["study_instance_uid"]]
        hops["to_validated"].append(r["validated"].timestamp() - start)
        hops["to_inferred"].append((r["inferred"] - r["validated"]).total_seconds())
        hops["to_finding"].append((r["raised_at"] - r["inferred"]).total_seconds())
    return hops


async def result_latencies(db: asyncpg.Connection, studies: Sequence[str]) -> list[float]:
    """Seconds from each study's completion to each of its study results."""
    rows = await db.fetch(
        "SELECT r.aggregated_at, (s.state->>'completed_at')::timestamptz AS completed_at"
        " FROM study_results r JOIN study_states s USING (study_instance_uid)"
        " WHERE r.study_instance_uid = ANY($1::text[])",
        list(studies),
    )
    return [(r["aggregated_at"] - r["completed_at"]).total_seconds() for r in rows]


async def run(options: argparse.Namespace) -> dict[str, Any]:
    """The scenario of the module docstring; returns the report."""
    base = load_settings()
    run_id = uuid.uuid4().hex[:8]
    prefix = f"rsbench.studies.{run_id}."
    load_before = os.getloadavg()
    files = STATE_DIR / "bench-studies" / run_id
    files.mkdir(parents=True, exist_ok=True)
    async with fresh_database(base.database_url.get_secret_value(), f"studies_{run_id}") as url:
        settings = base.model_copy(
            update={
                "storage_roots": (*base.storage_roots, files),
                "topic_prefix": prefix,
                "consumer_group_prefix": f"rsbench-studies-{run_id}",
                "database_url": type(base.database_url)(url),
                # A result that never comes is listed as failed after this, not waited for.
                "studies": base.studies.model_copy(
                    update={"analysis_timeout_seconds": options.analysis_timeout}
                ),
            }
        )
        stop, started = asyncio.Event(), asyncio.Event()
        worker = asyncio.create_task(
            app.run_worker(
                settings,
                ("validation", "inference", "results", "studies"),
                stop,
                started=started,
                serve_http=False,
            )
        )
        await asyncio.wait_for(started.wait(), 120)
        routine = [
            study_arrivals(CLEAR, files, options.study_size, Priority.ROUTINE)
            for _ in range(options.backlog // options.study_size)
        ]
        stat_studies = [
            study_arrivals(LESION, files, 1, Priority.STAT) for _ in range(options.stat)
        ]
        baseline_studies = [
            study_arrivals(LESION, files, 1, Priority.URGENT) for _ in range(options.baseline)
        ]
        db = await asyncpg.connect(url)
        try:
            async with KafkaPublisher(
                KafkaClientConfig.from_settings(settings, client_id="rsbench"), TopicNames(prefix)
            ) as publisher:
                began = time.time()
                await publisher.deliver([outgoing_arrival(e) for s in routine for e in s])
                stat_published: dict[str, float] = {}
                for (event,) in stat_studies:
                    event = event.model_copy(update={"occurred_at": utc_now()})  # noqa: PLW2901
                    await publisher.deliver([outgoing_arrival(event)])
                    stat_published[event.study_instance_uid or ""] = time.time()
                    await asyncio.sleep(options.stat_interval)
                baseline_published: dict[str, float] = {}
                for (event,) in baseline_studies:
                    event = event.model_copy(update={"occurred_at": utc_now()})  # noqa: PLW2901
                    await publisher.deliver([outgoing_arrival(event)])
                    baseline_published[event.study_instance_uid or ""] = time.time()
            routine_uids = [s[0].study_instance_uid or "" for s in routine]
            lesion_uids = [*stat_published, *baseline_published]
            await wait_for(db, routine_uids + lesion_uids, lesion_uids, options.timeout)
            drained = time.time() - began
            stat = latency_summary(await urgent_latencies(db, stat_published))
            baseline = latency_summary(await urgent_latencies(db, baseline_published))
            report = {
                "scenario": {
                    "backlog_images": len(routine) * options.study_size,
                    "study_size": options.study_size,
                    "stat_studies": options.stat,
                    "baseline_studies": options.baseline,
                    "worker": "one process: validation, inference, results, studies (Faust)",
                },
                "stat_arrival_to_urgent_finding": stat,
                "baseline_routine_lane_arrival_to_urgent_finding": baseline,
                # How far ahead: the routine lane's p50 wait over the stat lane's.
                "routine_lane_over_stat_p50": round(
                    float(baseline["p50_ms"]) / max(float(stat["p50_ms"]), 1.0), 1
                ),
                "stat_hops": {
                    hop: latency_summary(values)
                    for hop, values in (await hop_latencies(db, stat_published)).items()
                },
                "baseline_hops": {
                    hop: latency_summary(values)
                    for hop, values in (await hop_latencies(db, baseline_published)).items()
                },
                "routine_completion_to_study_result": latency_summary(
                    await result_latencies(db, routine_uids)
                ),
                "stat_completion_to_study_result": latency_summary(
                    await result_latencies(db, list(stat_published))
                ),
                "backlog_drained_seconds": round(drained, 1),
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "cpus": os.cpu_count(),
            }
        finally:
            await db.close()
            stop.set()
            await asyncio.wait_for(worker, 120)
    await delete_run_topics(settings.kafka_bootstrap, prefix)
    shutil.rmtree(files, ignore_errors=True)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario and write ``bench/results/studies.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=1000)
    parser.add_argument("--study-size", type=int, default=50)
    parser.add_argument("--stat", type=int, default=10)
    parser.add_argument("--stat-interval", type=float, default=1.0)
    parser.add_argument("--baseline", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--analysis-timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args(argv)
    # The worker logs as in production (the configured level, on stderr), not structlog's
    # debug default: the report alone goes to stdout.
    configure_logging(load_settings().logging, stream=sys.stderr)
    report = asyncio.run(run(options))
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
