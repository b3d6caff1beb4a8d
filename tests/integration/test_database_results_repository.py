"""ResultsRepository against the real PostgreSQL test database."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bench.sink_events import BASE_TIME, make_result
from schemas.api import ResultQuery, VerificationStatus
from schemas.errors import ConflictError, InputValidationError, ResourceNotFoundError
from schemas.events import InferenceCompleted
from sinks.database import Database
from sinks.repositories import ResultsRepository, encode_cursor
from sinks.tables import inference_results

pytestmark = pytest.mark.requirement("RS-DB-04", "RS-G-04")


def _user() -> str:
    """A user id no other test uses, so tests share the database without seeing each other."""
    return f"u-{uuid.uuid4().hex[:12]}"


async def _store(database: Database, results: list[InferenceCompleted]) -> int:
    async with database.sessions() as session, session.begin():
        return await ResultsRepository.upsert_results(session, results)


async def _count(database: Database, user: str) -> int:
    async with database.sessions() as session:
        statement = select(func.count()).where(inference_results.c.requested_by == user)
        return int((await session.execute(statement)).scalar_one())


class TestUpsert:
    """Batch inserts are idempotent on the natural key."""

    async def test_inserts_new_rows_and_counts_them(self, database: Database) -> None:
        """A batch of new results inserts every row and reports how many."""
        user = _user()
        results = [make_result(user=user, index=i) for i in range(5)]
        assert await _store(database, results) == 5
        assert await _count(database, user) == 5

    async def test_replayed_batch_makes_no_duplicates(self, database: Database) -> None:
        """Writing the same batch again inserts nothing and leaves one row per result."""
        user = _user()
        results = [make_result(user=user, index=i) for i in range(5)]
        await _store(database, results)
        assert await _store(database, results) == 0
        assert await _count(database, user) == 5

    async def test_reinference_with_new_result_id_is_a_duplicate(self, database: Database) -> None:
        """Same event, model and version under a new result id is not stored twice."""
        user = _user()
        first = make_result(user=user)
        again = first.model_copy(update={"result_id": uuid.uuid4()})
        await _store(database, [first])
        assert await _store(database, [again]) == 0
        assert await _count(database, user) == 1

    async def test_other_model_version_is_a_new_row(self, database: Database) -> None:
        """Another model version on the same event is a separate result."""
        user = _user()
        first = make_result(user=user)
        other = make_result(user=user, event_id=first.event_id, version="2.0.0")
        assert await _store(database, [first, other]) == 2

    async def test_empty_batch_is_a_no_op(self, database: Database) -> None:
        """An empty batch inserts nothing and issues no SQL error."""
        assert await _store(database, []) == 0


class TestGet:
    """One result by id, visible only to its user unless asked for any user."""

    async def test_round_trips_every_field(self, database: Database) -> None:
        """The stored record carries the event's provenance, scores and timestamps."""
        user = _user()
        result = make_result(user=user, index=7)
        await _store(database, [result])
        record = await ResultsRepository(database.sessions).get(result.result_id, user_id=user)
        assert record is not None
        assert record.model_name == result.model.name
        assert record.weights_sha256 == result.model.weights_sha256
        assert record.scores == result.scores
        assert record.thresholds == result.thresholds
        assert record.verdicts == [{"check": "size", "passed": True, "detail": ""}]
        assert record.completed_at == result.completed_at
        assert record.stored_at.tzinfo is not None
        assert not record.verified

    async def test_other_users_result_is_none(self, database: Database) -> None:
        """Another user's result is invisible (the API answers 404)."""
        result = make_result(user=_user())
        await _store(database, [result])
        repository = ResultsRepository(database.sessions)
        assert await repository.get(result.result_id, user_id=_user()) is None

    async def test_any_user_when_user_id_is_none(self, database: Database) -> None:
        """user_id=None finds any user's result (administrators)."""
        result = make_result(user=_user())
        await _store(database, [result])
        record = await ResultsRepository(database.sessions).get(result.result_id, user_id=None)
        assert record is not None
        assert record.result_id == result.result_id

    async def test_unknown_id_is_none(self, database: Database) -> None:
        """An id never stored is None."""
        assert await ResultsRepository(database.sessions).get(uuid.uuid4(), user_id=None) is None

    async def test_list_for_event_returns_each_model(self, database: Database) -> None:
        """Every model's result of one event is listed, ordered by model."""
        first = make_result(user=_user(), model="b-model")
        second = make_result(user=_user(), model="a-model", event_id=first.event_id)
        await _store(database, [first, second])
        records = await ResultsRepository(database.sessions).list_for_event(first.event_id)
        assert [r.model_name for r in records] == ["a-model", "b-model"]


