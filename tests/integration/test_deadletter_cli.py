"""``radstream dlq`` commands against the real broker: output, exit codes, dry runs, refusals."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from schemas.errors import ErrorCode, error_for
from schemas.events import CORRELATION_ID_HEADER, DeadLetter, Stage
from schemas.settings import Settings, load_settings
from streams import dlq, dlq_cli
from streams.deadletter import build_dead_letter
from streams.topic_admin import ensure_topics
from streams.topics import TopicNames

pytestmark = pytest.mark.requirement("RS-DLQ-02")

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def parse(*argv: str) -> argparse.Namespace:
    """Parse a ``radstream dlq ...`` command line."""
    root = argparse.ArgumentParser(prog="radstream")
    dlq_cli.register(root.add_subparsers(dest="command", required=True))
    return root.parse_args(["dlq", *argv])


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
        headers=[(CORRELATION_ID_HEADER, b"corr-cli")],
        correlation_id="corr-cli",
        event_id=uuid.uuid4(),
    )


async def setup(bootstrap: str, prefix: str) -> list[DeadLetter]:
    """Create the topics and put a malformed and a timed-out dead letter on them."""
    await ensure_topics(bootstrap, prefix, partitions_override=1)
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
    return asyncio.run(dlq.read_topic_records(settings.kafka_bootstrap, topic))[0]


class TestList:
    def test_lists_every_dead_letter(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """list prints one line per dead letter and the count."""
        settings, letters = env
        assert dlq_cli.cmd_dlq_list(settings, parse("list")) == 0
        out = capsys.readouterr().out
        assert all(str(dl.dead_letter_id) in out for dl in letters)
        assert out.endswith("2 dead letter(s)\n")

    def test_filters_by_code(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--code narrows the listing."""
        settings, letters = env
        assert dlq_cli.cmd_dlq_list(settings, parse("list", "--code", "TIMEOUT")) == 0
        out = capsys.readouterr().out
        assert str(letters[1].dead_letter_id) in out
        assert str(letters[0].dead_letter_id) not in out


