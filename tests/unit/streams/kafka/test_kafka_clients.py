"""The client wrappers and builders, over fake aiokafka clients (no broker)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import errors as kafka
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from structlog.testing import capture_logs

from schemas.errors import ErrorCode, TransientError
from streams.kafka import (
    GroupMembership,
    KafkaAdmin,
    KafkaClientConfig,
    KafkaConsumer,
    KafkaProducer,
    RawMessage,
    build_admin,
    build_consumer,
    build_producer,
)
from streams.kafka import clients as clients_module

CONFIG = KafkaClientConfig("k:9092", client_id="test", send_timeout_seconds=0.05)


class FakeProducer:
    """An aiokafka producer double: records sends; fails where told."""

    def __init__(self, *, start_error: Exception | None = None) -> None:
        self.start_error = start_error
        self.stopped = False
        self.sent: list[dict[str, Any]] = []
        self.futures: list[asyncio.Future[object]] = []
        self.resolve = True
        self.fail_with: Exception | None = None
        self.offsets: list[tuple[dict[TopicPartition, OffsetAndMetadata], str]] = []
        self.transaction_error: Exception | None = None
        self.client = SimpleNamespace(cluster=SimpleNamespace(brokers=lambda: {1}))

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[object]:
        self.sent.append({"topic": topic, **kwargs})
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.fail_with is not None:
            future.set_exception(self.fail_with)
        elif self.resolve:
            future.set_result(None)
        self.futures.append(future)
        return future

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self.transaction_error is not None:
            raise self.transaction_error
        yield

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, OffsetAndMetadata], group_id: str
    ) -> None:
        self.offsets.append((offsets, group_id))


class TestKafkaProducer:
    async def test_failed_start_stops_and_translates(self) -> None:
        """A broker that cannot be reached at start: BROKER_UNAVAILABLE, nothing left open."""
        inner = FakeProducer(start_error=kafka.KafkaConnectionError("refused"))
        with pytest.raises(TransientError) as caught:
            await KafkaProducer(inner, CONFIG).start()  # type: ignore[arg-type]
        assert caught.value.code is ErrorCode.BROKER_UNAVAILABLE
        assert inner.stopped

    async def test_send_all_sends_each_message_as_addressed(self) -> None:
        """Topic, key, value, headers and a pinned partition reach the client unchanged."""
        inner = FakeProducer()
        producer = KafkaProducer(inner, CONFIG)  # type: ignore[arg-type]
        await producer.send_all(
            [RawMessage("t", b"k", b"v", (("h", b"1"),), partition=2), RawMessage("u", None, None)]
        )
        assert inner.sent == [
            {"topic": "t", "value": b"v", "key": b"k", "headers": [("h", b"1")], "partition": 2},
            {"topic": "u", "value": None, "key": None, "headers": [], "partition": None},
        ]

    async def test_unacknowledged_delivery_times_out(self) -> None:
        """A broker that never acknowledges: TIMEOUT after send_timeout_seconds, not a hang."""
        inner = FakeProducer()
        inner.resolve = False
        with pytest.raises(TransientError) as caught:
            await KafkaProducer(inner, CONFIG).send_all([RawMessage("t", None, b"v")])  # type: ignore[arg-type]
        assert caught.value.code is ErrorCode.TIMEOUT

    async def test_failed_delivery_is_broker_unavailable(self) -> None:
        """A delivery the client failed becomes a retryable BROKER_UNAVAILABLE."""
        inner = FakeProducer()
        inner.fail_with = kafka.NotLeaderForPartitionError()
        with pytest.raises(TransientError) as caught:
            await KafkaProducer(inner, CONFIG).send_all([RawMessage("t", None, b"v")])  # type: ignore[arg-type]
        assert caught.value.code is ErrorCode.BROKER_UNAVAILABLE
        assert caught.value.retryable

    async def test_fenced_transaction_is_refused(self) -> None:
        """A newer producer with the same transactional id: refused, not worth retrying."""
        inner = FakeProducer()
        inner.transaction_error = kafka.ProducerFenced()
        producer = KafkaProducer(inner, CONFIG)  # type: ignore[arg-type]
        with pytest.raises(TransientError) as caught:
            async with producer.transaction():
                pass
        assert caught.value.code is ErrorCode.BROKER_REQUEST_REFUSED

    async def test_offsets_in_a_transaction(self) -> None:
        """Next offsets go to the transaction as aiokafka wants them."""
        inner = FakeProducer()
        tp = TopicPartition("t", 0)
        await KafkaProducer(inner, CONFIG).send_offsets_to_transaction({tp: 8}, "g")  # type: ignore[arg-type]
        assert inner.offsets == [({tp: OffsetAndMetadata(8, "")}, "g")]

    async def test_knows_brokers(self) -> None:
        """Readiness comes from the client's metadata."""
        assert KafkaProducer(FakeProducer(), CONFIG).knows_brokers()  # type: ignore[arg-type]


