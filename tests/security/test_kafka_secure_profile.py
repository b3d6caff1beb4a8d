"""The secure broker profile holds: who is not authenticated is refused, ACLs confine each role.

One broker of the secure profile for the session (``ops/kafka/kafka.sh up --secure``, on free
ports under ``.state/``), with the ACLs ``radstream topics acls --apply`` derived from the
catalogue. Each test acts as one principal with the credentials the script generated.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from schemas.errors import ErrorCode, TransientError
from schemas.events import ImageValidated
from schemas.settings import Settings
from streams.acls import AclBinding, Operation, PatternType, ResourceType, acls_for
from streams.kafka import KafkaClientConfig, build_admin, build_producer, create_acls, read_topic
from streams.kafka.messages import RawMessage
from tests.conftest import REPO_ROOT
from tests.security.secure_kafka import SecureKafka

pytestmark = pytest.mark.requirement("RS-SEC-01")

# A worker starts (producer, Faust, group join) in seconds; a loaded machine takes longer.
WORKER_TIMEOUT_SECONDS = 180
REFUSED_EXIT = 7


def config(settings: Settings) -> KafkaClientConfig:
    """A client with short bounds: a refusal must come fast, not after aiokafka's 40 s."""
    base = KafkaClientConfig.from_settings(settings, client_id="radstream-test")
    return KafkaClientConfig(
        base.bootstrap,
        client_id=base.client_id,
        request_timeout_ms=10_000,
        send_timeout_seconds=20.0,
        admin_timeout_seconds=20.0,
        security=base.security,
    )


async def send(settings: Settings, topic: str) -> None:
    async with build_producer(config(settings)) as producer:
        await producer.send_all([RawMessage(topic, b"{}", None, ())])


