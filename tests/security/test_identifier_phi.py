"""Sender-chosen identifiers carry no PHI onward: Kafka keys, file names and URIs (issue #16, 8).

A router may key ``images.arrived`` with a patient's name and name its files after the patient
(``Quillfeather^Ottoline_MRN-88442211_19420317.dcm``, percent-encoded in its ``file://`` URI).
These canary tests prove that downstream keys are derived from the StudyInstanceUID (or the
event id), never copied, and that the file name is in no log line and no dead-letter view, in
either its encoded or its decoded form.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from cli.dlq import masked_entry
from observability.logging import configure_logging
from observability.phi import REDACTED_PATH, PhiMasker
from schemas.events import DeadLetter, ImageArrived, ImageValidated, Stage
from schemas.settings import SAMPLES_DIR, LoggingSettings, RetrySettings, ValidationSettings
from streams.deadletter import DeadLetterEntry
from streams.pipeline import Incoming, dead_letter_for
from streams.retry import RetryPolicy
from streams.stages.common import ImageReader
from streams.stages.validation import ValidationStage
from streams.topics import TopicKey
from streams.validation import load_clinical_rules

pytestmark = pytest.mark.requirement("RS-SEC-05", "RS-G-01")

PHI_KEY = b"Quillfeather^Ottoline MRN-88442211"
PHI_FILE = "Quillfeather^Ottoline_MRN-88442211_19420317.dcm"
CANARIES = ("Quillfeather", "Ottoline", "88442211", "19420317")
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"


def leaked(text: str) -> list[str]:
    """The canaries found in ``text``, in either case or percent-encoded context."""
    return [canary for canary in CANARIES if canary.lower() in text.lower()]


def _incoming(event: ImageArrived, key: bytes = PHI_KEY, value: bytes | None = None) -> Incoming:
    return Incoming(
        topic="radstream.images.arrived",
        partition=0,
        offset=7,
        key=key,
        value=event.model_dump_json().encode() if value is None else value,
    )


@pytest.fixture
def phi_image(tmp_path: Path) -> Path:
    """A valid image stored under a PHI-shaped file name."""
    target = tmp_path / PHI_FILE
    shutil.copyfile(SAMPLES_DIR / "dicom" / "ct_small.dcm", target)
    return target


def _stage(root: Path) -> ValidationStage:
    retry = RetryPolicy.from_settings(RetrySettings(max_attempts=1))
    reader = ImageReader((root,), 10 * 1024 * 1024, retry)
    settings = ValidationSettings()
    return ValidationStage(reader, settings, load_clinical_rules(settings.clinical_rules_file))


class TestDerivedKeys:
    """Every downstream key is derived from the event, never the router's key."""

    async def test_validated_is_keyed_by_study(self, phi_image: Path) -> None:
        """A validated image's key is its StudyInstanceUID (the one read from the file)."""
        # No study UID from the router: one that differs from the file's is a rejection
        # (IMAGE_STUDY_UID_MISMATCH); the key comes from the file either way.
        event = ImageArrived(source="router-1", image_uri=phi_image.as_uri())
        [out] = await _stage(phi_image.parent).handle([_incoming(event)])
        assert out.topic is TopicKey.IMAGES_VALIDATED
        assert isinstance(out.value, ImageValidated)
        assert out.value.study_instance_uid
        assert out.key == out.value.study_instance_uid.encode()

    async def test_rejected_without_study_is_keyed_by_event_id(self, tmp_path: Path) -> None:
        """Without a study UID, a rejection is keyed by the event id."""
        (tmp_path / "empty.dcm").write_bytes(b"")
        event = ImageArrived(source="router-1", image_uri=(tmp_path / "empty.dcm").as_uri())
        [out] = await _stage(tmp_path).handle([_incoming(event)])
        assert out.topic is TopicKey.IMAGES_REJECTED
        assert out.key == str(event.event_id).encode()

    async def test_dead_letter_is_not_keyed_by_the_original_key(self, tmp_path: Path) -> None:
        """An unparseable arrival's dead letter is keyed by its own id; the original is kept."""
        event = ImageArrived(source="router-1", image_uri=(tmp_path / "x.png").as_uri())
        [out] = await _stage(tmp_path).handle([_incoming(event, value=b"{not json")])
        assert out.topic is TopicKey.DEADLETTER
        letter = out.value
        assert isinstance(letter, DeadLetter)
        assert out.key == str(letter.dead_letter_id).encode()
        assert base64.b64decode(letter.key_b64 or "") == PHI_KEY

    def test_dead_letter_with_event_id_is_keyed_by_it(self) -> None:
        """A dead letter that knows its event is keyed by the event id."""
        event = ImageArrived(source="router-1", image_uri="file:///srv/x.png")
        out = dead_letter_for(
            _incoming(event), Stage.VALIDATION, RuntimeError("boom"), event_id=event.event_id
        )
        assert out.key == str(event.event_id).encode()


class TestDeadLetterView:
    """``radstream dlq show`` masks the key, the URI and the file name."""

    def test_masked_view_has_no_canary(self, tmp_path: Path) -> None:
        """The percent-encoded file URI and the PHI key are masked in the view."""
        uri = (tmp_path / PHI_FILE).as_uri()
        assert "%5E" in uri  # the form that defeated the masks
        event = ImageArrived(source="router-1", image_uri=uri)
        out = dead_letter_for(
            _incoming(event), Stage.VALIDATION, RuntimeError(f"cannot read {uri}")
        )
        assert isinstance(out.value, DeadLetter)
        view = json.dumps(masked_entry(DeadLetterEntry(0, 0, out.value)))
        assert leaked(view) == []
        assert REDACTED_PATH in view


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """radstream's JSON logging (masker included) into a buffer; undone afterwards."""
    stream = io.StringIO()
    configure_logging(LoggingSettings(format="json", level="DEBUG"), stream=stream)
    yield stream
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_radstream_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()


class TestLogs:
    """File names and URIs are masked in log lines, in any field and in free text."""

    @pytest.mark.parametrize(
        "text",
        [
            "file:///data/in/Quillfeather%5EOttoline_MRN-88442211_19420317.dcm",
            "/data/in/Quillfeather^Ottoline_MRN-88442211_19420317.dcm",
            "Quillfeather%5EOttoline_MRN-88442211_19420317.dcm",
            "Quillfeather^Ottoline_MRN-88442211_19420317.dcm",
            "http://pacs.example:8042/instances/Quillfeather%5EOttoline_MRN-88442211",
        ],
    )
    def test_path_in_message_and_fields_is_masked(self, logs: io.StringIO, text: str) -> None:
        """Through structlog and the stdlib root logger alike."""
        structlog.get_logger("t").warning(f"could not read {text}", image_uri=text, detail=text)
        logging.getLogger("lib").warning("open failed: %s", text)
        output = logs.getvalue()
        assert output.count(REDACTED_PATH) >= 2
        assert leaked(output) == []

    def test_scheme_and_authority_stay_readable(self) -> None:
        """Only the path is masked: the operator still sees where the URI pointed."""
        masked = PhiMasker().mask_text("GET http://pacs.example:8042/studies/Doe%5EJane")
        assert masked == f"GET http://pacs.example:8042/{REDACTED_PATH}"

    def test_text_without_paths_is_untouched(self) -> None:
        """Ratios, versions, event names and bare hosts are not paths."""
        text = "image_rejected v1.2.3 at 3/4 on http://127.0.0.1:8080/ docs/api.md"
        assert PhiMasker().mask_text(text) == text

    def test_underscore_does_not_hide_a_person_name(self) -> None:
        """``Family^Given_suffix`` is a name followed by ``_``."""
        assert PhiMasker().mask_text("x Doe^Jane_2 y") == "x [REDACTED_PHI]_2 y"

    def test_percent_encoding_does_not_hide_a_person_name(self) -> None:
        """``%5E`` is decoded before the patterns run."""
        assert PhiMasker().mask_text("name Doe%5EJane") == "name [REDACTED_PHI]"