class FakeConsumer:
    """An aiokafka consumer double."""

    def __init__(self) -> None:
        self.committed: list[dict[TopicPartition, OffsetAndMetadata]] = []
        self.calls: list[str] = []

    async def getmany(self, *partitions: TopicPartition, **kwargs: Any) -> dict[Any, Any]:
        raise kafka.RequestTimedOutError()

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.committed.append(offsets)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.calls.append("end_offsets")
        return dict.fromkeys(partitions, 5)

    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        self.calls.append("beginning_offsets")
        return dict.fromkeys(partitions, 0)

    async def start(self) -> None:
        raise kafka.UnrecognizedBrokerVersion()

    async def stop(self) -> None:
        self.calls.append("stop")


class TestKafkaConsumer:
    async def test_fetch_errors_are_translated(self) -> None:
        """A request timeout while fetching is a retryable TIMEOUT."""
        consumer = KafkaConsumer(FakeConsumer(), CONFIG)  # type: ignore[arg-type]
        with pytest.raises(TransientError) as caught:
            await consumer.getmany(timeout_ms=10)
        assert caught.value.code is ErrorCode.TIMEOUT

    async def test_commit_takes_next_offsets(self) -> None:
        """Offsets are committed as aiokafka wants them."""
        inner = FakeConsumer()
        tp = TopicPartition("t", 1)
        await KafkaConsumer(inner, CONFIG).commit({tp: 3})  # type: ignore[arg-type]
        assert inner.committed == [{tp: OffsetAndMetadata(3, "")}]

    async def test_no_partitions_no_request(self) -> None:
        """Asking for no partitions' offsets asks the broker nothing."""
        inner = FakeConsumer()
        consumer = KafkaConsumer(inner, CONFIG)  # type: ignore[arg-type]
        assert await consumer.end_offsets([]) == {}
        assert await consumer.beginning_offsets([]) == {}
        assert inner.calls == []
        assert await consumer.end_offsets([TopicPartition("t", 0)]) == {TopicPartition("t", 0): 5}

    async def test_start_and_end_offsets_ask_their_own_question(self) -> None:
        """Start offsets come from aiokafka's beginning offsets, end offsets from its end ones."""
        inner = FakeConsumer()
        consumer = KafkaConsumer(inner, CONFIG)  # type: ignore[arg-type]
        tp = TopicPartition("t", 2)
        assert await consumer.beginning_offsets([tp]) == {tp: 0}
        assert await consumer.end_offsets([tp]) == {tp: 5}
        assert inner.calls == ["beginning_offsets", "end_offsets"]

    async def test_offset_errors_name_what_was_read(self) -> None:
        """A failed offsets request is translated and says which offsets it was reading."""

        class Failing(FakeConsumer):
            async def beginning_offsets(
                self, partitions: list[TopicPartition]
            ) -> dict[TopicPartition, int]:
                raise kafka.RequestTimedOutError()

        consumer = KafkaConsumer(Failing(), CONFIG)  # type: ignore[arg-type]
        with pytest.raises(TransientError) as caught:
            await consumer.beginning_offsets([TopicPartition("t", 0)])
        assert caught.value.code is ErrorCode.TIMEOUT
        assert "reading start offsets" in str(caught.value)

    async def test_failed_start_stops(self) -> None:
        """A consumer that could not start is stopped again and the failure translated."""
        inner = FakeConsumer()
        with pytest.raises(TransientError):
            await KafkaConsumer(inner, CONFIG).start()  # type: ignore[arg-type]
        assert inner.calls == ["stop"]


