"""Audit contracts: API actions to audit, hash-chained audit records and signed checkpoints.

:class:`AuditRecord` follows the DICOM PS3.15 A.5 / RFC 3881 audit message: *what* happened
(``event_type``, ``action``), *when* (``recorded_at``), *with what outcome* (``outcome``), *who*
(``actor``), *to what* (``object``) and *where it came from* (``source``). Records carry codes,
ids and UIDs only, never free text that could hold patient data: ``outcome_description`` is an
:class:`~schemas.errors.ErrorCode` value or a fixed phrase, never an event's ``reason``.

Each chain partition is a hash chain: ``hash = SHA-256(canonical bytes incl. prev_hash)``; see
``streams/audit/chain.py``. :class:`AuditCheckpoint` is an Ed25519-signed statement "the chain
had this head hash at this sequence", kept outside the audit store so truncation is detectable.

:class:`ApiAction` is what the HTTP gateway publishes on the ``api.actions`` topic for every
request worth auditing; the command line publishes one for every dead-letter replay or purge
and every model registry change (a model version added, a rollout mode changed).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from schemas.errors import ErrorCode
from schemas.events import Pseudonym, Sha256Hex, Uid, utc_now
from schemas.rollout import RolloutMode

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first record of every chain."""

# A short opaque identifier (correlation ids, roles, routes): no spaces, no free text.
ShortToken = Annotated[str, Field(pattern=r"^[A-Za-z0-9._@:/{}\-]{1,128}$")]
# Network addresses: IPv4/IPv6 literal or host name, optionally with a port.
NetworkAddress = Annotated[str, Field(pattern=r"^[A-Za-z0-9.:\[\]_-]{1,64}$")]
KeyId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
ModelName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
ModelVersion = Annotated[str, Field(pattern=r"^[0-9A-Za-z.+-]{1,32}$")]


