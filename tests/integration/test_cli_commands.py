"""CLI commands against the real broker and database."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from cli.audit import serve_audit_verification
from cli.main import main
from schemas.events import ImageArrived
from schemas.settings import SAMPLES_DIR, load_settings
from sinks.migrate import revisions
from streams.audit.checkpoints import encode_public_key
from streams.audit.files import load_or_create_signing_key
from streams.topics import TOPIC_SPECS
from tests.integration.kafka_support import read_from_start

pytestmark = pytest.mark.requirement("RS-CLI-01")

# Bounded: reading back a message just produced to the local broker takes well under a second.
READ_TIMEOUT_SECONDS = 30


async def first_arrival(bootstrap: str, topic: str) -> ImageArrived:
    """The first arrival event on ``topic`` (bounded wait)."""
    (record,) = await read_from_start(bootstrap, topic, want=1, within=READ_TIMEOUT_SECONDS)
    return ImageArrived.model_validate_json(record.value)


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    topic_prefix: str,
    database_url: str,
    tmp_path: Path,
) -> str:
    """Point the CLI at this test's topics, the session database and a private audit key."""
    monkeypatch.setenv("RADSTREAM_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("RADSTREAM_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("RADSTREAM_DATABASE_URL", database_url)
    monkeypatch.setenv("RADSTREAM_AUDIT__SIGNING_KEY_FILE", str(tmp_path / "key.pem"))
    # The verifier's pinned key: the one the agent will create at this path.
    pinned = encode_public_key(load_or_create_signing_key(tmp_path / "key.pem").public_key())
    monkeypatch.setenv("RADSTREAM_AUDIT__TRUSTED_PUBLIC_KEYS", json.dumps([pinned]))
    monkeypatch.setenv("RADSTREAM_AUDIT__CHECKPOINT_FILE", str(tmp_path / "cp.jsonl"))
    return topic_prefix


class TestCliWithServices:
    def test_topics_ensure_twice(self, cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
        """`topics ensure` creates, then finds, every topic (exit 0 both times)."""
        assert main(["topics", "ensure", "--partitions", "1"]) == 0
        first = capsys.readouterr().out.splitlines()
        assert main(["topics", "ensure", "--partitions", "1", "--json"]) == 0
        second = json.loads(capsys.readouterr().out)
        assert first[0].split()[:3] == ["TOPIC", "STATE", "PARTITIONS"]
        assert [row.split()[1] for row in first[1:]] == ["created"] * len(TOPIC_SPECS)
        assert [topic["created"] for topic in second] == [False] * len(TOPIC_SPECS)
        assert f"{cli_env}audit.log" in {topic["topic"] for topic in second}

    def test_publish_sends_an_arrival_per_file(
        self, cli_env: str, kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`publish` sends one arrival event per file with the router's fields."""
        assert main(["topics", "ensure", "--partitions", "1"]) == 0
        capsys.readouterr()
        ct = SAMPLES_DIR / "dicom" / "ct_small.dcm"
        assert (
            main(
                [
                    "publish",
                    str(ct),
                    "--source",
                    "PACS9",
                    "--model",
                    "lesion-detector",
                    "--requested-by",
                    "dr-b",
                ]
            )
            == 0
        )
        # File names are sender-chosen text: shown masked, like in logs (docs/security.md).
        assert capsys.readouterr().out.splitlines()[1].endswith("[REDACTED_PATH]")

        event = asyncio.run(first_arrival(kafka_bootstrap, f"{cli_env}images.arrived"))
        assert event.source == "PACS9"
        assert event.model_ids == ("lesion-detector",)
        assert event.requested_by == "dr-b"
        assert event.modality == "CT"

    def test_publish_passes_the_modality_hint(
        self, cli_env: str, kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`publish --modality CT` gives a PNG export (no DICOM header) its modality."""
        assert main(["topics", "ensure", "--partitions", "1"]) == 0
        png = SAMPLES_DIR / "raster" / "ct_256.png"
        assert main(["publish", str(png), "--modality", "CT"]) == 0
        capsys.readouterr()

        event = asyncio.run(first_arrival(kafka_bootstrap, f"{cli_env}images.arrived"))
        assert event.modality == "CT"
        assert event.study_instance_uid is None

    def test_db_upgrade_reports_head(
        self, cli_env: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`db upgrade` on a migrated database is a no-op that reports the head revision."""
        assert main(["db", "upgrade"]) == 0
        # The newest revision, so adding a migration does not break this test.
        assert f"database at revision {revisions()[-1]}" in capsys.readouterr().out

    def test_audit_verify_on_empty_trail(
        self, cli_env: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With no records and no checkpoints the topic trail verifies as empty and intact."""
        assert main(["topics", "ensure", "--partitions", "1"]) == 0
        load_or_create_signing_key(Path(os.environ["RADSTREAM_AUDIT__SIGNING_KEY_FILE"]))
        code = main(["audit", "verify", "--source", "topic"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "intact" in out

    async def test_periodic_verification_exports_metrics(self, cli_env: str) -> None:
        """`audit verify --every` keeps verifying and exports the metrics the alerts watch."""
        assert await asyncio.to_thread(main, ["topics", "ensure", "--partitions", "1"]) == 0
        load_or_create_signing_key(Path(os.environ["RADSTREAM_AUDIT__SIGNING_KEY_FILE"]))
        settings = load_settings(observability={"metrics_port": 0})
        registry = CollectorRegistry()
        stop = asyncio.Event()
        service = asyncio.create_task(
            serve_audit_verification(settings, "topic", 0.2, stop, registry=registry)
        )

        def runs() -> float:
            return registry.get_sample_value("radstream_audit_verifications_total") or 0.0

        try:
            # Bounded: one verification of an empty topic takes well under a second.
            for _ in range(READ_TIMEOUT_SECONDS * 10):
                if runs() >= 2 or service.done():
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await service
        assert runs() >= 2
        assert registry.get_sample_value("radstream_audit_chain_valid") == 1.0
        assert registry.get_sample_value("radstream_audit_verification_failures_total") == 0.0

    def test_audit_verify_without_pinned_key_is_a_clear_error(
        self, cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Verifying with no pinned key says so in one line (exit 3), never trusts the key file."""
        monkeypatch.delenv("RADSTREAM_AUDIT__TRUSTED_PUBLIC_KEYS")
        assert main(["audit", "verify", "--source", "topic"]) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "SETTINGS_INVALID: no audit verification key is pinned" in err

    def test_audit_public_key_prints_the_pinned_form(
        self, cli_env: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`audit public-key` prints exactly what RADSTREAM_AUDIT__TRUSTED_PUBLIC_KEYS takes."""
        assert main(["audit", "public-key"]) == 0
        printed = capsys.readouterr().out.strip()
        assert json.loads(os.environ["RADSTREAM_AUDIT__TRUSTED_PUBLIC_KEYS"]) == [printed]

    def test_audit_public_key_without_key_is_not_found(
        self,
        cli_env: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """No key file yet: one not-found line, exit 4."""
        monkeypatch.setenv("RADSTREAM_AUDIT__SIGNING_KEY_FILE", str(tmp_path / "absent.pem"))
        assert main(["audit", "public-key"]) == 4
        assert "RESOURCE_NOT_FOUND: no audit signing key" in capsys.readouterr().err

    def test_audit_show_unknown_event(
        self, cli_env: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The trail of an unknown event: nothing on stdout, one not-found line, exit 4."""
        assert main(["topics", "ensure", "--partitions", "1"]) == 0
        capsys.readouterr()
        event_id = str(uuid.uuid4())
        assert main(["audit", "show", "--source", "topic", "--event-id", event_id]) == 4
        captured = capsys.readouterr()
        assert captured.out == ""
        assert f"RESOURCE_NOT_FOUND: no audit record mentions event {event_id}" in captured.err
