"""Fakes of the DICOM components' ports: a publisher and a report sender with real state."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel
from pydicom import Dataset

from schemas.errors import ErrorCode, RadstreamError, TransientError
from schemas.settings import DicomPeer
from streams.topics import TopicKey


@dataclass
class FakePublisher:
    """Confirms what it is given; ``failures`` first raise, ``gate`` holds confirmations back."""

    failures: int = 0
    gate: asyncio.Event | None = None
    published: list[tuple[TopicKey, bytes, BaseModel, tuple[tuple[str, bytes], ...]]] = field(
        default_factory=list
    )
    calls: int = 0

    async def publish(
        self,
        topic: TopicKey,
        key: bytes,
        value: BaseModel,
        headers: Sequence[tuple[str, bytes]] = (),
        /,
    ) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "broker down (fake)")
        if self.gate is not None:
            await self.gate.wait()
        self.published.append((topic, key, value, tuple(headers)))


@dataclass
class FakeSender:
    """Stores reports per destination; ``errors`` are raised first, in order."""

    errors: list[RadstreamError] = field(default_factory=list)
    sent: list[tuple[str, Dataset]] = field(default_factory=list)
    attempts: int = 0

    async def send(self, dataset: Dataset, peer: DicomPeer) -> None:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((peer.ae_title, dataset))
