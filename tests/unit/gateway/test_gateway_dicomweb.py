"""POST /dicomweb/studies (STOW-RS): per-instance outcomes, auth, limits, no PHI echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ErrorCode, TransientError
from schemas.events import ImageArrived
from streams.dicom.instances import read_instance
from streams.topics import TopicKey
from tests.dicom_support import canaries_in, sample_bytes, variant
from tests.unit.gateway.fakes import Harness, build_harness

BOUNDARY = "stow-boundary-1234"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def related_body(*parts: bytes | tuple[str, bytes]) -> bytes:
    body = b""
    for part in parts:
        media_type, data = part if isinstance(part, tuple) else ("application/dicom", part)
        body += f"--{BOUNDARY}\r\nContent-Type: {media_type}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return build_harness(tmp_path, max_upload_bytes=2 * 1024 * 1024)


async def stow(
    harness: Harness, body: bytes, *, content_type: str = STOW_TYPE, roles: list[str] | None = None
) -> tuple[int, dict[str, object]]:
    token = harness.token("stow-user", roles=roles or ["service"])
    response = await harness.client.post(
        "/dicomweb/studies",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    return response.status_code, response.json()


def failures(answer: dict[str, object]) -> list[dict[str, dict[str, list[object]]]]:
    return answer.get("00081198", {}).get("Value", [])  # type: ignore[attr-defined,no-any-return]


def stored(answer: dict[str, object]) -> list[dict[str, dict[str, list[object]]]]:
    return answer.get("00081199", {}).get("Value", [])  # type: ignore[attr-defined,no-any-return]


class TestStow:
    async def test_instances_are_stored_and_announced(self, harness: Harness) -> None:
        """Every part is stored and announced; 200 lists each instance."""
        first, second = variant(), variant("MR_small_RLE.dcm")
        status, answer = await stow(harness, related_body(first, second))
        assert status == 200
        uids = [item["00081155"]["Value"][0] for item in stored(answer)]
        assert uids == [
            read_instance(first).sop_instance_uid,
            read_instance(second).sop_instance_uid,
        ]
        events = [m.value for m in harness.publisher.messages]
        assert all(isinstance(e, ImageArrived) for e in events)
        assert [m.topic_key for m in harness.publisher.messages] == [TopicKey.IMAGES_ARRIVED] * 2
        arrival = events[0]
        assert isinstance(arrival, ImageArrived)
        assert (arrival.source, arrival.requested_by) == ("dicomweb", "stow-user")

    async def test_bad_part_fails_alone(self, harness: Harness) -> None:
        """A part that is not DICOM fails with its code; the good one is stored (202)."""
        good = variant()
        status, answer = await stow(harness, related_body(good, b"this is not dicom"))
        assert status == 202
        assert len(stored(answer)) == 1
        (failure,) = failures(answer)
        assert failure["00091001"]["Value"] == ["DICOM_NOT_PART10"]
        assert failure["00081197"]["Value"] == [0xC000]

    async def test_wrong_part_type_and_unsupported_class(self, harness: Harness) -> None:
        """A non-DICOM part type and an RT plan both fail; nothing stored answers 409."""
        body = related_body(("text/plain", b"hello"), sample_bytes("rtplan.dcm"))
        status, answer = await stow(harness, body)
        assert status == 409
        codes = [f["00091001"]["Value"][0] for f in failures(answer)]
        assert codes == ["REQUEST_INVALID", "DICOM_SOP_CLASS_UNSUPPORTED"]
        assert failures(answer)[1]["00081197"]["Value"] == [0x0122]
        assert harness.publisher.messages == []

    async def test_broker_down_answers_503_to_retry(self, harness: Harness) -> None:
        """With the broker down nothing is stored-and-announced: 503, the client sends again."""
        harness.publisher.fail_with = TransientError(ErrorCode.BROKER_UNAVAILABLE)
        status, answer = await stow(harness, related_body(variant()))
        assert status == 503
        assert failures(answer)[0]["00091001"]["Value"] == ["BROKER_UNAVAILABLE"]
        assert failures(answer)[0]["00081197"]["Value"] == [0xA700]

    async def test_resent_instance_is_one_event(self, harness: Harness) -> None:
        """Storing the same instance twice answers success twice and announces it once."""
        data = variant()
        for _ in range(2):
            status, _answer = await stow(harness, related_body(data))
            assert status == 200
        assert len(harness.publisher.messages) == 1

    async def test_too_large_part(self, tmp_path: Path) -> None:
        """A part over the upload limit fails alone as IMAGE_TOO_LARGE."""
        harness = build_harness(tmp_path, max_upload_bytes=1000)
        status, answer = await stow(harness, related_body(variant()))
        assert status == 409
        assert failures(answer)[0]["00091001"]["Value"] == ["IMAGE_TOO_LARGE"]

    async def test_every_stored_instance_is_audited(self, harness: Harness) -> None:
        """Each stored instance is an audited submission with its event id."""
        await stow(harness, related_body(variant()))
        actions = [a for a in harness.audit.actions if a.event_id is not None]
        assert [a.action.value for a in actions] == ["submit"]
        assert actions[0].event_id == harness.publisher.messages[0].value.event_id  # type: ignore[attr-defined]


class TestRefusedRequests:
    @pytest.mark.parametrize(
        "content_type",
        [
            "application/dicom",
            'multipart/related; type="application/dicom+xml"; boundary=x',
            'multipart/related; type="application/dicom"',
        ],
    )
    async def test_wrong_content_type(self, harness: Harness, content_type: str) -> None:
        """Only multipart/related of application/dicom with a boundary is a STOW-RS body."""
        status, answer = await stow(harness, related_body(variant()), content_type=content_type)
        assert (status, answer["code"]) == (400, "REQUEST_INVALID")

    async def test_empty_body(self, harness: Harness) -> None:
        """A body without parts is REQUEST_INVALID."""
        status, answer = await stow(harness, f"--{BOUNDARY}--\r\n".encode())
        assert (status, answer["code"]) == (400, "REQUEST_INVALID")

    async def test_too_many_parts(self, tmp_path: Path) -> None:
        """More parts than api.max_batch_items is REQUEST_INVALID."""
        harness = build_harness(tmp_path, max_batch_items=1)
        status, answer = await stow(harness, related_body(variant(), variant()))
        assert (status, answer["code"]) == (400, "REQUEST_INVALID")

    async def test_authentication_required(self, harness: Harness) -> None:
        """No token, no store."""
        response = await harness.client.post(
            "/dicomweb/studies",
            content=related_body(variant()),
            headers={"Content-Type": STOW_TYPE},
        )
        assert response.status_code == 401
        assert harness.publisher.messages == []

    async def test_auditors_may_not_store(self, harness: Harness) -> None:
        """The auditor role reads; it does not submit."""
        status, _ = await stow(harness, related_body(variant()), roles=["auditor"])
        assert status == 403


class TestNoPhiEchoed:
    async def test_phi_never_in_the_answer(self, harness: Harness) -> None:
        """Instances full of PHI, and one with a name for a UID: the answer has none of it."""
        bad_uid = variant(phi=True, SOPInstanceUID="CANARYDOE^JANEPHI")
        status, answer = await stow(harness, related_body(variant(phi=True), bad_uid))
        assert status == 202
        assert canaries_in(str(answer)) == []
        assert "00081155" not in failures(answer)[0]
        assert (
            canaries_in(str([m.value.model_dump_json() for m in harness.publisher.messages])) == []
        )