LEGACY_AUDIT_TOPIC = "radstream.audit.log"
"""The audit topic of the default prefix: the chain of ``audit_log`` rows stored before the
table named its topic (migration 0008), and of the checkpoint file named in the settings."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


def _to_utc(value: datetime) -> datetime:
    """Keep every timestamp in UTC so the canonical bytes never depend on the sender."""
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


# ---------------------------------------------------------------- API actions


class ApiActionKind(StrEnum):
    """What an API caller did (or tried to do)."""

    SUBMIT = "submit"
    READ = "read"
    VERIFY = "verify"
    AUTH_FAILURE = "auth_failure"
    DLQ_PURGE = "dlq_purge"
    DLQ_REPLAY = "dlq_replay"
    MODEL_ADD = "model_add"
    MODEL_ROLLOUT = "model_rollout"
    URGENT_ACKNOWLEDGE = "urgent_acknowledge"


class ApiAction(_Frozen):
    """One audited API request or operator command, published on ``api.actions``.

    Holds ids and codes only: no request body, no query text, no token. The ``model_*`` and
    ``rollout_*`` fields describe a model registry change: the version, its weights' digest
    (``model_add``), and its rollout mode before and after (``model_rollout``).
    """

    schema_version: Literal[1] = 1
    action: ApiActionKind
    occurred_at: UtcDatetime = Field(default_factory=utc_now)
    actor_id: Pseudonym | None = Field(None, description="the token subject; None if unknown")
    roles: tuple[ShortToken, ...] = Field(default=(), max_length=16)
    outcome: Literal["success", "failure"]
    http_status: int = Field(ge=100, le=599)
    route: ShortToken = Field(description="the route template, e.g. /v1/results/{result_id}")
    event_id: uuid.UUID | None = None
    result_id: uuid.UUID | None = None
    correlation_id: ShortToken
    network_address: NetworkAddress | None = None
    error_code: ErrorCode | None = None
    model_name: ModelName | None = None
    model_version: ModelVersion | None = None
    weights_sha256: Sha256Hex | None = None
    rollout_mode: RolloutMode | None = None
    previous_rollout_mode: RolloutMode | None = None
    canary_percent: int | None = Field(None, ge=1, le=99)
    study_instance_uid: Uid | None = Field(None, description="the study acted on")


# ---------------------------------------------------------------- audit records


class AuditEventType(StrEnum):
    """The audited event, as a stable code (append only; never rename or reuse)."""

    IMAGE_ARRIVED = "IMAGE_ARRIVED"
    IMAGE_VALIDATED = "IMAGE_VALIDATED"
    IMAGE_REJECTED = "IMAGE_REJECTED"
    INFERENCE_COMPLETED = "INFERENCE_COMPLETED"
    DEAD_LETTERED = "DEAD_LETTERED"
    API_SUBMIT = "API_SUBMIT"
    API_READ = "API_READ"
    API_VERIFY = "API_VERIFY"
    API_AUTH_FAILURE = "API_AUTH_FAILURE"
    DLQ_PURGED = "DLQ_PURGED"
    DLQ_REPLAYED = "DLQ_REPLAYED"
    RESULT_EXPORTED = "RESULT_EXPORTED"
    MODEL_ADDED = "MODEL_ADDED"
    MODEL_ROLLOUT_CHANGED = "MODEL_ROLLOUT_CHANGED"
    URGENT_FINDING_RAISED = "URGENT_FINDING_RAISED"
    URGENT_FINDING_ACKNOWLEDGED = "URGENT_FINDING_ACKNOWLEDGED"


class AuditAction(StrEnum):
    """RFC 3881 EventActionCode: create, read, update, delete, execute."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class AuditOutcome(IntEnum):
    """RFC 3881 EventOutcomeIndicator."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


class AuditActor(_Frozen):
    """Who acted: a pseudonymous user id or a radstream service name."""

    user_id: Pseudonym
    is_requester: bool
    roles: tuple[ShortToken, ...] = ()
    network_address: NetworkAddress | None = None


class AuditObject(_Frozen):
    """What was acted on: ids and DICOM UIDs only, never patient attributes."""

    event_id: uuid.UUID | None = None
    sop_instance_uid: Uid | None = None
    series_instance_uid: Uid | None = None
    study_instance_uid: Uid | None = None
    result_id: uuid.UUID | None = None
    dead_letter_id: uuid.UUID | None = None
    model_name: ShortToken | None = None
    model_version: ShortToken | None = None


class AuditSource(_Frozen):
    """Where the audited event was read from."""

    topic: ShortToken
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class AuditDraft(_Frozen):
    """An audit record before it is placed on a chain (no sequence, no hashes yet)."""

    event_type: AuditEventType
    action: AuditAction
    recorded_at: UtcDatetime
    outcome: AuditOutcome
    outcome_description: ShortToken | None = Field(
        None, description="an ErrorCode value or fixed phrase; never free text"
    )
    actor: AuditActor
    object: AuditObject
    correlation_id: ShortToken | None = None
    source: AuditSource


class AuditRecord(AuditDraft):
    """One link of an audit hash chain."""

    schema_version: Literal[1] = 1
    chain_partition: int = Field(ge=0)
    sequence: int = Field(ge=0, description="0-based, +1 per record within the chain")
    prev_hash: Sha256Hex
    hash: Sha256Hex


# The audit topic carries two kinds of message, told apart by this header (the contract
# documents it; streams/audit/io/topic.py writes it).
AUDIT_RECORD_TYPE_HEADER: Final = "radstream-record-type"
AUDIT_RECORD_TYPE_RECORD: Final = "audit-record"
AUDIT_RECORD_TYPE_CHECKPOINT: Final = "audit-checkpoint"


class AuditCheckpoint(_Frozen):
    """An Ed25519-signed statement of a chain's head at one sequence number."""

    schema_version: Literal[1] = 1
    chain_partition: int = Field(ge=0)
    sequence: int = Field(ge=0, description="the sequence of the record whose hash is head_hash")
    head_hash: Sha256Hex
    created_at: UtcDatetime
    key_id: KeyId
    signature: str = Field(pattern=r"^[A-Za-z0-9+/]+={0,2}$", description="base64 Ed25519")
