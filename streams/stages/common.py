"""Helpers the stage handlers share: reading image bytes with retries, decoding off the loop,
and the outcome of an image that cannot be read or is refused."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

import structlog

from schemas.errors import ErrorCode, RadstreamError
from schemas.events import ImageArrived, ImageRejected, ImageValidated, Stage
from streams.kafka import Outgoing
from streams.pipeline import Incoming, dead_letter_for
from streams.retry import FailureRecord, RetriesExhaustedError, RetryPolicy, run_with_retries
from streams.topics import TopicKey
from streams.validation import read_image_bytes, resolve_image_uri

log = structlog.get_logger("radstream.stages")

Sleep = Callable[[float], Awaitable[object]]
P = ParamSpec("P")
T = TypeVar("T")

# Image decoding runs off the event loop but on ONE thread: the decoders silence pydicom's and
# Pillow's warnings (they quote header values, i.e. possibly patient data) with
# warnings.catch_warnings, which is process-wide state and not thread-safe.
_DECODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radstream-decode")


async def run_decoder(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a decoding function on the single decoder thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_DECODER, functools.partial(fn, *args, **kwargs))


class ImageReader:
    """Reads an image URI's bytes from the storage roots, retrying a file not there yet."""

    def __init__(
        self,
        roots: Sequence[Path],
        max_bytes: int,
        policy: RetryPolicy,
        *,
        settle_seconds: float = 0.0,
        sleep: Sleep = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
        on_retry: Callable[[ErrorCode], None] | None = None,
    ) -> None:
        """``on_retry`` is told the code of each failed read that will be retried."""
        self._roots = tuple(roots)
        self._max_bytes = max_bytes
        self._policy = policy
        self._settle_seconds = settle_seconds
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._on_retry = on_retry

    def _read(self, uri: str) -> bytes:
        return read_image_bytes(
            resolve_image_uri(uri, self._roots),
            self._max_bytes,
            settle_seconds=self._settle_seconds,
            now=self._wall_clock(),
        )

    async def read(self, uri: str, record: FailureRecord) -> bytes:
        """The file's bytes; retryable storage errors are retried per the policy.

        Raises:
            RadstreamError: the input error, or ``RetriesExhaustedError`` after the last retry.
        """
        return await run_with_retries(
            lambda: asyncio.to_thread(self._read, uri),
            self._policy,
            sleep=self._sleep,
            on_retry=self._retried,
            record=record,
        )

    def _retried(self, attempt: int, error: RadstreamError, delay: float) -> None:
        # The code and timing only: the file's name and the error's reason may quote PHI.
        log.warning(
            "image_read_retried",
            error_code=error.code.value,
            attempt=attempt,
            delay_seconds=round(delay, 3),
        )
        if self._on_retry is not None:
            self._on_retry(error.code)


def image_rejected(
    message: Incoming,
    stage: Stage,
    event: ImageArrived | ImageValidated,
    code: ErrorCode,
    reason: str,
    *,
    retryable: bool,
) -> Outgoing:
    """The ``images.rejected`` message of ``event``'s image, with ``message``'s headers."""
    rejected = ImageRejected(
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        stage=stage,
        error_code=code,
        reason=reason,
        retryable=retryable,
        source=event.source,
        requested_by=event.requested_by,
        study_instance_uid=event.study_instance_uid,
    )
    return Outgoing(
        TopicKey.IMAGES_REJECTED, rejected.message_key(), rejected, message.out_headers()
    )


async def read_image_or_outcome(
    reader: ImageReader, message: Incoming, stage: Stage, event: ImageArrived | ImageValidated
) -> bytes | Outgoing:
    """The bytes of ``event``'s image, or the message's outcome when they cannot be read.

    Retries exhausted (a file still being written, a storage hiccup): a dead letter, so a
    replay completes it once the file is there. Any other input error: a rejection with its
    code.
    """
    record = FailureRecord()
    try:
        return await reader.read(event.image_uri, record)
    except RetriesExhaustedError as exc:
        return dead_letter_for(message, stage, exc, failures=record, event_id=event.event_id)
    except RadstreamError as exc:
        return image_rejected(message, stage, event, exc.code, exc.reason, retryable=exc.retryable)
