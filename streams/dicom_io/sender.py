"""Sending a DICOM object to a destination with C-STORE (pynetdicom SCU), outcome as an error code.

One association per send, every wait bounded (connection, ACSE, DIMSE and network timeouts).
The outcome maps onto radstream's errors so the caller's retry policy can act on it:

* success or a warning status: stored;
* unreachable, association aborted or rejected *transiently*, no answer, or *Refused: Out of
  Resources* (``A7xx``): ``DICOM_PEER_UNAVAILABLE``, retryable;
* rejected *permanently* (e.g. our AE title is unknown there) or any other failure status:
  ``DICOM_EXPORT_REFUSED``, permanent — retrying the same object cannot help, it is dead-lettered.

Only the status and the destination's (configured) AE title are ever reported: the object holds
patient data and is never logged.
"""

from __future__ import annotations

import asyncio
from typing import Final

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from schemas.errors import ErrorCode, InputValidationError, TransientError
from schemas.settings import DicomPeer
from streams.dicom import statuses

REJECTED_PERMANENT: Final = 0x01


class DicomSender:
    """Sends datasets with C-STORE as ``calling_ae_title``."""

    def __init__(
        self,
        calling_ae_title: str,
        *,
        connection_timeout_seconds: float = 10.0,
        dimse_timeout_seconds: float = 30.0,
    ) -> None:
        self._calling = calling_ae_title
        self._connection_timeout = connection_timeout_seconds
        self._dimse_timeout = dimse_timeout_seconds

    def send_blocking(self, dataset: Dataset, peer: DicomPeer) -> None:
        """Send ``dataset`` to ``peer`` and return once it was stored there.

        Raises:
            TransientError: ``DICOM_PEER_UNAVAILABLE`` when a later try may succeed.
            InputValidationError: ``DICOM_EXPORT_REFUSED`` when the peer refused for good.
        """
        ae = AE(ae_title=self._calling)
        ae.connection_timeout = self._connection_timeout
        ae.acse_timeout = self._dimse_timeout
        ae.dimse_timeout = self._dimse_timeout
        ae.network_timeout = self._dimse_timeout
        ae.add_requested_context(
            str(dataset.SOPClassUID), [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        )
        association = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
        if not association.is_established:
            if association.is_rejected and _rejected_permanently(association):
                raise InputValidationError(
                    ErrorCode.DICOM_EXPORT_REFUSED,
                    f"{peer.ae_title} rejected the association permanently",
                )
            raise TransientError(
                ErrorCode.DICOM_PEER_UNAVAILABLE, f"{peer.ae_title} could not be associated"
            )
        try:
            answer = association.send_c_store(dataset)
        finally:
            if association.is_established:
                association.release()
        status = getattr(answer, "Status", None)
        if status is None:
            raise TransientError(
                ErrorCode.DICOM_PEER_UNAVAILABLE, f"{peer.ae_title} did not answer the C-STORE"
            )
        if statuses.is_success_or_warning(int(status)):
            return
        if statuses.is_retryable_status(int(status)):
            raise TransientError(
                ErrorCode.DICOM_PEER_UNAVAILABLE,
                f"{peer.ae_title} is out of resources (status 0x{int(status):04X})",
            )
        raise InputValidationError(
            ErrorCode.DICOM_EXPORT_REFUSED,
            f"{peer.ae_title} refused the object (status 0x{int(status):04X})",
        )

    async def send(self, dataset: Dataset, peer: DicomPeer) -> None:
        """:meth:`send_blocking` on a worker thread (pynetdicom is synchronous)."""
        await asyncio.to_thread(self.send_blocking, dataset, peer)


def _rejected_permanently(association: Association) -> bool:
    """Whether the A-ASSOCIATE-RJ said "rejected-permanent" (the acceptor's response primitive)."""
    response = association.acceptor.primitive
    return getattr(response, "result", None) == REJECTED_PERMANENT
