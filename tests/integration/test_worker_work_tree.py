"""A worker run as users run it leaves the checkout clean: Faust's data goes under .state/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.conftest import REPO_ROOT, work_tree_status

# Bounded: a validation worker starts (topics, producer, Faust, group join) in a few seconds.
START_TIMEOUT_SECONDS = 90


def test_worker_run_leaves_no_files_in_the_work_tree(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Start `radstream worker` in the repository root, wait until it consumes, stop it."""
    before = work_tree_status()
    assert before is not None, "the tests run in a git checkout"
    env = {
        **os.environ,
        "RADSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RADSTREAM_TOPIC_PREFIX": topic_prefix,
        "RADSTREAM_CONSUMER_GROUP_PREFIX": f"rstest-tree-{uuid.uuid4().hex[:8]}",
        "RADSTREAM_OBSERVABILITY__METRICS_PORT": "0",
        "RADSTREAM_LOGGING__LEVEL": "INFO",
    }
    env.pop("RADSTREAM_WORKER_DATA_DIR", None)  # the default is what is under test
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--stages", "validation"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while b"worker_started" not in log.read_bytes():
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the worker did not start in time"
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=START_TIMEOUT_SECONDS)
    assert worker.returncode == 0, log.read_text()
    assert work_tree_status() == before
