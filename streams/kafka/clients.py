"""The only code that builds aiokafka producers, consumers and admin clients.

Each builder takes the one :class:`~streams.kafka.config.KafkaClientConfig` and returns a thin
wrapper (in the spirit of Quix Streams' ``kafka/consumer.py``) whose every call translates
Kafka errors (:mod:`streams.kafka.errors`) and is bounded in time, so the modules using it keep
only their domain logic and never import aiokafka.

Consumers always read ``read_committed`` (records of aborted transactions are never seen, and
end offsets are the last stable offset), commit manually and start from the earliest offset
when their group has none.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.protocol.admin import CreateAclsRequest
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from schemas.errors import ErrorCode, TransientError
from streams.kafka.config import KafkaClientConfig
from streams.kafka.errors import REFUSED_ERRORS, kafka_errors, translate_kafka_error
from streams.kafka.messages import RawMessage

__all__ = [
    "AsyncResource",
    "ConsumerRecord",
    "GroupMembership",
    "KafkaAdmin",
    "KafkaConsumer",
    "KafkaProducer",
    "TopicPartition",
    "build_admin",
    "build_consumer",
    "build_producer",
    "start_all",
    "stop_all",
]

log = structlog.get_logger("radstream.kafka")

_NO_ERROR = 0
_TOPIC_ALREADY_EXISTS = 36
_UNAVAILABLE = ErrorCode.BROKER_UNAVAILABLE
_ALLOW = 3  # AclPermissionType.ALLOW
_ANY_HOST = "*"
# A gathering fetch (build_consumer's gather_seconds) returns early only with this much data, i.e.
# when a backlog is being read: then it is one full fetch as without gathering.
GATHER_MIN_BYTES = 1024 * 1024


class AsyncResource:
    """Something started and stopped around its use: ``async with`` starts and stops it."""

    async def start(self) -> None:
        """Connect."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Disconnect."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


class _Client(AsyncResource):
    """A wrapped aiokafka client: started and stopped with errors translated, in bounded time."""

    kind: ClassVar[str]
    _config: KafkaClientConfig

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    def _abandon(self) -> None:
        """Cancel what the client runs in the background after it would not close in time."""

    async def start(self) -> None:
        """Connect; a client that fails to start is closed again (nothing stays open).

        Raises:
            TransientError: ``BROKER_REQUEST_REFUSED`` when the broker is there but refuses this
                client (wrong credentials, no TLS or SASL where its listener needs them: see
                :func:`refusal_of`), else ``BROKER_UNAVAILABLE`` or ``TIMEOUT``.
        """
        try:
            with kafka_errors(f"connecting {self.kind}"):
                try:
                    await self._open()
                except BaseException:
                    await self._close()
                    raise
        except TransientError as exc:
            # aiokafka's bootstrap logs why each broker failed and raises "unable to
            # bootstrap": ask once more, directly, whether the broker refused us.
            refusal = await refusal_of(self._config) if exc.code is _UNAVAILABLE else None
            if refusal is not None:
                raise refusal from exc
            raise

    async def stop(self) -> None:
        """Disconnect within ``close_timeout_seconds``; past it the client is abandoned.

        aiokafka's own ``stop`` can wait without end (a consumer's fetcher, a producer flushing
        to a broker that is gone): a stop that does not finish in time is logged once and its
        background tasks are cancelled, so shutting down never hangs.
        """
        bound = self._config.close_timeout_seconds
        try:
            with kafka_errors(f"stopping {self.kind}"):
                async with asyncio.timeout(bound):
                    await self._close()
        except TransientError as exc:
            if exc.code is not ErrorCode.TIMEOUT:
                raise
            log.warning("kafka_client_abandoned", client=self.kind, seconds=bound)
            self._abandon()


async def start_all(*resources: AsyncResource) -> None:
    """Start the resources in order; when one fails, stop those already started, then raise."""
    started: list[AsyncResource] = []
    try:
        for resource in resources:
            await resource.start()
            started.append(resource)
    except BaseException:
        await stop_all(*reversed(started))
        raise