class FakeAdmin:
    """An aiokafka admin double answering from canned responses."""

    def __init__(self) -> None:
        self.metadata = {"topics": []}
        self.create_errors: list[tuple[str, int, str]] = []
        self.groups: list[Any] = []

    async def _send_request(self, request: Any) -> Any:
        self.request = request
        return SimpleNamespace(to_object=lambda: self.metadata)

    async def create_topics(self, topics: list[Any]) -> Any:
        return SimpleNamespace(topic_errors=self.create_errors)

    async def describe_consumer_groups(self, names: list[str]) -> list[Any]:
        return [SimpleNamespace(groups=self.groups)]

    async def list_consumer_groups(self) -> list[tuple[str, str]]:
        return [("b", "consumer"), ("a", "consumer"), ("a", "consumer")]

    async def list_consumer_group_offsets(self, group: str) -> dict[Any, Any]:
        return {TopicPartition("t", 0): SimpleNamespace(offset=-1)}


class TestKafkaAdmin:
    async def test_topic_partitions_of_existing_topics_only(self) -> None:
        """Missing topics (an error code) are left out; partitions come sorted."""
        inner = FakeAdmin()
        inner.metadata = {
            "topics": [
                {"error_code": 0, "topic": "a", "partitions": [{"partition": 1}, {"partition": 0}]},
                {"error_code": 3, "topic": "gone", "partitions": []},
            ]
        }
        admin = KafkaAdmin(inner, CONFIG)  # type: ignore[arg-type]
        assert await admin.topic_partitions({"a", "gone"}) == {"a": [0, 1]}
        assert inner.request._allow_auto_topic_creation is False  # never recreates a topic

    async def test_create_topics_reports_created_and_tolerates_existing(self) -> None:
        """Code 0 is created, 36 (already exists) is fine."""
        inner = FakeAdmin()
        inner.create_errors = [("a", 0, ""), ("b", 36, "exists")]
        created = await KafkaAdmin(inner, CONFIG).create_topics(  # type: ignore[arg-type]
            [("a", 1, {}), ("b", 1, {})]
        )
        assert created == {"a"}

    async def test_refused_topic_creation(self) -> None:
        """Any other code is a refusal naming the topic and the broker's code only."""
        inner = FakeAdmin()
        inner.create_errors = [("a", 44, "policy says no: /etc/secret")]
        with pytest.raises(TransientError) as caught:
            await KafkaAdmin(inner, CONFIG).create_topics([("a", 1, {})])  # type: ignore[arg-type]
        assert caught.value.code is ErrorCode.BROKER_REQUEST_REFUSED
        assert caught.value.reason == "topic creation refused: a (code 44)"

    async def test_group_membership(self) -> None:
        """Members and state of a known group; None for one the broker does not know."""
        inner = FakeAdmin()
        admin = KafkaAdmin(inner, CONFIG)  # type: ignore[arg-type]
        assigned = ConsumerProtocolMemberAssignment(0, [("t", [0, 2])], b"").encode()
        members = [
            ("m1", "c", "h", b"", assigned),
            ("m2", "c", "h", b"", b""),  # a rebalance in progress: nothing assigned yet
            ("m3", "c", "h", b"", b"\x00"),  # not a consumer-protocol assignment
        ]
        inner.groups = [(0, "g", "Stable", "consumer", "range", members)]
        assert await admin.group_membership("g") == GroupMembership(
            3, "Stable", frozenset({TopicPartition("t", 0), TopicPartition("t", 2)})
        )
        inner.groups = [(16, "g", "", "", "", [])]
        assert await admin.group_membership("g") is None

    async def test_groups_and_offsets(self) -> None:
        """Groups are listed once each, sorted; offsets come as plain ints (-1: none)."""
        admin = KafkaAdmin(FakeAdmin(), CONFIG)  # type: ignore[arg-type]
        assert await admin.list_groups() == ["a", "b"]
        assert await admin.group_offsets("a") == {TopicPartition("t", 0): -1}


