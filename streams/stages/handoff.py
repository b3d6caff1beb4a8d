"""The pixel hand-off: validation's decode given to inference in the same worker process.

When a worker runs both stages (``radstream worker`` runs every stage in one process), the
validation stage puts the model-ready pixels of each accepted image here
(:func:`~streams.validation.validate_and_decode`), and the inference stage takes them when the
``images.validated`` event arrives, instead of reading, hashing and decoding the file again. On
a miss — the other stage runs in another process, the worker restarted, the entry was evicted,
or the hand-off is disabled — inference reads and decodes exactly as without it.

**Why a hit is safe.** Entries are keyed by ``(event_id, sha256)``, and the pixels come from
exactly the bytes whose SHA-256 the validator computed and published in that event: a hit yields
what decoding those bytes again would (``validate_and_decode`` is tested bit-identical to
``decode_pixels``). Inference on a miss re-reads the file and refuses it if its hash differs;
on a hit there is nothing to re-check, because no bytes are read: the result is for the bytes
that were validated, which is what the event's ``sha256`` (recorded as the result's input
digest) claims.

The store is bounded by a byte budget (``inference.pixel_handoff_bytes``): the least recently
put entries are evicted first, and an entry is taken at most once (a redelivered event decodes
again). It is pure: no I/O, one process's memory only. Both stages must run with the same
``validation`` settings, which they do in one process (one ``Settings``).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

HandoffKey = tuple[uuid.UUID, str]


@dataclass(frozen=True, slots=True)
class HandoffStats:
    """What the store holds right now."""

    entries: int
    held_bytes: int
    budget_bytes: int


class PixelHandoff:
    """A bounded, take-once store of decoded pixels keyed by ``(event_id, sha256)``.

    Args:
        budget_bytes: the most pixel bytes held at once; 0 disables the store (``put`` keeps
            nothing, ``take`` always misses).
    """

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError("budget_bytes must be >= 0")
        self._budget = budget_bytes
        self._entries: OrderedDict[HandoffKey, NDArray[np.float32]] = OrderedDict()
        self._held = 0
        # The stages share one event loop today; the lock keeps the store correct if a caller
        # ever puts from the decoder thread.
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether the store keeps anything at all."""
        return self._budget > 0

    def put(self, event_id: uuid.UUID, sha256: str, pixels: NDArray[np.float32]) -> bool:
        """Keep ``pixels`` for the event, evicting the oldest entries beyond the budget.

        Returns:
            Whether the pixels were kept (not when disabled or larger than the whole budget).
        """
        size = int(pixels.nbytes)
        key = (event_id, sha256)
        with self._lock:
            self._drop(key)
            if size > self._budget:
                return False
            self._entries[key] = pixels
            self._held += size
            while self._held > self._budget:
                _, evicted = self._entries.popitem(last=False)
                self._held -= int(evicted.nbytes)
        return True

    def take(self, event_id: uuid.UUID, sha256: str) -> NDArray[np.float32] | None:
        """The event's pixels, removed from the store; ``None`` on a miss."""
        with self._lock:
            return self._drop((event_id, sha256))

    def stats(self) -> HandoffStats:
        """Entries and bytes held, and the budget."""
        with self._lock:
            return HandoffStats(len(self._entries), self._held, self._budget)

    def _drop(self, key: HandoffKey) -> NDArray[np.float32] | None:
        pixels = self._entries.pop(key, None)
        if pixels is not None:
            self._held -= int(pixels.nbytes)
        return pixels
