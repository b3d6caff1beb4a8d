"""The secure profile's ACLs follow the catalogue and the processes' own names."""

from __future__ import annotations

import pytest

from app import OWN_GROUP_STAGES, consumer_group
from schemas.events import Priority
from schemas.settings import load_settings
from streams.acls import PRINCIPALS, AclBinding, Operation, PatternType, ResourceType, acls_for
from streams.audit.io.agent import AuditAgent
from streams.audit.records import AUDITED_TOPICS
from streams.topics import ARRIVAL_TOPICS, STAGE_TOPICS, TopicKey, TopicNames, arrival_topic

pytestmark = pytest.mark.requirement("RS-SEC-01")

PREFIX, GROUPS = "p.", "g"
NAMES = TopicNames(PREFIX)
ACLS = acls_for(PREFIX, GROUPS)


def grants(principal: str, resource: ResourceType, operation: Operation) -> set[str]:
    return {
        b.name
        for b in ACLS
        if b.principal == principal and b.resource_type is resource and b.operation is operation
    }


def writers(key: TopicKey) -> set[str]:
    return {
        b.principal
        for b in ACLS
        if b.resource_type is ResourceType.TOPIC
        and b.operation is Operation.WRITE
        and b.name == NAMES[key]
    }


class TestDerivedAcls:
    def test_only_the_audit_principal_writes_the_audit_log(self) -> None:
        """Forged audit records need the audit principal's password."""
        assert writers(TopicKey.AUDIT_LOG) == {"audit"}

    def test_routers_write_arrivals_and_nothing_else(self) -> None:
        """A router's whole grant: the arrival topics of both lanes, write only."""
        assert [b for b in ACLS if b.principal == "router"] == [
            AclBinding(
                "router", ResourceType.TOPIC, NAMES[key], PatternType.LITERAL, Operation.WRITE
            )
            for key in sorted(ARRIVAL_TOPICS, key=lambda key: NAMES[key])
        ]

    @pytest.mark.parametrize("priority", list(Priority))
    def test_routers_and_the_api_may_publish_every_priority(self, priority: Priority) -> None:
        """Where the listener, ``radstream publish`` and the API send an arrival, they may write:
        a stat image from a router was refused on the secure profile."""
        assert {"router", "api"} <= writers(arrival_topic(priority))

    @pytest.mark.parametrize("stage", sorted(STAGE_TOPICS))
    def test_each_stage_reads_and_writes_only_its_own_topics(self, stage: str) -> None:
        """Reads, writes and the group come from STAGE_TOPICS and the worker's group name."""
        io = STAGE_TOPICS[stage]
        assert grants(stage, ResourceType.TOPIC, Operation.READ) == set(NAMES.of(io.all_reads))
        assert grants(stage, ResourceType.TOPIC, Operation.WRITE) == set(NAMES.of(io.writes))
        settings = load_settings(topic_prefix=PREFIX, consumer_group_prefix=GROUPS)
        # A worker running the stage alone consumes in the stage's group and, when the stage's
        # stat agent has a group of its own (app.Worker.group_of), in that one too.
        stat_agent = f"{stage}-stat"
        groups = {consumer_group(settings, [stage])}
        if stat_agent in OWN_GROUP_STAGES:
            groups.add(consumer_group(settings, [stat_agent]))
        assert grants(stage, ResourceType.GROUP, Operation.READ) == groups
        assert NAMES[TopicKey.AUDIT_LOG] not in grants(stage, ResourceType.TOPIC, Operation.WRITE)

    def test_every_stat_agent_has_its_group_granted(self) -> None:
        """Each stat agent consumes in a group of its own (app.Worker.group_of): granted."""
        for stage in ("validation", "inference", "studies"):
            assert f"{stage}-stat" in OWN_GROUP_STAGES
            assert f"{GROUPS}-{stage}-stat" in grants(stage, ResourceType.GROUP, Operation.READ)

    def test_the_audit_principal_matches_the_audit_processes(self) -> None:
        """Its groups and transactional ids are the ones the audit agent and sink use."""
        settings = load_settings(topic_prefix=PREFIX, consumer_group_prefix=GROUPS)
        agent = AuditAgent.from_settings(settings)
        assert grants("audit", ResourceType.GROUP, Operation.READ) == {
            agent.group_id,
            f"{GROUPS}-audit-sink",
        }
        (prefixed,) = grants("audit", ResourceType.TRANSACTIONAL_ID, Operation.WRITE)
        assert agent.transactional_id.startswith(prefixed)
        audited = {NAMES[key] for key in (*AUDITED_TOPICS, TopicKey.AUDIT_LOG)}
        assert grants("audit", ResourceType.TOPIC, Operation.READ) == audited

    def test_every_principal_has_a_grant_and_acls_are_unique(self) -> None:
        """No principal is created without ACLs; no ACL is listed twice."""
        assert {b.principal for b in ACLS} == set(PRINCIPALS)
        assert len(ACLS) == len(set(ACLS))

    def test_wire_form_is_what_create_acls_sends(self) -> None:
        """(resource type, name, pattern, User:principal, operation) as Kafka numbers them."""
        binding = AclBinding(
            "audit", ResourceType.TOPIC, "p.audit.log", PatternType.LITERAL, Operation.WRITE
        )
        assert binding.wire() == (2, "p.audit.log", 3, "User:audit", 4)
