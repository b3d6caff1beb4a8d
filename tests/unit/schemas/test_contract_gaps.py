"""The router contract without gaps: derived event ids, checkpoints, directions, old events."""

from __future__ import annotations

import json
import uuid
from typing import Any

import jsonschema
import pytest

from schemas.audit import AUDIT_RECORD_TYPE_HEADER, AuditCheckpoint
from schemas.contracts import JSONSCHEMA_DIR
from schemas.events import DeadLetter, ImageArrived, Stage, derived_event_id
from streams.audit.io.topic import CHECKPOINT, RECORD, RECORD_TYPE_HEADER
from streams.deadletter import replay_record
from streams.pipeline import Incoming, dead_letter_for, parse_event
from streams.topics import value_models

pytestmark = pytest.mark.requirement("RS-CON-02", "RS-CON-01")

ASYNCAPI = json.loads((JSONSCHEMA_DIR.parent / "asyncapi.json").read_text())
ROUTER_EVENT = b'{"source": "PACS1", "image_uri": "file:///data/images/a.dcm"}'

# Values routers and radstream published under contract 1.0.0 (no event_id from routers, no
# study UID, minimal fields): they must keep validating, against the model and the schema.
OLD_EVENTS: dict[str, list[dict[str, Any]]] = {
    "ImageArrived": [
        {"source": "PACS1", "image_uri": "file:///data/images/a.dcm"},
        {
            "schema_version": 1,
            "event_id": "8d1c8f8e-3c55-4b59-9d53-0a3f3c0e2b11",
            "occurred_at": "2026-11-01T08:00:00Z",
            "source": "ROUTER-2",
            "image_uri": "file:///data/images/b.dcm",
            "content_type": "application/dicom",
            "size_bytes": 524288,
            "study_instance_uid": "1.2.826.0.1.3680043.8.498.1",
            "model_ids": ["lesion-detector"],
            "priority": "stat",
        },
    ],
    "AuditCheckpoint": [
        {
            "schema_version": 1,
            "chain_partition": 0,
            "sequence": 99,
            "head_hash": "a" * 64,
            "created_at": "2026-11-01T08:00:00Z",
            "key_id": "0123456789abcdef",
            "signature": "c2lnbmF0dXJl",
        }
    ],
}


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((JSONSCHEMA_DIR / f"{name}.json").read_text())
    return loaded


def _incoming(value: bytes) -> Incoming:
    return Incoming(topic="p.images.arrived", partition=0, offset=7, key=None, value=value)


class TestEventIdentity:
    def test_missing_event_id_is_derived_from_the_message(self) -> None:
        """Two parses of one message (a stage and the audit agent) agree on the event id."""
        first = parse_event(_incoming(ROUTER_EVENT), ImageArrived)
        again = ImageArrived.model_validate_json(ROUTER_EVENT)
        assert first.event_id == again.event_id == derived_event_id(json.loads(ROUTER_EVENT))

    def test_derivation_ignores_key_order_and_spacing(self) -> None:
        """The same content however a router serialised it gives the same id."""
        reordered = b'{"image_uri":"file:///data/images/a.dcm","source":"PACS1"}'
        assert (
            ImageArrived.model_validate_json(reordered).event_id
            == ImageArrived.model_validate_json(ROUTER_EVENT).event_id
        )

    def test_different_messages_get_different_ids(self) -> None:
        """Another image is another event."""
        other = ROUTER_EVENT.replace(b"a.dcm", b"b.dcm")
        assert (
            ImageArrived.model_validate_json(other).event_id
            != ImageArrived.model_validate_json(ROUTER_EVENT).event_id
        )

    def test_a_router_event_id_is_kept(self) -> None:
        """A router that sends event_id keeps it."""
        given = uuid.uuid4()
        value = json.dumps({**json.loads(ROUTER_EVENT), "event_id": str(given)}).encode()
        assert ImageArrived.model_validate_json(value).event_id == given

    def test_events_built_in_python_get_fresh_ids(self) -> None:
        """The API builds each submission anew: two identical submissions are two events."""
        fields = {"source": "PACS1", "image_uri": "file:///data/images/a.dcm"}
        assert ImageArrived(**fields).event_id != ImageArrived(**fields).event_id

    def test_a_replayed_dead_letter_keeps_the_event_id(self) -> None:
        """Replay republishes the original bytes; parsing them gives the original's id."""
        message = _incoming(ROUTER_EVENT)
        original = parse_event(message, ImageArrived)
        out = dead_letter_for(
            message, Stage.VALIDATION, RuntimeError("boom"), event_id=original.event_id
        )
        letter = out.value
        assert isinstance(letter, DeadLetter)
        _topic, _key, value, _headers = replay_record(letter)
        replayed = parse_event(_incoming(value), ImageArrived)
        assert replayed.event_id == original.event_id == letter.event_id


class TestAuditTopicContract:
    def test_header_values_are_the_contract_values(self) -> None:
        """The audit writer marks its messages exactly as the contract documents."""
        messages = ASYNCAPI["components"]["messages"]
        record_header = messages["AuditRecord"]["headers"]["properties"][RECORD_TYPE_HEADER]
        checkpoint_header = messages["AuditCheckpoint"]["headers"]["properties"]
        assert RECORD_TYPE_HEADER == AUDIT_RECORD_TYPE_HEADER
        assert record_header["const"] == RECORD.decode()
        assert checkpoint_header[RECORD_TYPE_HEADER]["const"] == CHECKPOINT.decode()

    def test_audit_channel_carries_records_and_checkpoints(self) -> None:
        """audit.log lists both message kinds; the checkpoint schema is published."""
        channel = ASYNCAPI["channels"]["audit_log"]
        assert set(channel["messages"]) == {"AuditRecord", "AuditCheckpoint"}
        assert (JSONSCHEMA_DIR / "AuditCheckpoint.json").exists()


class TestOperationDirections:
    def test_radstream_sends_what_it_publishes_and_receives_what_it_consumes(self) -> None:
        """Every topic radstream publishes has a send operation; consumed ones a receive."""
        operations = ASYNCAPI["operations"]
        channels = set(ASYNCAPI["channels"])
        assert {op["action"] for op in operations.values()} == {"send", "receive"}
        sent = {
            op["channel"]["$ref"].rsplit("/", 1)[-1]
            for op in operations.values()
            if op["action"] == "send"
        }
        received = {
            op["channel"]["$ref"].rsplit("/", 1)[-1]
            for op in operations.values()
            if op["action"] == "receive"
        }
        # radstream publishes to every topic it defines but the routers' study signals
        assert sent == channels - {"studies_signals"}
        assert "studies_signals" in received
        assert {"images_arrived", "images_validated", "api_actions"} <= received


class TestOldEventsStillValidate:
    @pytest.mark.parametrize(
        ("name", "value"), [(n, v) for n, values in OLD_EVENTS.items() for v in values]
    )
    def test_old_event_validates(self, name: str, value: dict[str, Any]) -> None:
        """An event of contract 1.0.0 passes the committed JSON Schema and the model."""
        jsonschema.validate(value, _schema(name))
        model = {m.__name__: m for m in [*value_models().values(), AuditCheckpoint]}[name]
        model.model_validate_json(json.dumps(value))
