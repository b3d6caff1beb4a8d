"""The committed contract files of radstream's topics: JSON Schemas and one AsyncAPI document.

Generated from the topic catalogue (:data:`streams.topics.TOPIC_SPECS`) and the event models;
``radstream schemas export`` writes them and ``radstream schemas check`` (and a unit test)
compares them with the committed files (:func:`stale_files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import BaseModel

from schemas.audit import (
    AUDIT_RECORD_TYPE_CHECKPOINT,
    AUDIT_RECORD_TYPE_HEADER,
    AUDIT_RECORD_TYPE_RECORD,
    AuditCheckpoint,
)
from schemas.contracts import (
    ASYNCAPI_FILE,
    JSONSCHEMA_DIR,
    ChannelContract,
    MessageKind,
    asyncapi_document,
    jsonschema_files,
    render,
)
from streams.audit.records import AUDITED_TOPICS
from streams.topics import TOPIC_SPECS, TopicKey, TopicNames, value_models

# The documents describe a local deployment with the default prefix, whatever runs them.
DOCUMENTED_PREFIX: Final = "radstream."
DOCUMENTED_SERVER: Final = "127.0.0.1:9092"
CONTRACT_VERSION: Final = "1.1.0"

# Who in radstream publishes to (send) and consumes from (receive) each topic. Routers publish
# arrivals too: for them ``receive_images_arrived`` is the operation to code against. Only
# routers publish ``studies.signals`` (a study's transfer is complete): it has no send operation.
PRODUCERS: Final[dict[TopicKey, str]] = {
    TopicKey.IMAGES_ARRIVED: "the API, the DICOM listener and `radstream publish`",
    TopicKey.IMAGES_ARRIVED_STAT: "the API, the DICOM listener and `radstream publish` (stat)",
    TopicKey.IMAGES_VALIDATED: "the validation stage",
    TopicKey.IMAGES_VALIDATED_STAT: "the validation stage (stat lane)",
    TopicKey.IMAGES_REJECTED: "the validation and inference stages",
    TopicKey.INFERENCE_RESULTS: "the inference stage",
    TopicKey.INFERENCE_SHADOW: "the inference stage (versions in shadow)",
    TopicKey.AUDIT_LOG: "the audit stage (records and signed checkpoints)",
    TopicKey.DEADLETTER: "every stage",
    TopicKey.DEADLETTER_MARKS: "`radstream dlq replay`/`purge`",
    TopicKey.API_ACTIONS: "the API",
    TopicKey.RESULTS_EXPORTED: "the dicom-export stage",
    TopicKey.SERIES_COMPLETED: "the studies stage",
    TopicKey.STUDIES_COMPLETED: "the studies stage",
    TopicKey.STUDIES_RESULTS: "the studies stage",
    TopicKey.ALERTS_URGENT: "the studies stage (clinical decision support)",
}
CONSUMERS: Final[dict[TopicKey, str]] = {
    TopicKey.IMAGES_ARRIVED: "the validation, results (lifecycle) and studies stages",
    TopicKey.IMAGES_ARRIVED_STAT: "the validation, results (lifecycle) and studies stages",
    TopicKey.IMAGES_VALIDATED: "the inference and results stages",
    TopicKey.IMAGES_VALIDATED_STAT: "the inference and results stages",
    TopicKey.IMAGES_REJECTED: "the results and studies stages",
    TopicKey.INFERENCE_RESULTS: "the results, studies and dicom-export stages",
    TopicKey.INFERENCE_SHADOW: "the results stage",
    TopicKey.AUDIT_LOG: "the audit-table writer and `radstream audit verify`",
    TopicKey.DEADLETTER: "`radstream dlq` and the lag exporter (dead-letter depth)",
    TopicKey.DEADLETTER_MARKS: "`radstream dlq` and the lag exporter",
    TopicKey.STUDIES_SIGNALS: "the studies stage",
}


def consumers_of(key: TopicKey) -> str:
    """Who consumes ``key``: the components above, and the audit stage for audited topics."""
    named = [CONSUMERS[key]] if key in CONSUMERS else []
    if key in AUDITED_TOPICS:
        named.append("the audit stage")
    return ", ".join(named)


def message_kinds(key: TopicKey, model: type[BaseModel]) -> tuple[MessageKind, ...]:
    """The kinds of message on a topic: the audit log also carries signed checkpoints."""
    if key is TopicKey.AUDIT_LOG:
        return (
            MessageKind(model, {AUDIT_RECORD_TYPE_HEADER: AUDIT_RECORD_TYPE_RECORD}),
            MessageKind(AuditCheckpoint, {AUDIT_RECORD_TYPE_HEADER: AUDIT_RECORD_TYPE_CHECKPOINT}),
        )
    return (MessageKind(model),)


def contract_files() -> dict[Path, str]:
    """Every generated contract file and its content (JSON Schemas + AsyncAPI)."""
    models = value_models()
    files = {
        JSONSCHEMA_DIR / name: text
        for name, text in jsonschema_files(
            sorted({*models.values(), AuditCheckpoint}, key=lambda m: m.__name__)
        ).items()
    }
    names = TopicNames(DOCUMENTED_PREFIX)
    channels = [
        ChannelContract(
            channel_id=key.name.lower(),
            address=names[key],
            messages=message_kinds(key, models[key]),
            description=spec.description,
            key=spec.message_key,
            produced_by=PRODUCERS.get(key, ""),
            consumed_by=consumers_of(key),
        )
        for key, spec in TOPIC_SPECS.items()
    ]
    document = asyncapi_document(
        channels, version=CONTRACT_VERSION, servers={"local": DOCUMENTED_SERVER}
    )
    files[ASYNCAPI_FILE] = render(document)
    return files


def stale_files(files: dict[Path, str]) -> list[Path]:
    """The files whose committed content differs from ``files`` (or that are missing)."""
    return [path for path, text in files.items() if not path.exists() or path.read_text() != text]