class TestListForUser:
    """Keyset-paged, filtered listings of one user's results."""

    async def test_pages_cover_every_result_once_newest_first(self, database: Database) -> None:
        """Walking the cursors returns each result exactly once, newest first."""
        user = _user()
        results = [make_result(user=user, index=i) for i in range(23)]
        # Two results share a completion time: the result id breaks the tie.
        results.append(make_result(user=user, index=99, completed_at=results[5].completed_at))
        await _store(database, results)
        repository = ResultsRepository(database.sessions)
        seen: list[uuid.UUID] = []
        cursor = None
        pages = 0
        while True:
            page = await repository.list_for_user(user, ResultQuery(limit=5, cursor=cursor))
            seen += [item.result_id for item in page.items]
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert sorted(seen) == sorted(r.result_id for r in results)
        assert len(seen) == len(set(seen)) == 24
        assert pages == 5
        by_id = {r.result_id: r for r in results}
        keys = [(by_id[i].completed_at, i) for i in seen]
        assert keys == sorted(keys, reverse=True)

    async def test_last_full_page_has_no_cursor(self, database: Database) -> None:
        """A page that ends exactly at the last result offers no next cursor."""
        user = _user()
        await _store(database, [make_result(user=user, index=i) for i in range(4)])
        page = await ResultsRepository(database.sessions).list_for_user(user, ResultQuery(limit=4))
        assert len(page.items) == 4
        assert page.next_cursor is None

    async def test_filters_by_time_window(self, database: Database) -> None:
        """since is inclusive, until exclusive, on completed_at."""
        user = _user()
        results = [make_result(user=user, index=i) for i in range(10)]
        await _store(database, results)
        since, until = results[2].completed_at, results[5].completed_at
        page = await ResultsRepository(database.sessions).list_for_user(
            user, ResultQuery(since=since, until=until)
        )
        assert {i.result_id for i in page.items} == {r.result_id for r in results[2:5]}

    async def test_filters_by_model_and_study(self, database: Database) -> None:
        """model_name and study_uid narrow the listing."""
        user = _user()
        wanted = make_result(user=user, model="mammo", study="1.2.3.4", index=1)
        others = [
            make_result(user=user, model="mammo", study="1.2.3.5", index=2),
            make_result(user=user, model="chest", study="1.2.3.4", index=3),
        ]
        await _store(database, [wanted, *others])
        page = await ResultsRepository(database.sessions).list_for_user(
            user, ResultQuery(model_name="mammo", study_uid="1.2.3.4")
        )
        assert [i.result_id for i in page.items] == [wanted.result_id]

    async def test_filters_by_verification_status(self, database: Database) -> None:
        """status=verified and status=unverified split the results."""
        user = _user()
        results = [make_result(user=user, index=i) for i in range(3)]
        await _store(database, results)
        repository = ResultsRepository(database.sessions)
        await repository.mark_verified(results[0].result_id, user_id="rad-1")
        verified = await repository.list_for_user(
            user, ResultQuery(status=VerificationStatus.VERIFIED)
        )
        unverified = await repository.list_for_user(
            user, ResultQuery(status=VerificationStatus.UNVERIFIED)
        )
        assert [i.result_id for i in verified.items] == [results[0].result_id]
        assert {i.result_id for i in unverified.items} == {r.result_id for r in results[1:]}

    async def test_does_not_list_other_users(self, database: Database) -> None:
        """A user's page never contains another user's results."""
        user = _user()
        await _store(database, [make_result(user=_user()), make_result(user=user)])
        page = await ResultsRepository(database.sessions).list_for_user(user)
        assert {i.requested_by for i in page.items} == {user}

    async def test_list_all_spans_users(self, database: Database) -> None:
        """list_all returns several users' results for one model."""
        model = f"m-{uuid.uuid4().hex[:8]}"
        results = [make_result(user=_user(), model=model, index=i) for i in range(3)]
        await _store(database, results)
        page = await ResultsRepository(database.sessions).list_all(ResultQuery(model_name=model))
        assert {i.result_id for i in page.items} == {r.result_id for r in results}

    @pytest.mark.parametrize(
        "cursor", ["not-base64!", "e30", "WyJ4Il0", "eyJjIjogIngiLCAiciI6ICJ5In0"]
    )
    async def test_invalid_cursor_is_a_request_error(self, database: Database, cursor: str) -> None:
        """A malformed or tampered cursor is REQUEST_INVALID, not a server error."""
        with pytest.raises(InputValidationError):
            await ResultsRepository(database.sessions).list_for_user(
                "u", ResultQuery(cursor=cursor)
            )

    async def test_naive_cursor_time_is_rejected(self, database: Database) -> None:
        """A cursor whose time lost its timezone is refused."""
        cursor = encode_cursor(BASE_TIME.replace(tzinfo=None), uuid.uuid4())
        with pytest.raises(InputValidationError):
            await ResultsRepository(database.sessions).list_for_user(
                "u", ResultQuery(cursor=cursor)
            )

    @pytest.mark.parametrize("limit", [0, 501])
    async def test_limit_out_of_range_is_refused(self, database: Database, limit: int) -> None:
        """Page sizes outside 1..500 are refused before any query."""
        with pytest.raises(InputValidationError):
            await ResultsRepository(database.sessions).list_for_user("u", ResultQuery(limit=limit))


