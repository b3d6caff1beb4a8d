"""Benchmark: results per second written by the results sink at several batch sizes vs COPY.

Run from the repository root against a running PostgreSQL (a throwaway database is created and
dropped; nothing else is touched)::

    PYTHONPATH=. .venv/bin/python bench/bench_sink.py [--rows 20000] [--url postgresql://...]

Measured, each on an emptied table, with events built before the clock starts:

- ``upsert``: ``ResultsRepository.upsert_results`` in one transaction per batch (results only);
- ``sink``: ``ResultsSink`` add + ``flush`` (results + 2 lifecycle rows each, one transaction);
- ``copy``: asyncpg ``copy_records_to_table`` of the same result rows (the ceiling), and
  ``copy+lifecycle`` of the same rows the sink writes.

Each measurement is the best of ``--repeat`` runs. Writes ``bench/results/sink.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.sink_events import make_result
from schemas.events import InferenceCompleted
from schemas.settings import DEFAULT_DATABASE_URL, SinkSettings
from sinks.database import Database
from sinks.migrate import upgrade_async
from sinks.provisioning import create_database, drop_database, url_for_database
from sinks.records import LifecycleEntry
from sinks.repositories import ResultsRepository, result_row
from sinks.results_sink import ResultsSink

RESULT_COLUMNS = list(result_row(make_result()).keys())
LIFECYCLE_COLUMNS = ["event_id", "state", "at", "stage", "model_name", "model_version"]


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _copy_record(result: InferenceCompleted) -> tuple[Any, ...]:
    row = result_row(result)
    for key in ("verdicts", "thresholds", "scores"):
        row[key] = json.dumps(row[key])  # asyncpg's COPY takes JSONB as text
    return tuple(row[column] for column in RESULT_COLUMNS)


def _lifecycle_records(result: InferenceCompleted, now: datetime) -> list[tuple[Any, ...]]:
    records = []
    for entry in (LifecycleEntry.inferred(result), LifecycleEntry.stored(result, now)):
        row = entry.model_dump()
        row["state"] = entry.state.value
        records.append(tuple(row[column] for column in LIFECYCLE_COLUMNS))
    return records


async def _truncate(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("TRUNCATE inference_results, image_events")
    finally:
        await connection.close()


async def _time_batches(
    database: Database, mode: str, results: list[InferenceCompleted], batch_size: int
) -> float:
    sink = ResultsSink(database.sessions, SinkSettings())
    started = time.perf_counter()
    for start in range(0, len(results), batch_size):
        batch = results[start : start + batch_size]
        if mode == "sink":
            for result in batch:
                sink.add(result)
            await sink.flush()
        else:
            async with database.sessions() as session, session.begin():
                await ResultsRepository.upsert_results(session, batch)
    return time.perf_counter() - started


async def _time_copy(url: str, results: list[InferenceCompleted], lifecycle: bool) -> float:
    connection = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        async with connection.transaction():
            await connection.copy_records_to_table(
                "inference_results",
                records=[_copy_record(r) for r in results],
                columns=RESULT_COLUMNS,
            )
            if lifecycle:
                now = datetime.now(UTC)
                records = [rec for r in results for rec in _lifecycle_records(r, now)]
                await connection.copy_records_to_table(
                    "image_events", records=records, columns=LIFECYCLE_COLUMNS
                )
        return time.perf_counter() - started
    finally:
        await connection.close()


async def run(
    url: str, rows: int, batch_sizes: list[int], small_batch_rows: int, repeat: int
) -> dict[str, Any]:
    """Create a throwaway database, measure every mode, drop it, return the numbers."""
    name = f"radstream_bench_{uuid.uuid4().hex[:10]}"
    await create_database(url, name)
    bench_url = url_for_database(url, name)
    try:
        await upgrade_async(bench_url)
        database = Database(bench_url, pool_size=2)
        measurements: list[dict[str, Any]] = []
        try:
            for mode in ("upsert", "sink"):
                for batch_size in batch_sizes:
                    # Batches of 1 are slow by nature; a smaller sample keeps the run short.
                    count = rows if batch_size >= 10 else min(rows, small_batch_rows)
                    results = [make_result(user=f"u{i % 97}", index=i) for i in range(count)]
                    timings = []
                    for _ in range(repeat):
                        await _truncate(bench_url)
                        timings.append(await _time_batches(database, mode, results, batch_size))
                    seconds = min(timings)  # best of N: the machine is shared, noise only adds
                    measurements.append(
                        {
                            "mode": mode,
                            "batch_size": batch_size,
                            "results": count,
                            "seconds": round(seconds, 4),
                            "results_per_second": round(count / seconds),
                        }
                    )
                    print(f"{mode:>15} batch {batch_size:>5}: {count / seconds:>10,.0f} results/s")
        finally:
            await database.dispose()
        results = [make_result(user=f"u{i % 97}", index=i) for i in range(rows)]
        for mode, lifecycle in (("copy", False), ("copy+lifecycle", True)):
            timings = []
            for _ in range(repeat):
                await _truncate(bench_url)
                timings.append(await _time_copy(bench_url, results, lifecycle))
            seconds = min(timings)
            measurements.append(
                {
                    "mode": mode,
                    "batch_size": rows,
                    "results": rows,
                    "seconds": round(seconds, 4),
                    "results_per_second": round(rows / seconds),
                }
            )
            print(f"{mode:>15} all {rows}: {rows / seconds:>10,.0f} results/s")
    finally:
        await drop_database(url, name)

    def best(mode: str) -> dict[str, Any]:
        return max(
            (m for m in measurements if m["mode"] == mode), key=lambda m: m["results_per_second"]
        )

    copy = best("copy")["results_per_second"]
    copy_lifecycle = best("copy+lifecycle")["results_per_second"]
    return {
        "benchmark": "results sink vs COPY",
        "command": "PYTHONPATH=. python " + " ".join(sys.argv),
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "server": "PostgreSQL on 127.0.0.1 (fsync on, synchronous_commit on)",
        "rows": rows,
        "repeat": repeat,
        "measurements": measurements,
        "closest_to_copy": {
            "upsert_batch_size": best("upsert")["batch_size"],
            "upsert_fraction_of_copy": round(best("upsert")["results_per_second"] / copy, 3),
            "sink_batch_size": best("sink")["batch_size"],
            "sink_fraction_of_copy_with_lifecycle": round(
                best("sink")["results_per_second"] / copy_lifecycle, 3
            ),
        },
    }


def main() -> None:
    """Parse arguments, run the benchmark, write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("RADSTREAM_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--small-batch-rows", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N per measurement")
    parser.add_argument("--batch-sizes", default="1,10,100,500,2000")
    parser.add_argument("--output", type=Path, default=Path("bench/results/sink.json"))
    args = parser.parse_args()
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    url = args.url.replace("+asyncpg", "")
    report = asyncio.run(run(url, args.rows, sizes, args.small_batch_rows, args.repeat))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["closest_to_copy"], indent=2))


if __name__ == "__main__":
    main()
