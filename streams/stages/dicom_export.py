"""The dicom-export stage: each result goes back to the PACS as a Structured Report.

Consumes ``inference.results``. For a result whose source image was received over DICOM (the
C-STORE receiver or STOW-RS stored it by content, so its ``input_sha256`` finds it), the stage

1. reads the stored source header (patient and study attributes come from there, at export
   time: they never travel on Kafka and are never logged);
2. builds the TID 1500 report in the source study (``streams/dicom/reports.py``);
3. sends it to every configured destination, retrying unavailability with bounded backoff;
4. emits one ``ResultExported`` per destination on ``results.exported`` (the audit agent reads
   that topic, so every export is audited), or a dead letter when a destination refused the
   report for good (``DICOM_EXPORT_REFUSED``) or stayed unavailable (``RETRIES_EXHAUSTED``).

Where the source comes from: first the DICOM store (by ``input_sha256``: what the receiver and
STOW-RS stored); else, for a DICOM file a router published by path, the result's ``image_uri``
read through the storage roots (the same reader, roots and size limit as validation and inference)
and checked against ``input_sha256``: a file replaced since it was inferred on is not reported on
(dead letter ``CHECKSUM_MISMATCH``), and a file removed since is ``STORAGE_FILE_NOT_FOUND``.

A result without a SOP Instance UID (PNG/JPEG input) has nothing to report back to, nor has a
result without a stored source and without a URI (written before results carried it): it is
skipped with a log line. The report's UIDs derive from the result, so a replayed dead letter
re-sends the same instance and a PACS keeps one copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog
from pydicom import Dataset

from schemas.errors import ErrorCode, InputValidationError, RadstreamError, error_for
from schemas.events import InferenceCompleted, ResultExported, Stage
from schemas.settings import DicomPeer
from streams.dicom.reports import REPORT_SOP_CLASS_UID, build_result_report, report_identity
from streams.dicom_io.store import InstanceStore, read_header, sha256_of
from streams.kafka import Outgoing
from streams.pipeline import Incoming, dead_letter_for, parse_event
from streams.retry import FailureRecord, RetryPolicy, run_with_retries
from streams.stages.common import ImageReader, run_decoder
from streams.topics import TopicKey

log = structlog.get_logger("radstream.dicom")


class ReportSender(Protocol):
    """Sends one DICOM object to one destination (``DicomSender`` in production)."""

    async def send(self, dataset: Dataset, peer: DicomPeer) -> None:
        """Return once stored; raise TransientError (retry) or another RadstreamError (refused)."""


class DicomExportStage:
    """Builds and sends the result report of each DICOM-sourced result."""

    stage = Stage.DICOM_EXPORT

    def __init__(
        self,
        store: InstanceStore,
        sender: ReportSender,
        destinations: Sequence[DicomPeer],
        policy: RetryPolicy,
        *,
        images: ImageReader | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if not destinations:
            raise ValueError("the dicom-export stage needs at least one destination")
        self._store = store
        self._sender = sender
        self._destinations = tuple(destinations)
        self._policy = policy
        self._images = images
        self._sleep = sleep

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        """The export outcomes of ``batch``, in order (none for results with no DICOM source)."""
        outgoing: list[Outgoing] = []
        for message in batch:
            outgoing.extend(await self._one(message))
        return outgoing

    async def _one(self, message: Incoming) -> list[Outgoing]:
        try:
            result = parse_event(message, InferenceCompleted)
        except RadstreamError as exc:
            return [dead_letter_for(message, self.stage, exc)]
        if result.sop_instance_uid is None:
            self._skipped(result, "no_sop_instance")
            return []
        try:
            source = await self._source_of(result)
        except RadstreamError as exc:
            return [dead_letter_for(message, self.stage, exc, event_id=result.event_id)]
        if source is None:
            self._skipped(result, "no_dicom_source")
            return []
        try:
            report = await run_decoder(build_result_report, source, result)
        except Exception as exc:  # noqa: BLE001 - highdicom refuses inconsistent sources
            error = error_for(ErrorCode.INTERNAL_ERROR, "the result report could not be built")
            log.error(  # noqa: TRY400 - the type only: highdicom's text may quote attributes
                "dicom_report_not_built",
                event_id=str(result.event_id),
                error_type=type(exc).__name__,
            )
            return [dead_letter_for(message, self.stage, error, event_id=result.event_id)]
        source_uid = result.sop_instance_uid
        return [
            await self._send(message, result, source_uid, report, peer)
            for peer in self._destinations
        ]

    async def _source_of(self, result: InferenceCompleted) -> Dataset | None:
        """The source header: from the DICOM store, else from the result's URI (checked)."""
        try:
            return await run_decoder(self._store.read_header, result.input_sha256)
        except FileNotFoundError:
            pass
        if result.image_uri is None or self._images is None:
            return None
        data = await self._images.read(result.image_uri, FailureRecord())
        if sha256_of(data) != result.input_sha256:
            raise InputValidationError(
                ErrorCode.CHECKSUM_MISMATCH,
                "the source file changed after inference; no report is sent for it",
            )
        return await run_decoder(read_header, data)

    async def _send(
        self,
        message: Incoming,
        result: InferenceCompleted,
        source_uid: str,
        report: Dataset,
        peer: DicomPeer,
    ) -> Outgoing:
        record = FailureRecord()
        try:
            await run_with_retries(
                lambda: self._sender.send(report, peer),
                self._policy,
                sleep=self._sleep,
                record=record,
            )
        except RadstreamError as exc:
            return dead_letter_for(
                message, self.stage, exc, failures=record, event_id=result.event_id
            )
        identity = report_identity(result, str(report.StudyInstanceUID))
        exported = ResultExported(
            event_id=result.event_id,
            result_id=result.result_id,
            correlation_id=message.correlation_id,
            occurred_at=result.occurred_at,
            destination=peer.ae_title,
            study_instance_uid=str(report.StudyInstanceUID),
            source_sop_instance_uid=source_uid,
            report_series_instance_uid=identity.series_instance_uid,
            report_sop_instance_uid=identity.sop_instance_uid,
            report_sop_class_uid=REPORT_SOP_CLASS_UID,
            model=result.model,
        )
        return Outgoing(
            TopicKey.RESULTS_EXPORTED, exported.message_key(), exported, message.out_headers()
        )

    @staticmethod
    def _skipped(result: InferenceCompleted, why: str) -> None:
        log.info("dicom_export_skipped", event_id=str(result.event_id), why=why)