class Recorder:
    """Stands in for an aiokafka client class: records how it was built."""

    built: list[tuple[tuple[Any, ...], dict[str, Any]]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).built.append((args, kwargs))


class TestBuilders:
    def test_producer_is_idempotent_and_acks_all(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Every producer waits for all replicas; a transactional id makes it transactional."""
        recorder = type("P", (Recorder,), {"built": []})
        monkeypatch.setattr(clients_module, "AIOKafkaProducer", recorder)
        build_producer(CONFIG, transactional_id="g.audit-chain-0")
        ((_args, kwargs),) = recorder.built
        assert kwargs["acks"] == "all"
        assert kwargs["enable_idempotence"] is True
        assert kwargs["transactional_id"] == "g.audit-chain-0"
        assert kwargs["bootstrap_servers"] == "k:9092"
        assert kwargs["client_id"] == "test"

    def test_producers_send_at_once_and_batch_what_is_sent_together(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No linger (a lone message is not held back); the batch bound comes from the config."""
        recorder = type("P", (Recorder,), {"built": []})
        monkeypatch.setattr(clients_module, "AIOKafkaProducer", recorder)
        build_producer(CONFIG)
        build_producer(
            KafkaClientConfig("k:9092", producer_linger_ms=7, producer_max_batch_bytes=9)
        )
        (_, first), (_, second) = recorder.built
        assert (first["linger_ms"], first["max_batch_size"]) == (0, 64 * 1024)
        assert (second["linger_ms"], second["max_batch_size"]) == (7, 9)

    def test_consumer_reads_committed_and_commits_manually(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Consumers never see aborted records and never auto-commit."""
        recorder = type("C", (Recorder,), {"built": []})
        monkeypatch.setattr(clients_module, "AIOKafkaConsumer", recorder)
        build_consumer(CONFIG, "t1", "t2", group_id="g", max_poll_records=7)
        ((args, kwargs),) = recorder.built
        assert args == ("t1", "t2")
        assert kwargs["isolation_level"] == "read_committed"
        assert kwargs["enable_auto_commit"] is False
        assert (kwargs["group_id"], kwargs["max_poll_records"]) == ("g", 7)
        assert "fetch_min_bytes" not in kwargs  # the broker answers with the first record

    def test_a_gathering_consumer_lets_the_broker_hold_its_fetches(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The audit readers: a fetch waits up to the gather time unless a backlog fills it."""
        recorder = type("C", (Recorder,), {"built": []})
        monkeypatch.setattr(clients_module, "AIOKafkaConsumer", recorder)
        build_consumer(CONFIG, "t", group_id="g", gather_seconds=0.25)
        ((_, kwargs),) = recorder.built
        assert kwargs["fetch_max_wait_ms"] == 250
        assert kwargs["fetch_min_bytes"] == clients_module.GATHER_MIN_BYTES

    def test_admin_uses_the_same_connection(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The admin client connects like every other client."""
        recorder = type("A", (Recorder,), {"built": []})
        monkeypatch.setattr(clients_module, "AIOKafkaAdminClient", recorder)
        build_admin(CONFIG)
        assert recorder.built == [((), CONFIG.connection())]


class HangingClient:
    """An aiokafka client double whose stop never returns (a fetcher or sender that hangs)."""

    def __init__(self) -> None:
        task = asyncio.get_running_loop().create_future()
        self._sender = SimpleNamespace(sender_task=task)
        self._fetcher = SimpleNamespace(_fetch_task=task)
        self.task = task

    async def stop(self) -> None:
        await asyncio.Event().wait()


class TestBoundedStop:
    """Stopping a client never hangs (issue #17 C): past the bound it is abandoned."""

    BOUNDED = KafkaClientConfig("k:9092", close_timeout_seconds=0.01)

    async def test_hanging_producer_is_abandoned(self) -> None:
        """The sender task is cancelled and one line says so."""
        inner = HangingClient()
        with capture_logs() as logs:
            await KafkaProducer(inner, self.BOUNDED).stop()  # type: ignore[arg-type]
        assert inner.task.cancelled()
        assert [line["event"] for line in logs] == ["kafka_client_abandoned"]

    async def test_hanging_consumer_is_abandoned(self) -> None:
        """The fetcher task is cancelled."""
        inner = HangingClient()
        await KafkaConsumer(inner, self.BOUNDED).stop()  # type: ignore[arg-type]
        assert inner.task.cancelled()

    async def test_other_stop_failures_are_raised(self) -> None:
        """Only the time bound is absorbed; a broker error while stopping is reported."""
        inner = FakeProducer()

        async def fail() -> None:
            raise kafka.KafkaConnectionError()

        inner.stop = fail  # type: ignore[method-assign]
        with pytest.raises(TransientError) as caught:
            await KafkaProducer(inner, self.BOUNDED).stop()  # type: ignore[arg-type]
        assert caught.value.code is ErrorCode.BROKER_UNAVAILABLE


class AclAdmin(FakeAdmin):
    """Answers CreateAcls with the given error codes, one per request."""

    def __init__(self, codes: list[int]) -> None:
        super().__init__()
        self.codes = codes
        self.requests: list[Any] = []

    async def _send_request(self, request: Any) -> Any:
        self.requests.append(request)
        return SimpleNamespace(creation_responses=[(self.codes.pop(0), None)])


class TestCreateAcls:
    async def test_each_acl_is_sent_allowed_from_any_host(self) -> None:
        """One CreateAcls request per ACL, ALLOW, host '*'."""
        inner = AclAdmin([0, 0])
        admin = KafkaAdmin(inner, CONFIG)  # type: ignore[arg-type]
        await admin.create_acls([(2, "t", 3, "User:a", 4), (3, "g", 3, "User:a", 3)])
        first = inner.requests[0]
        assert (first._resource_name, first._principal, first._host) == ("t", "User:a", "*")
        assert first._permission_type == 3
        assert len(inner.requests) == 2

    async def test_a_refused_acl_is_a_refusal(self) -> None:
        """Not a super user (code 31): BROKER_REQUEST_REFUSED with the broker's code."""
        admin = KafkaAdmin(AclAdmin([31]), CONFIG)  # type: ignore[arg-type]
        with pytest.raises(TransientError) as caught:
            await admin.create_acls([(2, "t", 3, "User:a", 4)])
        assert caught.value.code is ErrorCode.BROKER_REQUEST_REFUSED
        assert "code 31" in caught.value.reason


class TestRefusalOf:
    async def test_nobody_listening_is_not_a_refusal(self) -> None:
        """A closed port is an outage (None): BROKER_UNAVAILABLE stays."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = KafkaClientConfig(f"127.0.0.1:{port}", admin_timeout_seconds=5.0)
        assert await clients_module.refusal_of(config) is None

    async def test_a_listener_that_hangs_up_refuses(self) -> None:
        """TCP accepted, then closed before answering: a listener needing TLS/SASL."""

        async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            config = KafkaClientConfig(f"127.0.0.1:{port}", admin_timeout_seconds=5.0)
            refusal = await clients_module.refusal_of(config)
        finally:
            server.close()
            await server.wait_closed()
        assert refusal is not None
        assert refusal.code is ErrorCode.BROKER_REQUEST_REFUSED
        assert "PLAINTEXT" in refusal.reason

    async def test_start_reports_the_refusal_instead_of_an_outage(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A client whose bootstrap failed asks refusal_of, and raises its answer."""
        refused = TransientError(ErrorCode.BROKER_REQUEST_REFUSED, "wrong password")

        async def probe(_config: KafkaClientConfig) -> TransientError:
            return refused

        monkeypatch.setattr(clients_module, "refusal_of", probe)
        inner = FakeProducer(start_error=kafka.KafkaConnectionError("unable to bootstrap"))
        with pytest.raises(TransientError) as caught:
            await KafkaProducer(inner, CONFIG).start()  # type: ignore[arg-type]
        assert caught.value is refused
