"""What is produced to Kafka: a stage's :class:`Outgoing` and the layer's :class:`RawMessage`."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from streams.topics import TopicKey, TopicNames

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message a stage wants produced, to a topic of the catalogue."""

    topic: TopicKey
    key: bytes | None
    value: BaseModel | bytes
    headers: Headers = field(default=())

    def value_bytes(self) -> bytes:
        """The wire bytes: models as JSON (pydantic codec), raw bytes as they are."""
        if isinstance(self.value, bytes):
            return self.value
        return self.value.model_dump_json().encode()

    def raw(self, topics: TopicNames) -> RawMessage:
        """The same message addressed by full topic name."""
        return RawMessage(topics[self.topic], self.key, self.value_bytes(), self.headers)


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message by full topic name, as bytes; ``value=None`` is a tombstone.

    ``partition`` pins the partition (the audit chain lives in one); ``None`` lets the key
    decide.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    partition: int | None = None
