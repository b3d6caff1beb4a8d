"""The DICOM round trip through a real PACS (Orthanc), as ``radstream dicom demo`` shows it.

1. the worker (every stage, ``dicom-export`` sending to Orthanc) and the C-STORE receiver start
   in this process;
2. the instances are uploaded to Orthanc over its REST API (``POST /instances``) and Orthanc is
   asked to send them to radstream (``POST /modalities/radstream/store``), as a PACS would;
3. each instance's outcome is read back from PostgreSQL (lifecycle and results), and each
   result's Structured Report is looked up in Orthanc: in the source study, referencing the
   source instance.

The integration test of the round trip runs this same code. Orthanc is reached with the
standard library's HTTP client (loopback, bounded by :data:`REST_TIMEOUT_SECONDS`).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import Hashable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import ValidationError
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid

import app
from cli.demo import (
    START_TIMEOUT_SECONDS,
    FileOutcome,
    outcome_of,
    outcome_row,
    wait_for_audit,
    wait_for_start,
)
from cli.errors import CommandError
from schemas.audit import AuditEventType, AuditRecord
from schemas.errors import ErrorCode, TransientError
from schemas.events import ImageArrived
from schemas.settings import SAMPLES_DIR, DicomPeer, Settings
from sinks.database import Database
from sinks.repositories import ResultsRepository
from streams.dicom.instances import read_instance
from streams.dicom.reports import report_sop_instance_uid
from streams.inference.routing import RoutingRules
from streams.kafka import KafkaClientConfig, read_topic
from streams.topics import TopicNames

REST_TIMEOUT_SECONDS: Final = 60.0
POLL_SECONDS: Final = 0.5
# The modality under which Orthanc knows radstream (ops/orthanc.sh registers it).
ORTHANC_MODALITY: Final = "radstream"


@dataclass(frozen=True)
class Orthanc:
    """An Orthanc's REST base URL and its DICOM identity (read from its ``/system``)."""

    url: str
    ae_title: str
    dicom_port: int

    @property
    def peer(self) -> DicomPeer:
        """Orthanc as an export destination."""
        return DicomPeer(
            ae_title=self.ae_title, host=urlsplit(self.url).hostname or "", port=self.dicom_port
        )


def orthanc_call(url: str, method: str = "GET", body: bytes | None = None) -> bytes:
    """One bounded REST call to Orthanc; its answer's body.

    Raises:
        CommandError: ``DICOM_PEER_UNAVAILABLE`` when Orthanc does not answer or refuses.
    """
    if urlsplit(url).scheme not in {"http", "https"}:
        raise CommandError(ErrorCode.REQUEST_INVALID, "the Orthanc URL must be http(s)")
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - checked above
    try:
        with urllib.request.urlopen(request, timeout=REST_TIMEOUT_SECONDS) as answer:  # noqa: S310 - scheme checked above  # nosec B310
            return bytes(answer.read())
    except OSError as exc:
        raise CommandError(
            ErrorCode.DICOM_PEER_UNAVAILABLE,
            f"Orthanc at {urlsplit(url).netloc} did not answer {method} {urlsplit(url).path}",
            advice="Start it with 'make peers-up' (ops/orthanc.sh up) and pass its URL",
        ) from exc


async def orthanc_json(url: str, method: str = "GET", payload: object = None) -> Any:
    """A REST call with a JSON body and answer (None when empty), off the event loop."""
    body = None if payload is None else json.dumps(payload).encode()
    answer = await asyncio.to_thread(orthanc_call, url, method, body)
    return json.loads(answer) if answer.strip() else None


async def connect_orthanc(url: str) -> Orthanc:
    """The Orthanc at ``url``, with the AE title and DICOM port it reports."""
    base = url.rstrip("/")
    system = await orthanc_json(f"{base}/system")
    return Orthanc(base, str(system["DicomAet"]), int(system["DicomPort"]))


