"""The real DICOM peers for integration tests: Orthanc (REST + DICOM) and dcmtk's tools.

``ops/orthanc.sh up`` (run by ``make test``) starts Orthanc and writes its ports to
``.state/orthanc/peer.env``. A missing peer is a test failure, never a skip. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.events import ImageArrived
from schemas.settings import Settings
from streams.dicom_io.ingest import ArrivalPublisher
from streams.dicom_io.receiver import run_dicom_listener
from streams.kafka import KafkaClientConfig, read_topic

REPO_ROOT = Path(__file__).resolve().parent.parent
PEER_ENV = (
    Path(os.environ.get("RADSTREAM_STATE_DIR", REPO_ROOT / ".state")) / "orthanc" / "peer.env"
)
# Orthanc answers REST calls on loopback in milliseconds; sending a handful of small instances
# to radstream takes about a second. Generous bounds, so a loaded CI machine does not flake.
REST_TIMEOUT_SECONDS = 60.0
TOOL_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Orthanc:
    """The running Orthanc: its REST base URL and DICOM address."""

    http_port: int
    dicom_port: int
    ae_title: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=REST_TIMEOUT_SECONDS)


def orthanc_peer() -> Orthanc:
    """The Orthanc ``ops/orthanc.sh up`` started; fails the test when it is not there."""
    if not PEER_ENV.exists():
        pytest.fail(f"Orthanc is not running ({PEER_ENV} missing): run `make peers-up` first")
    values = dict(line.split("=", 1) for line in PEER_ENV.read_text().splitlines() if "=" in line)
    peer = Orthanc(
        int(values["ORTHANC_HTTP_PORT"]), int(values["ORTHANC_DICOM_PORT"]), values["ORTHANC_AET"]
    )
    try:
        httpx.get(f"{peer.url}/system", timeout=5).raise_for_status()
    except httpx.HTTPError:
        pytest.fail(f"Orthanc does not answer at {peer.url}: run `make peers-up` first")
    return peer


def dcmtk(tool: str) -> str:
    """The path of a dcmtk tool; fails the test when dcmtk is not installed."""
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"dcmtk's {tool} is missing: run `make peers-up` (installs dcmtk)")
    return found


async def run_tool(*command: str) -> tuple[int, str]:
    """Run a dcmtk tool without blocking the loop (the receiver under test runs on it)."""
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), TOOL_TIMEOUT_SECONDS)
    return process.returncode or 0, output.decode("utf-8", "replace")


async def storescu(
    port: int, files: Sequence[Path], *, calling: str = "STORESCU", called: str = "RADSTREAM"
) -> tuple[int, str]:
    """Send uncompressed ``files`` with dcmtk's storescu (a compressed file needs an ``-x`` option).

    ``-R`` proposes only the files' SOP classes, with the uncompressed transfer syntaxes.
    """
    return await run_tool(
        dcmtk("storescu"), "-v", "-R", "-aet", calling, "-aec", called, "127.0.0.1", str(port),
        *map(str, files),
    )  # fmt: skip


@asynccontextmanager
async def listening(
    settings: Settings, publisher: ArrivalPublisher
) -> AsyncIterator[tuple[str, int]]:
    """Run the receiver on the current loop for the block; yield its address."""
    stop = asyncio.Event()
    address: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_dicom_listener(settings, publisher, stop, on_listening=address.set_result)
    )
    try:
        yield await asyncio.wait_for(asyncio.shield(address), 30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def arrivals(bootstrap: str, topic: str) -> list[tuple[bytes | None, ImageArrived]]:
    """Every arrival event on ``topic`` with its key."""
    content = await read_topic(KafkaClientConfig(bootstrap), topic)
    return [(r.key, ImageArrived.model_validate_json(r.value)) for r in content.all_records()]


async def point_orthanc_at(orthanc: Orthanc, ae_title: str, port: int) -> None:
    """Move Orthanc's "radstream" modality to this test's receiver."""
    async with orthanc.client() as client:
        response = await client.put(
            "/modalities/radstream", json={"AET": ae_title, "Host": "127.0.0.1", "Port": port}
        )
        response.raise_for_status()


async def upload(orthanc: Orthanc, data: bytes) -> dict[str, Any]:
    """POST /instances: store one instance in Orthanc; its answer (ID, ParentStudy …)."""
    async with orthanc.client() as client:
        response = await client.post("/instances", content=data)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer
