"""LifecycleRepository against the real PostgreSQL test database."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from bench.sink_events import BASE_TIME, make_rejection, make_result, make_validated
from schemas.errors import ErrorCode
from schemas.events import ImageArrived, Stage
from sinks.database import Database
from sinks.records import LifecycleEntry
from sinks.repositories import LifecycleRepository
from sinks.tables import LifecycleState

pytestmark = pytest.mark.requirement("RS-DB-04")


async def _record(database: Database, entries: list[LifecycleEntry]) -> int:
    async with database.sessions() as session, session.begin():
        return await LifecycleRepository.record(session, entries)


class TestLifecycle:
    """What happened to an image, one idempotent row per step."""

    async def test_history_in_order(self, database: Database) -> None:
        """Arrived, validated, inferred are returned in the order they happened."""
        event_id = uuid.uuid4()
        arrived = ImageArrived(
            event_id=event_id,
            occurred_at=BASE_TIME - timedelta(seconds=1),
            source="router-a",
            image_uri="file:///data/a.dcm",
        )
        entries = [
            LifecycleEntry.inferred(make_result(event_id=event_id)),
            LifecycleEntry.arrived(arrived),
            LifecycleEntry.validated(make_validated(event_id=event_id)),
        ]
        assert await _record(database, entries) == 3
        history = await LifecycleRepository(database.sessions).lifecycle(event_id)
        assert [e.state for e in history] == [
            LifecycleState.ARRIVED,
            LifecycleState.VALIDATED,
            LifecycleState.INFERRED,
        ]

    async def test_replay_is_idempotent(self, database: Database) -> None:
        """Recording the same steps again adds nothing."""
        event_id = uuid.uuid4()
        entries = [
            LifecycleEntry.validated(make_validated(event_id=event_id)),
            LifecycleEntry.rejected(make_rejection(event_id=event_id)),
        ]
        await _record(database, entries)
        assert await _record(database, entries) == 0
        assert len(await LifecycleRepository(database.sessions).lifecycle(event_id)) == 2

    async def test_same_state_for_two_models_is_two_rows(self, database: Database) -> None:
        """Inference by two models on one image records two inferred steps."""
        event_id = uuid.uuid4()
        entries = [
            LifecycleEntry.inferred(make_result(event_id=event_id, model="a")),
            LifecycleEntry.inferred(make_result(event_id=event_id, model="b")),
        ]
        assert await _record(database, entries) == 2

    async def test_rejection_keeps_code_stage_and_reason(self, database: Database) -> None:
        """A validation rejection is stored as rejected with its code, stage and reason."""
        event_id = uuid.uuid4()
        await _record(database, [LifecycleEntry.rejected(make_rejection(event_id=event_id))])
        (entry,) = await LifecycleRepository(database.sessions).lifecycle(event_id)
        assert entry.state is LifecycleState.REJECTED
        assert entry.error_code == ErrorCode.IMAGE_MALFORMED.value
        assert entry.stage == Stage.VALIDATION.value
        assert entry.detail == "image is truncated"

    async def test_inference_failure_is_failed_with_model(self, database: Database) -> None:
        """A rejection from the inference stage is 'failed' and names the model and version."""
        event_id = uuid.uuid4()
        rejection = make_rejection(
            event_id=event_id,
            stage=Stage.INFERENCE,
            code=ErrorCode.INFERENCE_FAILED,
            model_id="chest-xray@1.0.0",
        )
        await _record(database, [LifecycleEntry.rejected(rejection)])
        (entry,) = await LifecycleRepository(database.sessions).lifecycle(event_id)
        assert entry.state is LifecycleState.FAILED
        assert (entry.model_name, entry.model_version) == ("chest-xray", "1.0.0")

    async def test_bare_model_name_has_no_version(self, database: Database) -> None:
        """A model id without @version stores a NULL version, still deduplicated."""
        event_id = uuid.uuid4()
        entry = LifecycleEntry.rejected(
            make_rejection(event_id=event_id, stage=Stage.INFERENCE, model_id="chest-xray")
        )
        await _record(database, [entry])
        assert await _record(database, [entry]) == 0
        (stored,) = await LifecycleRepository(database.sessions).lifecycle(event_id)
        assert stored.model_version is None

    async def test_unknown_event_has_empty_history(self, database: Database) -> None:
        """An event never seen has no steps."""
        assert await LifecycleRepository(database.sessions).lifecycle(uuid.uuid4()) == []

    async def test_empty_record_is_a_no_op(self, database: Database) -> None:
        """Recording no entries inserts nothing."""
        assert await _record(database, []) == 0
