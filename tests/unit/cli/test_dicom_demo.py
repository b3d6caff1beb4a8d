"""``radstream dicom demo``: reading back what the receiver announced (the topic is faked)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cli import dicom_demo
from schemas.settings import Settings
from tests.unit.audit.factories import arrived


@dataclass
class Record:
    value: bytes | None


@dataclass
class Content:
    records: list[Record]

    def all_records(self) -> list[Record]:
        return self.records


class TestArrivalsBySop:
    async def test_a_poison_message_on_the_topic_is_skipped(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A record that is not an ImageArrived (the stages dead-letter it) does not crash it."""
        good = arrived(sop_instance_uid="1.2.3.4")
        records = [
            Record(b"\x00\x01 not json"),
            Record(None),
            Record(good.model_dump_json().encode()),
        ]

        async def read_topic(*_args: object) -> Content:
            return Content(records)

        monkeypatch.setattr(dicom_demo, "read_topic", read_topic)
        assert await dicom_demo.arrivals_by_sop(Settings()) == {"1.2.3.4": good}
