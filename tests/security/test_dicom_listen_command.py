"""``radstream dicom listen`` as operators run it: a process, its probes, its metrics, its stderr.

The console script runs with JSON logs at DEBUG; dcmtk's storescu sends an instance with PHI
canaries in every patient attribute, one whose UID is a patient's name (refused), and a calling
AE title that is a patient's name (rejected). The process must announce the good one, count all
three in /metrics, leak none of the canaries on stderr or the topic, and stop on SIGTERM with
status 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.dicom.instances import read_instance
from streams.topics import TopicNames
from tests.dicom_peers import arrivals, storescu
from tests.dicom_support import canaries_in, variant
from tests.ports import free_port
from tests.security.test_dicom_phi import PHI_AE_TITLE, PHI_UID, topic_text

pytestmark = pytest.mark.requirement("RS-DCM-01", "RS-G-01", "RS-G-02")
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 60.0


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback test URL
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def listener(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> Iterator[tuple[subprocess.Popen[bytes], int, int, Path]]:
    root = tmp_path / "storage"
    root.mkdir()
    dicom_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "RADSTREAM_ENVIRONMENT": "test",
        "RADSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RADSTREAM_TOPIC_PREFIX": topic_prefix,
        "RADSTREAM_STORAGE_ROOTS": str(root),
        "RADSTREAM_DICOM__PORT": str(dicom_port),
        "RADSTREAM_DICOM__ALLOWED_CALLING_AE_TITLES": '["STORESCU"]',
        "RADSTREAM_OBSERVABILITY__METRICS_PORT": str(metrics_port),
        "RADSTREAM_LOGGING__LEVEL": "DEBUG",
        "RADSTREAM_LOGGING__FORMAT": "json",
    }
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("radstream")), "dicom", "listen"],
            env=env,
            stderr=sink,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield process, dicom_port, metrics_port, stderr
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_SECONDS)


async def wait_ready(metrics_port: int, process: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(READY_TIMEOUT_SECONDS):
        while True:
            assert process.poll() is None, "radstream dicom listen exited while starting"
            try:
                status, _ = await asyncio.to_thread(
                    http_get, f"http://127.0.0.1:{metrics_port}/readyz"
                )
            except OSError:
                status = 0
            if status == 200:
                return
            await asyncio.sleep(0.5)


def samples(metrics: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == name
    }


async def test_listen_command_probes_metrics_and_no_phi(
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_prefix: str,
    listener: tuple[subprocess.Popen[bytes], int, int, Path],
) -> None:
    """Ready, counts each answer, leaks nothing, exits 0 on SIGTERM."""
    process, dicom_port, metrics_port, stderr = listener
    good = tmp_path / "CANARYDOE_JANEPHI_19450607.dcm"
    good.write_bytes(variant(phi=True))
    bad = tmp_path / "MRN-CANARY-991177.dcm"
    bad.write_bytes(variant(phi=True, StudyInstanceUID=PHI_UID))
    await wait_ready(metrics_port, process)
    status, live = await asyncio.to_thread(http_get, f"http://127.0.0.1:{metrics_port}/livez")
    assert status == 200, live

    code, output = await storescu(dicom_port, [good, bad])
    assert code != 0  # the bad one was refused
    assert "Success" in output
    refused, _ = await storescu(dicom_port, [good], calling=PHI_AE_TITLE)
    assert refused != 0

    _, metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{metrics_port}/metrics")
    answered = samples(metrics, "radstream_dicom_instances_total")
    assert answered[(("error_code", ""), ("outcome", "stored"))] == 1
    assert answered[(("error_code", "DICOM_INVALID_VALUE"), ("outcome", "refused"))] == 1
    assert samples(metrics, "radstream_dicom_associations_refused_total")[()] == 1
    assert samples(metrics, "radstream_dicom_store_seconds_count")[()] == 2

    os.killpg(process.pid, signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, STOP_TIMEOUT_SECONDS) == 0

    events = await arrivals(kafka_bootstrap, TopicNames(topic_prefix).arrived)
    assert [e.sop_instance_uid for _, e in events] == [
        read_instance(good.read_bytes()).sop_instance_uid
    ]
    topic = await topic_text(kafka_bootstrap, TopicNames(topic_prefix).arrived)
    logs = stderr.read_text()
    assert "dicom_store_refused" in logs  # the controls: the refusals were logged
    assert "dicom_association_refused" in logs
    assert canaries_in(logs) == []
    assert canaries_in(topic) == []
    assert PHI_AE_TITLE not in logs + topic
