"""Worker processes for the benchmark: one per stage, started as users start them.

``radstream worker --stages <stage>`` is ``python -m cli worker --stages <stage>`` (the console
script calls ``cli.main:run``); running the module from the checkout makes the benchmark
measure this tree's code whatever is installed in the virtualenv. Each process gets the run's
``RADSTREAM_*`` settings through its environment, exactly as a deployment would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGES: tuple[str, ...] = ("validation", "inference", "results", "audit")
# The role of a worker running validation and inference in one process (bench/README.md,
# "Layout"): the image work of both stages on one host, so each image can be decoded once.
CO_LOCATED_ROLE = "validate+infer"
LAYOUTS: tuple[str, ...] = ("co-located", "per-stage")
# A profiled worker (bench.profiled) samples between these two signals.
START_SIGNAL = signal.SIGUSR1
STOP_SIGNAL = signal.SIGUSR2


@dataclass(frozen=True, slots=True)
class RunSettings:
    """The isolated names one benchmark run uses (topics, groups, database, audit files)."""

    bootstrap: str
    database_url: str
    topic_prefix: str
    group_prefix: str
    state_dir: Path

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` plus the RADSTREAM_* variables that point a worker at this run."""
        env = dict(base)
        env.update(
            {
                "PYTHONPATH": str(REPO_ROOT),
                "RADSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
                "RADSTREAM_DATABASE_URL": self.database_url,
                "RADSTREAM_TOPIC_PREFIX": self.topic_prefix,
                "RADSTREAM_CONSUMER_GROUP_PREFIX": self.group_prefix,
                "RADSTREAM_STORAGE_ROOTS": str(REPO_ROOT / "samples"),
                "RADSTREAM_AUDIT__SIGNING_KEY_FILE": str(self.state_dir / "audit_key.pem"),
                "RADSTREAM_AUDIT__CHECKPOINT_FILE": str(self.checkpoint_file),
                # Several workers on one host: each serves /metrics on a free port.
                "RADSTREAM_OBSERVABILITY__METRICS_PORT": "0",
            }
        )
        return env

    @property
    def checkpoint_file(self) -> Path:
        """The audit agent's checkpoint file (one JSON line per checkpoint)."""
        return self.state_dir / "checkpoints.jsonl"

    @property
    def audit_group(self) -> str:
        """The audit agent's consumer group (``app.run_audit_stage`` names it so)."""
        return f"{self.group_prefix}-audit"


def roles_for(inference_processes: int | None = None, layout: str = "co-located") -> list[str]:
    """One role per worker process.

    ``co-located`` (the default): ``inference_processes`` (2) processes each running
    validation and inference (``validate+infer``, ``validate+infer.2``: members of one consumer
    group, which splits the partitions between them), then results and audit. ``per-stage``:
    one process per stage, inference ``inference_processes`` (1) times (``inference``,
    ``inference.2``, ...).
    """
    if layout == "co-located":
        count = 2 if inference_processes is None else inference_processes
        heavy = [CO_LOCATED_ROLE, *(f"{CO_LOCATED_ROLE}.{n}" for n in range(2, count + 1))]
        return [*heavy, *STAGES[2:]]
    if layout != "per-stage":
        raise ValueError(f"unknown layout {layout!r}")
    count = 1 if inference_processes is None else inference_processes
    extra = [f"inference.{n}" for n in range(2, count + 1)]
    return [*STAGES[:2], *extra, *STAGES[2:]]


def stage_of(role: str) -> str:
    """The ``--stages`` a worker role runs (``inference.2`` runs ``inference``,
    ``validate+infer`` runs ``validation,inference``)."""
    base = role.split(".", 1)[0]
    return "validation,inference" if base == CO_LOCATED_ROLE else base


def worker_command(kind: str, role: str, profile_dir: Path | None = None) -> list[str]:
    """The argv of one worker: the pipeline's (``radstream worker``) or the aiokafka baseline's."""
    stage = stage_of(role)
    if kind == "pipeline":
        command = ["-m", "cli", "worker", "--stages", stage]
    elif kind == "baseline":
        command = ["-m", "bench.aiokafka_baseline", "--stages", stage]
    else:
        raise ValueError(f"unknown worker kind {kind!r}")
    if profile_dir is not None:
        command = ["-m", "bench.profiled", str(profile_dir / role), "--", *command]
    return [sys.executable, *command]


@dataclass
class WorkerProcess:
    """One started worker and where its output goes."""

    role: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        """The worker's pid (the Python process itself: no shell in between)."""
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        """The last lines of the worker's output, for error reports."""
        if not self.log.closed:
            self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def start_workers(
    kind: str,
    run: RunSettings,
    log_dir: Path,
    *,
    roles: Sequence[str] = STAGES,
    profile_dir: Path | None = None,
) -> list[WorkerProcess]:
    """Start one worker process per role, output to ``log_dir/<kind>-<role>.log``."""
    env = run.environment(os.environ)
    started = []
    for role in roles:
        log_path = log_dir / f"{kind}-{role}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            worker_command(kind, role, profile_dir),
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(WorkerProcess(role, process, log_path, log))
    return started


def stop_workers(workers: Sequence[WorkerProcess], timeout: float = 60.0) -> dict[str, int]:
    """SIGTERM each worker (a clean shutdown, as the CLI handles it), wait; kill stragglers.

    Returns each role's exit code (negative: killed by that signal).
    """
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    codes = {}
    for worker in workers:
        try:
            codes[worker.role] = worker.process.wait(timeout)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            codes[worker.role] = worker.process.wait()
        worker.log.close()
    return codes


def signal_workers(workers: Sequence[WorkerProcess], signum: int) -> None:
    """Send ``signum`` to every worker still running."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signum)


def dead_workers(workers: Sequence[WorkerProcess]) -> list[WorkerProcess]:
    """Workers that exited although nobody asked them to."""
    return [w for w in workers if w.process.poll() is not None]
