"""End-to-end benchmark (``make bench``): throughput and latency against the cost of the work.

With the broker and PostgreSQL the project starts (``make services-up``), one command::

    PYTHONPATH=. .venv/bin/python -m bench.run_pipeline [--events 1600] [--smoke]

1. builds a workload of ``--events`` arrivals over the CT/MR samples plus ~5% bad inputs
   (:mod:`bench.workload`);
2. measures the **work limit**: the same work in one plain loop, no Kafka, no database
   (:mod:`bench.work_limit`);
3. runs the **pipeline** as users run it, one ``radstream worker --stages <stage>`` process per
   stage, at saturation (all arrivals published at once) and at half the saturation rate;
4. runs the **aiokafka baseline** (:mod:`bench.aiokafka_baseline`) at saturation;
5. optionally profiles the pipeline's workers and the work loop with pyinstrument;
6. prints one table and writes ``bench/results/pipeline-<date>.json`` and ``latest.json``.

Each run uses its own topic prefix, consumer groups, audit key and a fresh database
``radstream_bench_<id>`` (migrated, dropped at the end). ``--smoke`` is a 12-event run without
the half-rate phase and profiling, writing ``smoke-*.json`` instead, to check the bench works.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.bench_inference import cpu_model
from bench.cpu import CpuMeter, listening_pid
from bench.probe import Probe, Published, delete_run_topics, publish_all, publish_paced
from bench.workers import (
    LAYOUTS,
    REPO_ROOT,
    START_SIGNAL,
    STOP_SIGNAL,
    RunSettings,
    dead_workers,
    roles_for,
    signal_workers,
    start_workers,
    stop_workers,
)
from bench.workload import ArrivalFactory, WorkItem, build_workload, mix_of, warmup_items

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Arrivals per phase. Long enough that a phase measures the steady state: with 400, the
# saturation phase lasted under 4 s on a 2-core Xeon host, and the consumers' start and the
# last batches' drain weighed in the result (the same code: 105 images/s over 400 arrivals,
# 145 over 1,600, in consecutive runs; bench/README.md).
DEFAULT_EVENTS = 1600
SMOKE_EVENTS = 12
# Which phase the profiled run samples (--profile-phase).
PROFILE_PHASES: tuple[str, ...] = ("saturation", "half-rate")
STARTUP_TIMEOUT_SECONDS = 180.0
SHORT = {
    "validation": "validate",
    "inference": "infer",
    "inference.2": "infer.2",
    "validate+infer": "v+i",
    "validate+infer.2": "v+i.2",
    "bench_driver": "driver",
}


@dataclass(frozen=True)
class Options:
    """What one benchmark run does."""

    events: int
    bad_share: float
    seed: int
    half_rate: bool
    profile: bool
    smoke: bool
    bootstrap: str
    admin_database_url: str
    output_dir: Path
    phase_timeout: float
    idle_seconds: float
    settle_seconds: float
    inference_processes: int | None
    layout: str = "co-located"
    profile_phase: str = "saturation"


def parse_args(argv: Sequence[str] | None) -> Options:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=None, help=f"arrivals per phase ({DEFAULT_EVENTS})"
    )
    parser.add_argument("--bad-share", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--smoke", action="store_true", help="12 events, no half rate/profile")
    parser.add_argument("--no-half-rate", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--profile-phase",
        choices=PROFILE_PHASES,
        default="saturation",
        help="the phase the profiled run samples: saturation shows the work, half-rate the "
        "cost of each message when batches are small",
    )
    parser.add_argument(
        "--bootstrap", default=os.environ.get("RADSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "RADSTREAM_DATABASE_URL", "postgresql://radstream@127.0.0.1:5432/radstream"
        ),
        help="server on which radstream_bench_<id> is created (the role needs CREATEDB)",
    )
    parser.add_argument(
        "--inference-processes",
        type=int,
        default=None,
        help="processes running inference (co-located: validation+inference, default 2; "
        "per-stage: inference only, default 1)",
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="co-located",
        help="co-located: validation and inference in each of the inference processes "
        "(decode once); per-stage: one process per stage (bench/README.md, Layout)",
    )
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--phase-timeout", type=float, default=300.0, help="seconds per phase")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=10.0,
        help="wait after the warm-up before the idle window and the phases (measured apart)",
    )
    args = parser.parse_args(argv)
    events = args.events or (SMOKE_EVENTS if args.smoke else DEFAULT_EVENTS)
    profile = not (args.smoke or args.no_profile)
    if profile and importlib.util.find_spec("pyinstrument") is None:
        print("pyinstrument is not installed: running without profiles (pip install pyinstrument)")
        profile = False
    return Options(
        events=events,
        bad_share=args.bad_share,
        seed=args.seed,
        half_rate=not (args.smoke or args.no_half_rate),
        profile=profile,
        smoke=args.smoke,
        bootstrap=args.bootstrap,
        admin_database_url=args.database_url.replace("+asyncpg", ""),
        output_dir=args.output_dir,
        phase_timeout=args.phase_timeout,
        idle_seconds=1.0 if args.smoke else 5.0,
        settle_seconds=0.0 if args.smoke else args.settle_seconds,
        inference_processes=args.inference_processes,
        layout=args.layout,
        profile_phase=args.profile_phase,
    )


# ------------------------------------------------------------------------------------ machine
def memory_mb() -> int | None:
    """Total memory in MiB from /proc/meminfo."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def versions() -> dict[str, str]:
    """Versions of the libraries whose cost the benchmark measures."""
    found = {"python": platform.python_version()}
    for name in (
        "faust-streaming",
        "aiokafka",
        "onnxruntime",
        "numpy",
        "pydantic",
        "sqlalchemy",
        "asyncpg",
        "pyinstrument",
    ):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, Any]:
    """The machine the numbers come from (shared: the load average says how busy it was)."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_mb": memory_mb(),
        "platform": platform.platform(),
        "versions": versions(),
        "loadavg_1min_before": round(os.getloadavg()[0], 2),
    }


# ------------------------------------------------------------------------------------ phases
def port_of(url: str, default: int) -> int:
    """The port of ``host:port`` or of a URL's network location."""
    netloc = urlsplit(url if "//" in url else f"//{url}").netloc
    host_port = netloc.rsplit("@", 1)[-1]
    _, sep, port = host_port.rpartition(":")
    return int(port) if sep and port.isdigit() else default


