"""The audit trail's I/O, one component around the pure core of ``streams/audit/``.

* :mod:`~streams.audit.io.actions` — API and operator actions onto ``api.actions``;
* :mod:`~streams.audit.io.agent` — :class:`AuditAgent`, the transactional writer of ``audit.log``;
* :mod:`~streams.audit.io.topic` — the topic's message format, reading, head recovery, verify;
* :mod:`~streams.audit.io.table` — :class:`AuditTableWriter`, the copy into ``audit_log``
  (its SQL lives in :class:`sinks.repositories.AuditLogRepository`), and table verification;
* :mod:`~streams.audit.io.trail` — :class:`AuditTrail`, verify and show for operators;
* :mod:`~streams.audit.io.stage` — :func:`run_audit_stage`, the worker's audit stage.

Kafka goes through :mod:`streams.kafka`; the loops run on :mod:`streams.kafka.loop`.
"""

from streams.audit.io.actions import TopicApiAuditPublisher, action_message
from streams.audit.io.agent import AuditAgent
from streams.audit.io.stage import run_audit_stage
from streams.audit.io.table import (
    AuditTableSink,
    AuditTableWriter,
    trail_for_event_in_table,
    verify_table,
)
from streams.audit.io.topic import (
    CHECKPOINT,
    RECORD,
    RECORD_SIGNATURE_HEADER,
    RECORD_TYPE_HEADER,
    PartitionContent,
    RecoveredHead,
    chain_key,
    checkpoint_message,
    classify_message,
    parse_message,
    read_audit_topic,
    record_message,
    recover_head,
    trail_for_event,
    verify_topic,
)
from streams.audit.io.trail import AuditTrail

__all__ = [
    "CHECKPOINT",
    "RECORD",
    "RECORD_SIGNATURE_HEADER",
    "RECORD_TYPE_HEADER",
    "AuditAgent",
    "AuditTableSink",
    "AuditTableWriter",
    "AuditTrail",
    "PartitionContent",
    "RecoveredHead",
    "TopicApiAuditPublisher",
    "action_message",
    "chain_key",
    "checkpoint_message",
    "classify_message",
    "parse_message",
    "read_audit_topic",
    "record_message",
    "recover_head",
    "run_audit_stage",
    "trail_for_event",
    "trail_for_event_in_table",
    "verify_table",
    "verify_topic",
]
