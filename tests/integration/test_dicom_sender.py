"""The C-STORE sender's outcomes against a scripted pynetdicom SCP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO

import pytest
from pydicom import Dataset, dcmread
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage  # type: ignore[attr-defined]

from schemas.errors import ErrorCode, InputValidationError, TransientError
from schemas.settings import DicomPeer
from streams.dicom.reports import build_result_report
from streams.dicom_io.sender import DicomSender
from tests.dicom_support import variant
from tests.unit.dicom.test_dicom_reports import result


def report() -> Dataset:
    return build_result_report(dcmread(BytesIO(variant()), stop_before_pixels=True), result())


@pytest.fixture
def pacs(request: pytest.FixtureRequest) -> Iterator[DicomPeer]:
    """A PACS answering every C-STORE with the status the test names (indirect parameter)."""
    status: int = request.param
    ae = AE(ae_title="PACS")
    ae.add_supported_context(ComprehensiveSRStorage)
    ae.require_calling_aet = ["RADSTREAM"]
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda _e: status)]
    )
    try:
        yield DicomPeer(ae_title="PACS", host="127.0.0.1", port=server.server_address[1])
    finally:
        server.shutdown()


class TestOutcomes:
    @pytest.mark.parametrize("pacs", [0x0000, 0xB000], indirect=True)
    async def test_success_and_warning_are_stored(self, pacs: DicomPeer) -> None:
        """Success and warning statuses return normally."""
        await DicomSender("RADSTREAM").send(report(), pacs)

    @pytest.mark.parametrize("pacs", [0xA700, 0xA702], indirect=True)
    async def test_out_of_resources_is_retryable(self, pacs: DicomPeer) -> None:
        """A7xx: DICOM_PEER_UNAVAILABLE, worth retrying."""
        with pytest.raises(TransientError) as caught:
            await DicomSender("RADSTREAM").send(report(), pacs)
        assert caught.value.code is ErrorCode.DICOM_PEER_UNAVAILABLE

    @pytest.mark.parametrize("pacs", [0xC000, 0xA900, 0x0122], indirect=True)
    async def test_failure_status_is_a_permanent_refusal(self, pacs: DicomPeer) -> None:
        """Any other failure: DICOM_EXPORT_REFUSED naming the status, not retried."""
        with pytest.raises(InputValidationError) as caught:
            await DicomSender("RADSTREAM").send(report(), pacs)
        assert caught.value.code is ErrorCode.DICOM_EXPORT_REFUSED
        assert "status 0x" in caught.value.reason

    @pytest.mark.parametrize("pacs", [0x0000], indirect=True)
    async def test_permanent_association_rejection(self, pacs: DicomPeer) -> None:
        """A PACS that rejects our AE title permanently: DICOM_EXPORT_REFUSED."""
        with pytest.raises(InputValidationError) as caught:
            await DicomSender("STRANGER").send(report(), pacs)
        assert caught.value.code is ErrorCode.DICOM_EXPORT_REFUSED
