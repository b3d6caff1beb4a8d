"""Event contracts: PHI-free, strict, exported as JSON Schema/AsyncAPI, evolved compatibly."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from schemas.contracts import JSONSCHEMA_DIR, breaking_changes, json_schema_of
from schemas.errors import ErrorCode
from schemas.events import ImageArrived, ImageRejected, Stage
from streams.topic_contracts import contract_files, stale_files
from streams.topics import value_models

pytestmark = pytest.mark.requirement("RS-CON-01", "RS-G-02")

# A network address (the API caller's IP) is audit data, not a patient attribute.
PHI_FIELD_WORDS = ("patient", "birth", "person", "street", "phone", "physician", "mrn")


class TestArrivalContract:
    def test_unknown_fields_are_refused(self) -> None:
        """A router cannot smuggle patient attributes into an event: unknown fields fail."""
        with pytest.raises(ValidationError, match="patient_name"):
            ImageArrived.model_validate(
                {"source": "PACS1", "image_uri": "file:///x/a.dcm", "patient_name": "Doe^John"}
            )

    def test_no_model_has_a_patient_field(self) -> None:
        """No event contract has a field that could carry a patient name, ID or birth date."""
        for model in value_models().values():
            text = json.dumps(json_schema_of(model)["properties"]).lower()
            fields = json_schema_of(model)["properties"].keys()
            offending = [f for f in fields if any(w in f.lower() for w in PHI_FIELD_WORDS)]
            assert offending == [], (model.__name__, offending)
            assert "patientname" not in text

    def test_timestamps_are_normalised_to_utc(self) -> None:
        """occurred_at is stored in UTC whatever offset the router sent."""
        local = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
        event = ImageArrived(source="PACS1", image_uri="file:///x/a.dcm", occurred_at=local)
        assert event.occurred_at.utcoffset() == timedelta(0)
        assert event.occurred_at.hour == 10

    def test_naive_timestamps_are_refused(self) -> None:
        """A timestamp without a zone is ambiguous and refused."""
        with pytest.raises(ValidationError):
            ImageArrived(source="P", image_uri="file:///x/a.dcm", occurred_at=datetime(2026, 1, 1))  # noqa: DTZ001

    def test_message_key_prefers_study_uid(self) -> None:
        """The key keeps a study in one partition; without a study UID it is the event id."""
        with_study = ImageArrived(source="P", image_uri="file:///a.dcm", study_instance_uid="1.2.3")
        assert with_study.message_key() == b"1.2.3"
        without = ImageArrived(source="P", image_uri="file:///a.dcm")
        assert without.message_key() == str(without.event_id).encode()

    def test_uid_pattern_enforced(self) -> None:
        """Study UIDs must be DICOM UIDs (digits and dots), not free text."""
        with pytest.raises(ValidationError):
            ImageArrived(source="P", image_uri="file:///a.dcm", study_instance_uid="Doe^John")

    def test_schema_version_other_than_1_refused(self) -> None:
        """A future schema version is not silently read as version 1."""
        with pytest.raises(ValidationError, match="schema_version"):
            ImageRejected.model_validate(
                {
                    "schema_version": 2,
                    "event_id": str(uuid.uuid4()),
                    "occurred_at": "2026-01-01T00:00:00Z",
                    "stage": Stage.VALIDATION,
                    "error_code": ErrorCode.IMAGE_EMPTY,
                    "reason": "empty",
                }
            )


class TestCommittedSchemas:
    def test_committed_files_are_current(self) -> None:
        """`radstream schemas export` was run after the last model change."""
        stale = [path.name for path in stale_files(contract_files())]
        assert stale == [], f"run `make schemas`: stale {stale}"

    @pytest.mark.parametrize(
        "model", sorted(set(value_models().values()), key=lambda m: m.__name__)
    )
    def test_models_stay_compatible_with_committed_schema(self, model: type) -> None:
        """Against the committed schema, fields were only added as optional."""
        committed = json.loads((JSONSCHEMA_DIR / f"{model.__name__}.json").read_text())
        assert breaking_changes(committed, json_schema_of(model)) == []

    def test_asyncapi_document_names_every_topic(self) -> None:
        """The AsyncAPI document is version 3 and has a channel per topic with its payload."""
        document = json.loads((JSONSCHEMA_DIR.parent / "asyncapi.json").read_text())
        assert document["asyncapi"] == "3.0.0"
        addresses = {c["address"] for c in document["channels"].values()}
        assert "radstream.images.arrived" in addresses
        assert "radstream.audit.log" in addresses
        assert len(addresses) == len(value_models())
        for message in document["components"]["messages"].values():
            ref = message["payload"]["$ref"].rsplit("/", 1)[-1]
            assert ref in document["components"]["schemas"]


class TestBreakingChanges:
    base = {
        "properties": {"a": {"type": "string"}, "b": {"type": "integer", "description": "x"}},
        "required": ["a"],
    }

    def test_new_optional_field_is_fine(self) -> None:
        """Adding an optional field breaks nobody."""
        new = {**self.base, "properties": {**self.base["properties"], "c": {"type": "string"}}}
        assert breaking_changes(self.base, new) == []

    def test_description_change_is_fine(self) -> None:
        """Documentation edits do not change the accepted values."""
        props = {**self.base["properties"], "b": {"type": "integer", "description": "y"}}
        assert breaking_changes(self.base, {**self.base, "properties": props}) == []

    def test_removed_field_breaks(self) -> None:
        """Removing a field breaks consumers that read it."""
        new = {"properties": {"a": {"type": "string"}}, "required": ["a"]}
        assert breaking_changes(self.base, new) == ["b: removed"]

    def test_retyped_field_breaks(self) -> None:
        """Changing a field's type breaks consumers."""
        new = {**self.base, "properties": {**self.base["properties"], "b": {"type": "string"}}}
        assert breaking_changes(self.base, new) == ["b: type or constraints changed"]

    def test_newly_required_field_breaks(self) -> None:
        """A field that becomes required breaks existing producers."""
        new = {**self.base, "required": ["a", "b"]}
        assert breaking_changes(self.base, new) == ["b: became required"]

    def test_nested_model_change_is_found(self) -> None:
        """Changes inside nested models are found through $ref."""
        old = {
            "properties": {"g": {"$ref": "#/$defs/G"}},
            "$defs": {"G": {"properties": {"w": {"type": "integer"}}}},
        }
        new = {
            "properties": {"g": {"$ref": "#/$defs/G"}},
            "$defs": {"G": {"properties": {"w": {"type": "number"}}}},
        }
        assert breaking_changes(old, new) == ["g.w: type or constraints changed"]
