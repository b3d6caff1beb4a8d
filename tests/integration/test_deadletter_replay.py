"""Dead letters on the real broker: poison and unreadable arrivals land there, replay, purge.

Runs the real validation worker (``app.run_worker``) over one partition holding, in order,
three poison messages, an arrival whose image file is not there yet, and a good arrival behind
them. Then the file appears, ``dlq.replay`` republishes the arrival and it completes with its
original correlation id; a second replay is refused; a purge deletes what Kafka can and hides
the rest; every replay and purge is on ``api.actions``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

import app
from schemas.audit import ApiAction, ApiActionKind
from schemas.correlation import CORRELATION_ID_HEADER, new_correlation_id
from schemas.errors import ErrorCode
from schemas.events import ImageArrived, ImageValidated, Stage
from schemas.settings import SAMPLES_DIR, Settings
from streams import dlq
from streams.deadletter import REPLAY_OF_HEADER, DeadLetterEntry, DeadLetterFilter
from streams.kafka import KafkaClientConfig, ensure_topics, read_topic
from streams.router import arrival_for_file
from streams.topics import TopicNames
from tests.integration.settings_support import isolated_settings

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.requirement("RS-DLQ-01", "RS-DLQ-02", "RS-G-06"),
]

# Bounded waits: each step takes well under a second once the worker joined its group; the
# bounds only stop a hung run.
WORKER_START_SECONDS = 60
OUTCOME_SECONDS = 30


@dataclass
class Published:
    """One message the test published, where it went, and what should become of it."""

    name: str
    correlation_id: str
    value: bytes
    offset: int


@dataclass
class Run:
    """The running worker's environment and what was published."""

    settings: Settings
    topics: TopicNames
    storage: Path
    late_file: Path
    late_event: ImageArrived
    good_event: ImageArrived
    published: dict[str, Published]


async def read_records(kafka: KafkaClientConfig, topic: str) -> tuple[list[Any], dict[int, int]]:
    """Every record on ``topic`` now, and each partition's first offset."""
    content = await read_topic(kafka, topic)
    return content.all_records(), content.starts


async def wait_for_records(kafka: KafkaClientConfig, topic: str, count: int) -> list[object]:
    """The topic's records once it holds at least ``count`` (bounded by OUTCOME_SECONDS)."""
    async with asyncio.timeout(OUTCOME_SECONDS):
        while True:
            records, _ = await read_records(kafka, topic)
            if len(records) >= count:
                return records
            await asyncio.sleep(0.2)


def arrival_json(event: ImageArrived, **changes: object) -> bytes:
    """The event's JSON with fields changed or added (to build poison messages)."""
    data = json.loads(event.model_dump_json())
    data.update(changes)
    return json.dumps(data).encode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(
    kafka_bootstrap: str,
    kafka: KafkaClientConfig,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Run]:
    """Publish poison, late and good arrivals on one partition; run the validation worker."""
    storage = tmp_path_factory.mktemp("storage")
    good_file = storage / "ct_256.png"
    late_file = storage / "late" / "ct_64.png"
    shutil.copy(SAMPLES_DIR / "raster" / "ct_256.png", good_file)
    late_file.parent.mkdir()
    shutil.copy(SAMPLES_DIR / "raster" / "ct_64.png", late_file)
    good_event = arrival_for_file(good_file, source="router-1", modality="CT")
    late_event = arrival_for_file(late_file, source="router-1", modality="CT")
    late_file.unlink()  # announced before the router finished writing it

    settings = isolated_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"rstest.{run_id}.dlq-{uuid.uuid4().hex[:6]}.",
        storage_roots=(storage,),
        retry={"max_attempts": 2, "initial_seconds": 0.01, "max_seconds": 0.02},
    )
    topics = TopicNames(settings.topic_prefix)
    # One partition, so the good arrival really sits behind the poison ones.
    await ensure_topics(kafka, settings.topic_prefix, partitions_override=1)
    messages = {
        "invalid_json": b'{"source": "router-1", "image_uri": ',
        "wrong_version": arrival_json(good_event, schema_version=99, event_id=str(uuid.uuid4())),
        "unknown_field": arrival_json(
            good_event, patient_name="Doe^Jane", event_id=str(uuid.uuid4())
        ),
        "late_file": late_event.model_dump_json().encode(),
        "good": good_event.model_dump_json().encode(),
    }
    published: dict[str, Published] = {}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for name, value in messages.items():
            correlation_id = new_correlation_id()
            meta = await producer.send_and_wait(
                topics.arrived,
                value=value,
                key=name.encode(),
                headers=[(CORRELATION_ID_HEADER, correlation_id.encode())],
            )
            published[name] = Published(name, correlation_id, value, meta.offset)
    finally:
        await producer.stop()

    stop, started = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(
        app.run_worker(settings, ["validation"], stop, started=started, serve_http=False)
    )
    try:
        await asyncio.wait_for(started.wait(), WORKER_START_SECONDS)
        yield Run(settings, topics, storage, late_file, late_event, good_event, published)
    finally:
        stop.set()
        await worker


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dead_letters(run: Run) -> dict[str, DeadLetterEntry]:
    """The dead letters the worker produced, by the name of the message they came from."""
    await wait_for_records(dlq.client_config(run.settings), run.topics.deadletter, 4)
    entries = await dlq.list_dead_letters(
        dlq.client_config(run.settings), run.topics, DeadLetterFilter()
    )
    by_offset = {p.offset: p.name for p in run.published.values()}
    return {by_offset[e.dead_letter.source_offset]: e for e in entries}


