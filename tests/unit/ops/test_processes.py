"""The pid-file check ops/kafka/kafka.sh and ops/orthanc.sh use to find their service again."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "ops" / "processes.sh"
# A live process whose command line carries a recognisable word, as kafka.Kafka or Orthanc do.
MARKER = "radstream_pid_probe"


def running_as(pidfile: Path, pattern: str) -> subprocess.CompletedProcess[str]:
    """``pid_running_as`` as the scripts call it: sourced under ``set -euo pipefail``."""
    call = f'set -euo pipefail; source "{SCRIPT}"; pid_running_as "$1" "$2"'
    return subprocess.run(
        ["bash", "-c", call, "-", str(pidfile), pattern],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def service() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", f"import time  # {MARKER}\ntime.sleep(60)"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_the_recorded_service_is_found(service: subprocess.Popen[bytes], tmp_path: Path) -> None:
    pidfile = tmp_path / "service.pid"
    pidfile.write_text(f"{service.pid}\n")
    found = running_as(pidfile, MARKER)
    assert (found.returncode, found.stdout.strip()) == (0, str(service.pid))


def test_a_recycled_pid_running_something_else_is_not_the_service(
    service: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    pidfile = tmp_path / "service.pid"
    pidfile.write_text(f"{service.pid}\n")
    other = running_as(pidfile, "kafka.Kafka")
    assert (other.returncode, other.stdout) == (1, "")


def test_a_dead_pid_or_no_pid_file_is_not_running(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", f"# {MARKER}"])
    gone.wait()
    pidfile = tmp_path / "service.pid"
    pidfile.write_text(f"{gone.pid}\n")
    assert running_as(pidfile, MARKER).returncode == 1
    assert running_as(tmp_path / "missing.pid", MARKER).returncode == 1
    pidfile.write_text("")
    assert running_as(pidfile, MARKER).returncode == 1