class TestMarkVerified:
    """Verification happens once, recording who and when."""

    async def test_records_who_when_and_note(self, database: Database) -> None:
        """The returned record carries the verifier, a server time and the note."""
        result = make_result(user=_user())
        await _store(database, [result])
        record = await ResultsRepository(database.sessions).mark_verified(
            result.result_id, user_id="rad-7", note="agree"
        )
        assert record.verified_by == "rad-7"
        assert record.verification_note == "agree"
        assert record.verified_at is not None
        assert record.verified_at - record.stored_at < timedelta(minutes=1)

    async def test_second_verification_conflicts(self, database: Database) -> None:
        """Verifying twice raises RESULT_ALREADY_VERIFIED and keeps the first verifier."""
        result = make_result(user=_user())
        await _store(database, [result])
        repository = ResultsRepository(database.sessions)
        await repository.mark_verified(result.result_id, user_id="rad-1")
        with pytest.raises(ConflictError):
            await repository.mark_verified(result.result_id, user_id="rad-2")
        record = await repository.get(result.result_id, user_id=None)
        assert record is not None
        assert record.verified_by == "rad-1"

    async def test_unknown_result_is_not_found(self, database: Database) -> None:
        """Verifying an id never stored raises RESOURCE_NOT_FOUND."""
        with pytest.raises(ResourceNotFoundError):
            await ResultsRepository(database.sessions).mark_verified(uuid.uuid4(), user_id="r")

    async def test_other_owner_is_not_found(self, database: Database) -> None:
        """With owner_id, another user's result is not found (not a conflict)."""
        result = make_result(user=_user())
        await _store(database, [result])
        with pytest.raises(ResourceNotFoundError):
            await ResultsRepository(database.sessions).mark_verified(
                result.result_id, user_id="r", owner_id=_user()
            )

    async def test_overlong_note_is_refused(self, database: Database) -> None:
        """A note over 2000 characters is a request error."""
        with pytest.raises(InputValidationError):
            await ResultsRepository(database.sessions).mark_verified(
                uuid.uuid4(), user_id="r", note="x" * 2001
            )
