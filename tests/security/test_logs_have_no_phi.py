"""No patient name, ID or birth date reaches any log line, stdout or stderr (issue 7).

Runs the whole pipeline (``cli.demo.run_pipeline_on_files``: validation, inference, results, audit)
over the bundled samples that carry patient data, plus poison messages that smuggle the same
data in a body, an unknown field, a correlation id header and a file path. Logging is set up the
way a deployment sets it up (JSON, DEBUG, so faust's and aiokafka's lines are there too) into a
buffer; file descriptors 1 and 2 are captured as well, so output that bypasses logging (a
library's print, a native decoder's panic message) is scanned too.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import structlog
from aiokafka import AIOKafkaProducer

from cli.demo import run_pipeline_on_files
from observability.logging import configure_logging
from schemas.correlation import CORRELATION_ID_HEADER, accept_correlation_id
from schemas.events import ImageArrived
from schemas.settings import SAMPLES_DIR, LoggingSettings
from streams.kafka import KafkaClientConfig, ensure_topics
from streams.topics import TopicNames
from tests.integration.database_helpers import own_database
from tests.integration.settings_support import isolated_settings

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.requirement("RS-G-01")]

SAMPLES = SAMPLES_DIR
MANIFEST = json.loads((SAMPLES / "phi_manifest.json").read_text())
# Small raster samples too, so validated-and-inferred outcomes are logged, not only rejections.
RASTER = ["raster/ct_64.png", "raster/ct_256.jpg", "raster/mr_256.png"]
# Bounded: the run takes a few seconds; the bound only stops a hung pipeline.
PIPELINE_TIMEOUT_SECONDS = 90


def phi_values() -> set[str]:
    """Every patient name, ID and birth date of the samples, and long name components."""
    values = {v for attrs in MANIFEST["files"].values() for v in attrs.values()}
    components = {part for v in values for part in v.split("^") if len(part) >= 5}
    return {v for v in values | components if len(v) >= 4}


@contextlib.contextmanager
def captured_fds() -> Iterator[io.StringIO]:
    """Redirect file descriptors 1 and 2 (and sys.stdout/stderr) into a buffer."""
    result = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        text = io.TextIOWrapper(os.fdopen(os.dup(sink.fileno()), "wb"), write_through=True)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield result
        finally:
            text.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            text.close()
            sink.seek(0)
            result.write(sink.read().decode("utf-8", "replace"))


async def publish_poison(bootstrap: str, topics: TopicNames, storage: Path) -> None:
    """Poison arrivals carrying the samples' patient data in every place a router could."""
    name, patient_id = "CompressedSamples^CT1", "1CT1"
    good = ImageArrived(source="router-1", image_uri=(SAMPLES / "raster/ct_64.png").as_uri())
    base = json.loads(good.model_dump_json())
    missing = storage / name / f"{patient_id}_19700101.dcm"  # PHI in a path that never exists
    messages = [
        (f'{{"PatientName": "{name}", "PatientID": "{patient_id}", "broken'.encode(), "c-1"),
        (
            json.dumps({**base, "patient_name": name, "PatientBirthDate": "19700101"}).encode(),
            "c-2",
        ),
        (json.dumps({**base, "schema_version": 7, "source": name}).encode(), "c-3"),
        (good.model_dump_json().encode(), name),  # the patient's name as correlation id
        (json.dumps({**base, "image_uri": missing.as_uri()}).encode(), "c-5"),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value, correlation_id in messages:
            await producer.send_and_wait(
                topics.arrived,
                value=value,
                key=patient_id.encode(),
                headers=[(CORRELATION_ID_HEADER, correlation_id.encode())],
            )
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def database_url(admin_database_url: str) -> Iterator[str]:
    """A migrated database of this module's own (the security suite has no shared one)."""
    with own_database(admin_database_url) as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def output(
    kafka_bootstrap: str,
    kafka: KafkaClientConfig,
    database_url: str,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, str]]:
    """Run the pipeline with logging at DEBUG; return the log lines and the fd 1/2 output."""
    tmp = tmp_path_factory.mktemp("logs-phi")
    settings = isolated_settings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        topic_prefix=f"rstest.{run_id}.logs-{uuid.uuid4().hex[:6]}.",
        storage_roots=(SAMPLES, tmp),
        audit_dir=tmp,
        retry={"max_attempts": 2, "initial_seconds": 0.01, "max_seconds": 0.02},
    )
    logs = io.StringIO()
    files = [SAMPLES / name for name in sorted(MANIFEST["files"])] + [SAMPLES / r for r in RASTER]
    with captured_fds() as fds:
        configure_logging(LoggingSettings(format="json", level="DEBUG"), stream=logs)
        try:
            await ensure_topics(kafka, settings.topic_prefix)
            await publish_poison(kafka_bootstrap, TopicNames(settings.topic_prefix), tmp)
            outcomes = await asyncio.wait_for(
                run_pipeline_on_files(settings, files), PIPELINE_TIMEOUT_SECONDS
            )
        finally:
            root = logging.getLogger()
            for handler in [h for h in root.handlers if getattr(h, "_radstream_handler", False)]:
                root.removeHandler(handler)
            root.setLevel(logging.WARNING)
            structlog.reset_defaults()
    assert all(o.finished for o in outcomes), [o.states for o in outcomes if not o.finished]
    yield {"logs": logs.getvalue(), "fds": fds.getvalue()}


