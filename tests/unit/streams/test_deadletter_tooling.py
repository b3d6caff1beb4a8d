"""The dlq tooling's pure decisions: selection, replay refusals, purge prefixes, marks, audit."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.audit import ApiActionKind
from schemas.correlation import CORRELATION_ID_HEADER, CorrelationId, derived_correlation_id
from schemas.deadletter_marks import DeadLetterMark, DeadLetterMarkKind
from schemas.errors import ErrorCode, error_for
from schemas.events import DeadLetter, Stage
from streams.deadletter import (
    REPLAY_OF_HEADER,
    DeadLetterEntry,
    DeadLetterFilter,
    build_dead_letter,
    dlq_action,
    mark_for,
    plan_purge,
    plan_replay,
    replay_message,
    select,
)

pytestmark = pytest.mark.requirement("RS-DLQ-02")

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ARRIVED = "radstream.images.arrived"
CORR = CorrelationId("c1" * 16)


def letter(
    code: ErrorCode = ErrorCode.EVENT_MALFORMED,
    *,
    stage: Stage = Stage.VALIDATION,
    at: datetime = T0,
    topic: str = ARRIVED,
    headers: Sequence[tuple[str, bytes]] = ((CORRELATION_ID_HEADER, CORR.encode()),),
) -> DeadLetter:
    """A dead letter with the given code, stage, failure time, source topic and headers."""
    return build_dead_letter(
        stage=stage,
        error=error_for(code, "why"),
        attempts=1,
        first_failure_at=at,
        last_failure_at=at,
        topic=topic,
        partition=0,
        offset=3,
        key=b"k",
        value=b"original",
        headers=headers,
        correlation_id=CORR,
        event_id=uuid.uuid4(),
    )


def mark(dl: DeadLetter, kind: DeadLetterMarkKind, count: int = 0) -> DeadLetterMark:
    """A mark of ``kind`` on ``dl``."""
    return DeadLetterMark(
        dead_letter_id=dl.dead_letter_id,
        kind=kind,
        actor="ops",
        replay_count=count,
        deadletter_partition=0,
        deadletter_offset=0,
    )


def entry(offset: int, dl: DeadLetter | None = None, **kwargs: Any) -> DeadLetterEntry:
    """A dead letter at ``offset`` of partition 0."""
    return DeadLetterEntry(0, offset, dl or letter(), **kwargs)


class TestDeadLetterFilter:
    def test_naive_time_bounds_are_refused(self) -> None:
        """A naive since/until would compare wrongly with UTC times: refused."""
        with pytest.raises(ValueError, match="timezone-aware"):
            DeadLetterFilter(since=datetime(2026, 1, 1))  # noqa: DTZ001 - the case under test

    def test_empty_filter_is_not_selective(self) -> None:
        """No criterion means "everything", which replay and purge refuse."""
        assert not DeadLetterFilter().selective
        assert DeadLetterFilter(stage=Stage.INFERENCE).selective

    def test_ids_restrict_the_selection(self) -> None:
        """With ids, only those dead letters match."""
        wanted, other = letter(), letter()
        flt = DeadLetterFilter(ids=frozenset({wanted.dead_letter_id}))
        assert flt.matches(wanted)
        assert not flt.matches(other)

    def test_every_criterion_must_hold(self) -> None:
        """Code and stage both apply."""
        flt = DeadLetterFilter(code=ErrorCode.EVENT_MALFORMED, stage=Stage.INFERENCE)
        assert not flt.matches(letter(stage=Stage.VALIDATION))
        assert flt.matches(letter(stage=Stage.INFERENCE))


class TestEntry:
    def test_state_follows_the_mark(self) -> None:
        """new without a mark, else the mark's kind."""
        dl = letter()
        assert entry(0, dl).state == "new"
        assert entry(0, dl, mark=mark(dl, DeadLetterMarkKind.REPLAYED)).replayed
        assert entry(0, dl, mark=mark(dl, DeadLetterMarkKind.PURGED)).state == "purged"


class TestSelect:
    def test_purged_are_hidden_unless_asked_for(self) -> None:
        """Purged dead letters leave the listing but can still be shown."""
        dl = letter()
        entries = [entry(0, dl, mark=mark(dl, DeadLetterMarkKind.PURGED)), entry(1)]
        assert [e.offset for e in select(entries, DeadLetterFilter())] == [1]
        assert len(select(entries, DeadLetterFilter(), include_purged=True)) == 2

    def test_results_are_in_topic_order(self) -> None:
        """Entries come back sorted by partition and offset."""
        entries = [entry(5), DeadLetterEntry(1, 0, letter()), entry(2)]
        chosen = select(entries, DeadLetterFilter())
        assert [(e.partition, e.offset) for e in chosen] == [(0, 2), (0, 5), (1, 0)]


