"""``radstream audit show``: the table an operator reads (the audit trail itself is faked)."""

from __future__ import annotations

import uuid

import pytest

from cli.main import main
from schemas.audit import AuditRecord
from schemas.settings import Settings
from streams.audit.chain import ChainState, append
from streams.audit.io import AuditTrail
from streams.audit.records import draft_for_event
from tests.unit.audit.factories import exported, source


class FakeTrail:
    """Answers ``trail()`` with the records it was given."""

    def __init__(self, records: list[AuditRecord]) -> None:
        self.records = records

    async def trail(self, _event_id: uuid.UUID, _source: str) -> list[AuditRecord]:
        return self.records


class TestAuditShow:
    def test_an_export_destination_is_not_shown_as_a_code(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """RESULT_EXPORTED's destination sits in a DETAIL column: no column called CODE holds it."""
        event_id = uuid.uuid4()
        topic = "radstream.results.exported"
        draft = draft_for_event(exported(event_id, destination="PACS"), source(0, topic))
        record, _state = append(ChainState.genesis(0), draft)
        monkeypatch.setattr(AuditTrail, "from_settings", lambda *_args: FakeTrail([record]))
        argv = ["audit", "show", "--source", "table", "--event-id", str(event_id)]
        assert main(argv, settings=Settings()) == 0
        header, row = capsys.readouterr().out.splitlines()
        assert header.split() == [
            "CHAIN/SEQ", "HAPPENED", "AT", "EVENT", "ACTION", "OUTCOME", "DETAIL", "ACTOR", "SOURCE"
        ]  # fmt: skip
        assert "RESULT_EXPORTED" in row
        assert "PACS" in row.split()
