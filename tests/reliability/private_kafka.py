"""A throwaway private Kafka broker for outage tests (never the shared one on 9092).

Runs ``ops/kafka/kafka.sh`` with its own state directory under /tmp and free ports, so a test can
stop and restart it. The broker jars are reused from the repository's ``.state/kafka/lib`` when
``make services-up`` fetched them there; otherwise the script fetches them (Maven's local cache
makes that a copy).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "ops" / "kafka" / "kafka.sh"
SHARED_LIB = REPO_ROOT / ".state" / "kafka" / "lib"
# kafka.sh waits up to 60 s for the port; fetching the jars on a cold machine takes longer.
SCRIPT_TIMEOUT_SECONDS = 300


def reuse_broker_jars(base: Path) -> None:
    """Point ``base``'s broker at the jars ``make services-up`` fetched, when it did."""
    if (SHARED_LIB / ".pom.sha256").exists():
        (base / "kafka").mkdir()
        (base / "kafka" / "lib").symlink_to(SHARED_LIB)


class PrivateKafka:
    """Start, stop and remove one private single-node broker."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="radstream-kafka-outage-"))
        self.port = free_port()
        self.controller_port = free_port()
        reuse_broker_jars(self.base)

    @property
    def bootstrap(self) -> str:
        """The broker's bootstrap address."""
        return f"127.0.0.1:{self.port}"

    def _run(self, action: str, *, check: bool = True) -> str:
        env = {
            **os.environ,
            "RADSTREAM_STATE_DIR": str(self.base),
            "RADSTREAM_KAFKA_PORT": str(self.port),
            "RADSTREAM_KAFKA_CONTROLLER_PORT": str(self.controller_port),
        }
        done = subprocess.run(
            ["bash", str(SCRIPT), action],
            check=check,
            capture_output=True,
            env=env,
            timeout=SCRIPT_TIMEOUT_SECONDS,
        )
        return done.stdout.decode(errors="replace").strip()

    def evidence(self, lines: int = 40) -> str:
        """The broker's status and its log's last lines, for a test that finds it unreachable.

        The state directory goes with the test, so this is the only trace a failed run keeps.
        """
        log = self.base / "kafka" / "broker.log"
        tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
        return "\n".join([self._run("status", check=False), *tail])

    def up(self) -> None:
        """Start (or restart, keeping its data) the broker; returns once its port is open."""
        self._run("up")

    def down(self) -> None:
        """Stop the broker (SIGTERM: a clean shutdown, as an operator's restart does)."""
        self._run("down")

    def remove(self) -> None:
        """Stop it and delete its state."""
        try:
            self.down()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
