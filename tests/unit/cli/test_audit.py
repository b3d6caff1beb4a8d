"""``radstream audit show``: the order of an image's trail, and what its time column means."""

from __future__ import annotations

import uuid

import pytest

from cli import audit as cli_audit
from cli.main import main
from schemas.audit import AuditRecord
from schemas.settings import Settings, load_settings
from streams.audit.chain import ChainState, append
from streams.audit.checkpoints import TrustedKeys
from streams.audit.records import draft_for_event
from tests.unit.audit.factories import arrived, completed, source, validated


def appended_out_of_time_order() -> list[AuditRecord]:
    """Arrival (T0), inference (T0+3 s), then validation (T0+1 s): the audit agent read the
    validated topic after the inference results, as it may (it reads topics side by side)."""
    arrival = arrived()
    state = ChainState.genesis(0)
    records = []
    for event in (arrival, completed(arrival.event_id), validated(arrival.event_id)):
        record, state = append(state, draft_for_event(event, source(len(records))))
        records.append(record)
    return records


class FakeTrail:
    """The audit stores, holding one image's records."""

    def __init__(self, records: list[AuditRecord]) -> None:
        self.records = records

    async def trail(self, _event_id: uuid.UUID, _source: str) -> list[AuditRecord]:
        return self.records


@pytest.fixture
def trail(monkeypatch: pytest.MonkeyPatch) -> list[AuditRecord]:
    """``audit show`` reads :func:`appended_out_of_time_order` from the table."""
    records = appended_out_of_time_order()

    def from_settings(_settings: Settings, _trusted: TrustedKeys) -> FakeTrail:
        return FakeTrail(records)

    monkeypatch.setattr(cli_audit.AuditTrail, "from_settings", from_settings)
    return records


class TestShow:
    def test_rows_keep_chain_order_and_the_time_column_says_what_it_is(
        self, trail: list[AuditRecord], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Rows stay in the attested chain order; the time column is the event's own time
        ("happened at"), not when the record was appended - so it may go back in time."""
        event_id = str(trail[0].object.event_id)
        argv = ["audit", "show", "--event-id", event_id, "--source", "table"]
        assert main(argv, settings=load_settings()) == 0
        header, *rows = capsys.readouterr().out.splitlines()
        assert header.split()[:3] == ["CHAIN/SEQ", "HAPPENED", "AT"]
        assert [row.split()[0] for row in rows] == ["0/0", "0/1", "0/2"]
        times = [row.split()[1] for row in rows]
        assert times == [record.recorded_at.isoformat() for record in trail]
        assert times[2] < times[1]  # the validation happened before the inference it preceded
        assert [row.split()[2] for row in rows] == [
            "IMAGE_ARRIVED",
            "INFERENCE_COMPLETED",
            "IMAGE_VALIDATED",
        ]

    def test_help_explains_the_order_and_the_time(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`audit show --help` says rows are in chain order and what HAPPENED AT is."""
        assert main(["audit", "show", "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "Rows are in chain order (CHAIN/SEQ)" in out
        assert "HAPPENED AT is the record's recorded_at: when the audited event happened" in out
        assert "the times need not rise down the table" in out
