"""Helpers the stage handlers share: reading image bytes with retries, decoding off the loop."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

from streams.retry import FailureRecord, RetryPolicy, run_with_retries
from streams.validation import read_image_bytes, resolve_image_uri

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
    ) -> None:
        self._roots = tuple(roots)
        self._max_bytes = max_bytes
        self._policy = policy
        self._settle_seconds = settle_seconds
        self._sleep = sleep
        self._wall_clock = wall_clock

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
            record=record,
        )