@dataclass
class Replayed:
    """The first and second replay of the late arrival, and what validation produced."""

    first: dlq.ReplayReport
    second: dlq.ReplayReport
    validated: list[tuple[ImageValidated, dict[str, bytes]]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replayed(run: Run, dead_letters: dict[str, DeadLetterEntry]) -> Replayed:
    """Write the late file, replay its dead letter, wait for validation, replay again."""
    kafka = dlq.client_config(run.settings)
    shutil.copy(SAMPLES_DIR / "raster" / "ct_64.png", run.late_file)
    letter_id = dead_letters["late_file"].dead_letter.dead_letter_id
    selection = DeadLetterFilter(ids=frozenset({letter_id}))
    first = await dlq.replay(kafka, run.topics, selection, actor="ops-alice")
    records = await wait_for_records(kafka, run.topics.validated, 2)
    second = await dlq.replay(kafka, run.topics, selection, actor="ops-alice")
    validated = [
        (ImageValidated.model_validate_json(r.value), dict(r.headers))  # type: ignore[attr-defined]
        for r in records
    ]
    return Replayed(first, second, validated)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def purged(run: Run, replayed: Replayed) -> dlq.PurgeReport:
    """Purge the EVENT_MALFORMED dead letters (the first one, and one behind a kept one)."""
    return await dlq.purge(
        dlq.client_config(run.settings),
        run.topics,
        DeadLetterFilter(code=ErrorCode.EVENT_MALFORMED),
        actor="ops-bob",
    )


async def api_actions(run: Run) -> list[ApiAction]:
    """Every audit action on the run's api.actions topic."""
    records, _ = await read_records(dlq.client_config(run.settings), run.topics.api_actions)
    return [ApiAction.model_validate_json(r.value) for r in records]


class TestDeadLettering:
    async def test_good_arrival_behind_poison_is_validated(
        self, run: Run, dead_letters: dict[str, DeadLetterEntry]
    ) -> None:
        """The good arrival published after every poison message still reaches validated."""
        records = await wait_for_records(dlq.client_config(run.settings), run.topics.validated, 1)
        first = ImageValidated.model_validate_json(records[0].value)  # type: ignore[attr-defined]
        assert first.event_id == run.good_event.event_id

    async def test_each_bad_message_has_its_code(
        self, dead_letters: dict[str, DeadLetterEntry]
    ) -> None:
        """Invalid JSON, wrong version, unknown field and a missing file get their codes."""
        codes = {name: e.dead_letter.error_code for name, e in dead_letters.items()}
        assert codes == {
            "invalid_json": ErrorCode.EVENT_MALFORMED,
            "wrong_version": ErrorCode.EVENT_SCHEMA_VERSION_UNSUPPORTED,
            "unknown_field": ErrorCode.EVENT_MALFORMED,
            "late_file": ErrorCode.RETRIES_EXHAUSTED,
        }

    async def test_source_position_and_original_bytes_are_kept(
        self, run: Run, dead_letters: dict[str, DeadLetterEntry]
    ) -> None:
        """Each dead letter names its source topic/partition/offset and keeps the value bytes."""
        import base64  # noqa: PLC0415

        for name, entry in dead_letters.items():
            letter = entry.dead_letter
            sent = run.published[name]
            assert (letter.source_topic, letter.source_partition) == (run.topics.arrived, 0)
            assert letter.source_offset == sent.offset
            assert base64.b64decode(letter.value_b64) == sent.value
            assert letter.correlation_id == sent.correlation_id
            assert letter.stage is Stage.VALIDATION

    async def test_missing_file_was_retried_per_policy(
        self, dead_letters: dict[str, DeadLetterEntry]
    ) -> None:
        """The unreadable image was tried max_attempts (2) times, with failure times kept."""
        letter = dead_letters["late_file"].dead_letter
        assert letter.attempts == 2
        assert letter.first_failure_at < letter.last_failure_at
        assert "STORAGE_FILE_NOT_FOUND" in letter.reason

    async def test_poison_reason_never_holds_the_value(
        self, dead_letters: dict[str, DeadLetterEntry]
    ) -> None:
        """The unknown-field rejection names the field's location, never the patient's name."""
        reason = dead_letters["unknown_field"].dead_letter.reason
        assert "patient_name" in reason
        assert "Doe" not in reason


class TestReplay:
    async def test_replayed_arrival_completes_with_original_correlation_id(
        self, run: Run, replayed: Replayed
    ) -> None:
        """After the file appeared, the replayed arrival is validated under its first trace."""
        late = [(v, h) for v, h in replayed.validated if v.event_id == run.late_event.event_id]
        assert len(late) == 1
        headers = late[0][1]
        expected = run.published["late_file"].correlation_id
        assert headers[CORRELATION_ID_HEADER].decode() == expected

    async def test_replay_goes_to_the_original_topic_with_original_bytes(
        self, run: Run, replayed: Replayed
    ) -> None:
        """The arrived topic gets the original value again, tagged with the dead letter id."""
        records, _ = await read_records(dlq.client_config(run.settings), run.topics.arrived)
        again = [r for r in records if r.offset > run.published["good"].offset]
        assert [r.value for r in again] == [run.published["late_file"].value]
        letter_id = replayed.first.replayed[0].dead_letter.dead_letter_id
        assert dict(again[0].headers)[REPLAY_OF_HEADER] == str(letter_id).encode()

    async def test_second_replay_is_refused(self, replayed: Replayed) -> None:
        """Replaying the same dead letter again is refused (marks survive in their topic)."""
        assert replayed.second.replayed == []
        assert len(replayed.second.refused) == 1
        assert "already replayed" in replayed.second.refused[0][1]

    async def test_replay_and_refusal_are_audited(self, run: Run, replayed: Replayed) -> None:
        """api.actions holds a successful dlq_replay and a refused one, by the actor."""
        actions = [a for a in await api_actions(run) if a.action is ApiActionKind.DLQ_REPLAY]
        assert sorted(a.outcome for a in actions) == ["failure", "success"]
        assert {a.actor_id for a in actions} == {"ops-alice"}
        assert {a.event_id for a in actions} == {run.late_event.event_id}
        assert {a.correlation_id for a in actions} == {run.published["late_file"].correlation_id}


class TestPurge:
    async def test_prefix_is_deleted_and_the_rest_marked(
        self, run: Run, dead_letters: dict[str, DeadLetterEntry], purged: dlq.PurgeReport
    ) -> None:
        """Only the first dead letter can leave the broker; the later one is only marked."""
        first = dead_letters["invalid_json"]
        assert purged.delete_before == {first.partition: first.offset + 1}
        assert [e.offset for e in purged.marked_only] == [dead_letters["unknown_field"].offset]
        _, starts = await read_records(dlq.client_config(run.settings), run.topics.deadletter)
        assert starts == {first.partition: first.offset + 1}

    async def test_purged_dead_letters_are_hidden(self, run: Run, purged: dlq.PurgeReport) -> None:
        """list no longer shows any EVENT_MALFORMED dead letter; the others remain."""
        left = await dlq.list_dead_letters(
            dlq.client_config(run.settings), run.topics, DeadLetterFilter()
        )
        assert sorted(e.dead_letter.error_code for e in left) == [
            ErrorCode.EVENT_SCHEMA_VERSION_UNSUPPORTED,
            ErrorCode.RETRIES_EXHAUSTED,
        ]

    async def test_purge_is_audited_per_dead_letter(
        self, run: Run, purged: dlq.PurgeReport
    ) -> None:
        """api.actions holds one successful dlq_purge per purged dead letter, by the actor."""
        actions = [a for a in await api_actions(run) if a.action is ApiActionKind.DLQ_PURGE]
        assert len(actions) == 2
        assert {(a.actor_id, a.outcome, a.route) for a in actions} == {
            ("ops-bob", "success", "cli/dlq/purge")
        }