@dataclass(frozen=True)
class RoundTripOutcome:
    """One instance's trip: what radstream did with it, and the reports found in Orthanc.

    ``reports`` has one entry per stored result (``result_ids``, in the same order): True when
    its report is in Orthanc, in the source study, referencing the source instance.
    """

    name: str
    sop_instance_uid: str
    outcome: FileOutcome
    reports: tuple[bool, ...]
    result_ids: tuple[uuid.UUID, ...] = ()

    @property
    def finished(self) -> bool:
        """The pipeline finished with it and every result's report arrived."""
        return self.outcome.finished and all(self.reports)


def export_settings(settings: Settings, orthanc: Orthanc) -> Settings:
    """``settings`` exporting to ``orthanc``, the receiver on a free port."""
    dicom = settings.dicom.model_copy(update={"export_destinations": (orthanc.peer,), "port": 0})
    return settings.model_copy(update={"dicom": dicom})


async def report_in_orthanc(orthanc: Orthanc, report_uid: str, source: Dataset) -> bool:
    """Whether the report ``report_uid`` is in Orthanc, in the source's study, citing it."""
    found = await orthanc_json(
        f"{orthanc.url}/tools/find",
        "POST",
        {"Level": "Instance", "Query": {"SOPInstanceUID": report_uid}},
    )
    if not found:
        return False
    data = await asyncio.to_thread(orthanc_call, f"{orthanc.url}/instances/{found[0]}/file")
    report = dcmread(BytesIO(data))
    cited = {
        str(item.ReferencedSOPInstanceUID)
        for evidence in report.get("CurrentRequestedProcedureEvidenceSequence", [])
        for series in evidence.get("ReferencedSeriesSequence", [])
        for item in series.get("ReferencedSOPSequence", [])
    }
    return (
        report.StudyInstanceUID == source.StudyInstanceUID and str(source.SOPInstanceUID) in cited
    )


async def run_dicom_round_trip(
    settings: Settings,
    orthanc: Orthanc,
    instances: Sequence[tuple[str, bytes]],
    *,
    timeout_seconds: float = 240.0,
) -> list[RoundTripOutcome]:
    """Send ``instances`` (name, Part 10 bytes) through Orthanc to radstream and back.

    ``settings`` must export to ``orthanc`` (:func:`export_settings`). Waits at most
    ``timeout_seconds`` for every outcome and report, then for the audit records of every
    arrival and export (the worker stops after; nothing would audit them later); unfinished
    ones are reported as such.
    """
    rules = RoutingRules.load(settings.inference.routing_rules_file)
    stop, started = asyncio.Event(), asyncio.Event()
    bound: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    worker = asyncio.create_task(
        app.run_worker(
            settings, app.default_stages(settings), stop, started=started, serve_http=False
        )
    )
    listener = asyncio.create_task(
        app.run_listener(settings, stop, serve_http=False, on_listening=bound.set_result)
    )
    try:
        async with AsyncExitStack() as stack:
            database = await app.open_database(stack, settings, pool_size=2)
            await wait_for_start(started, worker)
            _host, port = await wait_for_listener(bound, listener)
            await orthanc_json(
                f"{orthanc.url}/modalities/{ORTHANC_MODALITY}",
                "PUT",
                {"AET": settings.dicom.ae_title, "Host": "127.0.0.1", "Port": port},
            )
            ids = [await upload(orthanc, data) for _name, data in instances]
            await orthanc_json(
                f"{orthanc.url}/modalities/{ORTHANC_MODALITY}/store",
                "POST",
                {"Resources": ids, "Synchronous": True},
            )
            deadline = asyncio.get_running_loop().time() + timeout_seconds
            sops = [str(read_instance(data).sop_instance_uid) for _name, data in instances]
            while True:
                arrived = await arrivals_by_sop(settings)
                outcomes = [
                    await _outcome(database, rules, orthanc, arrived.get(sop), name=name, data=data)
                    for sop, (name, data) in zip(sops, instances, strict=True)
                ]
                done = all(outcome.finished for outcome in outcomes)
                if done or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(POLL_SECONDS)
            await wait_for_audit(settings, [str(e.event_id) for e in arrived.values()], deadline)
            exported = [
                (AuditEventType.RESULT_EXPORTED, r)
                for outcome in outcomes
                for r in outcome.result_ids
            ]
            await wait_for_audit(settings, exported, deadline, key=export_audited)
            return outcomes
    finally:
        stop.set()
        await asyncio.gather(worker, listener, return_exceptions=True)