class TestReplayMessage:
    def test_original_message_with_replay_tag(self) -> None:
        """Topic, key, value and headers are the original ones plus the dead letter's id."""
        dl = letter()
        topic, key, value, headers = replay_message(entry(0, dl))
        assert (topic, key, value) == (ARRIVED, b"k", b"original")
        assert (CORRELATION_ID_HEADER, CORR.encode()) in headers
        assert (REPLAY_OF_HEADER, str(dl.dead_letter_id).encode()) in headers

    def test_replay_tag_is_not_duplicated(self) -> None:
        """Replaying a message that was itself a replay keeps one, current, replay tag."""
        dl = letter(
            headers=[(CORRELATION_ID_HEADER, CORR.encode()), (REPLAY_OF_HEADER, b"older-id")]
        )
        _, _, _, headers = replay_message(entry(0, dl))
        assert [v for k, v in headers if k == REPLAY_OF_HEADER] == [str(dl.dead_letter_id).encode()]


class TestPlanReplay:
    def test_new_dead_letters_are_replayed(self) -> None:
        """A selected, never replayed dead letter is planned for replay."""
        plan = plan_replay([entry(0)], DeadLetterFilter(), allowed_topics={ARRIVED})
        assert len(plan.to_replay) == 1
        assert plan.refused == []

    def test_replayed_dead_letter_is_refused_without_force(self) -> None:
        """A second replay is refused, naming how often it was replayed."""
        dl = letter()
        replayed = entry(0, dl, mark=mark(dl, DeadLetterMarkKind.REPLAYED, count=1))
        plan = plan_replay([replayed], DeadLetterFilter(), allowed_topics={ARRIVED})
        assert plan.to_replay == []
        assert plan.refused[0][1] == "already replayed 1 time(s); use --force"

    def test_force_replays_again(self) -> None:
        """--force replays a dead letter that was replayed before."""
        dl = letter()
        replayed = entry(0, dl, mark=mark(dl, DeadLetterMarkKind.REPLAYED, count=1))
        plan = plan_replay([replayed], DeadLetterFilter(), allowed_topics={ARRIVED}, force=True)
        assert len(plan.to_replay) == 1

    def test_foreign_source_topic_is_refused(self) -> None:
        """A dead letter cannot make the tool write to a topic outside the deployment."""
        plan = plan_replay(
            [entry(0, letter(topic="other.topic"))], DeadLetterFilter(), allowed_topics={ARRIVED}
        )
        assert plan.refused[0][1] == "source topic is not one of this deployment's topics"

    def test_corrupt_base64_is_refused(self) -> None:
        """A dead letter whose stored bytes are corrupt is refused, not half-replayed."""
        broken = letter().model_copy(update={"value_b64": "***"})
        plan = plan_replay([entry(0, broken)], DeadLetterFilter(), allowed_topics={ARRIVED})
        assert plan.refused[0][1] == "dead letter holds invalid base64"

    def test_purged_dead_letters_are_not_replayed(self) -> None:
        """A purged dead letter is out of reach of replay."""
        dl = letter()
        purged = entry(0, dl, mark=mark(dl, DeadLetterMarkKind.PURGED))
        plan = plan_replay([purged], DeadLetterFilter(), allowed_topics={ARRIVED})
        assert (plan.to_replay, plan.refused) == ([], [])


class TestPlanPurge:
    def malformed_first(self) -> list[DeadLetterEntry]:
        """MALFORMED, MALFORMED, TIMEOUT, MALFORMED at offsets 10..13."""
        codes = [
            ErrorCode.EVENT_MALFORMED,
            ErrorCode.EVENT_MALFORMED,
            ErrorCode.TIMEOUT,
            ErrorCode.EVENT_MALFORMED,
        ]
        return [entry(10 + i, letter(code)) for i, code in enumerate(codes)]

    def test_matching_prefix_is_deleted_rest_marked(self) -> None:
        """Deletion stops at the first kept dead letter; later matches are only marked."""
        plan = plan_purge(self.malformed_first(), DeadLetterFilter(code=ErrorCode.EVENT_MALFORMED))
        assert plan.delete_before == {0: 12}
        assert [e.offset for e in plan.deleted] == [10, 11]
        assert [e.offset for e in plan.marked_only] == [13]
        assert [e.offset for e in plan.purged] == [10, 11, 13]

    def test_earlier_purged_entries_extend_the_prefix(self) -> None:
        """A dead letter purged before no longer blocks deletion, and is deleted too."""
        entries = self.malformed_first()
        timeout = entries[2]
        entries[2] = DeadLetterEntry(
            0, 12, timeout.dead_letter, mark(timeout.dead_letter, DeadLetterMarkKind.PURGED)
        )
        plan = plan_purge(entries, DeadLetterFilter(code=ErrorCode.EVENT_MALFORMED))
        assert plan.delete_before == {0: 14}
        assert [e.offset for e in plan.deleted] == [10, 11, 12, 13]
        assert plan.marked_only == []

    def test_unreadable_record_blocks_deletion(self) -> None:
        """A record that is not a dead letter is never deleted by a filter it cannot match."""
        plan = plan_purge(
            self.malformed_first(),
            DeadLetterFilter(code=ErrorCode.EVENT_MALFORMED),
            unreadable=[(0, 11)],
        )
        assert plan.delete_before == {0: 11}
        assert [e.offset for e in plan.marked_only] == [11, 13]

    def test_no_deletion_when_first_record_is_kept(self) -> None:
        """When the oldest dead letter stays, nothing is deleted and all matches are marked."""
        plan = plan_purge(self.malformed_first(), DeadLetterFilter(code=ErrorCode.TIMEOUT))
        assert plan.delete_before == {}
        assert [e.offset for e in plan.marked_only] == [12]

    def test_deletion_that_would_not_move_the_start_is_dropped(self) -> None:
        """Offsets already below the low watermark are not deleted again."""
        plan = plan_purge(
            self.malformed_first(),
            DeadLetterFilter(code=ErrorCode.EVENT_MALFORMED),
            low_watermarks={0: 12},
        )
        assert plan.delete_before == {}

    def test_partitions_are_planned_independently(self) -> None:
        """Each partition gets its own prefix."""
        entries = [
            DeadLetterEntry(0, 0, letter(ErrorCode.TIMEOUT)),
            DeadLetterEntry(1, 0, letter(ErrorCode.EVENT_MALFORMED)),
            DeadLetterEntry(1, 1, letter(ErrorCode.TIMEOUT)),
        ]
        plan = plan_purge(entries, DeadLetterFilter(code=ErrorCode.EVENT_MALFORMED))
        assert plan.delete_before == {1: 1}