async def stop_all(*resources: AsyncResource | None) -> None:
    """Stop every resource given (``None`` skipped), all of them even when one fails.

    Raises:
        BaseException: the first failure, after every resource was asked to stop.
    """
    failure: BaseException | None = None
    for resource in resources:
        if resource is None:
            continue
        try:
            await resource.stop()
        except BaseException as exc:  # noqa: BLE001 - the others must still be stopped
            failure = failure or exc
    if failure is not None:
        raise failure


async def refusal_of(config: KafkaClientConfig) -> TransientError | None:
    """Why the first bootstrap broker refuses a client of ``config``; ``None`` if it does not.

    Connects once, as the client would, bounded by the admin timeout: a SASL authentication
    failure, a TLS handshake the client refused (the broker's certificate is not trusted) or a
    broker that accepted the TCP connection and then closed it (a plaintext client on a
    TLS/SASL listener) is a refusal. A broker that is down or silent is not (``None``): that
    stays ``BROKER_UNAVAILABLE``, which a restart may cure.
    """
    host, _, port = config.bootstrap.split(",")[0].strip().rpartition(":")
    options = config.connection()
    for own in ("bootstrap_servers", "client_id"):
        options.pop(own)
    try:
        async with asyncio.timeout(config.admin_timeout_seconds):
            _reader, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            connection = await create_conn(host, int(port), client_id=config.client_id, **options)
            connection.close()
    except (OSError, TimeoutError) as exc:
        if isinstance(exc, ssl.SSLError):
            return TransientError(
                ErrorCode.BROKER_REQUEST_REFUSED,
                f"TLS with the broker failed ({type(exc).__name__}): check "
                "RADSTREAM_KAFKA__SSL_CAFILE and the broker's certificate",
            )
        return None  # nobody listening, or no answer: unavailable, not refused
    except REFUSED_ERRORS as exc:
        return translate_kafka_error(exc, "authenticating with the broker")
    except KafkaConnectionError:
        return TransientError(
            ErrorCode.BROKER_REQUEST_REFUSED,
            "the broker closed the connection: its listener needs other security settings "
            f"than {config.security.security_protocol} (RADSTREAM_KAFKA__SECURITY_PROTOCOL)",
        )
    except KafkaError:
        return None
    return None


class KafkaProducer(_Client):
    """An acks=all, idempotent producer; transactional when built with a transactional id.

    Starting a transactional producer fences older producers with the same id.
    """

    kind = "a producer"

    def __init__(self, producer: AIOKafkaProducer, config: KafkaClientConfig) -> None:
        self._producer = producer
        self._config = config

    async def _open(self) -> None:
        async with asyncio.timeout(self._config.admin_timeout_seconds):
            await self._producer.start()
        # Private, but the sender task is where a fatal error (a fenced producer) surfaces.
        sender = getattr(self._producer, "_sender", None)
        if sender is not None and sender.sender_task is not None:
            sender.sender_task.add_done_callback(self._retrieve_orphaned_errors)

    def _retrieve_orphaned_errors(self, sender_task: asyncio.Task[None]) -> None:
        """Mark as retrieved the error aiokafka leaves on futures nobody awaits once it died.

        When the sender fails for good (a newer producer of the transactional id fenced this
        one), aiokafka sets the error on the transaction's end waiter and on each undelivered
        batch's drain waiter. It awaits those only to commit or abort and to wait for room in
        a full batch, neither of which follows a fatal error, so each would log "Future
        exception was never retrieved" when collected. The caller learns the error from its
        failed send; these copies are only retrieved. Runs after aiokafka's own callback
        (added first, in ``start``), which sets them.
        """
        if sender_task.cancelled() or sender_task.exception() is None:
            return
        # Private, as above: aiokafka offers no way to close these.
        batches = self._producer._message_accumulator._batches.values()
        waiters = [batch._drain_waiter for queue in batches for batch in queue]
        if self._producer._txn_manager is not None:
            waiters.append(self._producer._txn_manager.wait_for_transaction_end())
        for waiter in waiters:
            if waiter.done() and not waiter.cancelled():
                waiter.exception()

    async def _close(self) -> None:
        await self._producer.stop()

    def _abandon(self) -> None:
        # Private, but aiokafka has no public abort: the sender would otherwise keep resending
        # the batches of a producer nobody uses any more.
        sender = self._producer._sender
        if sender is not None and sender.sender_task is not None:
            sender.sender_task.cancel()

    def knows_brokers(self) -> bool:
        """Whether the producer has metadata naming at least one broker (readiness)."""
        return bool(self._producer.client.cluster.brokers())

    async def send_all(self, messages: Sequence[RawMessage]) -> None:
        """Send ``messages`` and wait until the broker acknowledged every one.

        Bounded by ``send_timeout_seconds`` (``TIMEOUT`` past it).
        """
        with kafka_errors("delivery"):
            async with asyncio.timeout(self._config.send_timeout_seconds):
                futures = [
                    await self._producer.send(
                        m.topic,
                        value=m.value,
                        key=m.key,
                        headers=list(m.headers),
                        partition=m.partition,
                    )
                    for m in messages
                ]
                await asyncio.gather(*futures)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """A transaction: committed when the block ends, aborted when it raises."""
        with kafka_errors("a transaction"):
            async with self._producer.transaction():
                yield

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_id: str
    ) -> None:
        """Commit ``group_id``'s next offsets atomically with the open transaction."""
        with kafka_errors("committing offsets in a transaction"):
            await self._producer.send_offsets_to_transaction(
                {tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()}, group_id
            )


