"""The one path from received DICOM bytes to a confirmed ``ImageArrived`` event.

The C-STORE receiver and the STOW-RS route both call :meth:`InstanceIngest.ingest`: read the
header (routing facts only), store the bytes durably by content, then publish the arrival event
and wait for the broker's confirmation. Only when it returns may the sender be told "stored".

Resends are recognised, so one instance never becomes two events:

* the event id is derived from the SOP Instance UID and the bytes' SHA-256;
* a confirmed instance is marked in the store; a resend of it is answered at once, unpublished;
* a publication still in flight (the broker was slow, the sender gave up and resent) is not
  started again: the resend waits for the same publication.

The waiting is bounded by ``publish_timeout_seconds``; the publication itself goes on (bounded
by the publisher's own delivery timeout) and marks the instance when the broker confirms it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from pydantic import BaseModel

from schemas.correlation import CORRELATION_ID_HEADER
from schemas.errors import ErrorCode, InputValidationError, TransientError
from schemas.events import ImageArrived, Priority
from schemas.settings import Settings
from streams.dicom.instances import ReceivedInstance, arrival_for_instance, read_instance
from streams.dicom_io.store import InstanceStore, sha256_of
from streams.stages.common import run_decoder
from streams.topics import TopicKey, arrival_topic

log = structlog.get_logger("radstream.dicom")


class ArrivalPublisher(Protocol):
    """Publishes one event and returns once the broker confirmed it.

    Raises :class:`~schemas.errors.TransientError` (``BROKER_UNAVAILABLE``, ``TIMEOUT``) when it
    did not. ``KafkaPublisher`` and the gateway's ``EventPublisher`` have this shape.
    """

    async def publish(
        self,
        topic: TopicKey,
        key: bytes,
        value: BaseModel,
        headers: Sequence[tuple[str, bytes]],
        /,
    ) -> None:
        """Publish ``value`` under ``key`` on ``topic`` and wait for the confirmation."""


@dataclass(frozen=True, slots=True)
class Ingested:
    """A stored, announced instance; ``duplicate`` when it had been announced before."""

    event: ImageArrived
    instance: ReceivedInstance
    duplicate: bool


class InstanceIngest:
    """Stores received instances and announces them, exactly once per instance."""

    def __init__(
        self,
        store: InstanceStore,
        publisher: ArrivalPublisher,
        *,
        max_bytes: int,
        publish_timeout_seconds: float,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._max_bytes = max_bytes
        self._timeout = publish_timeout_seconds
        self._in_flight: dict[uuid.UUID, asyncio.Task[None]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, publisher: ArrivalPublisher) -> InstanceIngest:
        """The ingest the receiver and STOW-RS share: storage dir, size limit, timeout."""
        return cls(
            InstanceStore(settings.dicom_storage_dir),
            publisher,
            max_bytes=settings.validation.max_file_bytes,
            publish_timeout_seconds=settings.dicom.publish_timeout_seconds,
        )

    @property
    def publish_timeout_seconds(self) -> float:
        """How long :meth:`ingest` waits for the broker's confirmation."""
        return self._timeout

    async def ingest(
        self,
        data: bytes,
        *,
        source: str,
        correlation_id: str,
        requested_by: str | None = None,
        priority: Priority = Priority.ROUTINE,
    ) -> Ingested:
        """Store ``data`` and return once its arrival event is confirmed on the broker.

        Raises:
            InputValidationError: the bytes are not an instance radstream accepts (too large,
                not Part 10, unsupported SOP class or transfer syntax, invalid UIDs).
            TransientError: ``STORAGE_WRITE_FAILED``, or the broker did not confirm in time
                (``TIMEOUT``, ``BROKER_UNAVAILABLE``): the sender should send again later.
        """
        if len(data) > self._max_bytes:
            raise InputValidationError(
                ErrorCode.IMAGE_TOO_LARGE, "the instance is larger than the configured limit"
            )
        instance = await run_decoder(read_instance, data)
        sha256 = sha256_of(data)
        path = await asyncio.to_thread(self._store.write, data, sha256)
        event = arrival_for_instance(
            instance,
            sha256=sha256,
            size_bytes=len(data),
            image_uri=path.as_uri(),
            source=source,
            requested_by=requested_by,
            priority=priority,
        )
        duplicate = await asyncio.to_thread(self._store.is_published, sha256)
        if not duplicate:
            await self._announce(event, sha256, correlation_id)
        log.info(
            "dicom_instance_stored",
            event_id=str(event.event_id),
            correlation_id=correlation_id,
            source=source,
            modality=instance.modality,
            size_bytes=len(data),
            duplicate=duplicate,
        )
        return Ingested(event, instance, duplicate)

    async def _announce(self, event: ImageArrived, sha256: str, correlation_id: str) -> None:
        task = self._in_flight.get(event.event_id)
        if task is None:
            task = asyncio.create_task(self._publish(event, sha256, correlation_id))
            self._in_flight[event.event_id] = task
            task.add_done_callback(lambda done: self._forget(event.event_id, done))
        try:
            async with asyncio.timeout(self._timeout):
                # Shielded: a sender giving up must not cancel a publication the broker may
                # still confirm; its resend then waits for this one instead of publishing twice.
                await asyncio.shield(task)
        except TimeoutError as exc:
            raise TransientError(
                ErrorCode.TIMEOUT, "the broker did not confirm the arrival event in time"
            ) from exc

    async def _publish(self, event: ImageArrived, sha256: str, correlation_id: str) -> None:
        await self._publisher.publish(
            arrival_topic(event.priority),
            event.message_key(),
            event,
            ((CORRELATION_ID_HEADER, correlation_id.encode()),),
        )
        try:
            await asyncio.to_thread(self._store.mark_published, sha256)
        except OSError:
            # The event is on the broker: the instance is safe. Only resend detection is lost
            # for it (a resend would publish the same event id again, which stages absorb).
            log.warning("dicom_publish_mark_failed", event_id=str(event.event_id))

    def _forget(self, event_id: uuid.UUID, done: asyncio.Task[None]) -> None:
        self._in_flight.pop(event_id, None)
        if not done.cancelled() and done.exception() is not None:
            log.warning(
                "dicom_arrival_not_confirmed",
                event_id=str(event_id),
                error_code=_code_of(done.exception()),
            )

    async def drain(self) -> None:
        """Wait for publications still in flight (each is bounded by the publisher's timeout)."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)


def _code_of(error: BaseException | None) -> str:
    code = getattr(error, "code", None)
    return str(code) if code is not None else ErrorCode.INTERNAL_ERROR.value