def run_cli(
    secure_kafka: SecureKafka, principal: str | None, *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSTREAM_KAFKA")}
    env.update(secure_kafka.env(principal), **extra)
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestAuthentication:
    def test_an_anonymous_client_is_refused_with_one_line(self, secure_kafka: SecureKafka) -> None:
        """A plaintext client without credentials: BROKER_REQUEST_REFUSED, exit 7, one line."""
        result = run_cli(secure_kafka, None, "topics", "ensure")
        assert result.returncode == REFUSED_EXIT, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "BROKER_REQUEST_REFUSED" in lines[0]
        assert "security settings" in lines[0]

    def test_a_wrong_password_is_refused_with_one_line(self, secure_kafka: SecureKafka) -> None:
        """The right user with a wrong password; the password never appears in the output."""
        wrong = f"wrong-{uuid.uuid4().hex}"
        result = run_cli(
            secure_kafka, "router", "topics", "ensure", RADSTREAM_KAFKA__SASL_PASSWORD=wrong
        )
        assert result.returncode == REFUSED_EXIT, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "BROKER_REQUEST_REFUSED" in lines[0]
        assert "SaslAuthenticationFailed" in lines[0]
        assert wrong not in result.stderr + result.stdout

    async def test_the_library_reports_refusals_not_outages(
        self, secure_kafka: SecureKafka
    ) -> None:
        """Every client of the Kafka layer (here a producer) tells refused from unavailable."""
        for settings in (
            secure_kafka.settings(None),
            secure_kafka.settings("router", password="not-the-password"),
        ):
            with pytest.raises(TransientError) as caught:
                await send(settings, secure_kafka.topic_prefix + "images.arrived")
            assert caught.value.code is ErrorCode.BROKER_REQUEST_REFUSED


class TestAuthorisation:
    async def test_the_validation_principal_cannot_write_the_audit_log(
        self, secure_kafka: SecureKafka
    ) -> None:
        """Only the audit principal appends to audit.log (forged records are refused)."""
        prefix = secure_kafka.topic_prefix
        with pytest.raises(TransientError) as caught:
            await send(secure_kafka.settings("validation"), prefix + "audit.log")
        assert caught.value.code is ErrorCode.BROKER_REQUEST_REFUSED
        await send(secure_kafka.settings("validation"), prefix + "images.validated")  # control

    @pytest.mark.parametrize(
        "topic", ["images.validated", "inference.results", "audit.log", "deadletter"]
    )
    async def test_a_router_may_only_write_arrivals(
        self, secure_kafka: SecureKafka, topic: str
    ) -> None:
        """A router (DICOM listener, ``radstream publish``) writes arrivals and no more."""
        router = secure_kafka.settings("router")
        with pytest.raises(TransientError) as caught:
            await send(router, secure_kafka.topic_prefix + topic)
        assert caught.value.code is ErrorCode.BROKER_REQUEST_REFUSED

    @pytest.mark.parametrize("topic", ["images.arrived", "images.arrived.stat"])
    async def test_a_router_may_write_both_arrival_lanes(
        self, secure_kafka: SecureKafka, topic: str
    ) -> None:
        """Stat arrivals have a topic of their own; the router and the API must reach it too."""
        for principal in ("router", "api"):
            await send(secure_kafka.settings(principal), secure_kafka.topic_prefix + topic)

    async def test_only_the_audit_principal_may_write_the_audit_log(
        self, secure_kafka: SecureKafka
    ) -> None:
        """The audit principal can; every other principal cannot."""
        prefix = secure_kafka.topic_prefix
        await send(secure_kafka.settings("audit"), prefix + "audit.log")
        for principal in ("router", "api", "inference", "results"):
            with pytest.raises(TransientError):
                await send(secure_kafka.settings(principal), prefix + "audit.log")


def start_worker(
    secure_kafka: SecureKafka, principal: str, group_prefix: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSTREAM_KAFKA")}
    env.update(
        secure_kafka.env(principal),
        RADSTREAM_CONSUMER_GROUP_PREFIX=group_prefix,
        RADSTREAM_OBSERVABILITY__METRICS_PORT="0",
        RADSTREAM_LOGGING__LEVEL="INFO",
        RADSTREAM_WORKER_DATA_DIR=str(log.parent / "faust"),
    )
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--stages", "validation"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )


def run_refused_worker(
    secure_kafka: SecureKafka, group_prefix: str, log: Path, principal: str = "api"
) -> str:
    """Run a validation worker as ``principal`` until it exits (bounded); it must exit refused
    (7).

    Returns its log.
    """
    worker = start_worker(secure_kafka, principal, group_prefix, log)
    try:
        worker.wait(timeout=WORKER_TIMEOUT_SECONDS)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
    text = log.read_text()
    assert worker.returncode == REFUSED_EXIT, text
    return text


def publish_sample(secure_kafka: SecureKafka) -> str:
    """Publish one sample arrival as the router; its event id."""
    sample = REPO_ROOT / "samples" / "dicom" / "ct_small.dcm"
    result = run_cli(secure_kafka, "router", "publish", "--json", str(sample))
    assert result.returncode == 0, result.stderr
    published = json.loads(result.stdout)
    return str(published[0]["event_id"])


class TestWorkersOnTheSecureProfile:
    def test_a_worker_with_its_credentials_processes_an_image(
        self, secure_kafka: SecureKafka, tmp_path: Path
    ) -> None:
        """Router publishes, the validation worker (its own principal) validates it."""
        event_id = publish_sample(secure_kafka)
        log = tmp_path / "worker.log"
        worker = start_worker(secure_kafka, "validation", secure_kafka.group_prefix, log)
        try:
            admin = config(secure_kafka.settings("admin"))
            topic = secure_kafka.topic_prefix + "images.validated"
            deadline = time.monotonic() + WORKER_TIMEOUT_SECONDS
            while True:
                assert worker.poll() is None, log.read_text()
                records = asyncio.run(read_topic(admin, topic)).all_records()
                # Other tests write test values here too: only this arrival's outcome counts.
                mine = [r.value for r in records if r.value and event_id.encode() in r.value]
                if mine:
                    assert str(ImageValidated.model_validate_json(mine[0]).event_id) == event_id
                    break
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(1)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=WORKER_TIMEOUT_SECONDS)
        assert worker.returncode == 0, log.read_text()

    def test_a_worker_refused_its_group_exits_with_one_line(
        self, secure_kafka: SecureKafka, tmp_path: Path
    ) -> None:
        """A principal that may read arrivals but not use its consumer group: exit 7, one line.

        Faust never raises the group coordinator's refusal; without the consumer watch the
        worker waited for ever without a line (issue 17: recover or exit, never hang).
        """
        group_prefix = f"{secure_kafka.group_prefix}-nogroup"
        arrived = secure_kafka.topic_prefix + "images.arrived"
        admin = config(secure_kafka.settings("admin"))
        read = AclBinding("api", ResourceType.TOPIC, arrived, PatternType.LITERAL, Operation.READ)
        asyncio.run(create_acls(admin, [read.wire()]))
        text = run_refused_worker(secure_kafka, group_prefix, tmp_path / "worker.log")
        lines = [line for line in text.splitlines() if line.startswith("radstream worker:")]
        assert len(lines) == 1, text
        assert "BROKER_REQUEST_REFUSED" in lines[0]
        assert f"consuming in group {group_prefix}-validation" in lines[0]
        # The log pipeline gets the reason too, although the worker never started.
        logged = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        failed = [entry for entry in logged if entry["event"] == "consumer_failed"]
        assert [(f["group"], f["error_code"]) for f in failed] == [
            (f"{group_prefix}-validation", "BROKER_REQUEST_REFUSED")
        ], text
        assert "Traceback" not in text

    def test_a_worker_refused_its_stat_group_exits_with_one_line(
        self, secure_kafka: SecureKafka, tmp_path: Path
    ) -> None:
        """Its routine group granted, the stat agent's not: exit 7, one line naming that group.

        The stat agent consumes in a group of its own (app.OWN_GROUP_STAGES), in a second Faust
        app started after the first: its refusal must end the worker as the first one's does,
        not leave it starting for ever.
        """
        group_prefix = f"{secure_kafka.group_prefix}-nostat"
        admin = config(secure_kafka.settings("admin"))
        group = AclBinding(
            "validation",
            ResourceType.GROUP,
            f"{group_prefix}-validation",
            PatternType.LITERAL,
            Operation.READ,
        )
        asyncio.run(create_acls(admin, [group.wire()]))
        text = run_refused_worker(
            secure_kafka, group_prefix, tmp_path / "worker.log", principal="validation"
        )
        lines = [line for line in text.splitlines() if line.startswith("radstream worker:")]
        assert len(lines) == 1, text
        assert "BROKER_REQUEST_REFUSED" in lines[0]
        assert f"consuming in group {group_prefix}-validation-stat" in lines[0]
        logged = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        failed = [entry for entry in logged if entry["event"] == "consumer_failed"]
        assert [(f["group"], f["error_code"]) for f in failed] == [
            (f"{group_prefix}-validation-stat", "BROKER_REQUEST_REFUSED")
        ], text
        assert "Traceback" not in text

    def test_a_refused_delivery_stops_the_worker_and_commits_nothing(
        self, secure_kafka: SecureKafka, tmp_path: Path
    ) -> None:
        """A principal that may read arrivals but not write outcomes: exit 7, offsets kept."""
        group_prefix = f"{secure_kafka.group_prefix}-refused"
        group = f"{group_prefix}-validation"
        admin = config(secure_kafka.settings("admin"))
        # Everything the validation principal may read (both lanes' arrivals, in both groups),
        # nothing it may write.
        reads = [
            replace(binding, principal="api")
            for binding in acls_for(secure_kafka.topic_prefix, group_prefix)
            if binding.principal == "validation" and binding.operation is Operation.READ
        ]
        assert {b.name for b in reads} >= {group, f"{group}-stat"}
        asyncio.run(create_acls(admin, [b.wire() for b in reads]))
        publish_sample(secure_kafka)
        text = run_refused_worker(secure_kafka, group_prefix, tmp_path / "worker.log")
        assert text.count("delivery_failed") == 1, text
        assert "BROKER_REQUEST_REFUSED" in text

        async def committed() -> dict[object, int]:
            async with build_admin(admin) as client:
                return {tp: o for tp, o in (await client.group_offsets(group)).items() if o >= 0}

        assert asyncio.run(committed()) == {}
