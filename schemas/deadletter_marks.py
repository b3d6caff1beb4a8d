"""Dead-letter marks: what an operator did to a dead letter (replayed it, purged it).

Kafka cannot change or delete a single message, so the dead-letter topic itself is never
edited. Instead ``radstream dlq`` keeps one :class:`DeadLetterMark` per dead letter on a
compacted side topic (``<prefix>deadletter.marks``), keyed by the dead letter's id: compaction
keeps the latest mark of every dead letter for as long as the dead letter exists, so "already
replayed" and "purged" survive restarts of every process. A tombstone (null value) removes the
mark once its dead letter was physically deleted.

Marks hold ids, offsets, a pseudonymous actor and times only: never a payload.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import Pseudonym, utc_now


class DeadLetterMarkKind(StrEnum):
    """The state an operator put a dead letter in."""

    REPLAYED = "replayed"
    PURGED = "purged"


class DeadLetterMark(BaseModel):
    """The latest operator action on one dead letter, kept on the compacted marks topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    dead_letter_id: uuid.UUID
    kind: DeadLetterMarkKind
    marked_at: AwareDatetime = Field(default_factory=utc_now)
    actor: Pseudonym
    replay_count: int = Field(0, ge=0, description="how often the dead letter was replayed")
    deadletter_partition: int = Field(ge=0)
    deadletter_offset: int = Field(ge=0)

    def message_key(self) -> bytes:
        """The compaction key: the dead letter's id."""
        return str(self.dead_letter_id).encode()