def export_audited(record: AuditRecord) -> Hashable:
    """An audit record as (its type, the result it is about): exports are audited per result."""
    return (record.event_type, record.object.result_id)


async def wait_for_listener(
    bound: asyncio.Future[tuple[str, int]], listener: asyncio.Task[None]
) -> tuple[str, int]:
    """The receiver's address once it listens; its error if it failed to start (bounded)."""
    waiters: list[asyncio.Future[Any]] = [bound, listener]
    await asyncio.wait(waiters, timeout=START_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    if bound.done():
        return bound.result()
    if listener.done():
        listener.result()  # raises the listener's error
    raise TransientError(ErrorCode.TIMEOUT, "the DICOM receiver did not start in time")


async def upload(orthanc: Orthanc, data: bytes) -> str:
    """Store one instance in Orthanc (``POST /instances``); its Orthanc id."""
    answer = json.loads(
        await asyncio.to_thread(orthanc_call, f"{orthanc.url}/instances", "POST", data)
    )
    return str(answer["ID"])


async def arrivals_by_sop(settings: Settings) -> dict[str, ImageArrived]:
    """The arrival events announced so far, by SOP Instance UID.

    Read from the topic rather than derived from the uploaded bytes: Orthanc rewrites the file
    meta information when it sends, so the bytes radstream received (and their event id) differ.
    The demo runs on the configured topics, so other senders' records are there too: one that
    is not an ``ImageArrived`` (the stages dead-letter it) is skipped, not a crash.
    """
    content = await read_topic(
        KafkaClientConfig.from_settings(settings), TopicNames(settings.topic_prefix).arrived
    )
    events: list[ImageArrived] = []
    for record in content.all_records():
        if record.value is None:
            continue
        try:
            events.append(ImageArrived.model_validate_json(record.value))
        except ValidationError:
            continue  # not ours to judge here: the pipeline dead-letters it
    return {event.sop_instance_uid: event for event in events if event.sop_instance_uid}


async def _outcome(
    database: Database,
    rules: RoutingRules,
    orthanc: Orthanc,
    event: ImageArrived | None,
    *,
    name: str,
    data: bytes,
) -> RoundTripOutcome:
    """What became of one instance so far, and which of its results' reports are in Orthanc."""
    source = dcmread(BytesIO(data), stop_before_pixels=True)
    if event is None:  # not announced (yet)
        outcome = FileOutcome(Path(name), "", (), None, ())
        return RoundTripOutcome(name, str(source.SOPInstanceUID), outcome, ())
    outcome = await outcome_of(database, Path(name), event, rules)
    results = await ResultsRepository(database.sessions).list_for_event(event.event_id)
    reports = tuple(
        [
            await report_in_orthanc(orthanc, report_sop_instance_uid(r.result_id), source)
            for r in results
        ]
    )
    result_ids = tuple(r.result_id for r in results)
    return RoundTripOutcome(name, str(source.SOPInstanceUID), outcome, reports, result_ids)


def fresh_copy(path: Path) -> bytes:
    """``path``'s instance with new study, series and SOP instance UIDs (a new study per run)."""
    dataset = dcmread(path)
    sop = generate_uid()
    dataset.SOPInstanceUID = sop
    dataset.file_meta.MediaStorageSOPInstanceUID = sop
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def demo_instances() -> list[tuple[str, bytes]]:
    """The bundled DICOM samples (``samples/dicom``), each as a fresh study."""
    return [(path.name, fresh_copy(path)) for path in sorted((SAMPLES_DIR / "dicom").glob("*.dcm"))]


def round_trip_row(outcome: RoundTripOutcome) -> tuple[str, str, str, str]:
    """Sample, outcome, detail and where its reports are."""
    _name, what, detail = outcome_row(outcome.outcome, outcome.name)
    if not outcome.reports:
        where = "-"
    else:
        found = sum(outcome.reports)
        where = f"{found} of {len(outcome.reports)} SR in Orthanc, same study"
    return outcome.name, what, detail, where