def service_pids(options: Options) -> tuple[dict[str, int], dict[str, int]]:
    """The broker's pid and the postmaster's (a process group), found by their ports."""
    pids: dict[str, int] = {}
    groups: dict[str, int] = {}
    broker = listening_pid(port_of(options.bootstrap.split(",")[0], 9092))
    if broker is not None:
        pids["broker"] = broker
    postmaster = listening_pid(port_of(options.admin_database_url, 5432))
    if postmaster is not None:
        groups["postgres"] = postmaster
    return pids, groups


def count_lines(path: Path) -> int:
    """Lines in ``path`` (0 when it does not exist yet)."""
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


async def measure_phase(
    probe: Probe,
    publish: Callable[[], Awaitable[Published]],
    *,
    meter: CpuMeter,
    within: float,
    alive: Callable[[], bool],
    checkpoint_file: Path,
    group_prefix: str,
) -> dict[str, Any]:
    """Publish, wait until done, and summarise throughput, latency and CPU per image."""
    messages_before = await probe.kafka_messages(group_prefix)
    audited_before = await probe.audited_messages()
    audit_offset_before = await probe.audit_end_offset()
    checkpoints_before = count_lines(checkpoint_file)
    meter.start()
    published = await publish()
    done_at = await probe.wait_done(published.event_ids, within, alive=alive)
    cpu = meter.stop()
    records = await probe.audited_messages() - audited_before
    checkpoints = count_lines(checkpoint_file) - checkpoints_before
    audit_offsets = await probe.audit_end_offset() - audit_offset_before
    messages_after = await probe.kafka_messages(group_prefix)
    events = len(published.event_ids)
    outcome = await probe.outcomes(published.event_ids)
    seconds = done_at - published.started_at
    last_row = outcome["last_row_at"]
    return {
        "events": events,
        "seconds": round(seconds, 3),
        "images_per_second": round(events / seconds, 2),
        "publish_seconds": round(published.finished_at - published.started_at, 3),
        "database_seconds": round(last_row - published.started_at, 3) if last_row else None,
        "finished_by_state": outcome["by_state"],
        "result_rows": outcome["result_rows"],
        "latency_occurred_to_stored": outcome["latency"],
        "latency_by_hop": outcome["latency_by_hop"],
        "audit": {
            "records": records,
            "checkpoints": checkpoints,
            # Each committed transaction leaves one commit marker on the audit partition.
            "transactions": audit_offsets - records - checkpoints,
        },
        "kafka_messages_per_image": messages_per_image(messages_before, messages_after, events),
        "cpu_seconds": cpu,
        "cpu_seconds_per_image": {
            role: (round(value / events, 5) if value is not None else None)
            for role, value in cpu.items()
        },
    }


def messages_per_image(
    before: dict[str, int], after: dict[str, int], events: int
) -> dict[str, float]:
    """Kafka offsets the phase used per image, by topic (records, and the transaction markers
    on ``audit.log``), ``offset_commits`` (upper bound, see ``Probe.kafka_messages``) and the
    ``total``; topics the phase did not touch are left out."""
    used = {name: after[name] - before.get(name, 0) for name in after}
    per_image = {name: round(count / events, 3) for name, count in used.items() if count > 0}
    per_image["total"] = round(sum(used.values()) / events, 3)
    return per_image


def paced_rate(saturation_images_per_second: float, given: float | None) -> float:
    """The half-rate phase's pace: ``given``, else half the saturation throughput."""
    return given if given is not None else saturation_images_per_second / 2


async def run_workers(
    kind: str,
    options: Options,
    run: RunSettings,
    items: Sequence[WorkItem],
    factory: ArrivalFactory,
    *,
    half_rate: bool,
    log_dir: Path,
    profile_dir: Path | None = None,
    half_rate_at: float | None = None,
) -> dict[str, Any]:
    """Start the workers of ``kind``, warm them up, measure saturation (and half rate), stop.

    The half-rate phase paces arrivals at ``half_rate_at`` images/s when given (the baseline
    runs at the pipeline's rate, so the two are compared under one load), else at half this
    set's own saturation throughput.
    """
    from streams.kafka import KafkaClientConfig, KafkaPublisher, ensure_topics  # noqa: PLC0415
    from streams.topics import TopicNames  # noqa: PLC0415

    kafka = KafkaClientConfig(run.bootstrap, client_id="bench")
    await ensure_topics(kafka, run.topic_prefix)
    roles = roles_for(options.inference_processes, options.layout)
    probe = Probe(run.bootstrap, run.database_url, run.topic_prefix, run.audit_group)
    publisher = KafkaPublisher(kafka, TopicNames(run.topic_prefix))
    phases: dict[str, Any] = {}
    pids, groups = service_pids(options)
    # Nothing between starting the workers and the try below may raise: the finally stops them.
    workers = start_workers(kind, run, log_dir, roles=roles, profile_dir=profile_dir)
    pids |= {w.role: w.pid for w in workers} | {"bench_driver": os.getpid()}

    def alive() -> bool:
        return not dead_workers(workers)

    try:
        await probe.start()
        await publisher.start()
        started = time.monotonic()
        # Warm-up: one arrival per distinct file. Done = every consumer joined its group, the
        # models ran once and the pools are open; none of it is in the measured phases.
        warm = await publish_all(publisher, factory, warmup_items(items))
        await probe.wait_done(warm.event_ids, STARTUP_TIMEOUT_SECONDS, alive=alive)
        phases["startup_and_warmup_seconds"] = round(time.monotonic() - started, 2)
        # Start-up leaves work behind the warm-up's last stored row (bench/README.md, "Settle"):
        # measured, but kept out of the idle window and the phases.
        phases["settling_cpu_share_of_core"] = await measure_idle(
            CpuMeter(pids, groups), options.settle_seconds
        )
        phases["idle_cpu_share_of_core"] = await measure_idle(
            CpuMeter(pids, groups), options.idle_seconds
        )
        profiling = profile_dir is not None
        if profiling and options.profile_phase == "saturation":
            signal_workers(workers, START_SIGNAL)
        phases["saturation"] = await measure_phase(
            probe,
            lambda: publish_all(publisher, factory, items),
            meter=CpuMeter(pids, groups),
            within=options.phase_timeout,
            alive=alive,
            checkpoint_file=run.checkpoint_file,
            group_prefix=run.group_prefix,
        )
        if profiling and options.profile_phase == "saturation":
            signal_workers(workers, STOP_SIGNAL)
        if half_rate:
            rate = paced_rate(phases["saturation"]["images_per_second"], half_rate_at)
            if profiling:
                signal_workers(workers, START_SIGNAL)
            phases["half_rate"] = await measure_phase(
                probe,
                lambda: publish_paced(publisher, factory, items, rate),
                meter=CpuMeter(pids, groups),
                within=options.phase_timeout,
                alive=alive,
                checkpoint_file=run.checkpoint_file,
                group_prefix=run.group_prefix,
            )
            phases["half_rate"]["target_rate"] = round(rate, 2)
            if profiling:
                signal_workers(workers, STOP_SIGNAL)
        phases["audit_topic_end_offset"] = await probe.audit_end_offset()
    except (TimeoutError, RuntimeError) as exc:
        tails = "\n".join(f"--- {w.role} ({w.log_path})\n{w.tail()}" for w in workers)
        raise RuntimeError(f"{kind} run failed: {exc}\n{tails}") from exc
    finally:
        await publisher.stop()
        await probe.close()
        phases["exit_codes"] = stop_workers(workers)
        phases["topics_deleted"] = await delete_run_topics(run.bootstrap, run.topic_prefix)
    return phases


