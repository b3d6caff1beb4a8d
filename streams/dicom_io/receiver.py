"""The DICOM receiver: a C-STORE SCP (pynetdicom) that answers success only once an instance is
stored and its arrival event is confirmed on the broker.

pynetdicom runs every association on a thread of its own and calls the handlers there; the
publisher lives on the asyncio loop. Each C-STORE hands its bytes to the loop
(``run_coroutine_threadsafe``) and waits at most the ingest's publish timeout plus a small margin,
so a stuck broker answers *Refused: Out of Resources* (``A700``) well within a sender's DIMSE
timeout, and the sender retries. Associations from calling AE titles outside the allow-list are
rejected at association time. Nothing a sender controls (AE titles, UIDs, attribute values) is
logged: a refused AE title appears only as a short SHA-256 fingerprint.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import structlog
from pydicom import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from schemas.correlation import new_correlation_id
from schemas.errors import (
    ErrorCode,
    RadstreamError,
    TransientError,
    address_unusable,
)
from schemas.settings import DicomSettings, Settings
from streams.dicom import statuses
from streams.dicom.instances import ACCEPTED_TRANSFER_SYNTAXES, IMAGE_STORAGE_SOP_CLASSES
from streams.dicom_io.ingest import ArrivalPublisher, InstanceIngest

log = structlog.get_logger("radstream.dicom")
# Beyond the ingest's own timeout: hopping onto the loop, header parsing and the disk write.
BRIDGE_MARGIN_SECONDS: Final = 2.0


class ReceiverObserver(Protocol):
    """Told what the receiver answered (``observability.metrics.Metrics`` in production)."""

    def dicom_store_answered(
        self, outcome: str, seconds: float, code: ErrorCode | None = None
    ) -> None:
        """A C-STORE was answered: ``stored``, ``duplicate`` or ``refused`` (with ``code``)."""

    def dicom_association_refused(self) -> None:
        """An association was rejected (calling AE title not allowed)."""


class _Unobserved:
    def dicom_store_answered(
        self, outcome: str, seconds: float, code: ErrorCode | None = None
    ) -> None:
        """Nothing is recorded."""

    def dicom_association_refused(self) -> None:
        """Nothing is recorded."""


def ae_fingerprint(ae_title: str) -> str:
    """A short, stable stand-in for an AE title a sender chose (it may be free text)."""
    return "dicom-" + hashlib.sha256(ae_title.encode("utf-8", "replace")).hexdigest()[:12]


class DicomReceiver:
    """A C-STORE/C-ECHO SCP feeding an :class:`InstanceIngest` on ``loop``."""

    def __init__(
        self,
        settings: DicomSettings,
        ingest: InstanceIngest,
        loop: asyncio.AbstractEventLoop,
        *,
        observer: ReceiverObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._ingest = ingest
        self._loop = loop
        self._observer: ReceiverObserver = observer if observer is not None else _Unobserved()
        self._clock = clock
        self._allowed = frozenset(settings.allowed_calling_ae_titles)
        self._wait_seconds = ingest.publish_timeout_seconds + BRIDGE_MARGIN_SECONDS
        self._server: ThreadedAssociationServer | None = None

    def application_entity(self) -> AE:
        """The AE: its title, limits, allow-list and the contexts it accepts."""
        ae = AE(ae_title=self._settings.ae_title)
        ae.maximum_associations = self._settings.max_associations
        ae.network_timeout = self._settings.network_timeout_seconds
        ae.dimse_timeout = self._settings.dimse_timeout_seconds
        ae.acse_timeout = self._settings.dimse_timeout_seconds
        ae.require_calling_aet = sorted(self._allowed)
        ae.require_called_aet = self._settings.require_called_ae_title
        ae.add_supported_context(Verification)
        for sop_class in IMAGE_STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop_class, list(ACCEPTED_TRANSFER_SYNTAXES))
        return ae

    def start(self) -> tuple[str, int]:
        """Listen (non-blocking) and return the bound address (port 0 picks a free port).

        Raises:
            RadstreamError: ``SETTINGS_INVALID`` when the address cannot be listened on (in use
                by another process, not an address of this host, a privileged port).
        """
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_REJECTED, self.on_rejected),
        ]
        host, port = self._settings.host, self._settings.port
        try:
            server = self.application_entity().start_server(
                (host, port), block=False, evt_handlers=handlers
            )
        except OSError as exc:
            raise address_unusable(
                "listen for DICOM",
                host,
                port,
                exc,
                "RADSTREAM_DICOM__HOST and RADSTREAM_DICOM__PORT",
            ) from exc
        if server is None:  # pragma: no cover - block=False always returns the server
            raise RuntimeError("pynetdicom did not return its server")
        self._server = server
        host, port = server.server_address[:2]
        log.info("dicom_listener_started", ae_title=self._settings.ae_title, port=port)
        return str(host), int(port)

    def stop(self) -> None:
        """Stop accepting, abort associations still open (blocking: call off the loop)."""
        server, self._server = self._server, None
        if server is None:
            return
        for association in list(server.active_associations):
            association.abort()
        server.shutdown()
        log.info("dicom_listener_stopped")

    def source_of(self, calling_ae_title: str) -> str:
        """The event's ``source``: an allow-listed AE title, else its fingerprint."""
        title = calling_ae_title.strip()
        return title if title in self._allowed else ae_fingerprint(title)

    def on_echo(self, _event: evt.Event) -> int:
        """C-ECHO: always success (the association already passed the allow-list)."""
        return statuses.SUCCESS

    def on_rejected(self, event: evt.Event) -> None:
        """Log a refused association without the AE title the sender chose."""
        calling = str(event.assoc.requestor.ae_title)
        self._observer.dicom_association_refused()
        log.warning(
            "dicom_association_refused",
            error_code=ErrorCode.AUTHORIZATION_FAILED.value,
            calling_ae=ae_fingerprint(calling.strip()),
        )

    def on_store(self, event: evt.Event) -> Dataset:
        """C-STORE: store and announce the instance, then answer; never raises."""
        started = self._clock()
        correlation_id = new_correlation_id()
        source = self.source_of(str(event.assoc.requestor.ae_title))
        try:
            data = event.encoded_dataset(include_meta=True)
            future = asyncio.run_coroutine_threadsafe(
                self._ingest.ingest(data, source=source, correlation_id=correlation_id),
                self._loop,
            )
            try:
                ingested = future.result(timeout=self._wait_seconds)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise TransientError(
                    ErrorCode.TIMEOUT, "the instance was not confirmed in time"
                ) from None
        except RadstreamError as exc:
            self._answered("refused", started, exc.code)
            return self._failure(exc, correlation_id, source)
        except Exception as exc:  # noqa: BLE001 - a handler must answer, never raise
            log.error(  # noqa: TRY400 - the type only: a traceback may quote header values
                "dicom_store_failed", error_type=type(exc).__name__, correlation_id=correlation_id
            )
            self._answered("refused", started, ErrorCode.INTERNAL_ERROR)
            return _status(statuses.PROCESSING_FAILURE, ErrorCode.INTERNAL_ERROR)
        self._answered("duplicate" if ingested.duplicate else "stored", started, None)
        return _status(statuses.SUCCESS, None)

    def _answered(self, outcome: str, started: float, code: ErrorCode | None) -> None:
        self._observer.dicom_store_answered(outcome, self._clock() - started, code)

    @staticmethod
    def _failure(error: RadstreamError, correlation_id: str, source: str) -> Dataset:
        status = statuses.failure_status(error)
        log.warning(
            "dicom_store_refused",
            error_code=error.code.value,
            reason=error.reason,
            dicom_status=f"0x{status:04X}",
            correlation_id=correlation_id,
            source=source,
        )
        return _status(status, error.code)