class TestShow:
    def test_value_is_masked(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """show prints the metadata and a masked value: never the patient's name."""
        settings, letters = env
        assert dlq_cli.cmd_dlq_show(settings, parse("show", str(letters[0].dead_letter_id))) == 0
        out = capsys.readouterr().out
        assert "error_code:     EVENT_MALFORMED" in out
        assert "Doe^John" not in out

    def test_raw_in_development_prints_the_value(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--raw is allowed in development and prints the original bytes."""
        settings, letters = env
        args = parse("show", str(letters[0].dead_letter_id), "--raw")
        assert dlq_cli.cmd_dlq_show(settings, args) == 0
        assert '"PatientName": "Doe^John"' in capsys.readouterr().out

    def test_unknown_id_exits_1(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An id that is not on the topic is reported."""
        settings, _ = env
        assert dlq_cli.cmd_dlq_show(settings, parse("show", str(uuid.uuid4()))) == 1
        assert "no dead letter" in capsys.readouterr().err


class TestReplay:
    def test_dry_run_publishes_nothing(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--dry-run names what it would replay and writes nothing anywhere."""
        settings, letters = env
        args = parse("replay", "--code", "TIMEOUT", "--actor", "ops", "--dry-run")
        assert dlq_cli.cmd_dlq_replay(settings, args) == 0
        assert f"would replay {letters[1].dead_letter_id}" in capsys.readouterr().out
        topics = TopicNames(settings.topic_prefix)
        assert records(settings, topics.arrived) == []
        assert records(settings, topics.api_actions) == []

    def test_second_replay_exits_1_unless_forced(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Replay succeeds once, is refused the second time, and --force replays again."""
        settings, _ = env
        base = ("replay", "--code", "TIMEOUT", "--actor", "ops")
        assert dlq_cli.cmd_dlq_replay(settings, parse(*base)) == 0
        assert dlq_cli.cmd_dlq_replay(settings, parse(*base)) == 1
        assert "already replayed 1 time(s)" in capsys.readouterr().out
        assert dlq_cli.cmd_dlq_replay(settings, parse(*base, "--force")) == 0
        assert len(records(settings, TopicNames(settings.topic_prefix).arrived)) == 2

    def test_nothing_matched_exits_1(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A replay that selects nothing is not a success."""
        settings, _ = env
        args = parse("replay", "--stage", "inference", "--actor", "ops")
        assert dlq_cli.cmd_dlq_replay(settings, args) == 1
        assert "0 replayed, 0 refused" in capsys.readouterr().out


class TestPurge:
    def test_dry_run_changes_nothing(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--dry-run reports the plan; the dead letters stay listed."""
        settings, _ = env
        args = parse("purge", "--code", "EVENT_MALFORMED", "--actor", "ops", "--dry-run")
        assert dlq_cli.cmd_dlq_purge(settings, args) == 0
        assert "(deleted)" in capsys.readouterr().out
        remaining = asyncio.run(
            dlq.list_dead_letters(settings.kafka_bootstrap, TopicNames(settings.topic_prefix))
        )
        assert len(remaining) == 2

    def test_purge_then_nothing_left_to_purge(
        self, env: tuple[Settings, list[DeadLetter]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A purge marks the later dead letter; purging the same again matches nothing."""
        settings, _ = env
        args = parse("purge", "--code", "TIMEOUT", "--actor", "ops")
        assert dlq_cli.cmd_dlq_purge(settings, args) == 0
        assert "0 deleted from the broker, 1 hidden by a mark" in capsys.readouterr().out
        assert dlq_cli.cmd_dlq_purge(settings, args) == 1

    def test_purge_behind_deleted_prefix_deletes_marked_ones_later(
        self, env: tuple[Settings, list[DeadLetter]]
    ) -> None:
        """A dead letter first only marked is deleted once the records before it go too."""
        settings, _ = env
        topics = TopicNames(settings.topic_prefix)
        bootstrap = settings.kafka_bootstrap
        asyncio.run(dlq.purge(bootstrap, topics, actor="ops", code=ErrorCode.TIMEOUT))
        report = asyncio.run(
            dlq.purge(bootstrap, topics, actor="ops", code=ErrorCode.EVENT_MALFORMED)
        )
        assert report.delete_before == {0: 2}
        assert records(settings, topics.deadletter) == []
        marks = asyncio.run(dlq.read_marks(bootstrap, topics))
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
        bootstrap = settings.kafka_bootstrap
        asyncio.run(publish_raw(bootstrap, topics.deadletter, None, b"not a dead letter"))
        snapshot = asyncio.run(dlq.read_snapshot(bootstrap, topics))
        assert (len(snapshot.entries), snapshot.unreadable) == (2, [(0, 2)])
        report = asyncio.run(dlq.purge(bootstrap, topics, actor="ops", stage="validation"))
        assert report.delete_before == {0: 2}

    def test_junk_on_marks_topic_is_ignored(self, env: tuple[Settings, list[DeadLetter]]) -> None:
        """A stray value or a tombstone with a junk key on the marks topic changes no mark."""
        settings, letters = env
        topics = TopicNames(settings.topic_prefix)
        bootstrap = settings.kafka_bootstrap
        asyncio.run(dlq.replay(bootstrap, topics, actor="ops", ids=[letters[1].dead_letter_id]))
        marks_topic = dlq.marks_topic(topics)
        asyncio.run(publish_raw(bootstrap, marks_topic, b"k", b"{junk"))
        asyncio.run(publish_raw(bootstrap, marks_topic, b"not-a-uuid", None))
        marks = asyncio.run(dlq.read_marks(bootstrap, topics))
        assert list(marks) == [letters[1].dead_letter_id]


class TestBrokerTrouble:
    def test_unreachable_broker_exits_1(self, capsys: pytest.CaptureFixture[str]) -> None:
        """No broker: one line naming BROKER_UNAVAILABLE and exit code 1, no traceback."""
        settings = load_settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="rstest.nobroker.")
        assert dlq_cli.cmd_dlq_list(settings, parse("list")) == 1
        assert "BROKER_UNAVAILABLE" in capsys.readouterr().err

    def test_unfiltered_replay_is_refused(self) -> None:
        """Replaying everything needs an explicit filter (checked before any I/O)."""
        topics = TopicNames("rstest.nobroker.")
        with pytest.raises(ValueError, match="replay needs --id"):
            asyncio.run(dlq.replay("127.0.0.1:1", topics, actor="ops"))
