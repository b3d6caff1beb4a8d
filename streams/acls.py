"""Who may do what on the broker: the ACLs of each principal, derived from the catalogues.

The secure profile (``docs/security.md``) runs one SCRAM user per process role. Their ACLs are
computed here from the topic catalogue (:mod:`streams.topics`: names, and what each worker stage
reads and writes), the audited topics (:mod:`streams.audit.records`) and the consumer-group and
transactional-id naming of the processes, so a new topic or a changed stage changes the ACLs
with it. ``radstream topics acls --apply`` writes them (as the broker's super user); the broker
runs the StandardAuthorizer with ``allow.everyone.if.no.acl.found=false``, so whatever is not
listed here is refused.

* ``router`` (DICOM listener, ``radstream publish``): writes ``images.arrived``, nothing else.
* ``api``: writes ``images.arrived`` (uploads) and ``api.actions``.
* one principal per worker stage (``validation``, ``inference``, ``results``, ``studies``,
  ``dicom-export``): reads its input topics in its own group, writes its outcome topics and the
  dead letters.
* ``audit``: reads every audited topic and ``audit.log``, is the only writer of ``audit.log``
  (transactional, under its own transactional ids), in its two groups (agent and table sink).

Pure: no Kafka client here; :meth:`streams.kafka.clients.KafkaAdmin.create_acls` sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from streams.audit.records import AUDITED_TOPICS
from streams.topics import ARRIVAL_TOPICS, STAGE_TOPICS, TopicKey, TopicNames


class ResourceType(IntEnum):
    """Kafka's resource types (``org.apache.kafka.common.resource.ResourceType``)."""

    TOPIC = 2
    GROUP = 3
    TRANSACTIONAL_ID = 5


class PatternType(IntEnum):
    """How a resource name matches (``PatternType``)."""

    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    """The operations granted (``AclOperation``)."""

    READ = 3
    WRITE = 4
    DESCRIBE = 8


@dataclass(frozen=True, slots=True, order=True)
class AclBinding:
    """One ALLOW rule: ``principal`` may do ``operation`` on the named resource, from any host."""

    principal: str
    resource_type: ResourceType
    name: str
    pattern: PatternType
    operation: Operation

    @property
    def kafka_principal(self) -> str:
        """The principal as the broker names a SCRAM user."""
        return f"User:{self.principal}"

    def wire(self) -> tuple[int, str, int, str, int]:
        """(resource type, name, pattern type, principal, operation) as CreateAcls takes them."""
        return (self.resource_type, self.name, self.pattern, self.kafka_principal, self.operation)


ROUTER: Final = "router"
API: Final = "api"
AUDIT: Final = "audit"
# Every principal the secure profile creates a SCRAM user for, besides the super user "admin".
PRINCIPALS: Final = (ROUTER, API, *STAGE_TOPICS, AUDIT)


def _topics(
    principal: str, names: TopicNames, keys: tuple[TopicKey, ...], op: Operation
) -> list[AclBinding]:
    return [
        AclBinding(principal, ResourceType.TOPIC, names[key], PatternType.LITERAL, op)
        for key in keys
    ]


def _group(principal: str, group: str) -> AclBinding:
    return AclBinding(principal, ResourceType.GROUP, group, PatternType.LITERAL, Operation.READ)


def acls_for(topic_prefix: str, group_prefix: str) -> list[AclBinding]:
    """Every ACL of every principal, for one deployment's topic and consumer-group prefixes.

    Group names follow the processes: a worker running one stage consumes as
    ``<group_prefix>-<stage>`` (``app.consumer_group``), its stat agent as
    ``<group_prefix>-<stage>-stat`` (``app.OWN_GROUP_STAGES``); the audit agent as
    ``<group_prefix>-audit`` with transactional ids ``<group_prefix>-audit.audit-chain-<n>``,
    its table sink as ``<group_prefix>-audit-sink``.
    """
    names = TopicNames(topic_prefix)
    # Routers and the API publish arrivals of either priority (stat has a lane of its own).
    bindings = _topics(ROUTER, names, ARRIVAL_TOPICS, Operation.WRITE)
    bindings += _topics(API, names, (*ARRIVAL_TOPICS, TopicKey.API_ACTIONS), Operation.WRITE)
    for stage, io in STAGE_TOPICS.items():
        bindings += _topics(stage, names, io.all_reads, Operation.READ)
        bindings += _topics(stage, names, io.writes, Operation.WRITE)
        bindings.append(_group(stage, f"{group_prefix}-{stage}"))
        if io.stat_reads:  # the stat agent's own group (app.OWN_GROUP_STAGES, streams/lanes.py)
            bindings.append(_group(stage, f"{group_prefix}-{stage}-stat"))
    audit_group = f"{group_prefix}-{AUDIT}"
    bindings += _topics(AUDIT, names, (*AUDITED_TOPICS, TopicKey.AUDIT_LOG), Operation.READ)
    bindings += _topics(AUDIT, names, (TopicKey.AUDIT_LOG,), Operation.WRITE)
    bindings += [_group(AUDIT, audit_group), _group(AUDIT, f"{audit_group}-sink")]
    bindings += [
        AclBinding(
            AUDIT,
            ResourceType.TRANSACTIONAL_ID,
            f"{audit_group}.audit-chain-",
            PatternType.PREFIXED,
            op,
        )
        for op in (Operation.WRITE, Operation.DESCRIBE)
    ]
    return sorted(set(bindings))
