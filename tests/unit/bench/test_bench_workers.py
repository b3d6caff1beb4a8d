"""Worker processes: their settings, command lines, signals and shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.workers import (
    REPO_ROOT,
    RunSettings,
    WorkerProcess,
    dead_workers,
    roles_for,
    signal_workers,
    stage_of,
    stop_workers,
    worker_command,
)

pytestmark = pytest.mark.requirement("RS-BEN-01")


def run_settings(tmp_path: Path) -> RunSettings:
    """Isolated names of one run."""
    return RunSettings(
        bootstrap="127.0.0.1:9092",
        database_url="postgresql://radstream@127.0.0.1:5432/radstream_bench_x",
        topic_prefix="rsbench.x.pipeline.",
        group_prefix="rsbench-x-pipeline",
        state_dir=tmp_path,
    )


def sleeper(tmp_path: Path, stage: str, code: str) -> WorkerProcess:
    """A stand-in worker process running ``code``."""
    log_path = tmp_path / f"{stage}.log"
    log = log_path.open("wb")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
    return WorkerProcess(stage, process, log_path, log)


class TestRunSettings:
    def test_environment_points_workers_at_the_run(self, tmp_path: Path) -> None:
        """Workers get the run's topics, groups, database, audit files and a free metrics port."""
        env = run_settings(tmp_path).environment({"KEEP": "1", "RADSTREAM_TOPIC_PREFIX": "old."})
        assert env["KEEP"] == "1"
        assert env["RADSTREAM_TOPIC_PREFIX"] == "rsbench.x.pipeline."
        assert env["RADSTREAM_CONSUMER_GROUP_PREFIX"] == "rsbench-x-pipeline"
        assert env["RADSTREAM_DATABASE_URL"].endswith("/radstream_bench_x")
        assert env["RADSTREAM_AUDIT__CHECKPOINT_FILE"] == str(tmp_path / "checkpoints.jsonl")
        assert env["RADSTREAM_AUDIT__SIGNING_KEY_FILE"] == str(tmp_path / "audit_key.pem")
        assert env["RADSTREAM_OBSERVABILITY__METRICS_PORT"] == "0"
        assert env["PYTHONPATH"] == str(REPO_ROOT)

    def test_audit_group_is_the_one_the_agent_uses(self, tmp_path: Path) -> None:
        """app.run_audit_stage names its group <prefix>-audit; the probe watches that group."""
        assert run_settings(tmp_path).audit_group == "rsbench-x-pipeline-audit"


class TestCommands:
    def test_pipeline_worker_is_the_radstream_cli(self) -> None:
        """The pipeline runs `radstream worker --stages <stage>` (python -m cli)."""
        assert worker_command("pipeline", "inference")[1:] == [
            "-m", "cli", "worker", "--stages", "inference",
        ]  # fmt: skip

    def test_baseline_and_profiled_workers(self, tmp_path: Path) -> None:
        """The baseline runs bench.aiokafka_baseline; profiling wraps any worker."""
        assert worker_command("baseline", "audit")[1:3] == ["-m", "bench.aiokafka_baseline"]
        wrapped = worker_command("pipeline", "results", tmp_path)
        assert wrapped[1:5] == ["-m", "bench.profiled", str(tmp_path / "results"), "--"]
        assert wrapped[5:] == ["-m", "cli", "worker", "--stages", "results"]

    def test_default_layout_co_locates_validation_and_inference_in_two_processes(self) -> None:
        """Two members of one group run validation+inference (decode once); then results, audit."""
        roles = roles_for()
        assert roles == ["validate+infer", "validate+infer.2", "results", "audit"]
        assert worker_command("pipeline", "validate+infer.2")[-2:] == [
            "--stages",
            "validation,inference",
        ]
        assert roles_for(3)[:3] == ["validate+infer", "validate+infer.2", "validate+infer.3"]
        with pytest.raises(ValueError, match="unknown layout"):
            roles_for(1, "everything-in-one")

    def test_extra_inference_processes_are_roles_of_the_inference_stage(self) -> None:
        """--inference-processes 3 starts inference three times, each as its own role."""
        assert roles_for(None, "per-stage") == ["validation", "inference", "results", "audit"]
        roles = roles_for(3, "per-stage")
        assert roles[1:4] == ["inference", "inference.2", "inference.3"]
        assert roles[-2:] == ["results", "audit"]
        assert worker_command("pipeline", "inference.3")[-1] == "inference"
        assert [stage_of(r) for r in roles].count("inference") == 3

    def test_unknown_kind_is_an_error(self) -> None:
        """Only the two kinds exist."""
        with pytest.raises(ValueError, match="unknown worker kind"):
            worker_command("faust-only", "validation")


class TestLifecycle:
    def test_stop_terminates_and_reports_exit_codes(self, tmp_path: Path) -> None:
        """SIGTERM ends a running worker (exit code -15); an exited one keeps its code."""
        running = sleeper(tmp_path, "validation", "import time; time.sleep(60)")
        done = sleeper(tmp_path, "audit", "print('bye'); raise SystemExit(3)")
        done.process.wait(30)
        assert dead_workers([running, done]) == [done]
        codes = stop_workers([running, done], timeout=30)
        assert codes == {"validation": -signal.SIGTERM, "audit": 3}
        assert done.tail() == "bye"

    def test_signal_reaches_running_workers(self, tmp_path: Path) -> None:
        """signal_workers delivers the signal (here SIGUSR1, whose default action ends it)."""
        worker = sleeper(tmp_path, "results", "import time; time.sleep(60)")
        signal_workers([worker], signal.SIGUSR1)
        assert worker.process.wait(30) == -signal.SIGUSR1
        stop_workers([worker])

    def test_straggler_is_killed(self, tmp_path: Path) -> None:
        """A worker ignoring SIGTERM is killed after the timeout."""
        code = (
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " print('ready', flush=True); time.sleep(60)"
        )
        worker = sleeper(tmp_path, "inference", code)
        deadline = time.monotonic() + 30  # bounded: interpreter start-up takes well under 1 s
        while "ready" not in worker.log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop_workers([worker], timeout=0.5) == {"inference": -signal.SIGKILL}
