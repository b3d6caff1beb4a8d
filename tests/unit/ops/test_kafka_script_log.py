"""``ops/kafka/kafka.sh`` keeps the evidence of earlier runs: broker.log appended and rotated."""

from __future__ import annotations

import os
import re
import subprocess  # nosec B404 - runs the repository's own script
from pathlib import Path

import pytest

pytestmark = pytest.mark.requirement("RS-REL-13")

SCRIPT = Path(__file__).resolve().parents[3] / "ops" / "kafka" / "kafka.sh"


def rotate(state: Path, max_bytes: int) -> None:
    """Run the script's rotation step alone (sourced, so no broker is started)."""
    env = os.environ | {
        "RADSTREAM_STATE_DIR": str(state),
        "RADSTREAM_KAFKA_LOG_MAX_BYTES": str(max_bytes),
    }
    subprocess.run(  # nosec B603 B607 - fixed argv
        ["bash", "-c", f'source "{SCRIPT}" && rotate_log'], env=env, check=True, timeout=30
    )


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    (tmp_path / "kafka").mkdir()
    return tmp_path / "kafka"


class TestBrokerLogRotation:
    def test_small_log_is_kept_for_appending(self, log_dir: Path) -> None:
        """Under the limit nothing moves: the next run appends to the same file."""
        (log_dir / "broker.log").write_text("run 1\n")
        rotate(log_dir.parent, 1000)
        assert (log_dir / "broker.log").read_text() == "run 1\n"
        assert not (log_dir / "broker.log.1").exists()

    def test_large_log_is_rotated_keeping_five(self, log_dir: Path) -> None:
        """Over the limit: broker.log becomes .1, older ones shift, the sixth is dropped."""
        for generation in range(1, 6):
            (log_dir / f"broker.log.{generation}").write_text(f"old {generation}\n")
        (log_dir / "broker.log").write_text("x" * 20)
        rotate(log_dir.parent, 10)
        assert not (log_dir / "broker.log").exists()
        assert (log_dir / "broker.log.1").read_text() == "x" * 20
        assert (log_dir / "broker.log.2").read_text() == "old 1\n"
        assert (log_dir / "broker.log.5").read_text() == "old 4\n"
        assert not (log_dir / "broker.log.6").exists()

    def test_no_log_yet_is_fine(self, log_dir: Path) -> None:
        """A first start has nothing to rotate."""
        rotate(log_dir.parent, 10)
        assert list(log_dir.iterdir()) == []

    def test_broker_output_is_appended(self) -> None:
        """The broker's output is appended (>>), never truncating the last run's lines."""
        text = SCRIPT.read_text()
        assert '>>"$LOG" 2>&1' in text
        assert re.search(r'[^>]>"\$LOG"', text) is None