def _status(status: int, code: ErrorCode | None) -> Dataset:
    answer = Dataset()
    answer.Status = status
    if code is not None:
        answer.ErrorComment = code.value  # LO, at most 64 characters: our codes fit
    return answer


async def run_dicom_listener(
    settings: Settings,
    publisher: ArrivalPublisher,
    stop: asyncio.Event,
    *,
    on_listening: Callable[[tuple[str, int]], None] | None = None,
    observer: ReceiverObserver | None = None,
) -> None:
    """Receive DICOM until ``stop`` is set, then stop accepting and finish what is in flight.

    Args:
        settings: ``settings.dicom`` (AE title, port, allow-list, timeouts), the storage dir
            and the file size limit.
        publisher: confirms each arrival event on the broker (started by the caller).
        stop: set it to shut down (SIGTERM/SIGINT in the CLI).
        on_listening: called with the bound address once the port is open.
        observer: told each answer (the listener's metrics).
    """
    ingest = InstanceIngest.from_settings(settings, publisher)
    receiver = DicomReceiver(settings.dicom, ingest, asyncio.get_running_loop(), observer=observer)
    address = await asyncio.to_thread(receiver.start)
    if on_listening is not None:
        on_listening(address)
    try:
        await stop.wait()
    finally:
        # Off the loop: handler threads may be waiting for the loop to confirm their instance.
        await asyncio.to_thread(receiver.stop)
        await ingest.drain()
