"""``radstream dlq`` commands against the real broker: output, exit codes, dry runs, refusals."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from cli.main import main
from schemas.correlation import CORRELATION_ID_HEADER
from schemas.errors import ErrorCode, error_for
from schemas.events import DeadLetter, Stage
from schemas.settings import Settings, load_settings
from streams import dlq
from streams.deadletter import DeadLetterFilter, build_dead_letter
from streams.kafka import KafkaClientConfig, ensure_topics, read_topic
from streams.topics import TopicNames

pytestmark = pytest.mark.requirement("RS-DLQ-02")

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def dlq_command(settings: Settings, *argv: str) -> int:
    """Run ``radstream dlq ...`` with ``settings``; returns the exit status."""
    return main(["dlq", *argv], settings=settings)


def letter(topics: TopicNames, code: ErrorCode, value: bytes) -> DeadLetter:
    """A validation dead letter of ``value`` from the arrived topic."""
    return build_dead_letter(
        stage=Stage.VALIDATION,
        error=error_for(code, "why"),
        attempts=1,
        first_failure_at=T0,
        last_failure_at=T0,
        topic=topics.arrived,
        partition=0,
        offset=0,
        key=b"k",
        value=value,
        headers=[(CORRELATION_ID_HEADER, b"cc" * 16)],
        correlation_id="cc" * 16,
        event_id=uuid.uuid4(),
    )


async def setup(bootstrap: str, prefix: str) -> list[DeadLetter]:
    """Create the topics and put a malformed and a timed-out dead letter on them."""
    await ensure_topics(KafkaClientConfig(bootstrap), prefix, partitions_override=1)
    topics = TopicNames(prefix)
    letters = [
        letter(topics, ErrorCode.EVENT_MALFORMED, b'{"PatientName": "Doe^John", "x": '),
        letter(topics, ErrorCode.TIMEOUT, b'{"source": "router-1"}'),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for dl in letters:
            await producer.send_and_wait(topics.deadletter, dl.model_dump_json().encode())
    finally:
        await producer.stop()
    return letters


@pytest.fixture
def env(kafka_bootstrap: str, topic_prefix: str) -> tuple[Settings, list[DeadLetter]]:
    """Settings on a fresh prefix holding two dead letters."""
    letters = asyncio.run(setup(kafka_bootstrap, topic_prefix))
    settings = load_settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix)
    return settings, letters


def records(settings: Settings, topic: str) -> list[object]:
    """Every record on ``topic`` now."""
    return asyncio.run(read_topic(dlq.client_config(settings), topic)).all_records()


class TestList:
    def test_lists_every_dead_letter(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """list prints a header and one row per dead letter."""
        settings, letters = env
        assert dlq_command(settings, "list") == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split()[:4] == ["ID", "STATE", "STAGE", "CODE"]
        assert [line.split()[0] for line in lines[1:]] == [str(dl.dead_letter_id) for dl in letters]

    def test_json_lists_the_same(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json prints one document with each dead letter's facts."""
        settings, letters = env
        assert dlq_command(settings, "list", "--json", "--limit", "1") == 0
        listed = json.loads(capsys.readouterr().out)
        assert [item["dead_letter_id"] for item in listed] == [str(letters[0].dead_letter_id)]
        assert listed[0]["error_code"] == "EVENT_MALFORMED"

    def test_filters_by_code(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--code narrows the listing."""
        settings, letters = env
        assert dlq_command(settings, "list", "--code", "TIMEOUT") == 0
        out = capsys.readouterr().out
        assert str(letters[1].dead_letter_id) in out
        assert str(letters[0].dead_letter_id) not in out


class TestShow:
    def test_value_is_masked(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """show prints the metadata and a masked value: never the patient's name."""
        settings, letters = env
        assert dlq_command(settings, "show", str(letters[0].dead_letter_id)) == 0
        out = capsys.readouterr().out
        assert "error_code:     EVENT_MALFORMED" in out
        assert "Doe^John" not in out

    def test_raw_in_development_prints_the_value(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--raw is allowed in development and prints the original bytes."""
        settings, letters = env
        assert dlq_command(settings, "show", str(letters[0].dead_letter_id), "--raw") == 0
        assert '"PatientName": "Doe^John"' in capsys.readouterr().out

    def test_unknown_id_is_not_found(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An id that is not on the topic: one RESOURCE_NOT_FOUND line, exit 4."""
        settings, _ = env
        assert dlq_command(settings, "show", str(uuid.uuid4())) == 4
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "RESOURCE_NOT_FOUND: no dead letter" in err


class TestReplay:
    def test_dry_run_publishes_nothing(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--dry-run names what it would replay and writes nothing anywhere."""
        settings, letters = env
        assert (
            dlq_command(settings, "replay", "--code", "TIMEOUT", "--actor", "ops", "--dry-run") == 0
        )
        row = capsys.readouterr().out.splitlines()[1]
        assert row.split()[:3] == [str(letters[1].dead_letter_id), "would", "replay"]
        topics = TopicNames(settings.topic_prefix)
        assert records(settings, topics.arrived) == []
        assert records(settings, topics.api_actions) == []

    def test_second_replay_is_refused_unless_forced(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Replay succeeds once, is refused the second time (exit 7), --force replays again."""
        settings, _ = env
        base = ("replay", "--code", "TIMEOUT", "--actor", "ops")
        assert dlq_command(settings, *base) == 0
        assert dlq_command(settings, *base) == 7
        captured = capsys.readouterr()
        assert "already replayed 1 time(s)" in captured.out
        assert "DEAD_LETTER_ALREADY_REPLAYED" in captured.err
        assert dlq_command(settings, *base, "--force") == 0
        assert len(records(settings, TopicNames(settings.topic_prefix).arrived)) == 2

    def test_nothing_matched_is_not_found(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A replay that selects nothing is not a success: RESOURCE_NOT_FOUND, exit 4."""
        settings, _ = env
        assert dlq_command(settings, "replay", "--stage", "inference", "--actor", "ops") == 4
        assert "no dead letter matches the filters" in capsys.readouterr().err


class TestPurge:
    def test_dry_run_changes_nothing(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--dry-run reports the plan; the dead letters stay listed."""
        settings, _ = env
        args = ("purge", "--code", "EVENT_MALFORMED", "--actor", "ops", "--dry-run")
        assert dlq_command(settings, *args) == 0
        assert capsys.readouterr().out.splitlines()[1].split()[1:] == ["would", "purge", "deleted"]
        remaining = asyncio.run(
            dlq.list_dead_letters(
                dlq.client_config(settings), TopicNames(settings.topic_prefix), DeadLetterFilter()
            )
        )
        assert len(remaining) == 2

    def test_purge_then_nothing_left_to_purge(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A purge marks the later dead letter; purging the same again matches nothing."""
        settings, _ = env
        args = ("purge", "--code", "TIMEOUT", "--actor", "ops")
        assert dlq_command(settings, *args) == 0
        assert capsys.readouterr().out.splitlines()[1].split()[1:] == [
            "purged",
            "hidden",
            "by",
            "a",
            "mark",
        ]
        assert dlq_command(settings, *args) == 4

    def test_purge_behind_deleted_prefix_deletes_marked_ones_later(
        self, env: tuple[Settings, list[DeadLetter]]
    ) -> None:
        """A dead letter first only marked is deleted once the records before it go too."""
        settings, _ = env
        topics = TopicNames(settings.topic_prefix)
        kafka = dlq.client_config(settings)
        asyncio.run(dlq.purge(kafka, topics, DeadLetterFilter(code=ErrorCode.TIMEOUT), actor="ops"))
        report = asyncio.run(
            dlq.purge(kafka, topics, DeadLetterFilter(code=ErrorCode.EVENT_MALFORMED), actor="ops")
        )
        assert report.delete_before == {0: 2}
        assert records(settings, topics.deadletter) == []
        marks = asyncio.run(dlq.read_marks(kafka, topics))
        assert marks == {}


async def publish_raw(bootstrap: str, topic: str, key: bytes | None, value: bytes | None) -> None:
    """One raw record, as a stray producer would write it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


class TestStrayRecords:
    def test_junk_on_deadletter_topic_is_skipped_and_blocks_deletion(
        self, env: tuple[Settings, list[DeadLetter]]
    ) -> None:
        """A record that is no dead letter is not listed, and a purge never deletes past it."""
        settings, _ = env
        topics = TopicNames(settings.topic_prefix)
        bootstrap, kafka = settings.kafka_bootstrap, dlq.client_config(settings)
        asyncio.run(publish_raw(bootstrap, topics.deadletter, None, b"not a dead letter"))
        snapshot = asyncio.run(dlq.read_snapshot(kafka, topics))
        assert (len(snapshot.entries), snapshot.unreadable) == (2, [(0, 2)])
        selection = DeadLetterFilter(stage=Stage.VALIDATION)
        report = asyncio.run(dlq.purge(kafka, topics, selection, actor="ops"))
        assert report.delete_before == {0: 2}

    def test_junk_on_marks_topic_is_ignored(self, env: tuple[Settings, list[DeadLetter]]) -> None:
        """A stray value or a tombstone with a junk key on the marks topic changes no mark."""
        settings, letters = env
        topics = TopicNames(settings.topic_prefix)
        bootstrap, kafka = settings.kafka_bootstrap, dlq.client_config(settings)
        selection = DeadLetterFilter(ids=frozenset({letters[1].dead_letter_id}))
        asyncio.run(dlq.replay(kafka, topics, selection, actor="ops"))
        marks_topic = dlq.marks_topic(topics)
        asyncio.run(publish_raw(bootstrap, marks_topic, b"k", b"{junk"))
        asyncio.run(publish_raw(bootstrap, marks_topic, b"not-a-uuid", None))
        marks = asyncio.run(dlq.read_marks(kafka, topics))
        assert list(marks) == [letters[1].dead_letter_id]


class TestBrokerTrouble:
    def test_unreachable_broker_is_unavailable(self, capsys: pytest.CaptureFixture[str]) -> None:
        """No broker: one line naming BROKER_UNAVAILABLE and exit code 5, no traceback."""
        settings = load_settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="rstest.nobroker.")
        assert dlq_command(settings, "list") == 5
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "BROKER_UNAVAILABLE" in err

    def test_unfiltered_replay_is_refused(self) -> None:
        """Replaying everything needs an explicit filter (checked before any I/O)."""
        topics, nowhere = TopicNames("rstest.nobroker."), KafkaClientConfig("127.0.0.1:1")
        with pytest.raises(ValueError, match="replay needs --id"):
            asyncio.run(dlq.replay(nowhere, topics, DeadLetterFilter(), actor="ops"))