async def measure_idle(meter: CpuMeter, seconds: float) -> dict[str, float | None]:
    """Share of one core each process uses while nothing arrives (polling, heartbeats)."""
    if seconds <= 0:
        return {}
    meter.start()
    await asyncio.sleep(seconds)
    spent = meter.stop()
    return {role: (round(v / seconds, 3) if v is not None else None) for role, v in spent.items()}


def read_profiles(profile_dir: Path, roles: Sequence[str]) -> dict[str, Any]:
    """The per-worker summaries ``bench.profiled`` wrote."""
    found = {}
    for role in roles:
        path = profile_dir / f"{role}.json"
        if path.exists():
            found[role] = json.loads(path.read_text())
    return found


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str, suffix: str) -> AsyncIterator[str]:
    """``radstream_bench_<suffix>``: created, migrated to head, dropped on the way out."""
    from sinks.migrate import upgrade_async  # noqa: PLC0415
    from sinks.provisioning import (  # noqa: PLC0415
        create_database,
        drop_database,
        url_for_database,
    )

    name = f"radstream_bench_{suffix}"
    await create_database(admin_url, name)
    try:
        url = url_for_database(admin_url, name)
        await upgrade_async(url)
        yield url
    finally:
        await drop_database(admin_url, name)


async def run_benchmark(options: Options) -> dict[str, Any]:
    """Every measurement of one run, as the JSON report."""
    from bench.work_limit import measure_work_limit  # noqa: PLC0415
    from schemas.settings import load_settings  # noqa: PLC0415

    run_id = uuid.uuid4().hex[:8]
    report: dict[str, Any] = {
        "benchmark": "radstream end to end",
        "command": "python -m bench.run_pipeline " + " ".join(sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run_id,
        "machine": machine(),
    }
    items = build_workload(options.events, bad_share=options.bad_share, seed=options.seed)
    report["workload"] = {
        "events": len(items),
        "layout": options.layout,
        "roles": roles_for(options.inference_processes, options.layout),
        "inference_processes": options.inference_processes,
        "bad_events": sum(item.bad for item in items),
        "seed": options.seed,
        "mix": mix_of(items),
    }
    factory = ArrivalFactory()
    work_settings = load_settings(storage_roots=(REPO_ROOT / "samples",))
    profiles_dir = options.output_dir / "profiles"
    work_limit, session = measure_work_limit(work_settings, items, factory, profile=options.profile)
    report["work_limit"] = work_limit
    if session is not None:
        from bench.profiling import summarise, text_report  # noqa: PLC0415 - optional package

        profiles_dir.mkdir(parents=True, exist_ok=True)
        (profiles_dir / "work_limit.txt").write_text(text_report(session))
        report["profile"] = {"work_limit": summarise(session)}
    report["single_decode"] = measure_single_decode_rows(work_settings, items, factory)

    with tempfile.TemporaryDirectory(prefix="radstream-bench-") as tmp:
        log_dir = Path(tmp)

        async def run_kind(
            kind: str,
            label: str,
            *,
            half_rate: bool,
            profile_dir: Path | None = None,
            half_rate_at: float | None = None,
        ) -> dict[str, Any]:
            # One database per set of workers: each set writes its own audit chain 0, and the
            # audit sink refuses a second chain 0 in one audit_log table.
            async with fresh_database(options.admin_database_url, f"{run_id}_{label}") as url:
                state = log_dir / label
                state.mkdir()
                run = RunSettings(
                    bootstrap=options.bootstrap,
                    database_url=url,
                    topic_prefix=f"rsbench.{run_id}.{label}.",
                    group_prefix=f"rsbench-{run_id}-{label}",
                    state_dir=state,
                )
                return await run_workers(
                    kind,
                    options,
                    run,
                    items,
                    factory,
                    half_rate=half_rate,
                    log_dir=log_dir,
                    profile_dir=profile_dir,
                    half_rate_at=half_rate_at,
                )

        report["pipeline"] = await run_kind("pipeline", "pipeline", half_rate=options.half_rate)
        # The baseline at half rate too, at the pipeline's pace: whether the tail at normal
        # load is Faust's or the per-message cost of the hops themselves (bench/README.md,
        # "Where the half-rate tail comes from").
        pipeline_half = report["pipeline"].get("half_rate")
        report["aiokafka_baseline"] = await run_kind(
            "baseline",
            "baseline",
            half_rate=options.half_rate,
            half_rate_at=pipeline_half["target_rate"] if pipeline_half else None,
        )
        if options.profile:
            phase = options.profile_phase
            profiled = await run_kind(
                "pipeline", "profiled", half_rate=phase == "half-rate", profile_dir=profiles_dir
            )
            report["profile"]["pipeline_workers"] = {
                "phase": phase,
                "images_per_second_under_profiler": profiled[phase.replace("-", "_")][
                    "images_per_second"
                ],
                "stages": read_profiles(
                    profiles_dir, roles_for(options.inference_processes, options.layout)
                ),
            }
    # The work loop again, after the workers: the machine is shared, and the two rounds show
    # how much its load moved during the run. The headline is their mean.
    after, _ = measure_work_limit(work_settings, items, factory)
    report["work_limit"] = combine_rounds(work_limit, after)
    report["machine"]["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
    report["throughputs"] = throughputs(report)
    report["ratios"] = ratios(report)
    report["targets"] = targets(report)
    return report


def measure_single_decode_rows(
    settings: Any, items: Sequence[WorkItem], factory: ArrivalFactory
) -> dict[str, Any]:
    """The physical limit of issue 18: the decode-once loop in one process and in two (the
    machine's ceiling), measured in the same run as the pipeline."""
    from bench.work_limit import measure_single_decode  # noqa: PLC0415

    rows: dict[str, Any] = {}
    for processes in (1, 2):
        measured, _ = measure_single_decode(settings, items, factory, processes=processes)
        rows[f"processes_{processes}"] = measured
    return rows


# ------------------------------------------------------------------------------------ output
def combine_rounds(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The work limit measured before and after the worker runs: mean rate, both rounds."""
    rates = [before["images_per_second"], after["images_per_second"]]
    cpu = [before["cpu_seconds_per_image"], after["cpu_seconds_per_image"]]
    return before | {
        "images_per_second": round(sum(rates) / 2, 2),
        "cpu_seconds_per_image": round(sum(cpu) / 2, 5),
        "seconds": round(before["seconds"] + after["seconds"], 3),
        "events": before["events"] + after["events"],
        "rounds": [before, after],
    }


def throughputs(report: dict[str, Any]) -> dict[str, float]:
    """The three headline throughputs (images per second)."""
    return {
        "work_limit": report["work_limit"]["images_per_second"],
        "pipeline": report["pipeline"]["saturation"]["images_per_second"],
        "aiokafka_baseline": report["aiokafka_baseline"]["saturation"]["images_per_second"],
    }


def total_cpu_per_image(phase: dict[str, Any]) -> float:
    """CPU seconds per image of the workers, the broker and PostgreSQL (not the bench driver,
    which plays the router and polls for completion)."""
    per_image: dict[str, float | None] = phase["cpu_seconds_per_image"]
    return sum(v for role, v in per_image.items() if v is not None and role != "bench_driver")


def ratios(report: dict[str, Any]) -> dict[str, float]:
    """pipeline / work limit and pipeline / aiokafka baseline, by throughput and by CPU.

    The CPU ratios (CPU seconds per image, all processes, over the work loop's) move less with
    the load other users put on a shared machine than the throughput ratios do.
    """
    values = report["throughputs"]
    pipeline = report["pipeline"]["saturation"]
    baseline = report["aiokafka_baseline"]["saturation"]
    return {
        "pipeline_vs_work_limit": round(values["pipeline"] / values["work_limit"], 3),
        "pipeline_vs_aiokafka_baseline": round(values["pipeline"] / values["aiokafka_baseline"], 3),
        "cpu_per_image_pipeline_vs_work_limit": round(
            total_cpu_per_image(pipeline) / report["work_limit"]["cpu_seconds_per_image"], 3
        ),
        "cpu_per_image_pipeline_vs_aiokafka_baseline": round(
            total_cpu_per_image(pipeline) / total_cpu_per_image(baseline), 3
        ),
        **single_decode_ratios(report),
    }


def single_decode_ratios(report: dict[str, Any]) -> dict[str, float | None]:
    """Issue 18's ratios against the decode-once loop; ``None`` when it was not measured (a
    report written before the loop existed)."""
    single = report.get("single_decode", {})
    one, two = single.get("processes_1"), single.get("processes_2")
    pipeline = report["pipeline"]["saturation"]
    return {
        "cpu_per_image_pipeline_vs_single_decode": (
            round(total_cpu_per_image(pipeline) / one["cpu_seconds_per_image"], 3) if one else None
        ),
        "pipeline_vs_two_process_limit": (
            round(pipeline["images_per_second"] / two["images_per_second"], 3) if two else None
        ),
    }


# Issue 18's targets: (ratio or latency, comparison, bound).
TARGETS: dict[str, tuple[str, float]] = {
    "cpu_per_image_pipeline_vs_single_decode": ("<=", 1.5),
    "pipeline_vs_two_process_limit": (">=", 0.6),
    "pipeline_vs_aiokafka_baseline": (">=", 1.0),
    "half_rate_p50_ms": ("<=", 100.0),
    "half_rate_p99_ms": ("<=", 250.0),
}


def targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of issue 18 with this run's value and whether it was met (``None``: not
    measured in this run)."""
    values: dict[str, float | None] = dict(report["ratios"])
    half = report["pipeline"].get("half_rate")
    latency = half["latency_occurred_to_stored"] if half else {}
    values["half_rate_p50_ms"] = latency.get("p50_ms")
    values["half_rate_p99_ms"] = latency.get("p99_ms")
    found = {}
    for name, (comparison, bound) in TARGETS.items():
        value = values.get(name)
        met = None
        if value is not None:
            met = value <= bound if comparison == "<=" else value >= bound
        found[name] = {"value": value, "target": f"{comparison} {bound:g}", "met": met}
    return found


def _cpu_row(label: str, phase: dict[str, Any], roles: Sequence[str]) -> str:
    per = phase["cpu_seconds_per_image"]
    cells = []
    for role in roles:
        value = per.get(role)
        cells.append(f"{1000 * value:>9.1f}" if value is not None else f"{'-':>9}")
    total = total_cpu_per_image(phase)
    return f"{label:<30}" + "".join(cells) + f"{1000 * total:>9.1f}"


def _ratio(value: float | None) -> str:
    return "not available" if value is None else f"{value:.2f}"


def _rounds_note(work_limit: dict[str, Any]) -> str:
    rounds = work_limit.get("rounds", [])
    if len(rounds) < 2:
        return ""
    before, after = (r["images_per_second"] for r in rounds[:2])
    return f"   (before {before:.1f}, after {after:.1f})"


def render_table(report: dict[str, Any]) -> str:
    """The one table ``make bench`` prints."""
    m, w = report["machine"], report["workload"]
    lines = [
        f"radstream end-to-end benchmark: {w['events']} arrivals ({w['bad_events']} bad), "
        f"{m['nproc']} x {m['cpu_model']}, {m['memory_mb']} MiB, "
        f"load {m['loadavg_1min_before']} -> {m.get('loadavg_1min_after', '?')}",
        "",
        f"{'':<30}{'img/s':>9}{'x work':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'seconds':>9}",
    ]
    work = report["work_limit"]["images_per_second"]
    lines.append(
        f"{'work limit (1 loop, no I/O)':<30}{work:>9.1f}{1.0:>9.2f}"
        f"{'-':>9}{'-':>9}{'-':>9}{report['work_limit']['seconds']:>9.1f}"
        + _rounds_note(report["work_limit"])
    )
    lines += _single_decode_rows(report.get("single_decode", {}), work)
    rows = [("pipeline, saturation", report["pipeline"]["saturation"])]
    if "half_rate" in report["pipeline"]:
        half = report["pipeline"]["half_rate"]
        rows.append((f"pipeline, half rate ({half['target_rate']:.1f}/s)", half))
    rows.append(("aiokafka baseline, saturation", report["aiokafka_baseline"]["saturation"]))
    if "half_rate" in report["aiokafka_baseline"]:
        half = report["aiokafka_baseline"]["half_rate"]
        rows.append((f"aiokafka, half rate ({half['target_rate']:.1f}/s)", half))
    for label, phase in rows:
        lat = phase["latency_occurred_to_stored"]
        lines.append(
            f"{label:<30}{phase['images_per_second']:>9.1f}"
            f"{phase['images_per_second'] / work:>9.2f}"
            f"{lat['p50_ms']:>9.0f}{lat['p95_ms']:>9.0f}{lat['p99_ms']:>9.0f}{phase['seconds']:>9.1f}"
        )
    r = report["ratios"]
    lines += [
        "",
        f"throughput  pipeline / work limit: {r['pipeline_vs_work_limit']:.2f}   "
        f"pipeline / aiokafka baseline: {r['pipeline_vs_aiokafka_baseline']:.2f}",
        f"CPU/image   pipeline / work limit: {r['cpu_per_image_pipeline_vs_work_limit']:.2f}   "
        f"pipeline / aiokafka baseline: {r['cpu_per_image_pipeline_vs_aiokafka_baseline']:.2f}",
        f"single decode: CPU/image pipeline / 1 loop: "
        f"{_ratio(r.get('cpu_per_image_pipeline_vs_single_decode'))}   "
        f"throughput pipeline / 2 processes: {_ratio(r.get('pipeline_vs_two_process_limit'))}",
        "",
        "CPU ms per image by process (work limit: "
        f"{1000 * report['work_limit']['cpu_seconds_per_image']:.1f} ms in one process)",
    ]
    services = ["broker", "postgres", "bench_driver"]  # the total leaves the driver out
    measured = [r for r in rows[0][1]["cpu_seconds_per_image"] if r not in services]
    roles = [*measured, *services]
    lines.append(f"{'':<30}" + "".join(f"{SHORT.get(r, r):>9}" for r in roles) + f"{'total':>9}")
    for label, phase in rows:
        lines.append(_cpu_row(label, phase, roles))
    lines += ["", "Kafka offsets per image (records + transaction markers; commits: upper bound)"]
    for label, phase in rows:
        counts = phase.get("kafka_messages_per_image", {})
        cells = "  ".join(f"{name} {value:.2f}" for name, value in counts.items())
        lines.append(f"{label:<30}{cells}")
    hops = [(label, phase["latency_by_hop"]) for label, phase in rows if "latency_by_hop" in phase]
    if hops:
        lines += [
            "",
            f"{'latency by hop, p50/p95/p99 ms':<30}"
            + "".join(f"{name.replace('_', ' '):>24}" for name in hops[0][1]),
        ]
        for label, by_hop in hops:
            cells = "".join(
                f"{hop['p50_ms']:>8.0f}{hop['p95_ms']:>8.0f}{hop['p99_ms']:>8.0f}"
                for hop in by_hop.values()
            )
            lines.append(f"{label:<30}{cells}")
    lines += ["", f"issue 18 targets (layout: {w.get('layout', 'per-stage')})"]
    for name, target in report.get("targets", {}).items():
        value = target["value"]
        shown = "not available" if value is None else f"{value:g}"
        verdict = {True: "met", False: "NOT met", None: "-"}[target["met"]]
        lines.append(f"  {name:<42}{shown:>14}  target {target['target']:<8} {verdict}")
    return "\n".join(lines)


def _single_decode_rows(single: dict[str, Any], work: float) -> list[str]:
    if not single:
        return [f"{'single-decode limit':<30}{'not measured':>18}"]
    lines = []
    for processes, label in ((1, "single decode (1 loop)"), (2, "single decode (2 processes)")):
        row = single.get(f"processes_{processes}")
        if row is None:
            continue
        rate = row["images_per_second"]
        lines.append(
            f"{label:<30}{rate:>9.1f}{rate / work:>9.2f}{'-':>9}{'-':>9}{'-':>9}"
            f"{row['seconds']:>9.1f}   ({1000 * row['cpu_seconds_per_image']:.1f} ms CPU/image)"
        )
    return lines


def write_report(report: dict[str, Any], output_dir: Path, *, smoke: bool) -> list[Path]:
    """Write ``<kind>-<date>.json`` and ``latest.json`` (``smoke-latest.json`` for smoke)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    kind = "smoke" if smoke else "pipeline"
    dated = output_dir / f"{kind}-{stamp}.json"
    latest = output_dir / ("smoke-latest.json" if smoke else "latest.json")
    text = json.dumps(report, indent=2) + "\n"
    for path in (dated, latest):
        path.write_text(text)
    return [dated, latest]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; the paths written go to stdout."""
    options = parse_args(argv)
    # Producing right after creating a topic logs NotLeaderForPartition retries until the
    # leaders are elected; they are retried and harmless, and would bury the table.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.ERROR)
    try:
        report = asyncio.run(run_benchmark(options))
    finally:
        kafka_log.setLevel(level)
    print(render_table(report))
    for path in write_report(report, options.output_dir, smoke=options.smoke):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