class KafkaConsumer(_Client):
    """A manually committing ``read_committed`` consumer (group member or by assignment).

    Starting joins the group, when there is one; stopping leaves it.
    """

    kind = "a consumer"

    def __init__(self, consumer: AIOKafkaConsumer, config: KafkaClientConfig) -> None:
        self._consumer = consumer
        self._config = config

    async def _open(self) -> None:
        await self._consumer.start()

    def _abandon(self) -> None:
        # Private, but aiokafka has no public abort: the fetcher keeps fetching otherwise.
        fetcher = self._consumer._fetcher
        if fetcher is not None:
            fetcher._fetch_task.cancel()

    async def _close(self) -> None:
        await self._consumer.stop()

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records fetched within ``timeout_ms`` (from ``partitions``, or all assigned)."""
        with kafka_errors("fetching records"):
            batches: dict[TopicPartition, list[ConsumerRecord]] = await self._consumer.getmany(
                *partitions, timeout_ms=timeout_ms, max_records=max_records
            )
        return batches

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly these partitions (no group)."""
        with kafka_errors("assigning partitions"):
            self._consumer.assign(list(partitions))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Fetch ``partition`` from ``offset`` next."""
        with kafka_errors("seeking"):
            self._consumer.seek(partition, offset)

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop fetching ``partitions`` until they are assigned again."""
        self._consumer.pause(*partitions)

    def unsubscribe(self) -> None:
        """Drop every assignment."""
        self._consumer.unsubscribe()

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer reads now (its group's assignment, or assigned)."""
        return frozenset(self._consumer.assignment())

    async def position(self, partition: TopicPartition) -> int:
        """The offset of the next record to be fetched from ``partition``."""
        with kafka_errors("reading a position"):
            async with asyncio.timeout(self._config.admin_timeout_seconds):
                return int(await self._consumer.position(partition))

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit the group's next offsets (one past the last record handled)."""
        with kafka_errors("committing offsets"):
            await self._consumer.commit(
                {tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()}
            )

    async def beginning_offsets(
        self, partitions: Collection[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The first offset still held by each partition."""
        return await self._offsets(
            partitions, "reading start offsets", self._consumer.beginning_offsets
        )

    async def end_offsets(
        self, partitions: Collection[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Each partition's last stable offset (what a ``read_committed`` reader can reach)."""
        return await self._offsets(partitions, "reading end offsets", self._consumer.end_offsets)

    async def _offsets(
        self,
        partitions: Collection[TopicPartition],
        doing: str,
        read: Callable[[list[TopicPartition]], Awaitable[Mapping[TopicPartition, int]]],
    ) -> dict[TopicPartition, int]:
        """``read``'s offsets of ``partitions``, errors translated, bounded by the admin timeout.

        No partitions asks the broker nothing.
        """
        if not partitions:
            return {}
        with kafka_errors(doing):
            async with asyncio.timeout(self._config.admin_timeout_seconds):
                found = await read(list(partitions))
        return {tp: int(offset) for tp, offset in found.items()}


class KafkaAdmin(_Client):
    """Topic and consumer-group administration; every round bounded by the admin timeout."""

    kind = "an admin client"

    def __init__(self, admin: AIOKafkaAdminClient, config: KafkaClientConfig) -> None:
        self._admin = admin
        self._config = config
        self._timeout = config.admin_timeout_seconds

    async def _open(self) -> None:
        async with asyncio.timeout(self._timeout):
            await self._admin.start()

    async def _close(self) -> None:
        await self._admin.close()

    async def topic_partitions(self, topics: Collection[str]) -> dict[str, list[int]]:
        """The partitions of each of ``topics`` that exists; missing topics are left out.

        Asks with a metadata request of its own because aiokafka's ``describe_topics`` allows
        auto-creation, which would create (or recreate) a missing topic with the broker's
        defaults on a broker that auto-creates.
        """
        if not topics:
            return {}
        request = MetadataRequest(sorted(topics), allow_auto_topic_creation=False)
        with kafka_errors("reading topic metadata"):
            async with asyncio.timeout(self._timeout):
                # Private, but the one call that can ask without auto-creating (see above).
                response = await self._admin._send_request(request)
        return {
            str(topic["topic"]): sorted(int(p["partition"]) for p in topic["partitions"])
            for topic in response.to_object()["topics"]
            if topic["error_code"] == _NO_ERROR
        }

    async def create_topics(self, topics: Sequence[tuple[str, int, Mapping[str, str]]]) -> set[str]:
        """Create each (name, partitions, configs) that does not exist; the names created.

        Raises:
            TransientError: BROKER_REQUEST_REFUSED when the broker refused a topic (invalid
                config, policy, authorisation), naming only the topic and the broker's code.
        """
        if not topics:
            return set()
        new = [NewTopic(name, parts, 1, topic_configs=dict(cfg)) for name, parts, cfg in topics]
        with kafka_errors("creating topics"):
            async with asyncio.timeout(self._timeout):
                response = await self._admin.create_topics(new)
        errors = [(str(name), int(code)) for name, code, *_rest in response.topic_errors]
        refused = [(n, c) for n, c in errors if c not in (_NO_ERROR, _TOPIC_ALREADY_EXISTS)]
        failures = [f"{name} (code {code})" for name, code in refused]
        if failures:
            raise TransientError(
                ErrorCode.BROKER_REQUEST_REFUSED, "topic creation refused: " + ", ".join(failures)
            )
        return {name for name, code in errors if code == _NO_ERROR}

    async def topic_configs(self, names: Collection[str]) -> dict[str, dict[str, str]]:
        """The configs of the named topics the broker's config handler knows already."""
        if not names:
            return {}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        with kafka_errors("reading topic configs"):
            async with asyncio.timeout(self._timeout):
                responses = await self._admin.describe_configs(resources)
        found: dict[str, dict[str, str]] = {}
        for response in responses:
            for error, _msg, _rtype, resource_name, entries in response.resources:
                if error == _NO_ERROR:
                    found[str(resource_name)] = {str(e[0]): str(e[1]) for e in entries}
        return found

    async def alter_topic_configs(self, name: str, configs: Mapping[str, str]) -> None:
        """Set the named configs of topic ``name``."""
        resource = ConfigResource(ConfigResourceType.TOPIC, name, configs=dict(configs))
        with kafka_errors("changing topic configs"):
            async with asyncio.timeout(self._timeout):
                await self._admin.alter_configs([resource])

    async def create_acls(self, bindings: Iterable[tuple[int, str, int, str, int]]) -> None:
        """Allow each (resource type, name, pattern type, principal, operation) from any host.

        Idempotent: the broker keeps one copy of an ACL created twice. One request per ACL
        (aiokafka's request builds one), each bounded by the admin timeout.

        Raises:
            TransientError: BROKER_REQUEST_REFUSED when the broker refused one (not a super
                user, invalid ACL), naming the broker's code only.
        """
        for resource_type, name, pattern, principal, operation in bindings:
            request = CreateAclsRequest(
                resource_type, name, pattern, principal, _ANY_HOST, operation, _ALLOW
            )
            with kafka_errors("creating ACLs"):
                async with asyncio.timeout(self._timeout):
                    response = await self._admin._send_request(request)  # no public API
            codes = [int(code) for code, _message in response.creation_responses]
            if any(code != _NO_ERROR for code in codes):
                raise TransientError(
                    ErrorCode.BROKER_REQUEST_REFUSED, f"ACL creation refused (code {max(codes)})"
                )

    async def delete_records(self, topic: str, before: Mapping[int, int]) -> None:
        """Delete every record of ``topic``'s partitions below the given offsets."""
        with kafka_errors("deleting records"):
            async with asyncio.timeout(self._timeout):
                await self._admin.delete_records(
                    {TopicPartition(topic, p): RecordsToDelete(o) for p, o in before.items()}
                )

    async def list_topics(self) -> list[str]:
        """Every topic name on the cluster."""
        with kafka_errors("listing topics"):
            async with asyncio.timeout(self._timeout):
                names = await self._admin.list_topics()
        return sorted(str(name) for name in names)

    async def delete_topics(self, names: Collection[str]) -> None:
        """Delete the named topics."""
        with kafka_errors("deleting topics"):
            async with asyncio.timeout(self._timeout):
                await self._admin.delete_topics(sorted(names))

    async def list_groups(self) -> list[str]:
        """Every consumer group on the cluster."""
        with kafka_errors("listing consumer groups"):
            async with asyncio.timeout(self._timeout):
                listed = await self._admin.list_consumer_groups()
        return sorted({str(group[0]) for group in listed})

    async def group_offsets(self, group: str) -> dict[TopicPartition, int]:
        """The committed offset of every partition ``group`` has committed (``-1``: none)."""
        with kafka_errors("reading committed offsets"):
            async with asyncio.timeout(self._timeout):
                offsets = await self._admin.list_consumer_group_offsets(group)
        return {tp: int(meta.offset) for tp, meta in offsets.items()}

    async def group_membership(self, group: str) -> GroupMembership | None:
        """``group`` as its coordinator describes it; ``None`` when the broker does not know it.

        One group per request: aiokafka 0.14 decodes DescribeGroups v3 answers with the v2
        schema, which ignores the trailing ``authorized_operations`` of a single group but
        misreads every group after the first.
        """
        with kafka_errors("describing a consumer group"):
            async with asyncio.timeout(self._timeout):
                responses = await self._admin.describe_consumer_groups([group])
        for response in responses:
            for error_code, group_id, state, _ptype, _protocol, members, *_ in response.groups:
                if error_code == _NO_ERROR and group_id == group:
                    return GroupMembership(len(members), str(state), _assigned(members))
        return None


@dataclass(frozen=True, slots=True)
class GroupMembership:
    """A consumer group's members, state and the partitions assigned to its members."""

    members: int
    state: str
    assigned: frozenset[TopicPartition] = frozenset()


def _assigned(members: Iterable[Any]) -> frozenset[TopicPartition]:
    """The partitions assigned to ``members`` (DescribeGroups entries, assignment last).

    Every consumer-protocol assignor (aiokafka's, Faust's) encodes the standard member
    assignment; an empty one (a rebalance in progress) or one that does not decode (another
    protocol) assigns nothing we can read.
    """
    assigned: set[TopicPartition] = set()
    for member in members:
        raw = member[-1]
        if not isinstance(raw, bytes) or not raw:
            continue
        try:
            assigned.update(ConsumerProtocolMemberAssignment.decode(raw).partitions())
        except ValueError:  # aiokafka's decoders raise ValueError for every malformed buffer
            continue
    return frozenset(assigned)


def build_producer(
    config: KafkaClientConfig, *, transactional_id: str | None = None
) -> KafkaProducer:
    """An idempotent acks=all producer; transactional under ``transactional_id`` when given."""
    producer = AIOKafkaProducer(
        **config.connection(),
        acks="all",
        enable_idempotence=True,
        transactional_id=transactional_id,
        **config.producer_batching(),
    )
    return KafkaProducer(producer, config)


def build_consumer(
    config: KafkaClientConfig,
    *topics: str,
    group_id: str | None = None,
    group_instance_id: str | None = None,
    max_poll_records: int | None = None,
    max_partition_fetch_bytes: int = 1024 * 1024,
    on_assignment: Callable[[frozenset[TopicPartition] | None], None] | None = None,
    sticky: bool = False,
    gather_seconds: float = 0.0,
) -> KafkaConsumer:
    """A consumer of ``topics`` in ``group_id``; without topics and group, one to assign.

    Args:
        config: the connection.
        topics: topics to subscribe to (with ``group_id``).
        group_id: the consumer group; ``None`` reads by assignment and commits nothing.
        group_instance_id: static membership: a restarted member takes its old place at once
            instead of waiting a session timeout for the dead one to be evicted.
        max_poll_records: most records one ``getmany`` returns.
        max_partition_fetch_bytes: most bytes fetched per partition and request.
        on_assignment: called with this member's partitions after every rebalance, and with
            ``None`` when its partitions are revoked (before the group reassigns them).
        sticky: a rebalance leaves every member the partitions it had (the sticky assignor)
            instead of redistributing them by member id.
        gather_seconds: for a reader no one waits on (the audit trail): the broker holds each
            fetch up to this long to gather records, so a trickle of messages costs a few
            fetches a second instead of one fetch per message (0: answer with the first record).
    """
    options: dict[str, Any] = {}
    if max_poll_records is not None:
        options["max_poll_records"] = max_poll_records
    if gather_seconds > 0:
        options["fetch_max_wait_ms"] = max(1, int(gather_seconds * 1000))
        options["fetch_min_bytes"] = GATHER_MIN_BYTES
    consumer = AIOKafkaConsumer(
        *(() if on_assignment else topics),
        **config.connection(),
        group_id=group_id,
        group_instance_id=group_instance_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=max_partition_fetch_bytes,
        partition_assignment_strategy=(
            (_own_sticky_assignor(),) if sticky else (RangePartitionAssignor,)
        ),
        **options,
    )
    if on_assignment is not None:
        consumer.subscribe(list(topics), listener=_AssignmentListener(on_assignment))
    return KafkaConsumer(consumer, config)


def _own_sticky_assignor() -> type[StickyPartitionAssignor]:
    """A sticky assignor for one consumer.

    aiokafka's ``StickyPartitionAssignor`` keeps its member's last assignment and generation on
    the class itself, so two consumers in one process would each claim the other's partitions.
    A subclass per consumer gives each its own.
    """
    return type(
        "StickyPartitionAssignor",
        (StickyPartitionAssignor,),
        {
            "member_assignment": None,
            "generation": StickyPartitionAssignor.DEFAULT_GENERATION_ID,
            "_latest_partition_movements": None,
        },
    )


class _AssignmentListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Reports a member's partitions to a callback: ``None`` on revocation, the new ones after."""

    def __init__(self, report: Callable[[frozenset[TopicPartition] | None], None]) -> None:
        self._report = report

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        if frozenset(revoked):  # nothing revoked (the first join): nothing changed
            self._report(None)

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._report(frozenset(assigned))


def build_admin(config: KafkaClientConfig) -> KafkaAdmin:
    """An admin client (topics, configs, records, consumer groups)."""
    return KafkaAdmin(AIOKafkaAdminClient(**config.connection()), config)