def json_lines(text: str) -> list[dict[str, object]]:
    """The JSON log lines of ``text`` (every line the handler wrote is one)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


class TestLogsHaveNoPhi:
    async def test_no_patient_data_in_log_lines(self, output: dict[str, str]) -> None:
        """No sample's patient name, ID or birth date appears in any captured log line."""
        leaked = sorted(v for v in phi_values() if v in output["logs"])
        assert leaked == []

    async def test_no_patient_data_on_stdout_or_stderr(self, output: dict[str, str]) -> None:
        """Nothing written to file descriptors 1 and 2 holds patient data either."""
        leaked = sorted(v for v in phi_values() if v in output["fds"])
        assert leaked == []

    async def test_every_line_is_structured(self, output: dict[str, str]) -> None:
        """Every log line went through the JSON renderer (so through the masker)."""
        lines = [line for line in output["logs"].splitlines() if line.strip()]
        assert len(json_lines(output["logs"])) == len(lines)

    async def test_capture_holds_every_kind_of_outcome(self, output: dict[str, str]) -> None:
        """The scan is meaningful: processed, rejected and dead-lettered messages were logged."""
        events = {str(line["event"]) for line in json_lines(output["logs"])}
        assert {"message_processed", "image_rejected", "message_dead_lettered"} <= events

    async def test_library_lines_are_captured(self, output: dict[str, str]) -> None:
        """faust's and aiokafka's own DEBUG lines went through the same handler."""
        loggers = {str(line.get("logger", "")) for line in json_lines(output["logs"])}
        assert any(name.startswith("aiokafka") for name in loggers)
        assert any(name.startswith(("faust", "mode")) for name in loggers)

    async def test_outcome_lines_carry_message_context(self, output: dict[str, str]) -> None:
        """Each outcome line names its correlation id, stage and topic/partition/offset."""
        outcomes = [
            line
            for line in json_lines(output["logs"])
            if line["event"] in {"message_processed", "image_rejected", "message_dead_lettered"}
        ]
        for line in outcomes:
            assert {"correlation_id", "stage", "topic", "partition", "offset"} <= set(line), line

    async def test_phi_correlation_id_is_replaced(self, output: dict[str, str]) -> None:
        """Correlation id headers that are not UUIDs or digests (a name, ``c-2``) are replaced."""
        ids = {
            str(line["correlation_id"])
            for line in json_lines(output["logs"])
            if "correlation_id" in line
        }
        assert ids
        assert all(accept_correlation_id(i) == i for i in ids), ids
