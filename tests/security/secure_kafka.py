"""The secure broker profile as the tests start it: ``ops/kafka/kafka.sh up --secure``.

Each test session gets its own broker on free ports, with its state (CA, certificates,
passwords, data) under the checkout's ignored ``.state/`` and removed at the end, so it runs
beside the shared development broker and beside other sessions. The script also ensures the
session's topics and applies the ACLs of every principal for the session's prefixes; a test
acts as a principal through :meth:`SecureKafka.settings`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from schemas.settings import Settings, load_settings
from tests.ports import free_port
from tests.reliability.private_kafka import reuse_broker_jars

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "ops" / "kafka" / "kafka.sh"
# First start: certificates, formatting with SCRAM users, broker start, topics and ACLs (each
# radstream command a Python start) - minutes on a loaded 2-core machine; fetching jars more.
SCRIPT_TIMEOUT_SECONDS = 600


class SecureKafka:
    """One secure-profile broker: start, act as a principal, stop and remove."""

    def __init__(self, topic_prefix: str, group_prefix: str) -> None:
        self.base = REPO_ROOT / ".state" / f"test-kafka-secure-{uuid.uuid4().hex[:8]}"
        self.base.mkdir(parents=True)
        self.port = free_port()
        self.controller_port = free_port()
        self.topic_prefix = topic_prefix
        self.group_prefix = group_prefix
        reuse_broker_jars(self.base)

    @property
    def bootstrap(self) -> str:
        """The SASL_SSL listener's address."""
        return f"127.0.0.1:{self.port}"

    @property
    def state(self) -> Path:
        """The profile's state directory (tls/, secrets/, clients/, data/)."""
        return self.base / "kafka-secure"

    @property
    def cafile(self) -> Path:
        """The CA certificate the broker's is signed by."""
        return self.state / "tls" / "ca.pem"

    def password(self, principal: str) -> str:
        """The generated SCRAM password of ``principal``."""
        return (self.state / "secrets" / f"{principal}.password").read_text().strip()

    def env(self, principal: str | None) -> dict[str, str]:
        """The RADSTREAM_* variables of a process acting as ``principal`` (None: anonymous)."""
        env = {
            "RADSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
            "RADSTREAM_TOPIC_PREFIX": self.topic_prefix,
            "RADSTREAM_CONSUMER_GROUP_PREFIX": self.group_prefix,
        }
        if principal is None:
            return env
        clients = self.state / "clients" / f"{principal}.env"
        for line in clients.read_text().splitlines():
            name, _, value = line.partition("=")
            env.setdefault(name, value)
        return env

    def settings(self, principal: str | None, *, password: str | None = None) -> Settings:
        """Settings of a client acting as ``principal`` (None: anonymous, plaintext)."""
        kafka: dict[str, Any] = {}
        if principal is not None:
            kafka = {
                "security_protocol": "SASL_SSL",
                "sasl_username": principal,
                "sasl_password": SecretStr(password or self.password(principal)),
                "ssl_cafile": self.cafile,
                "manage_topics": False,
            }
        return load_settings(
            kafka_bootstrap=self.bootstrap,
            topic_prefix=self.topic_prefix,
            consumer_group_prefix=self.group_prefix,
            kafka=kafka,
        )

    def _run(self, action: str) -> None:
        env = {
            **os.environ,
            "RADSTREAM_STATE_DIR": str(self.base),
            "RADSTREAM_KAFKA_PORT": str(self.port),
            "RADSTREAM_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "RADSTREAM_BIN": str(Path(sys.executable).with_name("radstream")),
            "RADSTREAM_TOPIC_PREFIX": self.topic_prefix,
            "RADSTREAM_CONSUMER_GROUP_PREFIX": self.group_prefix,
        }
        for name in [n for n in env if n.startswith("RADSTREAM_KAFKA__")]:
            env.pop(name)  # the script acts as admin with its own credentials
        result = subprocess.run(
            ["bash", str(SCRIPT), action, "--secure"],
            capture_output=True,
            env=env,
            timeout=SCRIPT_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"kafka.sh {action} --secure failed: {result.stderr.decode(errors='replace')}"
            )

    def up(self) -> None:
        """Start the broker; returns once topics and ACLs are in place."""
        self._run("up")

    def remove(self) -> None:
        """Stop the broker and delete its state."""
        try:
            self._run("down")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