class TestMarkFor:
    def test_replay_counts_up(self) -> None:
        """Each replay mark counts one more replay than the mark before."""
        dl = letter()
        first = mark_for(entry(4, dl), DeadLetterMarkKind.REPLAYED, "ops", at=T0)
        second = mark_for(entry(4, dl, mark=first), DeadLetterMarkKind.REPLAYED, "ops", at=T0)
        assert (first.replay_count, second.replay_count) == (1, 2)
        assert (second.deadletter_partition, second.deadletter_offset) == (0, 4)

    def test_purge_keeps_the_count(self) -> None:
        """Purging a replayed dead letter does not count as a replay."""
        dl = letter()
        replayed = mark(dl, DeadLetterMarkKind.REPLAYED, count=2)
        purged = mark_for(entry(0, dl, mark=replayed), DeadLetterMarkKind.PURGED, "ops")
        assert (purged.kind, purged.replay_count) == (DeadLetterMarkKind.PURGED, 2)

    def test_key_is_the_dead_letter_id(self) -> None:
        """Marks are compacted per dead letter."""
        dl = letter()
        assert mark(dl, DeadLetterMarkKind.PURGED).message_key() == str(dl.dead_letter_id).encode()


class TestDlqAction:
    def test_success_carries_ids_and_actor(self) -> None:
        """A replay is audited with the event id, original correlation id and the actor."""
        dl = letter()
        action = dlq_action(ApiActionKind.DLQ_REPLAY, entry(0, dl), actor="ops-a", at=T0)
        assert (action.action, action.outcome, action.http_status) == (
            ApiActionKind.DLQ_REPLAY,
            "success",
            200,
        )
        assert (action.event_id, action.correlation_id, action.actor_id) == (
            dl.event_id,
            CORR,
            "ops-a",
        )
        assert action.route == "cli/dlq/replay"

    def test_refusal_is_a_conflict(self) -> None:
        """A refused replay is audited as a 409 failure with an error code."""
        action = dlq_action(ApiActionKind.DLQ_REPLAY, entry(0), actor="ops", refused=True)
        assert (action.outcome, action.http_status) == ("failure", 409)
        assert action.error_code is ErrorCode.DEAD_LETTER_ALREADY_REPLAYED

    @pytest.mark.parametrize("stored", [None, "Doe John", "MRN-55667788"])
    def test_refused_or_missing_id_gets_the_derived_one(self, stored: str | None) -> None:
        """A dead letter from before the rule is audited under the id its replay carries."""
        dl = letter().model_copy(update={"correlation_id": stored})
        action = dlq_action(ApiActionKind.DLQ_PURGE, entry(0, dl), actor="ops")
        derived = derived_correlation_id("dead-letter", dl.dead_letter_id)
        assert action.correlation_id == derived
        assert replay_message(entry(0, dl))[3][0] == (CORRELATION_ID_HEADER, derived.encode())
        if stored:
            assert stored not in action.model_dump_json()


def test_base64_roundtrip_of_value() -> None:
    """The replayed value is exactly the bytes the dead letter stored."""
    dl = letter().model_copy(update={"value_b64": base64.b64encode(b"\x00\xffraw").decode()})
    assert replay_message(entry(0, dl))[2] == b"\x00\xffraw"
